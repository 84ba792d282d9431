"""The reference meets every invariant of its component, in every dtype; so do the alternative reference
forms that the spec says are equal (per-head multi-head attention, absorbed MLA)."""

from __future__ import annotations

import pytest

from lmspec.spec import components

from .conftest import check

REFERENCES = [(name, c.reference_path) for name, c in components().items()] + [
    ("multi_head_attention", "lmspec.reference.attention:multi_head_attention_per_head"),
    ("multi_head_latent_attention", "lmspec.reference.attention:multi_head_latent_attention_absorbed"),
]


@pytest.mark.parametrize("component,reference", REFERENCES, ids=[r[1].split(":")[1] for r in REFERENCES])
def test_reference_meets_every_invariant(component, reference):
    code, results = check(component, reference)
    bad = [(r.invariant, r.dtype, r.message) for r in results if r.verdict != "pass"]
    assert code == 0 and not bad, bad


def test_reference_meets_bottom_right_alignment_option():
    code, results = check("attention", "lmspec.reference.attention:scaled_dot_product_attention", dtypes=["float64"],
                          only=["attention.causal.visible_keys"], causal_alignment="bottom_right")
    # the plain reference is top-left (torch): asking for bottom-right must fail it, not pass silently
    assert code == 1
