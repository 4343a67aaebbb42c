"""Step character offsets -> completion token indices for process rewards, and the check of what a process reward
returned (`check_steps`, `merge_steps`). Pure functions of token ids, texts and a tokenizer.

Process reward contract (`reward_fns.process`): `f(prompts, completions, **kwargs)` returns one list
per completion of `(offset, reward)` pairs, `offset` being the index of the step's LAST character in
the completion text (inclusive: `0 <= offset < len(text)`), strictly increasing; `reward` a number
(None or NaN: an unscorable step, left out of the group statistics). The text of a conversational
completion is the content of its last assistant message (`reward_fns.parsing.completion_text`).

Offset -> token: the step ends at the token that contains its last character. `token_char_ends` gives,
for each generated token `k`, the exclusive character end of the text covered by tokens `0..k`; the
token containing character `c` is then the first `k` with `ends[k] > c` (`char_to_token`).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

Steps = list[tuple[int, float | None]]


def check_steps(result: object, texts: Sequence[str], name: str) -> list[Steps]:
    """Validate a process reward's output for `len(texts)` completions; return `[[(offset, reward), ...], ...]`.

    Rewards become floats (None and NaN become None). Raises `ValueError` naming the function and the fix.
    """
    if not isinstance(result, (list, tuple)) or len(result) != len(texts):
        got = f"{len(result)} step lists" if isinstance(result, (list, tuple)) else f"a {type(result).__name__}"
        raise ValueError(f"Process reward function {name!r} returned {got} for {len(texts)} completions. It must "
                         f"return one list of (offset, reward) pairs per completion, [] for a completion without steps.")
    out = []
    for i, (steps, text) in enumerate(zip(result, texts)):
        where = f"Process reward function {name!r}, completion {i} ({len(text)} characters)"
        if not isinstance(steps, (list, tuple)):
            raise ValueError(f"{where}: expected a list of (offset, reward) pairs, got {type(steps).__name__}.")  # noqa: TRY004
        checked, previous = [], -1
        for step in steps:
            if not isinstance(step, (list, tuple)) or len(step) != 2:
                raise ValueError(f"{where}: each step must be an (offset, reward) pair, got {step!r:.80}.")
            offset, reward = step
            if isinstance(offset, bool) or not hasattr(offset, "__index__"):
                raise ValueError(f"{where}: step offset {offset!r:.40} is not an int; return the index of the "
                                 f"step's last character.")
            offset = int(offset)
            if not 0 <= offset < len(text):
                raise ValueError(f"{where}: step offset {offset} is outside the completion. Offsets are the index "
                                 f"of the step's last character, 0 <= offset < {len(text)} (for a slice end, "
                                 f"return end - 1).")
            if offset <= previous:
                raise ValueError(f"{where}: step offsets must be strictly increasing, got {previous} then "
                                 f"{offset}; sort the steps and merge those that end at the same character.")
            if reward is not None and (isinstance(reward, (str, bytes)) or not hasattr(reward, "__float__")):
                raise ValueError(f"{where}: step reward {reward!r:.40} is not a number; return a float "
                                 f"(or None for an unscorable step).")
            reward = None if reward is None or math.isnan(float(reward)) else float(reward)
            checked.append((offset, reward))
            previous = offset
        out.append(checked)
    return out


def merge_steps(step_lists: Sequence[Sequence[Steps]], weights: Sequence[float]) -> list[Steps]:
    """Merge the steps of several process rewards for the same B completions, `(K, B, steps) -> (B, steps)`.

    A step is a character offset; its reward is the weighted sum of the rewards the functions gave a step
    ending there (unscorable ones left out; None when every contribution is unscorable).
    """
    merged = []
    for per_row in zip(*step_lists):
        at: dict[int, float | None] = {}
        for steps, weight in zip(per_row, weights):
            for offset, reward in steps:
                old = at.get(offset)
                at[offset] = old if reward is None else (old or 0.0) + weight * reward
        merged.append(sorted(at.items()))
    return merged


def offset_char_ends(tokenizer, completion_ids: Sequence[Sequence[int]], texts: Sequence[str]) -> list[list[int] | None]:
    """Fast path of `token_char_ends`: the fast tokenizer's offsets of the re-encoded text.

    Exact when re-encoding `text` (no special tokens) gives back the generated ids minus the special
    tokens that decoding skipped; such a skipped token (EOS) covers no character. Returns None for a
    completion where the ids differ (or for every one when the tokenizer is not a fast one).
    """
    if not getattr(tokenizer, "is_fast", False) or not texts:
        return [None] * len(texts)
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    special = set(tokenizer.all_special_ids)
    result = []
    for ids, re_ids, offsets, text in zip(completion_ids, enc["input_ids"], enc["offset_mapping"], texts):
        if [t for t in ids if t not in special] != list(re_ids):
            result.append(None)
            continue
        ends, end, j = [], 0, 0
        for t in ids:
            if t not in special:
                stop = _untrimmed_end(tokenizer, t, text, *offsets[j])
                # Byte pieces of one multi-byte character all report the character's span: only the last piece
                # completes it, so an earlier piece ends where the next piece starts.
                if j + 1 < len(offsets) and offsets[j + 1][0] < stop:
                    stop = offsets[j + 1][0]
                end = max(end, stop)
                j += 1
            ends.append(end)
        result.append(ends)
    return result


def _untrimmed_end(tokenizer, token_id: int, text: str, start: int, end: int) -> int:
    """The end of a token's span with the trailing spaces that `trim_offsets` cut off put back.

    Byte-level tokenizers (GPT-2, Llama 3, Qwen) report offsets with leading and trailing spaces trimmed, so a
    token such as "\n " reports only its "\n": its trailing space would be counted to the next token. The token's
    own decoded text says how many trailing spaces it has; a fully trimmed token (start == end) already reports
    its end.
    """
    if start >= end:
        return end
    decoded = tokenizer.decode([token_id])
    missing = (len(decoded) - len(decoded.rstrip(" "))) - (end - start - len(text[start:end].rstrip(" ")))
    if missing > 0 and text[end:end + missing] == " " * missing:
        return end + missing
    return end


def prefix_char_ends(tokenizer, ids: Sequence[int], text: str) -> list[int]:
    """Fallback of `token_char_ends`: `ends[k]` = length of the decoded prefix `ids[:k + 1]`, as TRL decodes it.

    Exact whenever decoding is prefix-stable (every tokenizer in practice); a non-monotone length (a
    partial multi-byte character) is made monotone with a running max. Costs O(T^2) characters, which
    is why it is only the fallback. When `text` is only part of the decoded completion (a parsed
    response), the ends are shifted to where `text` starts in it.
    """
    if not ids:
        return []
    prefixes = tokenizer.batch_decode([list(ids[: k + 1]) for k in range(len(ids))], skip_special_tokens=True)
    base = 0 if prefixes[-1] == text else prefixes[-1].find(text)
    if base < 0:
        raise ValueError(f"Cannot align the completion text {text[:60]!r} with its generated tokens (it is not "
                         f"part of their decoded text); process rewards need the decoded completion text.")
    ends, end = [], 0
    for prefix in prefixes:
        # A prefix that ends inside a multi-byte character decodes its bytes as U+FFFD: not that character yet.
        n = len(prefix)
        while n > base and prefix[n - 1] == "\ufffd" and (n - 1 - base >= len(text) or text[n - 1 - base] != "\ufffd"):
            n -= 1
        end = max(end, min(max(n - base, 0), len(text)))
        ends.append(end)
    return ends


def token_char_ends(tokenizer, completion_ids: Sequence[Sequence[int]], texts: Sequence[str]) -> list[list[int]]:
    """For each completion, `ends[k]`: the exclusive character end of the text covered by tokens `0..k`.

    Uses the fast tokenizer's offsets when re-encoding reproduces the generated ids, otherwise the exact
    prefix-decoding fallback (`prefix_char_ends`).
    """
    fast = offset_char_ends(tokenizer, completion_ids, texts)
    return [e if e is not None else prefix_char_ends(tokenizer, ids, text)
            for e, ids, text in zip(fast, completion_ids, texts)]


def char_to_token(ends: Sequence[int], char_index: int) -> int:
    """Index of the token containing character `char_index`: the first `k` with `ends[k] > char_index`."""
    if not ends:
        raise ValueError("A completion with no tokens has no characters to map.")
    return min(bisect_right(ends, char_index), len(ends) - 1)
