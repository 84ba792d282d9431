"""Running invariants against a target: Hypothesis search and shrinking, verdicts, error statistics."""

from __future__ import annotations

import hashlib
import os
import json
import shlex
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import hypothesis
import torch
from hypothesis import given

from lmspec.spec import Component, Context, Invariant, Violation
from lmspec.spec.strategies import DEFAULT_SCALE, at_scale
from lmspec.spec.guard import DEFAULT_TIMEOUT_S, GuardedTarget, TargetUnsupported, global_state, restore_global_state

from . import isolation

from .loading import Target
from .profiles import build_settings

#: the feature gradient invariants require: a target declares it unsupported for an inference-only kernel
BACKWARD = "backward"

DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype_name(dtype: torch.dtype | None) -> str:
    """'float32' etc.; components with no dtype (tokenizers, formulas) run once under the name 'any'."""
    return "any" if dtype is None else str(dtype).replace("torch.", "")


@dataclass
class RunConfig:
    profile: str = "ci"
    max_examples: int | None = None
    seed: int | None = None
    device: str = "cpu"
    #: seconds per target call; None: from the size of the call's inputs (isolation.default_timeout)
    timeout_s: float | None = None
    options: dict[str, str] = field(default_factory=dict)
    #: run the target in a worker process (False: --in-process, for debugging; LMSPEC_IN_PROCESS=1 sets the default)
    isolate: bool = field(default_factory=lambda: os.environ.get("LMSPEC_IN_PROCESS") != "1")
    #: environment variables set for the run (`--env NAME=VALUE`), repeated in every reproduce line
    env: dict[str, str] = field(default_factory=dict)
    #: run the gradient invariants (those that require the feature "backward"); `--no-backward` skips them
    backward: bool = True
    #: the sizes examples are drawn at (spec/strategies.py SCALES; docs/scale.md); LMSPEC_SCALE sets the default
    scale: str = field(default_factory=lambda: os.environ.get("LMSPEC_SCALE", DEFAULT_SCALE))


@dataclass
class Result:
    """One invariant x dtype: the verdict and everything needed to understand or reproduce it."""

    invariant: str
    dtype: str
    verdict: str  # pass | fail | crash | timeout | unsupported | error
    kind: str
    statement: str
    examples: int = 0
    #: examples the target actually computed (not declined as unsupported)
    checked: int = 0
    max_abs_error: float | None = None
    mean_abs_error: float | None = None
    max_eps_error: float | None = None
    message: str | None = None
    #: for a fail: "violation" (the invariant's check), "raised", "timeout" or "mutated_input" (the guard around the target)
    cause: str | None = None
    counterexample: dict | None = None
    reproduce: str | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def reproduce_command(component: Component, target: Target, config: RunConfig, invariant: Invariant, dtype: str, params: dict) -> str:
    parts = ["lmspec", "check", component.name, "--target", target.path]
    if target.adapter:
        parts += ["--adapter", target.adapter]
    for key, value in sorted(config.options.items()):
        parts += ["--option", f"{key}={value}"]
    if config.device != "cpu":
        parts += ["--device", config.device]
    for key, value in sorted(config.env.items()):
        parts += ["--env", f"{key}={value}"]
    parts += ["--invariant", invariant.id] + (["--dtype", dtype] if dtype != "any" else [])
    parts += ["--replay", json.dumps(params, sort_keys=True)]
    return " ".join(shlex.quote(p) for p in parts)


def stable_seed(component: Component, invariant: Invariant, dtype: str) -> int:
    """The derandomized profiles' seed: every target meets the same examples, and they do not change when
    lmspec's own code changes (Hypothesis's default derives the seed from the test function's source)."""
    return int.from_bytes(hashlib.sha256(f"{component.name}|{invariant.id}|{dtype}".encode()).digest()[:8], "big")


def _unsupported_reason(invariant: Invariant, dtype: str, target: Target) -> str | None:
    if dtype in target.unsupported_dtypes:
        return f"target declares dtype {dtype} unsupported"
    missing = sorted(invariant.requires & target.unsupported_features)
    if missing:
        return f"target declares feature(s) {', '.join(missing)} unsupported"
    return None


