"""The pytest plugin turns every invariant x dtype into a test item: -k, JUnit and xdist work on them."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET

from .conftest import REPO


def run_pytest(*args: str) -> subprocess.CompletedProcess:
    # an empty rootdir keeps the repository's own tests out of the run
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(REPO / "docs"),
                           str(REPO / "docs"), *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_plugin_items_pass_for_a_conforming_target_and_k_selects(tmp_path):
    junit = tmp_path / "j.xml"
    proc = run_pytest("--lmspec-target", "softmax=torch:softmax", "-k", "shift_invariance", f"--junitxml={junit}", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed" in proc.stdout
    names = sorted(case.get("name") for case in ET.parse(junit).iter("testcase"))
    assert names == [f"lmspec[softmax]::softmax.shift_invariance[{d}]" for d in ("bfloat16", "float16", "float32", "float64")]


def test_plugin_failure_shows_counterexample_and_reproduce_command_under_xdist():
    proc = run_pytest("--lmspec-target", "softmax=tests.mutants.softmax:wrong_axis", "--lmspec-dtype", "float32",
                      "-k", "sums_to_one", "-n", "2", "-q")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 failed" in proc.stdout
    assert "counterexample: {" in proc.stdout and "reproduce: lmspec check softmax --target tests.mutants.softmax:wrong_axis" in proc.stdout


def test_plugin_unsupported_is_skipped_and_bad_target_is_a_usage_error():
    proc = run_pytest("--lmspec-target", "attention=tests.fake_flash_attn:flash_attn_func", "--lmspec-adapter", "attention=flash_attn",
                      "-k", "mask.boolean and not additive", "-q", "-rs")
    assert proc.returncode == 0 and "4 skipped" in proc.stdout, proc.stdout + proc.stderr
    bad = run_pytest("--lmspec-target", "attention=no_such_module:f")
    assert bad.returncode == 4 and "cannot import 'no_such_module'" in bad.stderr
