"""Shared fixtures for the pytest-benchmark suite (run only when `benchmarks/` is named; see docs/benchmarks.md).

Knobs, all environment variables so they work however the files are named on the command line:

- LMSPEC_BENCH_THREADS: torch intra-op threads (default 1, as torch's own operator_benchmark does: one
  thread gives figures that are comparable run to run and far less disturbed by other load; set it to
  the core count to see multi-threaded throughput).
- LMSPEC_BENCH_BUDGET_S: target seconds of timed calls per benchmark (default 1.0); the round count is
  this budget divided by the duration of one warm-up call, clamped to [min_rounds, max_rounds].
- LMSPEC_BENCH_SLOWDOWN: integer N >= 1 (default 1). Each timed round calls the workload N times, so
  every figure is about N times the true one. Only for checking that `--benchmark-compare-fail` trips;
  runs made with it record `slowdown` in their extra_info.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import pytest
import torch

DEFAULT_BUDGET_S = 1.0


def _threads() -> int:
    return int(os.environ.get("LMSPEC_BENCH_THREADS") or 1)


def _slowdown() -> int:
    value = int(os.environ.get("LMSPEC_BENCH_SLOWDOWN") or 1)
    if value < 1:
        raise ValueError(f"LMSPEC_BENCH_SLOWDOWN must be an integer >= 1, got {value}")
    return value


def _budget_s() -> float:
    value = os.environ.get("LMSPEC_BENCH_BUDGET_S")
    return float(value) if value else DEFAULT_BUDGET_S


@pytest.fixture(scope="session", autouse=True)
def torch_threads():
    """Pin torch's intra-op thread count for the whole session and restore it afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(_threads())
    yield torch.get_num_threads()
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _no_grad():
    """Inference timings: no autograd graph is recorded for any benchmarked call."""
    with torch.inference_mode():
        yield


def pytest_benchmark_update_machine_info(config, machine_info):
    """Saved runs carry what changes CPU timings; `--benchmark-compare` warns when they differ."""
    machine_info["torch"] = torch.__version__
    machine_info["torch_num_threads"] = _threads()
    machine_info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()


@pytest.fixture
def measure(benchmark, torch_threads) -> Callable[..., Any]:
    """`measure(fn, group=..., min_rounds=..., max_rounds=..., **extra)` times `fn()` with `benchmark.pedantic`.

    One untimed warm-up call (also used to size the round count against LMSPEC_BENCH_BUDGET_S), then
    `rounds` timed calls of one iteration each. Returns fn's result. Never asserts on timings.
    """

    def run(fn: Callable[[], Any], *, group: str, min_rounds: int = 5, max_rounds: int = 200, **extra: Any) -> Any:
        benchmark.group = group
        benchmark.extra_info.update(extra)
        benchmark.extra_info["torch_num_threads"] = torch_threads
        benchmark.extra_info["torch"] = torch.__version__
        if benchmark.disabled:  # --benchmark-disable: a smoke run, pedantic makes one untimed call
            return benchmark.pedantic(fn, rounds=1, iterations=1)
        slowdown = _slowdown()
        if slowdown > 1:
            benchmark.extra_info["slowdown"] = slowdown
            workload = fn

            def fn():
                for _ in range(slowdown - 1):
                    workload()
                return workload()

        start = time.perf_counter()
        fn()
        warm = time.perf_counter() - start
        rounds = max(min_rounds, min(max_rounds, round(_budget_s() / max(warm, 1e-9))))
        return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)

    return run
