"""The harness survives any target: each misbehaving target of tests/zoo/misbehaving.py gets its verdict, the
report is written, and the run's time is bounded. Targets run in a worker process (conformance/isolation.py)."""

from __future__ import annotations

import json
import os
import tempfile
import time

import pytest
import torch

from .conftest import check, run_cli

Z = "tests.zoo.misbehaving"
ONE = ["softmax.reference.matches"]


@pytest.mark.parametrize("name,verdict,says", [
    ("segfault", "crash", "signal SIGSEGV"),
    ("aborts", "crash", "signal SIGABRT"),
    ("exits_zero", "crash", "exited with code 0"),
    ("sys_exit_zero", "crash", "exited with code 0"),
    ("raises_keyboard_interrupt", "crash", "exited with code"),
    ("allocates_100_gb", "fail", "raised RuntimeError"),
])
def test_a_target_that_takes_its_process_down_gets_a_verdict_with_its_example(name, verdict, says):
    code, [result] = check("softmax", f"{Z}:{name}", dtypes=["float32"], only=ONE)
    assert code == 1 and result.verdict == verdict and says in result.message, (result.verdict, result.message)
    assert result.counterexample["params"] is not None and "--replay" in result.reproduce


def test_runaway_recursion_is_a_failure_not_a_harness_crash():
    code, [result] = check("softmax", f"{Z}:recursion", dtypes=["float32"], only=ONE)
    assert code == 1 and result.verdict in ("fail", "crash") and ("RecursionError" in result.message
                                                                    or "crashed" in result.message), result.message


def test_the_cli_writes_its_report_after_a_crash_and_exits_1(tmp_path):
    report = tmp_path / "r.json"
    proc = run_cli("check", "softmax", "--target", f"{Z}:segfault", "--dtype", "float32", "--report", str(report))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["summary"]["exit_code"] == 1 and {r["verdict"] for r in data["results"]} == {"crash"}
    assert data["summary"]["crash"] == len(data["results"]) > 0
    assert "CRASH" in proc.stdout


def test_sys_exit_zero_does_not_make_the_cli_exit_0():
    proc = run_cli("check", "softmax", "--target", f"{Z}:sys_exit_zero", "--dtype", "float32", "--invariant", ONE[0])
    assert proc.returncode == 1 and "crash" in proc.stdout.lower(), proc.stdout + proc.stderr


def test_a_hanging_target_is_stopped_and_later_calls_get_a_short_budget():
    started = time.monotonic()
    code, results = check("softmax", f"{Z}:hangs", dtypes=["float32", "float64"], timeout_s=3.0)
    elapsed = time.monotonic() - started
    assert code == 1 and {r.verdict for r in results} == {"timeout"}, [(r.verdict, r.message) for r in results]
    assert "later examples get" in results[0].message
    # 8 invariant x dtype runs: the first hang costs 3 s, every later one about 1 s plus a worker restart
    assert elapsed < 60, elapsed


@pytest.mark.parametrize("name", ["starts_threads", "floods_stdout", "changes_global_state"])
def test_side_effects_that_do_not_change_the_output_still_conform(name, capfd):
    code, results = check("softmax", f"{Z}:{name}", dtypes=["float32"])
    assert code == 0, [(r.invariant, r.verdict, r.message) for r in results if r.verdict != "pass"]
    assert "xxxxxxxx" not in capfd.readouterr().out  # a flood stays in the worker
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()


def test_one_target_changing_global_state_does_not_reach_the_next_target_in_the_worker():
    code, _ = check("softmax", f"{Z}:changes_global_state", dtypes=["float32"], only=ONE)
    assert code == 0
    code, results = check("softmax", f"{Z}:uses_default_dtype", dtypes=["float32"], only=ONE)
    assert code == 0, [(r.verdict, r.message) for r in results]


