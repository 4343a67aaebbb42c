"""lm-eval task configs shipped with trl-plus; `TASKS_DIR` is passed to lm-eval as an include path."""

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
