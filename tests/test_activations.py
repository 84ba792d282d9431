"""Activations and dropout: torch's functions conform as they are, and the documented constants (the GELU tanh
bound, the Swish -> ReLU gap, the dropout false-alarm rates) are what the spec states."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lmspec.reference import activations as ref
from lmspec.spec import activations as spec

from .test_external_conformance import check_conforms, unsupported


@pytest.mark.parametrize("component,path", [
    ("gelu", "torch.nn.functional:gelu"),
    ("silu", "torch.nn.functional:silu"),
    ("relu", "torch.nn.functional:relu"),
    ("relu", "torch:relu"),
    ("dropout", "torch.nn.functional:dropout"),
])
def test_torch_activations_conform(component, path):
    assert not unsupported(check_conforms(component, path))


def test_gelu_tanh_bound_is_the_supremum():
    x = torch.linspace(-10, 10, 400001, dtype=torch.float64)
    gap = (ref.gelu(x, "tanh") - ref.gelu(x)).abs()
    assert float(gap.max()) <= ref.GELU_TANH_MAX_ABS_DIFFERENCE < 1.002 * float(gap.max())
    assert abs(abs(float(x[gap.argmax()])) - 2.70) < 0.01
    # torch's two forms agree with the bound too (and are not identical)
    torch_gap = (F.gelu(x, approximate="tanh") - F.gelu(x)).abs()
    assert 0.99 * ref.GELU_TANH_MAX_ABS_DIFFERENCE < float(torch_gap.max()) <= ref.GELU_TANH_MAX_ABS_DIFFERENCE


def test_swish_relu_gap_constant():
    t = torch.linspace(0, 20, 200001, dtype=torch.float64)
    sup = float((t * torch.sigmoid(-t)).max())
    assert sup <= ref.SWISH_RELU_GAP_TIMES_BETA < sup + 1e-4
    x = torch.linspace(-5, 5, 10001, dtype=torch.float64)
    for beta in (10.0, 1000.0):
        assert float((ref.swish(x, beta) - F.relu(x)).abs().max()) <= ref.SWISH_RELU_GAP_TIMES_BETA / beta
    torch.testing.assert_close(ref.swish(x, 1.0), F.silu(x))


def test_dropout_false_alarm_rates_are_as_stated():
    # two-sided normal tail beyond |z| = 5
    assert math.isclose(math.erfc(spec.DROPOUT_Z / math.sqrt(2)), 5.7e-7, rel_tol=0.01)
    # identical masks on the smallest example (64 elements) at the worst p in the strategy (0.1 or 0.8 -> 0.82 / 0.68)
    assert max((p * p + (1 - p) ** 2) ** 64 for p in (0.1, 0.3, 0.5, 0.8)) < 3.1e-6


def test_reference_dropout_semantics():
    x = torch.randn(1000, dtype=torch.float64) + 5
    gen = torch.Generator().manual_seed(0)
    out = ref.dropout(x, 0.25, True, gen)
    kept = out != 0
    torch.testing.assert_close(out[kept], x[kept] / 0.75)
    assert abs(float(kept.double().mean()) - 0.75) < 0.05
    assert torch.equal(ref.dropout(x, 0.25, False), x) and torch.equal(ref.dropout(x, 0.0), x)
    assert torch.equal(ref.dropout(x, 1.0), torch.zeros_like(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_elementwise_bound_sees_the_tails_the_normwise_bound_missed(dtype):
    """GELU zeroed below -4.5 and x sigma(1.702 x) claimed as GELU, on x in [-6, 6]: in bfloat16 both are within the
    norm-wise bound (8 eps of the largest output), in both dtypes outside the elementwise one with the gate witness;
    torch's GELU (both forms) is within it."""
    from lmspec.spec.checks import reference_pair
    from lmspec.spec.tolerance import compare

    from .mutants import activations as mutants

    x = torch.linspace(-6, 6, 4097, dtype=torch.float64).to(dtype)
    ref64, witness = reference_pair(ref.gelu, x)
    gated = spec.gate_witness(dtype, x, ref64, witness)
    for mutant in (mutants.gelu_zero_tail, mutants.gelu_quick):
        out = mutant(x)
        if dtype == torch.bfloat16:
            assert compare(out, ref64, witness, dtype, bound="normwise").ok
        assert not compare(out, ref64, gated, dtype, bound="elementwise").ok
    for approximate in ("none", "tanh"):
        ref64, witness = reference_pair(ref.gelu, x, approximate=approximate)
        gated = spec.gate_witness(dtype, x, ref64, witness)
        assert compare(F.gelu(x, approximate=approximate), ref64, gated, dtype, bound="elementwise").ok
