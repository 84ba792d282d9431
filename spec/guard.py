"""Calling an untrusted target safely: time limit, input-mutation check, and output validation.

A conformance check must survive a target that raises, hangs, mutates its inputs (so a reference computed
afterwards would see different data), or returns the wrong shape, dtype, device or non-finite values.
Each of these becomes a `Violation` with a clear reason, never a crash of the harness.
"""

from __future__ import annotations

import contextlib
import random
import sys
import signal
import threading
from typing import Any, Callable, Iterator

import torch

from .core import Unsupported, Violation

DEFAULT_TIMEOUT_S = 60.0


class TargetTimeout(Exception):
    pass


class TargetUnsupported(Exception):
    """The target raised lmspec's Unsupported or NotImplementedError for this input: the example is discarded, and
    an invariant none of whose examples could be checked is reported `unsupported` with this reason."""


def declines(exc: BaseException) -> bool:
    """Whether an exception says "this input is not supported": lmspec.spec.Unsupported, NotImplementedError, or
    any exception class named Unsupported (so a kernel need not import lmspec to say it)."""
    return isinstance(exc, (Unsupported, NotImplementedError)) or type(exc).__name__ == "Unsupported"


def global_state() -> dict:
    """What a target might change that later examples would see."""
    return {
        "default_dtype": torch.get_default_dtype(),
        "threads": torch.get_num_threads(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "grad": torch.is_grad_enabled(),
        "anomaly": torch.is_anomaly_enabled(),
        "matmul_precision": torch.get_float32_matmul_precision(),
    }


def restore_global_state(state: dict, seed: int = 0) -> None:
    """Undo a target's changes to torch's global state, and seed the random generators a target may draw from
    (torch's CPU generator, Python's and NumPy's) so that every example replays identically."""
    torch.random.default_generator.manual_seed(seed)
    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed)
    now = global_state()  # set only what changed: some setters import large parts of torch on first use
    if now["default_dtype"] != state["default_dtype"]:
        torch.set_default_dtype(state["default_dtype"])
    if now["threads"] != state["threads"]:
        torch.set_num_threads(state["threads"])
    if (now["deterministic"], now["deterministic_warn_only"]) != (state["deterministic"], state["deterministic_warn_only"]):
        torch.use_deterministic_algorithms(state["deterministic"], warn_only=state["deterministic_warn_only"])
    if now["grad"] != state["grad"]:
        torch.set_grad_enabled(state["grad"])
    if now["anomaly"] != state["anomaly"]:
        torch.autograd.set_detect_anomaly(state["anomaly"])
    if now["matmul_precision"] != state["matmul_precision"]:
        torch.set_float32_matmul_precision(state["matmul_precision"])


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block after `seconds` (SIGALRM; only possible on the main thread, elsewhere no limit)."""
    usable = seconds and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum, frame):
        raise TargetTimeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def leaves(value: Any) -> Iterator[Any]:
    """The values inside nested lists, tuples and dicts (a call's arguments), in order."""
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from leaves(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    else:
        yield value


def tensors_in(value: Any) -> list[torch.Tensor]:
    return [t for t in leaves(value) if isinstance(t, torch.Tensor)]


class GuardedTarget:
    """Wraps a target callable so every call is time-limited and checked for input mutation."""

    def __init__(self, fn: Callable, timeout_s: float | None = DEFAULT_TIMEOUT_S, name: str = "target"):
        self.fn = fn
        self.timeout_s = timeout_s
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._guarded(self.fn, args, kwargs)

    def vjp(self, args: tuple, kwargs: dict, wrt: list[int], cotangents: list[torch.Tensor], twice: bool = False) -> dict:
        """The target's outputs and vector-Jacobian products (spec/backward.py), under the same guard as a call."""
        from .backward import run_backward

        def pull_back(*args: Any, **kwargs: Any) -> dict:
            return run_backward(self.fn, args, kwargs, wrt, cotangents, twice)

        return self._guarded(pull_back, args, kwargs)

    def _guarded(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        inputs = tensors_in((args, kwargs))
        snapshots = [t.detach().clone() for t in inputs]
        try:
            with time_limit(self.timeout_s):
                out = fn(*args, **kwargs)
        except TargetTimeout:
            raise Violation(f"{self.name} did not return within {self.timeout_s:g}s (per-example timeout)", cause="timeout") from None
        except Violation:
            raise
        except (SystemExit, KeyboardInterrupt) as exc:  # in-process (--in-process), a target's exit is its crash
            raise Violation(f"{self.name} raised {type(exc).__name__}({', '.join(map(repr, exc.args))}): it would have "
                            "ended the process", cause="crash") from None
        except Exception as exc:  # any exception of the target is its failure, not the harness's
            if declines(exc):
                raise TargetUnsupported(f"{type(exc).__name__}: {exc}") from None
            raise Violation(f"{self.name} raised {type(exc).__name__}: {exc}".strip(), cause="raised") from exc
        for i, (t, before) in enumerate(zip(inputs, snapshots)):
            if not same_values(t.detach(), before):
                raise Violation(f"{self.name} mutated its input tensor #{i} (shape {tuple(t.shape)}) in place", cause="mutated_input")
        return out


def same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise-equal values, with NaN equal to NaN."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.0, 0.0, 0.0), b.nan_to_num(0.0, 0.0, 0.0)) and torch.equal(a.isinf(), b.isinf())


def expect_tensor(
    out: Any,
    shape: tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    what: str = "output",
    finite: bool = True,
) -> torch.Tensor:
    """Validate the exact shape, dtype, device and finiteness of a target's output tensor."""
    if not isinstance(out, torch.Tensor):
        raise Violation(f"{what} is {type(out).__name__}, expected a torch.Tensor")
    if tuple(out.shape) != tuple(shape):
        raise Violation(f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise Violation(f"{what} has dtype {out.dtype}, expected {dtype}")
    if out.device.type != device.type:
        raise Violation(f"{what} is on device {out.device}, expected {device}")
    if finite and out.is_floating_point() and not torch.isfinite(out).all():
        bad = (~torch.isfinite(out)).nonzero()[0].tolist()
        raise Violation(
            f"{what} has non-finite values where the reference is finite (first at index {bad}: {out[tuple(bad)].item()})",
            index=bad,
        )
    return out
