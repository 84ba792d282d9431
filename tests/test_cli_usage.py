"""`lmspec check` as a user meets it: every usage error is exit 2 with one line on stderr (the nearest names for an
unknown one) and no traceback, found before anything runs; a progress line in a terminal and nothing new in a
pipe; `--env` set before the target is imported, recorded in the report and repeated in every reproduce line."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import subprocess
import sys
import time

import pytest
import torch

from lmspec.conformance import cli
from lmspec.conformance.loading import all_adapters

from .conftest import REPO, run_cli

SOFTMAX = ["check", "softmax", "--target", "torch:softmax"]
QUICK = ["--invariant", "softmax.reference.matches", "--dtype", "float32", "--max-examples", "2"]


def assert_cannot_run(proc: subprocess.CompletedProcess, message: str) -> None:
    """Exit 2, nothing on stdout (nothing ran), one line on stderr with `message`, no traceback."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == "", proc.stdout + proc.stderr


@pytest.mark.parametrize("args,message", [
    (["check", "atention", "--target", "torch:softmax"], "unknown component 'atention' (did you mean 'attention'"),
    ([*SOFTMAX, "--invariant", "softmax.shift_invariant"],
     "unknown invariant 'softmax.shift_invariant' (did you mean 'softmax.shift_invariance'?)"),
    ([*SOFTMAX, "--dtype", "flaot32"], "unknown dtype 'flaot32' (did you mean 'float32'?)"),
    (["check", "attention", "--target", "torch:softmax", "--option", "causal_alignmnt=top_left"],
     "unknown option 'causal_alignmnt' (did you mean 'causal_alignment'?)"),
    (["check", "attention", "--target", "torch:softmax", "--option", "causal_alignment=botom_right"],
     "(did you mean 'bottom_right'?)"),
    (["check", "attention", "--target", "torch:softmax", "--adapter", "flash_atn"],
     "unknown adapter 'flash_atn' (did you mean 'flash_attn'?)"),
    ([*SOFTMAX, "--profile", "cii"], "invalid choice: 'cii'"),
    (["chek"], "(did you mean 'check'?)"),
    ([*SOFTMAX, "--env", "NO_EQUALS_SIGN"], "--env 'NO_EQUALS_SIGN' is not NAME=VALUE"),
    ([*SOFTMAX, "--dtype", "float64", "--invariant", "softmax.reference.matches", "--max-examples", "nan"],
     "invalid int value"),
    ([*SOFTMAX, "--max-examples", "0"], "--max-examples 0: at least 1 example is needed"),
    ([*SOFTMAX, "--timeout", "-1"], "--timeout -1.0: seconds per target call must be more than 0"),
    (["check", "gpt2_tokenizer", "--target", "torch:softmax", "--invariant", "softmax.reference.matches"],
     "unknown invariant 'softmax.reference.matches'"),
    ([*SOFTMAX, "--replay", "{}"], "needs --invariant"),
])
def test_unknown_names_exit_2_with_the_nearest_names(args, message):
    assert_cannot_run(run_cli(*args), message)