class _SearchStopped(BaseException):
    """Ends a Hypothesis search early (not an Exception, so Hypothesis does not shrink it): the crash or hang
    budget is spent, and the smallest failing example found so far is the counterexample."""


#: examples that may crash or hang while Hypothesis shrinks one invariant's counterexample (each restarts a worker)
CRASH_BUDGET = 8


def _caller(component: Component, target: Target, config: RunConfig):
    """What a check calls: the target in its warm worker process, or (--in-process) guarded in this process."""
    if config.isolate and target.isolatable:
        return isolation.worker_for(target.path, component.name, target.adapter, config.timeout_s)
    return GuardedTarget(target.fn, timeout_s=config.timeout_s or DEFAULT_TIMEOUT_S, name=target.path)


def _within_bounds(params: dict, bounds: dict) -> bool:
    """A target's declared size limits (`__lmspec__ = {"max_sizes": {"E": 256}}`): examples beyond them are not drawn."""
    return all(not isinstance(params.get(k), (int, float)) or params[k] <= v for k, v in bounds.items())


def run_invariant(
    component: Component,
    invariant: Invariant,
    target: Target,
    dtype: torch.dtype | None,
    config: RunConfig,
    replay: dict | None = None,
    on_example: Callable[[int], None] | None = None,
) -> Result:
    """Search for a counterexample with Hypothesis (or replay one), and return the verdict."""
    name = dtype_name(dtype)
    result = Result(invariant.id, name, "pass", invariant.kind, invariant.statement)
    reason = _unsupported_reason(invariant, name, target)
    if reason:
        result.verdict, result.message = "unsupported", reason
        return result
    known = {o.name for o in component.options}
    implied = {k: v for k, v in target.implied_options.items() if k in known}  # an adapter may serve several components
    options = component.resolve_options({**implied, **config.options})
    caller = _caller(component, target, config)
    isolated = isinstance(caller, isolation.IsolatedTarget)
    baseline = global_state()
    errors: list = []
    last_failure: dict = {}
    unsupported: list[str] = []
    crashes = [0]
    started = time.perf_counter()

    def one_example(params: dict) -> None:
        result.examples += 1
        ctx = Context(target=caller, dtype=dtype, device=torch.device(config.device), options=options,
                      bound=component.bound)
        # A target that draws random numbers replays identically, and one that changed torch's global state (default
        # dtype, threads, grad mode, deterministic flags) does not change what the next example sees.
        if isolated:
            caller.reset(0)
        restore_global_state(baseline, seed=0)
        if ctx.device.type == "cuda":  # torch.manual_seed would also walk the CUDA generators: ~19 ms per example
            torch.cuda.manual_seed_all(0)
        try:
            invariant.check(ctx, params)
            result.checked += 1
        except TargetUnsupported as exc:
            unsupported.append(str(exc))
            hypothesis.reject()
        except Violation as violation:
            result.checked += 1
            last_failure.update(params=params, violation=violation)
            if violation.cause in ("crash", "timeout"):
                crashes[0] += 1
                if crashes[0] >= CRASH_BUDGET or (isolated and caller.has_hung):
                    raise _SearchStopped() from None
            raise
        finally:
            errors.extend(ctx.errors)
            if on_example:  # progress display: examples run so far for this invariant x dtype
                on_example(result.examples)

    def record_failure(violation: Violation, params: dict | None) -> None:
        result.verdict = violation.cause if violation.cause in ("crash", "timeout") else "fail"
        result.message = violation.message
        result.cause = violation.cause
        result.counterexample = {"params": params, "details": _jsonable(violation.details)}
        result.reproduce = reproduce_command(component, target, config, invariant, name, params)

    examples = invariant.examples
    if target.max_sizes:
        examples = examples.filter(lambda params: _within_bounds(params, target.max_sizes))
    try:
        if replay is not None:
            one_example(replay)
        else:
            test = given(examples)(one_example)
            settings = build_settings(config.profile, config.max_examples, invariant.budget)
            if config.seed is not None:
                test = hypothesis.seed(config.seed)(test)
            elif settings.derandomize:
                test = hypothesis.seed(stable_seed(component, invariant, name))(test)
            test = settings(test)
            test._hypothesis_internal_add_digest = f"{component.name}|{invariant.id}|{name}|{target.path}".encode()
            with at_scale(config.scale):
                test()
    except _SearchStopped:
        record_failure(last_failure["violation"], last_failure["params"])
    except Violation as violation:
        record_failure(violation, last_failure.get("params", replay))
    except (hypothesis.errors.Unsatisfiable, hypothesis.errors.FailedHealthCheck, TargetUnsupported) as exc:
        if unsupported or isinstance(exc, TargetUnsupported):
            result.verdict = "unsupported"
            reasons = sorted(set(unsupported or [str(exc)]))
            result.message = f"the target declined every example ({'; '.join(reasons)[:300]})"
        else:
            result.verdict, result.message = "error", f"no example could be drawn: {exc}"
    except hypothesis.errors.FlakyFailure as exc:
        result.verdict = "fail"
        result.message = f"flaky: the target failed on an example but not when it was replayed ({exc})"
        if last_failure:
            result.counterexample = {"params": last_failure["params"], "details": _jsonable(last_failure["violation"].details)}
    except Exception as exc:  # a bug in a check or strategy: the invariant could not be evaluated
        result.verdict = "error"
        result.message = f"the check itself raised {type(exc).__name__}: {exc}"
    restore_global_state(baseline, seed=0)  # in-process, what the target changed in the last example is undone too
    if result.verdict == "pass" and result.checked == 0:
        result.verdict = "unsupported"
        reasons = sorted(set(unsupported)) or ["no example was checked"]
        result.message = f"the target declined every example ({'; '.join(reasons)[:300]})"
    result.seconds = round(time.perf_counter() - started, 3)
    finite = [e for e in errors if e.max_abs == e.max_abs]
    if finite:
        result.max_abs_error = max(e.max_abs for e in finite)
        result.mean_abs_error = sum(e.mean_abs for e in finite) / len(finite)
        result.max_eps_error = max(e.max_eps for e in finite)
    return result


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:
        return "nan"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def selected_dtypes(component: Component, invariant: Invariant, wanted: Iterable[str] | None) -> list[torch.dtype | None]:
    dtypes = invariant.dtypes or component.dtypes
    if not dtypes:
        return [None]
    if wanted:
        wanted = set(wanted)
        dtypes = tuple(d for d in dtypes if dtype_name(d) in wanted)
    return list(dtypes)


