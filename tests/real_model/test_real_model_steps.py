"""ProcessGRPO's step-offset -> token mapping on the real byte-level BPE tokenizer (SmolLM2).

A step ending at character `c` must land on the first token `k` whose decoded prefix `ids[:k + 1]` covers the
whole step text `text[:c + 1]`: earlier tokens would cut the step, later ones would credit the next step.
Byte-level BPE makes this non-trivial: a space belongs to the token of the word after it, a newline run is one
token, every digit is its own token, and a multi-byte character can be split over several byte tokens.
"""

from __future__ import annotations

import pytest

# The one import of the mapping under test (kept in one place so a rename is a one-line change).
from trl_plus.engine.step_offsets import char_to_token, prefix_char_ends, token_char_ends

TEXTS = {
    "space_end": "Ava has 12 apples. She buys 30 more. ",
    "newlines": "Step 1: 12+30=42\n\nStep 2: that is all.\n\n  Then 42*2=84\n#### 84\n",
    "digits": "1234567*89=109876463 and 98765432",
    "multibyte": "Le café coûte 5 €.\nCake: 🍰 costs 3 ¥ ✓\n",
    "markup": "<reasoning>\n48/2 = 24\n</reasoning>\n<answer>\n#### 72\n</answer>",
}


def step_ends(text: str) -> list[int]:
    """Offsets of interesting step ends: every character that ends a word, line, number or a non-ASCII char."""
    ends = [i for i, ch in enumerate(text) if ch in " \n.=" or not ch.isascii() or (ch.isdigit())]
    return sorted(set(ends + [len(text) - 1]))


def first_covering_token(tok, ids: list[int], text: str, c: int) -> int:
    """Reference, by brute force: the first k such that decode(ids[:k + 1]) starts with text[:c + 1]."""
    for k in range(len(ids)):
        if tok.decode(ids[: k + 1]).startswith(text[: c + 1]):
            return k
    raise AssertionError(f"no prefix of the tokens covers {text[: c + 1]!r}")


def split_ids(tok, text: str) -> list[int]:
    """A non-canonical tokenisation a model can sample: each character encoded on its own (bytes of a multi-byte
    character stay whole), so the fast offsets path cannot reproduce it and the decoding fallback runs."""
    return [i for ch in text for i in tok(ch, add_special_tokens=False)["input_ids"]]


# A character split over several byte tokens (🍰 is 4 bytes) maps to its FIRST byte token in both paths: the
# fast tokenizer gives every byte piece the whole character's offsets, and a decoded prefix ending in a partial
# character already counts it (as U+FFFD). A step ending on such a character then loses its last byte tokens to
# the next step.
CASES = list(TEXTS)


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("tokenisation", ["canonical", "per_character"])
def test_step_offsets_map_to_the_first_covering_token(name, tokenisation, real_tokenizer):
    tok, text = real_tokenizer, TEXTS[name]
    ids = tok(text, add_special_tokens=False)["input_ids"] if tokenisation == "canonical" else split_ids(tok, text)
    ids = ids + [tok.eos_token_id]  # generated completions end with EOS, which decoding skips
    assert tok.decode(ids, skip_special_tokens=True) == text
    (ends,) = token_char_ends(tok, [ids], [text])
    assert len(ends) == len(ids) and ends[-1] == len(text) and ends == sorted(ends)
    assert ends == prefix_char_ends(tok, ids, text)  # the fast path (canonical ids) agrees with the fallback
    for c in step_ends(text):
        assert char_to_token(ends, c) == first_covering_token(tok, ids, text, c), (text[: c + 1], c)


def test_cases_exercise_byte_level_bpe(real_tokenizer):
    """The texts above really contain the hard cases: a trailing space, a newline run, multi-digit numbers
    spread over tokens, and a character split into several byte tokens."""
    tok = real_tokenizer
    pieces = {name: tok.convert_ids_to_tokens(tok(t, add_special_tokens=False)["input_ids"])
              for name, t in TEXTS.items()}
    assert "Ġ" in pieces["space_end"][-1]
    assert "ĊĊĠ" in pieces["newlines"]  # one token for two newlines and a space: a step can end inside it
    assert pieces["digits"][:4] == ["1", "2", "3", "4"]
    cake = tok("🍰", add_special_tokens=False)["input_ids"]
    assert len(cake) > 1 and all(tok.decode([i]) != "🍰" for i in cake)
    assert tok(TEXTS["multibyte"], add_special_tokens=False)["input_ids"] != split_ids(tok, TEXTS["multibyte"])
