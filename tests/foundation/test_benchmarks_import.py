"""Every script in benchmarks/ imports: they are run by hand, so a name removed from a shared module (as
`learning.NOISE_POINTS` once was, breaking `listwise.py`) would otherwise go unnoticed."""

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_every_benchmark_script_imports():
    names = sorted(p.stem for p in BENCHMARKS.glob("*.py"))
    assert {"learning", "listwise", "demo_timing", "overhead"} <= set(names)
    code = ("import importlib, sys\nfailed = []\nfor name in sys.argv[1:]:\n    try:\n"
            "        importlib.import_module(name)\n    except Exception as e:\n"
            "        failed.append(f'{name}: {type(e).__name__}: {e}')\nprint('\\n'.join(failed))\n"
            "sys.exit(1 if failed else 0)")
    out = subprocess.run([sys.executable, "-c", code, *names], cwd=BENCHMARKS, capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr[-2000:]
