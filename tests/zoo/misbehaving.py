"""Targets that misbehave the way real kernels do, each claiming to be `softmax(input, dim)`.

tests/test_isolation.py checks that every one gets its expected verdict, that the report is still written, and
that the run's time is bounded.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time

import torch


def correct(input, dim):
    return torch.softmax(input, dim=dim)


def segfault(input, dim):
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def aborts(input, dim):
    os.abort()


def exits_zero(input, dim):
    os._exit(0)


def sys_exit_zero(input, dim):
    sys.exit(0)


def raises_keyboard_interrupt(input, dim):
    raise KeyboardInterrupt


def hangs(input, dim):
    time.sleep(1000)


def recursion(input, dim):
    return recursion(input, dim)


def allocates_100_gb(input, dim):
    return torch.empty(25 * 10**9, dtype=torch.float32)  # 100 GB: more than the machine has


def starts_threads(input, dim):
    for _ in range(4):
        threading.Thread(target=time.sleep, args=(1000,), daemon=False).start()
    return torch.softmax(input, dim=dim)


def floods_stdout(input, dim):
    chunk = "x" * 65536 + "\n"
    for _ in range(256):  # 16 MB per call
        sys.stdout.write(chunk)
    return torch.softmax(input, dim=dim)


def changes_global_state(input, dim):
    """Correct output, but leaves torch's default dtype, thread count, grad mode and determinism changed, and the
    global generator advanced."""
    out = torch.softmax(input, dim=dim)
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    torch.rand(1000)
    return out


def tampers(input, dim):
    """Returns zeros, after making every comparison lmspec or torch could use say "equal"."""
    import lmspec.spec.checks as checks
    import lmspec.spec.tolerance as tolerance

    checks.assert_matches = lambda *a, **k: None
    checks.differential = lambda *a, **k: None
    tolerance.compare = lambda *a, **k: None
    torch.allclose = lambda *a, **k: True
    torch.equal = lambda *a, **k: True
    return torch.zeros_like(input)


def declines_float16(input, dim):
    """A kernel without a float16 path: says so for those inputs, instead of failing."""
    from lmspec.spec import Unsupported

    if input.dtype == torch.float16:
        raise Unsupported("no float16 kernel")
    return torch.softmax(input, dim=dim)


def not_implemented_for_rank_above_2(input, dim):
    if input.dim() > 2:
        raise NotImplementedError("rank <= 2 only")
    return torch.softmax(input, dim=dim)


def declines_everything(input, dim):
    raise NotImplementedError("this kernel is a stub")


def uses_default_dtype(input, dim):
    """Returns torch's default dtype: correct for float32 inputs only while the default is float32, as in any fresh
    process."""
    return torch.softmax(input, dim=dim).to(torch.get_default_dtype())


def cuda_error_once(input, dim):
    """Raises what an illegal memory access raises in a CUDA kernel, once per harness process (a marker file named
    after the worker's parent); afterwards it is correct."""
    import tempfile

    marker = os.path.join(tempfile.gettempdir(), f"lmspec-zoo-cuda-error-{os.getppid()}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    return torch.softmax(input, dim=dim)
