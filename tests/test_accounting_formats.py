"""Number formats and storage: torch itself conforms (casts, strides, views, transposes, contiguous), and the
behaviours the spec pins to torch 2.13 are tested directly."""

from __future__ import annotations

import math

import pytest
import torch

from lmspec.reference.accounting import formats as N

from .conftest import check

TORCH_TARGETS = [
    ("contiguous_strides", "torch._prims_common:make_contiguous_strides_for", None),
    ("tensor_view", "torch:Tensor.view", None),
    ("tensor_transpose", "torch:transpose", None),
    ("tensor_contiguous", "torch:Tensor.contiguous", None),
    ("float_cast", "torch:Tensor.to", "torch_cast"),
]


@pytest.mark.parametrize("component,target,adapter", TORCH_TARGETS, ids=[t[0] for t in TORCH_TARGETS])
def test_torch_conforms(component, target, adapter):
    code, results = check(component, target, adapter=adapter)
    assert code == 0, [(r.invariant, r.message) for r in results if r.verdict != "pass"]


def test_torch_saturates_e4m3fn_where_other_libraries_give_nan():
    code, results = check("float_cast", "torch:Tensor.to", adapter="torch_cast", only=["float_cast.overflow"],
                          e4m3_overflow="nan")
    assert code == 1
    x = torch.tensor([1e6, -math.inf, 464.0, 465.0, math.nan])
    assert x.to(torch.float8_e4m3fn).float().tolist()[:4] == [448.0, -448.0, 448.0, 448.0]
    nan_mode = N.float_cast(x, "float8_e4m3fn", "nan")
    assert math.isnan(nan_mode[0]) and math.isnan(nan_mode[1]) and nan_mode[2] == 448.0 and math.isnan(nan_mode[3])


def test_format_constants():
    fp16, bf16, fp32 = N.float_format("float16"), N.float_format("bfloat16"), N.float_format("float32")
    assert (fp16["max"], fp16["eps"], fp16["smallest_normal"]) == (65504.0, 2.0**-10, 2.0**-14)
    assert bf16["eps"] == 2.0**-7 and bf16["exponent_bits"] == fp32["exponent_bits"] == 8
    assert bf16["smallest_normal"] == fp32["smallest_normal"]  # same range as fp32, fewer mantissa bits
    e4m3, e5m2 = N.float_format("float8_e4m3fn"), N.float_format("float8_e5m2")
    assert (e4m3["max"], e4m3["has_infinity"]) == (448.0, False)
    assert (e5m2["max"], e5m2["has_infinity"]) == (57344.0, True)


def test_torch_casts_float64_through_float32():
    """Two roundings: 1 + 2^-11 + 2^-40 is above the fp16 midpoint (correct rounding: 1 + 2^-10), but float32
    drops the 2^-40 and the tie then goes to even (1.0). The component is specified on float32 inputs."""
    x = torch.tensor([1 + 2**-11 + 2**-40], dtype=torch.float64)
    assert x.to(torch.float16).item() == 1.0
    assert N.float_cast(x, "float16").item() == 1 + 2**-10  # the single rounding the emulation performs


def test_fp16_overflow_threshold():
    x = torch.tensor([65504.0, 65519.0, 65520.0])  # max, below the midpoint, the midpoint to 2^16
    assert x.to(torch.float16).float().tolist() == [65504.0, 65504.0, math.inf]
    assert N.float_cast(x, "float16").tolist() == [65504.0, 65504.0, math.inf]


def test_absmax_round_trip_per_row():
    x = torch.randn(4, 33, generator=torch.Generator().manual_seed(0))
    q, scale = N.absmax_quantize(x, dim=-1)
    assert q.dtype == torch.int8 and scale.shape == (4, 1)
    assert ((x - N.absmax_dequantize(q, scale)).abs() <= scale / 2 + 1e-7).all()
    assert q.abs().amax(dim=-1).tolist() == [127] * 4


def test_storage_facts():
    x = torch.arange(6.0).reshape(2, 3)
    t = x.t()
    assert t.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() and not t.is_contiguous()
    assert x.contiguous() is x and t.contiguous().untyped_storage().data_ptr() != x.untyped_storage().data_ptr()
    assert N.contiguous_strides((2, 0, 3)) == torch.empty(2, 0, 3).stride() == (3, 3, 1)
    assert torch.empty(3, 1).t().is_contiguous()  # size-1 dims do not count
