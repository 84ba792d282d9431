"""The harness never crashes on bad input: every broken or cheating target gets a failing verdict with a
clear reason, and the CLI's exit codes are 0 conforms, 1 violations, 2 could not run."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from lmspec.conformance.loading import Target
from lmspec.conformance.runner import RunConfig, run_invariant
from lmspec.spec import get_component
from lmspec.spec.checks import assert_matches
from lmspec.spec.core import Context, Violation

from .conftest import check, run_cli

A = "tests.mutants.attention"
SDPA = "torch.nn.functional:scaled_dot_product_attention"


@pytest.mark.parametrize(
    "cheat,reason",
    [
        ("zeros", "differs from the float64 reference"),
        ("mean_of_values", "differs from the float64 reference"),
        ("copy_of_query", "has shape"),
        ("nan_output", "non-finite"),
        ("mutates_inputs", "mutated its input"),
        ("always_float32", "has dtype torch.float32, expected torch.float16"),
        ("raises", "raised RuntimeError: kernel launch failed"),
        ("wrong_signature", "raised TypeError"),
    ],
)
def test_cheats_and_broken_targets_fail_with_a_clear_reason(cheat, reason):
    code, results = check("attention", f"{A}:{cheat}", dtypes=["float16"], only=["attention.reference.matches"])
    assert code == 1
    [result] = results
    assert result.verdict == "fail" and reason in result.message, result.message


def test_a_hanging_target_times_out_per_example():
    comp = get_component("attention")
    target = Target(fn=__import__("tests.mutants.attention", fromlist=["hangs"]).hangs, path=f"{A}:hangs")
    result = run_invariant(comp, comp.invariant("attention.reference.matches"), target, torch.float32,
                           RunConfig(timeout_s=0.2, max_examples=2))
    assert result.verdict == "timeout" and "did not return within 0.2s" in result.message


def test_zero_constant_and_copied_outputs_fail_the_tolerance_policy():
    ctx = Context(target=None, dtype=torch.bfloat16, device=torch.device("cpu"), options={})
    ref64 = torch.linspace(-1, 2, 24, dtype=torch.float64).reshape(4, 6)
    ref_lowp = ref64.to(torch.bfloat16)
    for cheat in (torch.zeros_like(ref_lowp), torch.full_like(ref_lowp, float(ref64.mean())), ref_lowp.flip(0)):
        with pytest.raises(Violation):
            assert_matches(ctx, cheat, ref64, ref_lowp)
    stats = assert_matches(ctx, ref_lowp, ref64, ref_lowp)
    assert stats.max_eps <= 1.0  # rounding to bfloat16 is at most half an eps relative


def test_declared_unsupported_dtypes_and_features_are_reported_not_failed(tmp_path, monkeypatch):
    module = tmp_path / "half_only_kernel.py"
    module.write_text(
        "import torch\n"
        "def attention(*args, **kwargs):\n"
        "    return torch.nn.functional.scaled_dot_product_attention(*args, **kwargs)\n"
        "attention.__lmspec__ = {'unsupported_dtypes': ['float64', 'torch.float32'], 'unsupported_features': ['attn_mask', 'dropout']}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    code, results = check("attention", "half_only_kernel:attention")
    verdicts = {(r.invariant, r.dtype): r.verdict for r in results}
    assert code == 0
    assert verdicts[("attention.reference.matches", "float64")] == "unsupported"
    assert verdicts[("attention.mask.boolean", "float16")] == "unsupported"
    assert verdicts[("attention.reference.matches", "bfloat16")] == "pass"
    assert "fail" not in verdicts.values()


@pytest.mark.parametrize(
    "args,message",
    [
        (["check", "no_such_component", "--target", SDPA], "unknown component 'no_such_component'"),
        (["check", "attention", "--target", "no_such_module:f"], "cannot import 'no_such_module'"),
        (["check", "attention", "--target", "torch.nn.functional:no_such_attr"], "has no attribute"),
        (["check", "attention", "--target", "torch:__version__"], "not callable"),
        (["check", "attention", "--target", "torch"], "not of the form module:attr"),
        (["check", "attention", "--target", SDPA, "--option", "causal_alignment=diagonal"], "not in"),
        (["check", "attention", "--target", SDPA, "--option", "colour=blue"], "unknown option 'colour'"),
        (["check", "attention", "--target", SDPA, "--adapter", "no_such_adapter"], "unknown adapter"),
        (["check", "attention", "--target", SDPA, "--invariant", "attention.nope"], "unknown invariant"),
        (["check", "attention", "--target", SDPA, "--invariant", "attention.reference.matches", "--replay", "{bad"], "not valid JSON"),
    ],
)
def test_cli_exits_2_with_a_one_line_reason_when_it_cannot_run(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_cli_conforming_target_exits_0_and_writes_json_and_junit_reports(tmp_path):
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    proc = run_cli("check", "softmax", "--target", "torch:softmax", "--report", str(report), "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "summary: 29 pass, 0 fail" in proc.stdout  # 16 forward, 13 gradient (docs/backward.md)
    data = json.loads(report.read_text())
    assert data["schema_version"] == 1 and data["component"] == "softmax"
    assert data["target"]["torch_version"] == torch.__version__ and data["target"]["device"] == "cpu"
    summary = data["summary"]
    assert summary.pop("examples_checked") >= 29
    assert summary == {"pass": 29, "fail": 0, "crash": 0, "timeout": 0, "unsupported": 0, "error": 0, "exit_code": 0}
    first = data["results"][0]
    assert {"invariant", "dtype", "verdict", "examples", "max_abs_error", "mean_abs_error", "max_eps_error", "counterexample"} <= set(first)
    assert first["examples"] > 0 and first["max_abs_error"] is not None
    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == "29" and suite.get("failures") == "0"
    forward_only = run_cli("check", "softmax", "--target", "torch:softmax", "--no-backward", "-q")
    assert forward_only.returncode == 0 and "summary: 16 pass, 0 fail" in forward_only.stdout, forward_only.stdout


def test_cli_failing_target_reports_counterexample_in_json_and_junit(tmp_path):
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    proc = run_cli("check", "softmax", "--target", "tests.mutants.softmax:wrong_axis", "--dtype", "float32",
                   "--report", str(report), "--junit", str(junit))
    assert proc.returncode == 1
    data = json.loads(report.read_text())
    failed = [r for r in data["results"] if r["verdict"] == "fail"]
    assert failed and all(r["counterexample"]["params"] and r["reproduce"] for r in failed)
    suite = ET.parse(junit).getroot()
    assert int(suite.get("failures")) == len(failed)


def test_list_shows_every_component_and_json_is_machine_readable():
    text = run_cli("list")
    assert text.returncode == 0
    for name in ("attention", "softmax", "multi_head_latent_attention", "attention.causal.future_independence"):
        assert name in text.stdout
    assert "lmspec.reference.attention:scaled_dot_product_attention" in text.stdout
    data = json.loads(run_cli("list", "--json").stdout)
    attention = next(c for c in data if c["name"] == "attention")
    assert attention["reference"] == "lmspec.reference.attention:scaled_dot_product_attention"
    assert any(i["id"] == "attention.gqa.equals_repeated_kv" and i["kind"] == "property" for i in attention["invariants"])


def test_catalog_in_docs_is_current():
    proc = run_cli("catalog", "--check")
    assert proc.returncode == 0, proc.stderr


def test_every_invariant_id_is_written_literally_where_it_is_declared():
    """`grep '"<id>"' spec/` lands on each invariant's declaration: no id is assembled from parts (f-strings, prefixes)."""
    from lmspec.spec import components

    spec = Path(__file__).resolve().parents[1] / "spec"
    sources = {p: p.read_text() for p in spec.rglob("*.py")}
    missing = [inv.id for comp in components().values() for inv in comp.invariants
               if not any(f'"{inv.id}"' in text for text in sources.values())]
    assert missing == [], f"ids not written literally in spec/: {missing[:10]}"
