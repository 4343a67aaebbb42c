"""Step character offsets -> tokens with a byte-level BPE tokenizer, whose offsets trim spaces."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from trl_plus.engine.step_offsets import offset_char_ends, prefix_char_ends

CORPUS = "1 + 2 = 3\n\nThen  3 * 4 = 12.\n  \n#### 12\n \n"


@pytest.fixture(scope="module")
def byte_level():
    """A small GPT-2-style tokenizer (byte-level pre-tokenizer and decoder, trimmed offsets), trained offline."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=["<eos>"])
    core.train_from_iterator([CORPUS] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>")


@pytest.mark.parametrize("text", ["a = 3\n\n  b = 4", "1 + 2 = 3\n \n#### 3", "x\n  \ny", "Then  3 * 4 = 12.\n  "])
def test_fast_offsets_agree_with_prefix_decoding(byte_level, text):
    ids = byte_level(text, add_special_tokens=False)["input_ids"] + [byte_level.eos_token_id]
    (fast,) = offset_char_ends(byte_level, [ids], [text])
    assert fast is not None  # re-encoding reproduces the ids: the fast path is taken
    # prefix decoding is exact: the tail space of a whitespace token ("\n ") belongs to that token, not the next
    assert fast == prefix_char_ends(byte_level, ids, text)