def run_component(
    component: Component,
    target: Target,
    config: RunConfig,
    dtypes: Iterable[str] | None = None,
    only: Iterable[str] | None = None,
    replay: dict | None = None,
    on_result=None,
    on_example: Callable[[int], None] | None = None,
) -> list[Result]:
    """Every selected invariant x dtype of `component` against `target`."""
    results = []
    for invariant in selected_invariants(component, config, only):
        for dtype in selected_dtypes(component, invariant, dtypes):
            result = run_invariant(component, invariant, target, dtype, config, replay=replay, on_example=on_example)
            results.append(result)
            if on_result:
                on_result(result)
    return results


def selected_invariants(component: Component, config: RunConfig, only: Iterable[str] | None = None) -> list[Invariant]:
    """The component's invariants named in `only` (all when empty), without the gradient ones under --no-backward."""
    only = set(only or ())
    return [inv for inv in component.invariants
            if (not only or inv.id in only) and (config.backward or BACKWARD not in inv.requires)]


def exit_code(results: list[Result]) -> int:
    """0: every invariant holds; 1: any violation, crash or timeout; 2: a check errored, or nothing at all could be
    evaluated."""
    verdicts = {r.verdict for r in results}
    if verdicts & {"fail", "crash", "timeout"}:
        return 1
    if "error" in verdicts or "pass" not in verdicts:
        return 2
    return 0
