"""Number formats derived from their bit layout, casts into them, int8 absmax quantization, and the storage
semantics of tensors (strides, views, transposes, `contiguous`).

Sources:
- IEEE 754-2019 (binary32, binary16); bfloat16 (Google, "BFloat16: the secret to high performance on
  Cloud TPUs", 2019: fp32's 8 exponent bits, 7 mantissa bits); Micikevicius et al. 2022, "FP8 Formats for
  Deep Learning" (E4M3 without infinities, one NaN mantissa pattern, max 448; E5M2 IEEE-like, max 57344).
  A format with e exponent and m mantissa bits has bias 2^(e-1) - 1, eps 2^-m, smallest normal 2^(1-bias),
  smallest subnormal 2^(1-bias-m); the largest finite value is (2 - 2^-m) 2^(2^e - 2 - bias) when the top
  exponent is reserved for inf/NaN, and (2 - 2^(1-m)) 2^(2^e - 1 - bias) for E4M3 ("fn": finite, only
  S.1111.111 is NaN). `torch.finfo` agrees on torch 2.13.
- Casts round to nearest, ties to even (IEEE 754 roundTiesToEven), including into the subnormal range. Beyond
  the largest finite value IEEE formats (and E5M2) overflow to +-inf as soon as the rounded value exceeds
  max; torch 2.13 saturates E4M3FN casts to +-448 (even +-inf), where other libraries (e.g. ml_dtypes)
  give NaN. NaN stays NaN. torch converts float64 to 16-bit and 8-bit formats through float32 (two
  roundings), so the component is specified on float32 inputs, where the cast rounds once.
- Symmetric absmax int8 quantization (Dettmers et al. 2022, "LLM.int8()", sec. 2): scale = max|x| / 127,
  q = round(x / scale) in [-127, 127]; |x - q scale| <= scale / 2.
- Storage: PyTorch "Tensor Views" and `torch.Tensor.stride` docs; a contiguous (row-major) tensor has
  stride[i] = prod(max(size[j], 1) for j > i) (c10 `contiguous_strides`, size-0 dims counting as 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .._typing import Float, Int, Tensor, typechecked


@dataclass(frozen=True)
class FloatFormat:
    name: str
    exponent_bits: int
    mantissa_bits: int
    finite_only: bool = False  # E4M3FN: no infinities; the top exponent holds finite values

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def max(self) -> float:
        e, m = self.exponent_bits, self.mantissa_bits
        if self.finite_only:  # top exponent usable; mantissa all-ones is NaN
            return (2.0 - 2.0 ** (1 - m)) * 2.0 ** (2**e - 1 - self.bias)
        return (2.0 - 2.0**-m) * 2.0 ** (2**e - 2 - self.bias)


FORMATS: dict[str, FloatFormat] = {
    "float32": FloatFormat("float32", 8, 23),
    "float16": FloatFormat("float16", 5, 10),
    "bfloat16": FloatFormat("bfloat16", 8, 7),
    "float8_e4m3fn": FloatFormat("float8_e4m3fn", 4, 3, finite_only=True),
    "float8_e5m2": FloatFormat("float8_e5m2", 5, 2),
}


def _format(name: str) -> FloatFormat:
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


def float_format(name: str) -> dict:
    """Bit layout and the constants derived from it (see the module docstring)."""
    f = _format(name)
    return {
        "bits": 1 + f.exponent_bits + f.mantissa_bits,
        "sign_bits": 1,
        "exponent_bits": f.exponent_bits,
        "mantissa_bits": f.mantissa_bits,
        "bias": f.bias,
        "max": f.max,
        "smallest_normal": 2.0 ** (1 - f.bias),
        "smallest_subnormal": 2.0 ** (1 - f.bias - f.mantissa_bits),
        "eps": 2.0**-f.mantissa_bits,
        "has_infinity": not f.finite_only,
    }


@typechecked
def float_cast(x: Float[Tensor, "*shape"], format: str, e4m3_overflow: str = "saturate") -> Float[Tensor, "*shape"]:
    """The value of each element after a cast to `format`, as float64 (torch's rounding and overflow rules).

    Emulated in float64 from the bit layout: quantum 2^(E - m) with E = max(floor(log2|x|), 1 - bias), so
    subnormals share the smallest normal's quantum; round half to even; then overflow: +-inf, or for E4M3FN
    +-448 (torch, `e4m3_overflow="saturate"`) or NaN where the rounded value exceeds 448 ("nan", ml_dtypes).
    """
    if e4m3_overflow not in ("saturate", "nan"):
        raise ValueError(f"e4m3_overflow must be 'saturate' or 'nan', got {e4m3_overflow!r}")
    f = _format(format)
    x64 = x.to(torch.float64)
    a = x64.abs()
    finite = torch.isfinite(a) & (a > 0)
    safe = torch.where(finite, a, torch.ones_like(a))
    _, exp = torch.frexp(safe)  # safe = mantissa * 2^exp, mantissa in [0.5, 1)
    e_unbiased = torch.clamp(exp.to(torch.float64) - 1, min=1 - f.bias)
    quantum = torch.exp2(e_unbiased - f.mantissa_bits)
    rounded = torch.round(safe / quantum) * quantum  # torch.round: half to even; the division is exact
    saturate = f.finite_only and e4m3_overflow == "saturate"
    limit = f.max if saturate else math.nan if f.finite_only else math.inf
    rounded = torch.where(rounded > f.max, torch.full_like(rounded, limit), rounded)
    out = torch.where(finite, rounded, a)  # 0, inf and NaN pass through the rounding unchanged
    if f.finite_only:  # no infinities: torch saturates them to 448, non-saturating converters give NaN
        out = torch.where(torch.isinf(out), torch.full_like(out, limit), out)
    return torch.copysign(out, x64)


@typechecked
def absmax_quantize(
    x: Float[Tensor, "*shape"], dim: int | None = None
) -> tuple[Int[Tensor, "*shape"], Float[Tensor, "..."]]:
    """Symmetric int8: scale = max|x| / 127 (float32; per tensor, or along `dim` with keepdim), q = round(x / scale).

    An all-zero tensor (or slice) gets scale 0 and q = 0."""
    x32 = x.to(torch.float32)
    absmax = x32.abs().amax() if dim is None else x32.abs().amax(dim=dim, keepdim=True)
    scale = absmax / 127.0
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(x32 / safe).clamp(-127, 127).to(torch.int8)
    return q, scale


@typechecked
def absmax_dequantize(q: Int[Tensor, "*shape"], scale: Float[Tensor, "..."]) -> Float[Tensor, "*shape"]:
    return q.to(torch.float32) * scale


def contiguous_strides(shape: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Row-major strides in elements: stride[i] = prod(max(shape[j], 1) for j > i)."""
    strides, running = [], 1
    for size in reversed(shape):
        strides.append(running)
        running *= max(size, 1)
    return tuple(reversed(strides))


def tensor_view(x: Tensor, shape: tuple[int, ...] | list[int]) -> Tensor:
    """`x.view(shape)` for a contiguous x: the same storage and offset, contiguous strides of the new shape."""
    shape = list(shape)
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        shape[shape.index(-1)] = x.numel() // known if known else 0
    if math.prod(shape) != x.numel():
        raise RuntimeError(f"shape {shape} is invalid for input of size {x.numel()}")
    if not x.is_contiguous():
        raise RuntimeError("this reference views contiguous tensors only; use .reshape for the general case")
    return x.as_strided(shape, contiguous_strides(shape), x.storage_offset())


def tensor_transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """`torch.transpose`: the same storage, sizes and strides of dim0 and dim1 swapped; no data moves."""
    sizes, strides = list(x.shape), list(x.stride())
    sizes[dim0], sizes[dim1] = sizes[dim1], sizes[dim0]
    strides[dim0], strides[dim1] = strides[dim1], strides[dim0]
    return x.as_strided(sizes, strides, x.storage_offset())


def tensor_contiguous(x: Tensor) -> Tensor:
    """`Tensor.contiguous`: x itself when already contiguous, else a row-major copy in new storage."""
    if x.is_contiguous():
        return x
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    out.copy_(x)
    return out
