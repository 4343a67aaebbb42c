"""GSM8K-schema data: a deterministic problem generator and loaders into TRL prompt datasets.

Rows everywhere have GSM8K's schema: `question` and `answer`, the answer holding worked lines
with `<<a*b=c>>` calculator annotations and ending in `#### N`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from datasets import Dataset

from trl_plus.errors import UserError

SYSTEM_PROMPT = """Respond in the following format:
<reasoning>
...
</reasoning>
<answer>
#### <number>
</answer>"""

NAMES = ["Ava", "Ben", "Cara", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena", "Mo", "Nia"]
ITEMS = ["apples", "books", "coins", "stamps", "marbles", "cards", "shells", "pens"]


class DataError(UserError, ValueError):
    """A data source is missing or is not in GSM8K's schema; the message says how to fix it."""


def _fmt(x: int) -> str:
    return str(x)


def _addition_problem(rng: random.Random) -> dict:
    # Difficulty 1: the 2-digit addition task measured to be learnable on CPU in minutes.
    a, b = rng.randint(10, 99), rng.randint(10, 99)
    return {"question": f"What is {a}+{b}?", "answer": f"{a}+{b}=<<{a}+{b}={a + b}>>{a + b}\n#### {a + b}"}


def _word_problem(rng: random.Random, steps: int) -> dict:
    """A story of `steps` operations on one quantity, each written as a worked line."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    total = rng.randint(5, 60)
    sentences = [f"{name} has {total} {item}."]
    lines = []
    for _ in range(steps):
        op = rng.choice(["+", "-", "*"] if total < 200 else ["+", "-"])
        if op == "+":
            n = rng.randint(2, 50)
            sentences.append(f"{name} gets {n} more {item}.")
            new = total + n
        elif op == "-":
            n = rng.randint(1, max(1, total - 1))
            sentences.append(f"{name} gives away {n} {item}.")
            new = total - n
        else:
            n = rng.randint(2, 4)
            sentences.append(f"Then the number of {item} {name} has is multiplied by {n}.")
            new = total * n
        lines.append(f"{total}{op}{n}=<<{total}{op}{n}={new}>>{new} {item}")
        total = new
    question = " ".join(sentences) + f" How many {item} does {name} have now?"
    return {"question": question, "answer": "\n".join(lines) + f"\n#### {_fmt(total)}"}


def generate_problems(n: int, seed: int = 0, difficulty: int = 1) -> list[dict]:
    """Generate `n` GSM8K-schema problems, deterministically from `seed`.

    Difficulty 1 is `What is a+b?` with two-digit numbers; difficulty d >= 2 is a word
    problem of d - 1 chained operations (+, -, *), each a worked line with a calculator
    annotation, so `answer` looks like GSM8K's (`... <<12*3=36>>36 ...\\n#### 36`).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    if difficulty < 1:
        raise ValueError(f"difficulty must be >= 1, got {difficulty}.")
    rng = random.Random(f"{seed}-{difficulty}")
    make = _addition_problem if difficulty == 1 else (lambda r: _word_problem(r, difficulty - 1))
    return [make(rng) for _ in range(n)]


