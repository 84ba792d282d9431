"""Every command in README.md and docs/ runs as shown, with the exit code it is documented to have.

Commands are the `lmspec ...` lines (and README's `python -m pytest --lmspec-target ...`) of the fenced code blocks;
a `cd DIR` line in a block sets where the rest of the block runs (README's examples run from examples/, copied to a
temporary folder so reports land there); a trailing `# exit N` comment states the exit code, 0 otherwise. Other
`python -m pytest` lines (benchmarks, test selections) are collected (`--collect-only`), not run: the suite runs
those tests itself, and timing is not a test.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lmspec.conformance import cli

REPO = Path(__file__).resolve().parents[1]
#: the test suite itself (README's second command, which .ci/run runs), and `lmspec catalog`, which rewrites
#: docs/catalog.md (a test runs `lmspec catalog --check` instead).
SELF = {"python -m pytest -n 2", "lmspec catalog"}
DOCS = [REPO / "README.md"] + sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "catalog.md")


def _commands() -> list[tuple[str, str, str, int]]:
    """(where, directory, command, expected exit code) for every command line in a fenced block."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8").replace("\\\n", " ")
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
            directory = "."
            lines = block.splitlines()
            for i, line in enumerate(lines):
                code, _, comment = line.partition("  #")
                code = code.strip()
                if code.startswith("cd "):
                    directory = code[3:].strip()
                elif code in SELF:
                    continue
                elif code.startswith("lmspec ") or code.startswith("python -m pytest"):
                    following = [l for l in lines[i + 1:i + 4] if l.startswith("#")]  # "# summary: ... -> exit 0"
                    expected = re.search(r"exit (\d)", " ".join([comment] + following[:1]))
                    found.append((doc.name, directory, code, int(expected.group(1)) if expected else 0))
    return found


COMMANDS = _commands()


def test_the_docs_have_commands():
    assert len(COMMANDS) > 30 and any(c[1] == "examples" for c in COMMANDS)


@pytest.mark.parametrize("doc,directory,command,expected", COMMANDS, ids=[f"{c[0]}:{c[2][:70]}" for c in COMMANDS])
def test_documented_command_runs_as_shown(doc, directory, command, expected, tmp_path, monkeypatch, capsys):
    argv = shlex.split(command)
    cwd = REPO / directory
    if directory == "examples":
        cwd = tmp_path / "examples"
        shutil.copytree(REPO / "examples", cwd)
    if argv[0] == "lmspec":
        # `lmspec ARGS` is `main(ARGS)` of the console script: run here (in the working directory the docs give),
        # which spares each command a new interpreter and torch import; the CLI's own tests run it as a process
        monkeypatch.chdir(cwd)
        previous = signal.getsignal(signal.SIGPIPE)
        try:
            code = cli.main(argv[1:])
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
        finally:
            signal.signal(signal.SIGPIPE, previous)
        out = capsys.readouterr()
        assert code == expected, f"{doc}: `{command}` exited {code}:\n{out.out[-3000:]}\n{out.err[-3000:]}"
        return
    argv[0] = sys.executable
    if "--lmspec-target" not in argv:  # a test or benchmark selection the suite runs itself: shown to collect
        argv = [a for a in argv if not a.startswith("--benchmark-compare")] + ["--collect-only", "-q", "-p", "no:xdist"]
    # as a user would run it: not inside this test session's xdist worker (pytest-benchmark disables itself there)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "XDIST_"))} | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == expected, f"{doc}: `{command}` exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
