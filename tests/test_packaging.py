"""Both installs work: the editable one the tests run on, and a built wheel imported in a clean venv."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import REPO


def test_editable_install_maps_the_three_folders():
    import lmspec.conformance
    import lmspec.reference
    import lmspec.spec

    assert {p.rsplit("/", 1)[-1] for p in (lmspec.spec.__path__[0], lmspec.reference.__path__[0], lmspec.conformance.__path__[0])} == {
        "spec", "reference", "conformance"}


def test_reference_imports_nothing_from_spec_or_conformance():
    for path in (REPO / "reference").glob("*.py"):
        text = path.read_text()
        assert "lmspec.spec" not in text and "lmspec.conformance" not in text and "from ..spec" not in text, path


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_built_wheel_imports_in_a_clean_venv():
    proc = subprocess.run(["bash", str(REPO / ".ci" / "wheel-check")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "wheel imports from" in proc.stdout and "exit 0" in proc.stdout
