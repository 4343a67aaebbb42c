"""Import a script from benchmarks/ for testing, without leaving benchmarks/ on sys.path or its `common` module in
sys.modules: examples/ has a `common` module of its own, which later tests import."""

import importlib
import sys
from pathlib import Path


def import_benchmark(name: str):
    saved_path, saved_common = list(sys.path), sys.modules.pop("common", None)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("common", None)
        if saved_common is not None:
            sys.modules["common"] = saved_common