@pytest.mark.parametrize("device,message", [
    ("cuda:99", "device 'cuda:99' is not available"),
    ("not_a_device", "device 'not_a_device' is not a device torch knows"),
    ("meta", "device 'meta' holds no values"),
])
def test_a_device_torch_cannot_use_is_refused_before_running(device, message):
    assert_cannot_run(run_cli(*SOFTMAX, *QUICK, "--device", device), message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_one_line_not_one_per_invariant():
    assert_cannot_run(run_cli(*SOFTMAX, "--device", "cuda"), "device 'cuda' is not available")


@pytest.mark.parametrize("flag", ["--report", "--junit"])
def test_a_report_that_cannot_be_written_is_refused_before_running(flag, tmp_path):
    assert_cannot_run(run_cli(*SOFTMAX, *QUICK, flag, str(tmp_path / "nodir" / "r.out")),
                      f"cannot write {flag} {tmp_path / 'nodir' / 'r.out'}: directory")
    assert_cannot_run(run_cli(*SOFTMAX, *QUICK, flag, str(tmp_path)), "it is a directory")


# --- adapters given the wrong kind of target ------------------------------------------------------------------------

#: a target plainly wrong for each adapter: a function for those that adapt a class or module, a class for those
#: that adapt a function (a builtin such as torch.softmax may pass for torch.multinomial or Tensor.to)
FUNCTION_ADAPTERS = {"flash_attn", "flash_attn_sliding_window", "hf_eager", "hf_eager_sliding_window", "hf_gptj_rope",
                     "hf_gptj_sinusoidal", "hf_speculative_sampling", "torch_cast", "torch_multinomial"}


def wrong_target(adapter: str) -> str:
    return "torch.nn:Linear" if adapter in FUNCTION_ADAPTERS else "torch:softmax"


def test_the_adapter_list_is_the_registry():
    listed = json.loads(run_cli("list", "--adapters", "--json").stdout)
    assert sorted(a["name"] for a in listed) == sorted(all_adapters())


@pytest.mark.parametrize("adapter", sorted(all_adapters()))
def test_every_adapter_refuses_a_target_of_the_wrong_kind(adapter, capsys):
    component = all_adapters()[adapter].components[0]
    args = cli._parser().parse_args(["check", component, "--target", wrong_target(adapter), "--adapter", adapter])
    code = cli.cmd_check(args)  # an exception here is the traceback a user would have seen
    out, err = capsys.readouterr()
    assert code == 2 and out == "", out + err
    assert err.count("\n") == 1 and err.startswith(f"lmspec: error: adapter {adapter!r} cannot wrap"), err


@pytest.mark.parametrize("adapter,wrong_signature", [("flash_attn", True), ("hf_eager", True), ("hf_gptj_rope", False),
                                                     ("hf_speculative_sampling", False)])
def test_python_function_adapters_refuse_a_builtin_or_a_function_of_another_signature(adapter, wrong_signature, capsys):
    """A builtin (whose signature cannot be read), a module, and a function that cannot take the adapter's call."""
    component = all_adapters()[adapter].components[0]
    for target in ("torch:softmax", "torch:nn") + (("torch.nn.functional:softmax",) if wrong_signature else ()):
        args = cli._parser().parse_args(["check", component, "--target", target, "--adapter", adapter])
        assert cli.cmd_check(args) == 2, target
        assert capsys.readouterr().err.startswith(f"lmspec: error: adapter {adapter!r} cannot wrap {target}")


@pytest.mark.parametrize("adapter,component,message", [
    ("hf_llama_rotary", "rope", "it adapts a <Model>RotaryEmbedding class"),
    ("hf_generate", "greedy_search", "it adapts transformers' GenerationMixin class"),
    ("hf_logits_processor", "top_p", "it adapts a transformers LogitsProcessor class"),
])
def test_cli_adapter_with_a_function_target_exits_2_without_a_traceback(adapter, component, message):
    proc = run_cli("check", component, "--target", "torch:softmax", "--adapter", adapter)
    assert_cannot_run(proc, f"adapter {adapter!r} cannot wrap torch:softmax: {message}")


# --- progress --------------------------------------------------------------------------------------------------------

TWO = ["--invariant", "softmax.reference.matches", "--invariant", "softmax.shift_invariance", "--dtype", "float32",
       "--max-examples", "2"]


def _in_terminal(args: list[str], **env: str) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal (120 columns); everything it wrote."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k != "CI"}
    environ.update(PYTHONPATH=str(REPO), TERM="xterm-256color", COLUMNS="120", LINES="24", **env)
    proc = subprocess.Popen([sys.executable, "-m", "lmspec.conformance", *args], cwd=REPO, env=environ,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every process holding the terminal closed it
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:  # exited, and everything it wrote has been read
                break
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_a_terminal_shows_a_transient_progress_line():
    out = _in_terminal([*SOFTMAX, *TWO])
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)  # without the colours and cursor movements
    assert re.search(r"\d:\d\d  invariant 1/2  \d+ examples?  softmax.reference.matches \[float32\]", plain), out
    assert re.search(r"\d:\d\d  invariant 2/2  \d+ examples?  softmax.shift_invariance \[float32\]", plain), out
    assert "\x1b[2K" in out  # the line is erased, not left behind
    assert "PASS  softmax.reference.matches [float32]  2 checked" in out
    assert "summary: 2 pass, 0 fail, 0 unsupported, 0 error; 4 examples checked -> exit 0" in out


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
@pytest.mark.parametrize("extra,env", [([], {"CI": "true"}), (["--quiet"], {})])
def test_no_progress_in_ci_or_with_quiet(extra, env):
    out = _in_terminal([*SOFTMAX, *TWO, *extra], **env)
    assert "invariant 1/2" not in out and "\x1b" not in out, out
    assert "summary: 2 pass" in out


def test_piped_output_is_plain_and_unchanged():
    proc = run_cli(*SOFTMAX, *TWO)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("lmspec check softmax: torch:softmax (torch ")
    assert lines[0].endswith(", cpu, profile ci, scale kernel)")
    assert lines[1].startswith("PASS  softmax.reference.matches [float32]  2 checked, max err over examples ")
    assert lines[2] == "PASS  softmax.shift_invariance [float32]  2 checked"
    assert lines[3:] == ["summary: 2 pass, 0 fail, 0 unsupported, 0 error; 4 examples checked -> exit 0"]


# --- --env -----------------------------------------------------------------------------------------------------------

SCALED = '''import os
import torch

SCALE = float(os.environ["LMSPEC_TEST_SCALE"])  # read when imported: without --env the import fails


def softmax(input, dim):
    return torch.softmax(input, dim) * SCALE
'''


def _cli_in(folder, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LMSPEC_TEST_SCALE"}
    return subprocess.run([sys.executable, "-m", "lmspec.conformance", *args], cwd=folder, capture_output=True,
                          text=True, timeout=300, env={**env, "PYTHONPATH": str(REPO)})


def test_env_is_set_before_import_recorded_and_repeated_in_the_reproduce_line(tmp_path):
    (tmp_path / "scaled.py").write_text(SCALED)
    check = ["check", "softmax", "--target", "scaled:softmax", *QUICK]
    assert_cannot_run(_cli_in(tmp_path, *check), "cannot import 'scaled'")
    report = tmp_path / "r.json"
    proc = _cli_in(tmp_path, *check, "--env", "LMSPEC_TEST_SCALE=2", "--env", "OTHER=a b", "--report", str(report))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(report.read_text())
    assert data["config"]["env"] == {"LMSPEC_TEST_SCALE": "2", "OTHER": "a b"}
    [failed] = [r for r in data["results"] if r["verdict"] == "fail"]
    line = failed["reproduce"]
    assert "--env LMSPEC_TEST_SCALE=2 --env 'OTHER=a b' --invariant softmax.reference.matches" in line, line
    assert f"reproduce: {line}" in proc.stdout
    argv = shlex.split(line)
    assert argv[:2] == ["lmspec", "check"]
    replay = _cli_in(tmp_path, *argv[1:])  # the reproduce line alone sets what the target needs
    assert replay.returncode == 1 and "FAIL  softmax.reference.matches [float32]  1 checked" in replay.stdout, \
        replay.stdout + replay.stderr