def generate_chain_problems(n: int, seed: int = 0, min_ops: int = 2, max_ops: int = 4) -> list[dict]:
    """`n` multi-step problems in GSM8K's schema: `What is 23+5-7+4?` with one worked line per operation, left to
    right (`23+5=<<23+5=28>>28`, `28-7=<<28-7=21>>21`, ...), so every intermediate result is an `a op b = c` step
    that `reward_fns.arithmetic_steps` can judge. A 2-digit start and 1-digit operands keep each step small enough
    for the tiny model; results stay non-negative. Deterministic from `seed`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    if not 1 <= min_ops <= max_ops:
        raise ValueError(f"need 1 <= min_ops <= max_ops, got min_ops={min_ops}, max_ops={max_ops}.")
    rng = random.Random(f"chain-{seed}-{min_ops}-{max_ops}")
    rows = []
    for _ in range(n):
        total = rng.randint(10, 99)
        expr, lines = str(total), []
        for _ in range(rng.randint(min_ops, max_ops)):
            b = rng.randint(1, 9)
            op = "-" if total - b >= 0 and rng.random() < 0.5 else "+"
            new = total + b if op == "+" else total - b
            expr += f"{op}{b}"
            lines.append(f"{total}{op}{b}=<<{total}{op}{b}={new}>>{new}")
            total = new
        rows.append({"question": f"What is {expr}?", "answer": "\n".join(lines) + f"\n#### {total}"})
    return rows


GSM8K_SCHEMA = ("one object per line with string fields 'question' and 'answer', the answer ending in "
                "'#### <number>'")
DATASET_CHOICES = ("'synthetic' (generated problems, offline), 'chain' (generated 2-4 step problems such as "
                   "'What is 23+5-7+4?', offline), 'gsm8k' (openai/gsm8k from the Hugging Face Hub) or "
                   "the path of a local GSM8K-schema .jsonl or .json file")


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a GSM8K-schema JSON-lines file (or a .json file holding one list of rows), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Data file {path} does not exist (not found): pass an existing .jsonl file ({GSM8K_SCHEMA}) "
                        "or .json file, or use --dataset synthetic.")
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):  # a .json file holding one list of rows
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} is not valid JSON ({e.msg}, line {e.lineno}): write {GSM8K_SCHEMA}.") from None
        lines = [(i, item) for i, item in enumerate(items, 1)]
    else:
        lines = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                lines.append((lineno, json.loads(line)))
            except json.JSONDecodeError:
                raise DataError(f"{path}:{lineno} is not JSON: the data file must be JSON lines, {GSM8K_SCHEMA}."
                                ) from None
    rows = []
    for lineno, row in lines:
        validate_row(row, f"{path}:{lineno}")
        rows.append(row)
    if not rows:
        raise DataError(f"Data file {path} is empty: it needs at least one row with 'question' and 'answer'.")
    return rows


def validate_row(row, where: str) -> None:
    if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise DataError(
            f"{where} is not GSM8K-schema (found {keys}): each row needs string fields 'question' and 'answer', "
            "the answer ending in '#### N'."
        )
    if "####" not in row["answer"]:
        raise DataError(f"{where}: 'answer' has no '#### N' final answer; GSM8K-schema answers end in '#### N'.")
    from reward_fns import extract_gold

    if extract_gold(row["answer"]) is None:
        final = row["answer"].rsplit("####", 1)[-1].strip()
        raise DataError(f"{where}: the final answer {final[:40]!r} after '####' is not a number, so the correctness "
                        "rewards could never score this row (they would abstain): write '#### <number>' "
                        "(e.g. '#### 42', '#### -3.5', '#### 1,234') or drop the row.")


def load_rows(source: str = "synthetic", split: str = "train", n: int | None = None, seed: int = 0,
              difficulty: int = 1) -> list[dict]:
    """Load GSM8K-schema rows from `synthetic` (the generator), `chain` (multi-step problems), `gsm8k` (the hub's
    `openai/gsm8k`, needs internet) or a local `.jsonl` / `.json` path."""
    if source == "synthetic":
        # A different seed offset per split keeps held-out problems apart from training ones.
        offset = {"train": 0, "test": 1_000_003, "dev": 2_000_003}.get(split, 3_000_003)
        return generate_problems(n if n is not None else 2000, seed=seed + offset, difficulty=difficulty)
    if source == "chain":
        offset = {"train": 0, "test": 1_000_003, "dev": 2_000_003}.get(split, 3_000_003)
        return generate_chain_problems(n if n is not None else 2000, seed=seed + offset)
    if source in ("gsm8k", "openai/gsm8k"):
        from datasets import load_dataset

        try:
            ds = load_dataset("openai/gsm8k", "main", split=split)
        except Exception as e:  # noqa: BLE001 - any hub failure gets the same offline advice
            raise DataError(
                f"could not load openai/gsm8k from the Hugging Face Hub ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:120] if str(e) else 'no details'}). Without internet, pass a local "
                f"GSM8K-schema .jsonl file ({GSM8K_SCHEMA}), or use --dataset synthetic."
            ) from None
        rows = [{"question": r["question"], "answer": r["answer"]} for r in ds]
    elif Path(source).exists() or Path(source).suffix in (".jsonl", ".json") or "/" in source:
        rows = read_jsonl(source)
    else:
        raise DataError(f"Unknown dataset {source!r}: use {DATASET_CHOICES}.")
    return rows[:n] if n is not None else rows


def make_prompt(question: str, system_prompt: str | None = SYSTEM_PROMPT, conversational: bool = True):
    """One prompt in TRL's conversational (list of messages) or plain-text form."""
    if conversational:
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        return messages + [{"role": "user", "content": question}]
    return f"{system_prompt}\n\n{question}\n" if system_prompt else f"{question}\n"


def to_prompt_dataset(rows: list[dict], system_prompt: str | None = SYSTEM_PROMPT,
                      conversational: bool = True) -> Dataset:
    """A TRL prompt dataset: `prompt` plus the `answer` column that the reward functions read."""
    return Dataset.from_list([
        {"prompt": make_prompt(r["question"], system_prompt, conversational), "answer": r["answer"]} for r in rows
    ])


def to_sft_dataset(rows: list[dict], system_prompt: str | None = SYSTEM_PROMPT,
                   conversational: bool = True) -> Dataset:
    """A TRL prompt-completion dataset whose completions are the gold solutions in the answer format."""
    from reward_fns import to_training_format

    out = []
    for r in rows:
        completion = to_training_format(r["answer"])
        prompt = make_prompt(r["question"], system_prompt, conversational)
        if conversational:
            completion = [{"role": "assistant", "content": completion}]
        out.append({"prompt": prompt, "completion": completion, "answer": r["answer"]})
    return Dataset.from_list(out)
