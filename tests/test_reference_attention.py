"""Direct checks of the attention reference against torch and against the formulas it cites."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from jaxtyping import TypeCheckError

from lmspec.reference import attention as ref
from lmspec.reference.softmax import softmax, temperature_softmax

torch.manual_seed(0)


def rand(*shape, dtype=torch.float64):
    return torch.randn(*shape, dtype=dtype)


@pytest.mark.parametrize("lq,lk", [(4, 4), (3, 7), (7, 3), (1, 9)])
@pytest.mark.parametrize("causal", [False, True])
def test_sdpa_equals_torch_math_in_float64(lq, lk, causal):
    q, k, v = rand(2, 6, lq, 8), rand(2, 3, lk, 8), rand(2, 3, lk, 5)
    ours = ref.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    theirs = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_bottom_right_alignment_equals_torch_causal_lower_right():
    from torch.nn.attention.bias import causal_lower_right

    q, k, v = rand(1, 2, 3, 4), rand(1, 2, 7, 4), rand(1, 2, 7, 4)
    ours = ref.scaled_dot_product_attention(q, k, v, is_causal=True, causal_alignment="bottom_right")
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_lower_right(3, 7))
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_masks_are_the_documented_sets():
    assert ref.causal_mask(2, 4).tolist() == [[True, False, False, False], [True, True, False, False]]
    assert ref.causal_mask(2, 4, "bottom_right").tolist() == [[True, True, True, False], [True, True, True, True]]
    # window 2: the query itself and one key before it (Mistral sliding_window=2, FlashAttention window_size=(1, 0))
    assert ref.sliding_window_mask(4, 4, 2).int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]


def test_fully_masked_rows_give_zeros_like_torch():
    q, k, v = rand(1, 1, 3, 4), rand(1, 1, 3, 4), rand(1, 1, 3, 4)
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1] = False
    ours = ref.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.equal(ours[0, 0, 1], torch.zeros(4, dtype=torch.float64))
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_per_head_wrapper_equals_fused_and_absorbed_mla_equals_explicit():
    x = rand(2, 5, 12)
    w = dict(w_q=rand(3 * 4, 12), w_k=rand(4, 12), w_v=rand(2, 12), w_o=rand(12, 3 * 2))
    fused = ref.multi_head_attention(x, **w, num_heads=3, num_kv_heads=1)
    torch.testing.assert_close(fused, ref.multi_head_attention_per_head(x, **w, num_heads=3, num_kv_heads=1))
    h, e, er, ev, dc = 3, 4, 2, 3, 5
    args = (x, rand(dc, 12), rand(h * e, dc), rand(h * ev, dc), rand(h * e, 12), rand(h * er, 12), rand(er, 12),
            rand(12, h * ev), h)
    torch.testing.assert_close(ref.multi_head_latent_attention(*args), ref.multi_head_latent_attention_absorbed(*args))


def test_kv_cache_decoding_matches_full_forward_and_its_size_matches_the_formula():
    layers, b, hq, hkv, l, e = 3, 2, 4, 2, 6, 8
    q, k, v = (rand(b, h, l, e, dtype=torch.float16) for h in (hq, hkv, hkv))
    cache = ref.KVCache(layers)
    outs = []
    for t in range(l):
        for layer in range(layers):
            keys, values = cache.update(layer, k[:, :, t : t + 1], v[:, :, t : t + 1])
        outs.append(ref.scaled_dot_product_attention(q[:, :, t : t + 1], keys, values, is_causal=True, enable_gqa=True,
                                                     causal_alignment="bottom_right"))
    full = ref.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(torch.cat(outs, dim=2), full)
    assert cache.length == l
    assert cache.nbytes == ref.kv_cache_bytes(layers, hkv, e, l, b, 2) == 2 * 3 * 2 * 8 * 6 * 2 * 2


def test_mla_cache_is_latent_plus_rope_dims():
    assert ref.mla_cache_elements_per_token(512, 64) == 576  # DeepSeek-V2: d_c = 4 d_h, d_h^R = d_h / 2, d_h = 128


def test_references_work_in_every_float_dtype_and_reject_bad_shapes():
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        q, k, v = rand(1, 2, 3, 4, dtype=dtype), rand(1, 2, 5, 4, dtype=dtype), rand(1, 2, 5, 6, dtype=dtype)
        out = ref.scaled_dot_product_attention(q, k, v)
        assert out.dtype == dtype and out.shape == (1, 2, 3, 6)
    with pytest.raises(TypeCheckError):
        ref.scaled_dot_product_attention(rand(1, 2, 3, 4), rand(1, 2, 5, 3), rand(1, 2, 5, 6))  # E mismatch
    with pytest.raises(ValueError, match="enable_gqa"):
        ref.scaled_dot_product_attention(rand(1, 4, 3, 4), rand(1, 2, 3, 4), rand(1, 2, 3, 4))
    with pytest.raises(TypeCheckError):
        softmax(torch.arange(3), 0)  # integers are not a softmax input


def test_softmax_references():
    x = torch.tensor([[1.0, 3.0, 3.0, -1e4]], dtype=torch.float64)
    torch.testing.assert_close(softmax(x, -1), torch.softmax(x, -1))
    assert temperature_softmax(x, 0.0).tolist() == [[0.0, 0.5, 0.5, 0.0]]
    assert torch.isfinite(softmax(torch.tensor([1e4, -1e4], dtype=torch.float16), 0)).all()
    expected = torch.softmax(x / 2.5, -1)
    torch.testing.assert_close(temperature_softmax(x, 2.5), expected)
    assert math.isclose(float(temperature_softmax(torch.zeros(1, 7), 3.0).sum()), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("lq,lk", [(7, 7), (5, 11), (11, 5), (1, 9), (9, 1)])
@pytest.mark.parametrize("alignment", ["top_left", "bottom_right"])
def test_query_chunks_equal_one_chunk(monkeypatch, lq, lk, alignment):
    """The reference processes queries in chunks: with chunks of 1, 2 and 3 queries it must equal the one-chunk
    computation, and torch's math path, for every mask kind, GQA, fully masked rows and both causal alignments."""
    q, k, v = rand(2, 4, lq, 8), rand(2, 2, lk, 8), rand(2, 2, lk, 5)
    keep = torch.rand(2, 1, lq, lk) < 0.5
    keep[..., 0, :] = False  # query 0 sees no key
    additive = torch.zeros(lq, lk, dtype=torch.float64).masked_fill(torch.rand(lq, lk) < 0.3, float("-inf"))
    cases = [dict(is_causal=True), dict(attn_mask=keep), dict(attn_mask=additive, is_causal=True),
             dict(attn_mask=torch.randn(1, lk, dtype=torch.float64)), dict(attn_mask=keep, is_causal=True, scale=0.7)]

    def attend(**kw):
        return ref.scaled_dot_product_attention(q, k, v, enable_gqa=True, causal_alignment=alignment, **kw)

    whole = [attend(**kw) for kw in cases]
    for chunk in (1, 2, 3):
        monkeypatch.setattr(ref, "QUERY_CHUNK", chunk)
        for kw, expected in zip(cases, whole):
            torch.testing.assert_close(attend(**kw), expected, rtol=1e-13, atol=1e-13)
    for kw, expected in zip(cases, whole):
        torch.testing.assert_close(expected, F.scaled_dot_product_attention(
            q, k, v, enable_gqa=True, **_torch_form(kw, lq, lk, alignment)).nan_to_num(0.0), rtol=1e-12, atol=1e-12)


def _torch_form(kw: dict, lq: int, lk: int, alignment: str) -> dict:
    """The same call with torch's SDPA: the causal mask (of the given alignment) folded into attn_mask."""
    kw = dict(kw)
    if kw.pop("is_causal", False):
        causal = ref.causal_mask(lq, lk, alignment)
        mask = kw.get("attn_mask")
        if mask is None or mask.dtype == torch.bool:
            kw["attn_mask"] = causal if mask is None else causal & mask
        else:
            kw["attn_mask"] = mask.masked_fill(~causal, float("-inf"))
    return kw


def test_chunk_size_bounds_the_scores_held_at_once():
    """Memory: a chunk holds at most SCORES_PER_CHUNK scores, so B * Hq * Lk large means fewer queries per chunk."""
    assert ref.SCORES_PER_CHUNK // (16 * 8192) >= 1  # L = 8192 with 16 heads: 16 queries per chunk
    assert ref.SCORES_PER_CHUNK * 8 <= 2**25  # float64 scores of one chunk: at most 32 MiB