def test_in_process_the_harness_restores_global_state_between_examples():
    code, results = check("softmax", f"{Z}:changes_global_state", dtypes=["float32"], isolate=False)
    assert code == 0, [(r.invariant, r.verdict, r.message) for r in results if r.verdict != "pass"]
    assert torch.get_default_dtype() == torch.float32 and torch.is_grad_enabled()
    assert not torch.are_deterministic_algorithms_enabled()


def test_a_target_cannot_patch_its_way_to_a_pass():
    code, [result] = check("softmax", f"{Z}:tampers", dtypes=["float32"], only=ONE)
    assert code == 1 and result.verdict == "fail" and "differs from the float64 reference" in result.message


def test_unsupported_inputs_are_discarded_and_never_a_pass():
    code, results = check("softmax", f"{Z}:declines_float16", only=ONE)
    verdicts = {r.dtype: r.verdict for r in results}
    assert code == 0 and verdicts["float16"] == "unsupported" and verdicts["float32"] == "pass", verdicts
    [f16] = [r for r in results if r.dtype == "float16"]
    assert "no float16 kernel" in f16.message and f16.checked == 0
    code, results = check("softmax", f"{Z}:not_implemented_for_rank_above_2", dtypes=["float32"], only=ONE)
    [r] = results
    assert r.verdict == "pass" and 0 < r.checked < r.examples  # ranks 3 and 4 were drawn and declined


def test_a_target_that_declines_everything_cannot_exit_0():
    code, results = check("softmax", f"{Z}:declines_everything", dtypes=["float32"])
    assert {r.verdict for r in results} == {"unsupported"} and code == 2
    assert all("this kernel is a stub" in r.message for r in results)


def test_declared_size_bounds_keep_examples_within_them():
    from lmspec.conformance.loading import Target
    from lmspec.conformance.runner import RunConfig, run_invariant
    from lmspec.spec import get_component

    seen = []

    def head_dim_at_most_4(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                           enable_gqa=False):
        seen.append(query.shape[-1])
        return torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p, is_causal,
                                                                 scale=scale, enable_gqa=enable_gqa)

    comp = get_component("attention")
    target = Target(fn=head_dim_at_most_4, path="test:head_dim_at_most_4", max_sizes={"E": 4}, isolatable=False)
    result = run_invariant(comp, comp.invariant("attention.reference.matches"), target, torch.float32,
                           RunConfig(isolate=False))
    assert result.verdict == "pass" and result.checked > 0 and seen and max(seen) <= 4, seen


def test_after_a_cuda_error_the_next_example_gets_a_fresh_worker():
    """A CUDA error can leave the process's context unusable: that worker is replaced before the next call."""
    from lmspec.conformance.isolation import IsolatedTarget, _WorkerProcess
    from lmspec.spec.core import Violation

    target = IsolatedTarget(f"{Z}:cuda_error_once", "softmax", worker=_WorkerProcess())
    x = torch.randn(2, 3)
    with pytest.raises(Violation, match="CUDA error"):
        target(x, -1)
    assert not target.worker.alive()
    generation = target.worker.generation
    assert torch.equal(target(x, -1), torch.softmax(x, dim=-1))  # a fresh worker, where the "kernel" has not failed
    assert target.worker.generation == generation + 1
    target.close()
    os.remove(os.path.join(tempfile.gettempdir(), f"lmspec-zoo-cuda-error-{os.getpid()}"))


def test_a_warm_worker_imports_targets_from_the_harness_current_directory(tmp_path, monkeypatch):
    check("softmax", "torch:softmax", dtypes=["float32"], only=["softmax.reference.matches"])  # the worker is warm
    (tmp_path / "here_only.py").write_text("import torch\n\ndef softmax(x, dim):\n    return torch.softmax(x, dim)\n")
    monkeypatch.chdir(tmp_path)
    code, results = check("softmax", "here_only:softmax", dtypes=["float32"], only=["softmax.reference.matches"])
    assert code == 0, [r.message for r in results]
