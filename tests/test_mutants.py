"""Every invariant can fail: each mutant in tests/mutants is caught by `lmspec check` (exit code 1), by the
invariants its module names in CAUGHT, with a shrunk counterexample and a command that reproduces it."""

from __future__ import annotations

import importlib
import json
import os

import pytest

from lmspec.spec import FAMILIES, components

from .conftest import check, run_cli

A = "tests.mutants.attention"


def _rows() -> list[tuple]:
    """Every family has a module of the same name in tests/mutants listing its mutants and their catchers in CAUGHT."""
    rows = []
    for family in FAMILIES:
        module = importlib.import_module(f"{__package__}.mutants.{family}")
        for component, mutant, catchers, *rest in module.CAUGHT:
            target = mutant if ":" in mutant else f"{module.__name__}:{mutant}"  # a reference under a wrong option
            options = rest[0] if rest else {}
            dtypes = rest[1] if len(rest) > 1 else ("float32",)  # float32 keeps the run short
            # a mutant listed in its module's RAISES has a bug that shows as an exception on a valid input (a kernel
            # that cannot handle k > V or Ev != E); every other mutant must be caught by the invariant's own check.
            cause = "raised" if mutant in getattr(module, "RAISES", ()) else "violation"
            rows.append((component, target, frozenset(catchers), options, tuple(dtypes), cause))
    return rows


MUTANTS = _rows()
# None: the ci profile's own seed. A second seed shows a mutant is caught by what the invariant draws, not by luck
# of one draw; LMSPEC_MUTANT_SEEDS=1,2,3,... sweeps more.
SEEDS = [None] + [int(s) for s in os.environ.get("LMSPEC_MUTANT_SEEDS", "1").split(",") if s]


@pytest.mark.parametrize("seed", SEEDS, ids=[f"seed{s}" if s is not None else "ci" for s in SEEDS])
@pytest.mark.parametrize("component,mutant,catchers,options,dtypes,cause", MUTANTS,
                         ids=[f"{m[1].split(':')[1]}-{m[0]}" for m in MUTANTS])
def test_mutant_is_caught(component, mutant, catchers, options, dtypes, cause, seed):
    code, results = check(component, mutant, dtypes=list(dtypes), only=catchers, seed=seed, **options)
    assert code == 1
    assert {r.invariant for r in results} == set(catchers), "a catcher is not an invariant of the component"
    for r in results:
        assert r.verdict == "fail", f"{r.invariant} [{r.dtype}] did not catch {mutant}"
        # caught for the right reason: the invariant's own check, not the mutant raising or hanging
        assert r.cause == cause or (cause, r.cause) == ("violation", "mutated_input"), \
            f"{r.invariant} [{r.dtype}] caught {mutant} for the wrong reason ({r.cause}, not {cause}): {r.message}"
        assert r.counterexample["params"] is not None and r.message
        assert r.reproduce.startswith(f"lmspec check {component} --target {mutant}") and "--replay" in r.reproduce


def test_every_invariant_has_a_mutant_that_it_catches():
    named = set().union(*(m[2] for m in MUTANTS))
    every = {inv.id for comp in components().values() for inv in comp.invariants}
    assert every - named == set(), "invariants no mutant is shown to break"


def test_correct_base_of_the_mutants_conforms():
    code, results = check("attention", f"{A}:correct")
    assert code == 0, [r.message for r in results if r.verdict != "pass"]


def test_cli_exits_1_and_its_reproduce_command_replays_the_counterexample():
    proc = run_cli("check", "attention", "--target", f"{A}:scale_one_over_e", "--invariant", "attention.reference.matches",
                   "--dtype", "float32", "--report", "/dev/stdout")
    assert proc.returncode == 1, proc.stderr
    assert "FAIL  attention.reference.matches [float32]" in proc.stdout
    line = next(l for l in proc.stdout.splitlines() if l.strip().startswith("counterexample:"))
    params = json.loads(line.split("counterexample:", 1)[1])
    replay = run_cli("check", "attention", "--target", f"{A}:scale_one_over_e", "--invariant", "attention.reference.matches",
                     "--dtype", "float32", "--replay", json.dumps(params))
    assert replay.returncode == 1 and "1 checked" in replay.stdout
    fixed = run_cli("check", "attention", "--target", "torch.nn.functional:scaled_dot_product_attention", "--invariant",
                    "attention.reference.matches", "--dtype", "float32", "--replay", json.dumps(params))
    assert fixed.returncode == 0, fixed.stdout
