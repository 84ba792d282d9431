"""Shared test helpers. The lmspec pytest plugin (installed with the package) registers the Hypothesis
profiles and loads `ci` by default; `--hypothesis-profile dev` or `fuzz` overrides it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmspec.conformance.loading import load_target
from lmspec.conformance.runner import RunConfig, exit_code, run_component
from lmspec.spec import get_component

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Tiny tensors: intra-op threads only add contention with the other xdist worker (measured 2-3x slower).
torch.set_num_threads(1)


def check(component: str, target: str, adapter: str | None = None, dtypes=None, only=None, profile: str = "ci",
          seed: int | None = None, timeout_s: float | None = None, isolate: bool | None = None, **options):
    """Run `lmspec check` from this process (the target in a worker unless isolate=False); (exit code, results)."""
    comp = get_component(component)
    config = RunConfig(profile=profile, options=options, seed=seed, timeout_s=timeout_s)
    if isolate is not None:
        config.isolate = isolate
    results = run_component(comp, load_target(target, component, adapter), config, dtypes=dtypes, only=only)
    return exit_code(results), results


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `lmspec` command, from the repository root (so tests.mutants is importable)."""
    return subprocess.run([sys.executable, "-m", "lmspec.conformance", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared (fixtures and notes) is absent in this clone")
    return SHARED
