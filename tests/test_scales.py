"""Scales and the elementwise bound: `--scale` decides which sizes are drawn, a failure at kernel scale shrinks to
the smallest failing tile edge, the misaligned layout is misaligned, and the elementwise bound checks small
elements that the normwise bound lets through."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmspec.conformance.loading import Target
from lmspec.conformance.runner import RunConfig, run_invariant
from lmspec.spec.checks import assert_matches
from lmspec.spec.core import Component, Context, Invariant, Violation
from lmspec.spec.strategies import SCALES, TILE_EDGES, at_scale, current_scale, materialize, tile_sizes

from .conftest import run_cli


def _drawn(strategy, scale: str, n: int = 200) -> set:
    seen = set()

    @settings(max_examples=n, derandomize=True, database=None)
    @given(strategy)
    def collect(value):
        seen.add(value)

    with at_scale(scale):
        collect()
    return seen


def test_each_scale_draws_what_it_says_and_includes_the_smaller_ones():
    sizes = tile_sizes(1, 9, production=(8192,))
    small, kernel, production = (_drawn(sizes, s) for s in SCALES)
    assert small <= set(range(1, 10))
    assert kernel - small <= set(TILE_EDGES) and kernel & {1025, 1024, 1023} and small & kernel
    assert 8192 in production and 8192 not in kernel
    assert current_scale() == "kernel"  # the default, restored after each block
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        with at_scale("huge"):
            pass


def _check_sum(ctx: Context, p: dict) -> None:
    out = ctx.target(torch.ones(p["n"], dtype=ctx.dtype))
    if float(out) != p["n"]:
        ctx.fail(f"sum of {p['n']} ones is {float(out)}")


# Declared outside lmspec.spec: not registered, so neither the catalog nor the registry sees it.
TILED = Component(name="tiled_sum", signature="tiled_sum(x: Float[n]) -> Float[]", summary="sum",
                  reference=torch.sum, dtypes=(torch.float32,))
TILED.invariants.append(Invariant(id="tiled_sum.matches", statement="sum", source="test", kind="property",
                                  examples=st.fixed_dictionaries({"n": tile_sizes(1, 9)}), check=_check_sum))


def _first_tile_only(x: torch.Tensor) -> torch.Tensor:
    """A kernel that forgets to carry its sum past the first tile of 64 elements."""
    return x[:64].sum()


@pytest.mark.parametrize("scale,verdict", [("small", "pass"), ("kernel", "fail")])
def test_a_bug_past_one_tile_passes_small_fails_kernel_and_shrinks_to_the_first_failing_edge(scale, verdict):
    result = run_invariant(TILED, TILED.invariants[0], Target(fn=_first_tile_only, path="tests:first_tile_only"),
                           torch.float32, RunConfig(scale=scale, isolate=False))
    assert result.verdict == verdict, result.message
    if verdict == "fail":
        assert result.counterexample["params"] == {"n": 65}, result.counterexample


def test_misaligned_layout_is_off_16_byte_alignment_with_the_same_values():
    for dtype in (torch.float32, torch.bfloat16):
        aligned = materialize((5, 7), 3, dtype)
        odd = materialize((5, 7), 3, dtype, layout="misaligned")
        assert odd.storage_offset() == 1 and odd.data_ptr() % 16 != 0 and torch.equal(aligned, odd)


def _ctx(bound: str, dtype=torch.float32) -> Context:
    return Context(target=None, dtype=dtype, device=torch.device("cpu"), options={}, bound=bound)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_elementwise_bound_checks_small_elements_that_normwise_lets_through(dtype):
    # a GELU-like output: values near 1 and a tail below the dtype's eps; the "target" flushes the tail to zero
    tail = -torch.logspace(-2, 0, 8, dtype=torch.float64) * torch.finfo(dtype).eps
    ref64 = torch.cat([torch.linspace(0.5, 1.0, 8, dtype=torch.float64), tail])
    ref_lowp = ref64.to(dtype)
    flushed = torch.where(ref64.abs() < 0.5, torch.zeros_like(ref64), ref64).to(dtype)
    assert assert_matches(_ctx("normwise", dtype), flushed, ref64, ref_lowp).ok
    with pytest.raises(Violation, match=r"at index \[15\]: target 0, reference -[0-9.e-]+; allowed there"):
        assert_matches(_ctx("elementwise", dtype), flushed, ref64, ref_lowp)
    # the correctly rounded output passes both: the elementwise bound is not tighter than rounding
    for bound in ("normwise", "elementwise"):
        assert assert_matches(_ctx(bound, dtype), ref_lowp, ref64, ref_lowp).ok


def test_elementwise_bound_allows_the_references_own_error_at_each_element():
    ref64 = torch.tensor([1.0, 1e-6, -3e-4], dtype=torch.float64)
    witness = ref64 * (1 + torch.tensor([0.0, 0.01, -0.02], dtype=torch.float64))  # conditioning: 1% and 2% errors
    within = ref64 * (1 + torch.tensor([0.0, 0.015, -0.03], dtype=torch.float64))
    beyond = ref64 * (1 + torch.tensor([0.0, 0.03, 0.0], dtype=torch.float64))
    ctx = _ctx("elementwise")
    assert assert_matches(ctx, within.float(), ref64, witness).ok
    with pytest.raises(Violation, match=r"index \[1\]"):
        assert_matches(ctx, beyond.float(), ref64, witness)


def test_cli_scale_option_is_printed_recorded_and_validated(tmp_path):
    report = tmp_path / "r.json"
    proc = run_cli("check", "softmax", "--target", "torch:softmax", "--scale", "small", "--dtype", "float32",
                   "--invariant", "softmax.reference.matches", "-q", "--report", str(report))
    assert proc.returncode == 0 and "scale small" in proc.stdout, proc.stdout + proc.stderr
    assert json.loads(report.read_text())["config"]["scale"] == "small"
    bad = run_cli("check", "softmax", "--target", "torch:softmax", "--scale", "huge")
    assert bad.returncode == 2 and "invalid choice: 'huge'" in bad.stderr
