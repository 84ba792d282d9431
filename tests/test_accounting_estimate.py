"""`lmspec estimate`: exact totals for every preset, config files, conventions in the output, and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from lmspec.conformance import estimate as E
from lmspec.reference.accounting import params as P

from .conftest import REPO


def _run(*argv: str, capsys) -> tuple[int, str, str]:
    code = E.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("name", sorted(P.PRESETS))
def test_presets_give_the_published_totals(name, capsys):
    code, out, _ = _run("--preset", name, "--json", capsys=capsys)
    report = json.loads(out)
    assert code == 0 and report["parameters"]["total"] == P.PUBLISHED_TOTALS[name]


def test_text_output_names_every_convention(capsys):
    code, out, _ = _run("--preset", "llama-3-8b", "--seq-len", "2048", "--recompute", "selective", capsys=capsys)
    assert code == 0
    for needle in ("8,030,261,248", "convention: input_and_output", "attention: dense", "recompute: selective",
                   "mixed_adam", "Korthikanti", "131,072 B) per token", "Chinchilla", "160,605,224,960 tokens"):
        assert needle in out, needle


def test_numbers_follow_the_reference(capsys):
    code, out, _ = _run("--preset", "gpt2", "--seq-len", "1024", "--batch", "8", "--tokens", "1e9", "--json",
                        capsys=capsys)
    r = json.loads(out)
    from lmspec.reference.accounting import flops as F

    assert r["flops"]["training_per_step"] == F.megatron_training_flops(8, 1024, 12, 768, 50257)
    assert r["flops"]["forward_per_token"] * 3 == r["flops"]["training_per_token"]
    training = r["memory"]["training"]
    assert training["weights"] + training["gradients"] + training["optimizer"] == 16 * 124_439_808
    assert r["kv_cache"]["bytes_per_token"] == 2 * 12 * 12 * 64 * 2
    assert r["training_run"]["tokens"] == 1e9
    assert r["parameters"]["non_embedding"] == 85_056_000


def test_hf_config_and_meta_params_files(tmp_path, capsys):
    hf = tmp_path / "config.json"
    hf.write_text(json.dumps({**P.PRESETS["mixtral-8x7b"], "architectures": ["MixtralForCausalLM"]}))
    meta = tmp_path / "params.json"
    meta.write_text(json.dumps(P.META_PARAMS["llama-2-7b"]))
    code, out, _ = _run("--hf-config", str(hf), "--json", capsys=capsys)
    r = json.loads(out)
    assert code == 0 and (r["parameters"]["total"], r["parameters"]["active"]) == (46_702_792_704, 12_879_925_248)
    code, out, _ = _run("--hf-config", str(meta), "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["parameters"]["total"] == 6_738_415_616


def test_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"model_type": "t5"}))
    code, _, err = _run("--hf-config", str(bad), capsys=capsys)
    assert code == 2 and "unsupported model_type 't5'" in err
    code, _, err = _run("--hf-config", str(tmp_path / "missing.json"), capsys=capsys)
    assert code == 2 and "missing.json" in err


def test_module_entry_point_runs():
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-m", "lmspec.conformance.estimate", "--preset", "gpt2-xl"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": path})
    assert proc.returncode == 0 and "1,557,611,200" in proc.stdout


def test_lmspec_cli_has_estimate():
    from lmspec.conformance import cli

    parser = cli._parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert "estimate" in subcommands and "doctor" in subcommands
    assert cli.main(["estimate", "--preset", "gpt2", "--json"]) == 0
