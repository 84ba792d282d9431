"""The pytest plugin turns every invariant x dtype into a test item: -k, JUnit and xdist work on them. With
--lmspec-target only those items are collected, wherever pytest runs (the project's own tests are not)."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from .conftest import REPO


def run_pytest(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    """pytest as a user runs it from a checkout (so pyproject's testpaths = tests would apply without the plugin)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_plugin_items_pass_for_a_conforming_target_and_k_selects(tmp_path):
    junit = tmp_path / "j.xml"
    proc = run_pytest("--lmspec-target", "softmax=torch:softmax", "-k", "shift_invariance", f"--junitxml={junit}", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
    names = sorted(case.get("name") for case in ET.parse(junit).iter("testcase"))
    dtypes = ("bfloat16", "float16", "float32", "float64")
    assert names == [f"lmspec[softmax]::softmax.shift_invariance[{d}]" for d in dtypes]


def test_plugin_failure_shows_counterexample_and_reproduce_command_under_xdist():
    proc = run_pytest("--lmspec-target", "softmax=tests.mutants.softmax:wrong_axis", "--lmspec-dtype", "float32",
                      "-k", "sums_to_one", "-n", "2", "-q")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed" in proc.stdout
    assert "counterexample: {" in proc.stdout
    assert "reproduce: lmspec check softmax --target tests.mutants.softmax:wrong_axis" in proc.stdout


def test_plugin_unsupported_is_skipped_and_bad_target_is_a_usage_error():
    proc = run_pytest("--lmspec-target", "attention=tests.fake_flash_attn:flash_attn_func",
                      "--lmspec-adapter", "attention=flash_attn", "-k", "mask.boolean and not additive", "-q", "-rs")
    assert proc.returncode == 0 and "4 skipped" in proc.stdout, proc.stdout + proc.stderr
    bad = run_pytest("--lmspec-target", "attention=no_such_module:f")
    assert bad.returncode == 4 and "cannot import 'no_such_module'" in bad.stderr


def test_only_lmspec_items_are_collected_from_the_repository_root_and_the_header_counts_them():
    proc = run_pytest("--lmspec-target", "softmax=torch:softmax", "-k", "shift_invariance", "--collect-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "collected 29 items / 25 deselected / 4 selected" in proc.stdout, proc.stdout
    assert "4/29 tests collected (25 deselected)" in proc.stdout
    forward = run_pytest("--lmspec-target", "softmax=torch:softmax", "--lmspec-no-backward", "--collect-only", "-q")
    assert forward.returncode == 0 and "16 tests collected" in forward.stdout, forward.stdout
    assert "<Module" not in proc.stdout and "test_" not in proc.stdout and "testpaths" not in proc.stdout, proc.stdout
    # explicit paths are not collected either: only the targets are checked
    tests = run_pytest("--lmspec-target", "softmax=torch:softmax", "tests/test_plugin.py", "--collect-only", "-q")
    assert tests.returncode == 0 and "test_plugin" not in tests.stdout and "29 tests collected" in tests.stdout, \
        tests.stdout + tests.stderr


def test_readme_command_from_examples_runs_the_target_only():
    proc = run_pytest("--lmspec-target", "attention=mykernels:attention", "-k", "causal", "--lmspec-dtype", "float32",
                      cwd=REPO / "examples")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = re.search(r"collected (\d+) items / (\d+) deselected / (\d+) selected", proc.stdout)
    assert header, proc.stdout
    collected, deselected, selected = map(int, header.groups())
    assert selected > 0 and collected == deselected + selected
    assert re.search(rf"\b{selected} passed, {deselected} deselected\b", proc.stdout), proc.stdout


def test_plugin_usage_errors_name_the_nearest_and_check_the_device():
    typo = run_pytest("--lmspec-target", "atention=mykernels:attention")
    assert typo.returncode == 4 and "unknown component 'atention' (did you mean 'attention'" in typo.stderr, typo.stderr
    device = run_pytest("--lmspec-target", "softmax=torch:softmax", "--lmspec-device", "cuda:99")
    assert device.returncode == 4 and "device 'cuda:99' is not available" in device.stderr, device.stderr
    adapter = run_pytest("--lmspec-target", "rope=torch:softmax", "--lmspec-adapter", "rope=hf_llama_rotary")
    assert adapter.returncode == 4 and "adapter 'hf_llama_rotary' cannot wrap torch:softmax" in adapter.stderr
    scale = run_pytest("--lmspec-target", "softmax=torch:softmax", "--lmspec-scale", "huge")
    assert scale.returncode == 4 and "--lmspec-scale 'huge': choose one of small, kernel, production" in scale.stderr
    assert "Traceback" not in typo.stderr + device.stderr + adapter.stderr + scale.stderr
