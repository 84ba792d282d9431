"""Backward passes: the target's gradients are computed where it runs (in the worker, or in-process), compared on
the harness's side, and each kind of broken backward is caught by the gradient vocabulary (spec/gradients.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import strategies as st

from lmspec.conformance.isolation import worker_for
from lmspec.conformance.runner import RunConfig, selected_invariants
from lmspec.reference.norms import rms_norm as reference
from lmspec.spec.core import Component, Context, Invariant, Violation
from lmspec.spec.gradients import (backward_complete, backward_finite_differences, backward_matches,
                                   backward_repeatable)
from lmspec.spec.guard import GuardedTarget

Z = "tests.zoo.backward"
CHECKS = {"matches": backward_matches, "complete": backward_complete, "repeatable": backward_repeatable,
          "finite_differences": backward_finite_differences}


def _caller(name: str, isolated: bool):
    if isolated:
        return worker_for(name, "rms_norm", None, None)
    module, attr = name.split(":")
    return GuardedTarget(getattr(__import__(module, fromlist=[attr]), attr), name=name)


def _run(target: str, check: str, dtype=torch.float32, isolated: bool = True) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 40, generator=gen, dtype=torch.float64).to(dtype)
    w = (1 + 0.1 * torch.randn(40, generator=gen, dtype=torch.float64)).to(dtype)
    ctx = Context(target=_caller(target, isolated), dtype=dtype, device=torch.device("cpu"), options={})
    CHECKS[check](ctx, reference, (x, (40,), w), wrt=[0, 1], seed=5, names=["input", "weight"])


#: finite differences are a float64 check; the others run in every dtype
PAIRS = [(c, d) for c in CHECKS for d in (torch.float64, torch.float32, torch.bfloat16)
         if c != "finite_differences" or d == torch.float64]


@pytest.mark.parametrize("isolated", [True, False], ids=["worker", "in-process"])
@pytest.mark.parametrize("check,dtype", PAIRS, ids=[f"{c}-{d}" for c, d in PAIRS])
def test_torch_rms_norm_backward_passes_every_gradient_check(check, dtype, isolated):
    _run("torch.nn.functional:rms_norm", check, dtype, isolated)


@pytest.mark.parametrize("target,check,message", [
    ("zero_backward", "matches", "gradient of input differs from the float64 reference"),
    ("zero_backward", "finite_differences", "central differences of the target's own forward"),
    ("no_weight_gradient", "complete", "gradient of weight: the input got no gradient"),
    ("no_weight_gradient", "matches", "gradient of weight: the input got no gradient"),
    ("drifting_backward", "repeatable", "second pull-back vs first"),
    ("detached", "complete", "backward: no output requires grad"),
    ("overwrites_input_when_it_requires_grad", "matches", "mutated its input tensor #0"),
])
@pytest.mark.parametrize("isolated", [True, False], ids=["worker", "in-process"])
def test_each_broken_backward_is_caught_with_a_clear_reason(target, check, message, isolated):
    dtype = torch.float64 if check == "finite_differences" else torch.float32
    with pytest.raises(Violation, match=message):
        _run(f"{Z}:{target}", check, dtype, isolated)


def test_no_backward_skips_the_invariants_that_require_it():
    comp = Component(name="toy", signature="", summary="", reference=reference)
    for name, requires in (("toy.forward", ()), ("toy.backward.matches", ("backward",))):
        comp.invariants.append(Invariant(id=name, statement="", source="", kind="property", examples=st.just({}),
                                         check=lambda ctx, p: None, requires=requires))
    assert [i.id for i in selected_invariants(comp, RunConfig())] == ["toy.forward", "toy.backward.matches"]
    assert [i.id for i in selected_invariants(comp, RunConfig(backward=False))] == ["toy.forward"]
