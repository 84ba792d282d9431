"""The `lmspec` command: list components, check a target, regenerate the docs catalog.

Exit codes of `check`: 0 every invariant holds, 1 any violation, 2 could not run. Every reason it could not run
(a usage error, an unknown name, a target of the wrong kind for its adapter, a device torch cannot use, a report
that cannot be written) is one line on stderr, `lmspec: error: ...`, found before anything runs; unknown names
come with the nearest known ones.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
from collections import Counter

from lmspec.spec import components, get_component
from lmspec.spec.checks import eps_units
from lmspec.spec.strategies import SCALES

from . import catalog, environment, estimate, progress
from .loading import LoadError, all_adapters, check_device, did_you_mean, load_target, unknown
from .report import json_report, write_json, write_junit
from .runner import (DTYPES, Result, RunConfig, dtype_name, exit_code, run_component, selected_dtypes,
                     selected_invariants)

SYMBOL = {"pass": "PASS", "fail": "FAIL", "unsupported": "UNSUP", "error": "ERROR"}
VERDICTS = ("pass", "fail", "unsupported", "error")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with the nearest choices for an invalid one) and exit code 2."""

    def error(self, message: str):
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            message += did_you_mean(choice.group(1), [c.strip(" '") for c in choice.group(2).split(",")])
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lmspec", description="Executable spec and conformance suite for LLM building blocks.")
    sub = parser.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list components, signatures, references and invariants")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--adapters", action="store_true", help="list the adapters for known libraries instead")

    check = sub.add_parser("check", help="check a target against a component's invariants")
    check.add_argument("component")
    check.add_argument("--target", required=True, help="MODULE:ATTR of the implementation to check")
    check.add_argument("--adapter", help="adapt a known library's signature to the canonical one")
    check.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="choose a convention")
    check.add_argument("--dtype", action="append", metavar="{" + ",".join(sorted(DTYPES)) + "}",
                       help="check only these dtypes (repeatable)")
    check.add_argument("--invariant", action="append", help="check only these invariant ids (repeatable)")
    check.add_argument("--profile", default="ci", choices=["ci", "dev", "fuzz"])
    check.add_argument("--scale", choices=SCALES, default=None,
                       help="sizes to draw: small (one tile), kernel (also tile boundaries and real models' sizes one "
                       "dimension at a time; the default), production (real sizes in every dimension; GPU, fuzzing); "
                       "docs/scale.md")
    check.add_argument("--no-backward", action="store_true",
                       help="skip the gradient invariants (an inference-only kernel declares 'backward' unsupported)")
    check.add_argument("--max-examples", type=int)
    check.add_argument("--seed", type=int)
    check.add_argument("--device", default="cpu", help="device the target's inputs are placed on (cpu, cuda, ...)")
    check.add_argument("--timeout", type=float, default=None,
                       help="seconds allowed per target call (default: 30 s plus 1 s per million input elements); after "
                       "a target has hung once, later calls get 1 s")
    check.add_argument("--in-process", action="store_true",
                       help="run the target in this process, not a worker (for debugging: a crash ends the check, and "
                       "the target can reach the harness)")
    check.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                       help="set an environment variable before the target is imported (repeatable; recorded in the "
                       "report and repeated in every reproduce line), e.g. --env TRITON_INTERPRET=1")
    check.add_argument("--replay", help="run exactly one example, given as the JSON printed with a counterexample")
    check.add_argument("--report", metavar="FILE.json")
    check.add_argument("--junit", metavar="FILE.xml")
    check.add_argument("-q", "--quiet", action="store_true",
                       help="print failures and the summary only (and no progress line)")

    cat = sub.add_parser("catalog", help="write docs/catalog.md from spec/ (or check it is current)")
    cat.add_argument("--output", default="docs/catalog.md")
    cat.add_argument("--check", action="store_true", help="exit 1 if the file differs from what spec/ generates")
    estimate.add_parser(sub)
    sub.add_parser("doctor",
                   help="print the versions of torch, transformers, ... and whether each is in the verified range")
    return parser


def cmd_doctor(args: argparse.Namespace) -> int:
    """Exit 0 when every installed watched package is in its verified range, 1 otherwise."""
    lines, ok = environment.doctor_lines()
    print("\n".join(lines))
    return 0 if ok else 1


def _cannot_run(reason: str) -> int:
    print(f"lmspec: error: {' '.join(str(reason).split())}", file=sys.stderr)  # always one line
    return 2


def _pairs(items: list[str], flag: str, what: str = "KEY=VALUE") -> dict[str, str]:
    """`KEY=VALUE` arguments as a dict; LoadError for one without `=` or with an empty key."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise LoadError(f"{flag} {item!r} is not {what}")
        out[key] = value
    return out


def _writable(flag: str, path: str) -> str | None:
    """Why `path` cannot be written (so a report is not lost after the run), or None."""
    full = os.path.abspath(path)
    folder = os.path.dirname(full)
    if os.path.isdir(full):
        return f"cannot write {flag} {path}: it is a directory"
    if not os.path.isdir(folder):
        return f"cannot write {flag} {path}: directory {os.path.dirname(path) or folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(full) and not os.access(full, os.W_OK)):
        return f"cannot write {flag} {path}: permission denied"
    return None


def _adapters_data() -> list[dict]:
    return [{"name": a.name, "components": list(a.components), "doc": a.doc,
             "unsupported_dtypes": sorted(a.unsupported_dtypes), "unsupported_features": sorted(a.unsupported_features),
             "implied_options": dict(a.implied_options)}
            for a in sorted(all_adapters().values(), key=lambda a: a.name)]


def cmd_list(args) -> int:
    if args.adapters:
        data = _adapters_data()
        if args.json:
            print(json.dumps(data, indent=2))
            return 0
        for a in data:
            print(f"{a['name']}  [{', '.join(a['components'])}]")
            print(f"  {a['doc']}")
        return 0
    data = catalog.as_data(components())
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for comp in data:
        print(f"{comp['name']}  [{comp['family']}]")
        print(f"  signature: {comp['signature']}")
        print(f"  reference: {comp['reference']}")
        print(f"  dtypes:    {', '.join(comp['dtypes'])}")
        for opt in comp["options"]:
            print(f"  option:    {opt['name']}={'|'.join(opt['choices'])} (default {opt['default']})")
        for inv in comp["invariants"]:
            print(f"    {inv['id']} ({inv['kind']}): {inv['statement']}")
        print()
    return 0


def _print_result(r: Result, quiet: bool) -> None:
    if quiet and r.verdict in ("pass", "unsupported"):
        return
    # the largest error over every example run (the counterexample below reports its own example's error)
    err = (f", max err over examples {r.max_abs_error:.3g} ({eps_units(r.max_eps_error)})"
           if r.max_abs_error is not None else "")
    declined = f" ({r.examples - r.checked} declined)" if r.checked < r.examples else ""
    line = f"{SYMBOL.get(r.verdict, r.verdict.upper()):5} {r.invariant} [{r.dtype}]  {r.checked} checked{declined}{err}"
    print(line)
    if r.verdict != "pass" and r.message:
        print(f"      {r.message}")
    if r.counterexample:
        print(f"      counterexample: {json.dumps(r.counterexample['params'], sort_keys=True)}")
    if r.reproduce:
        print(f"      reproduce: {r.reproduce}")
    sys.stdout.flush()


def _validate(args, component) -> tuple[dict, dict, dict | None]:
    """Everything `check` can find wrong before running: (options, env, replay), or LoadError with the reason."""
    options = _pairs(args.option, "--option")
    known_options = {o.name: o for o in component.options}
    for key, value in options.items():
        if key not in known_options:
            names = ", ".join(sorted(known_options)) or "none"
            raise LoadError(unknown("option", key, known_options, f"{component.name} has options: {names}"))
        choices = known_options[key].choices
        if value not in choices:
            raise LoadError(f"option {key}={value!r} not in {tuple(choices)}{did_you_mean(value, choices)}")
    component.resolve_options(options)  # the component's own check, should it ever add one
    known = [inv.id for inv in component.invariants]
    for name in args.invariant or ():
        if name not in known:
            raise LoadError(unknown("invariant", name, known, f"`lmspec list` shows {component.name}'s"))
    for name in args.dtype or ():
        if name not in DTYPES:
            raise LoadError(unknown("dtype", name, DTYPES, f"known: {', '.join(DTYPES)}"))
    if args.dtype:
        chosen = [inv for inv in component.invariants if not args.invariant or inv.id in args.invariant]
        available = {dtype_name(d) for inv in chosen for d in (inv.dtypes or component.dtypes)}
        if available and not available & set(args.dtype):
            raise LoadError(f"{component.name} is checked in {', '.join(sorted(available))}; "
                            f"--dtype {' '.join(args.dtype)} selects none of them")
    replay = None
    if args.replay:
        try:
            replay = json.loads(args.replay)
        except json.JSONDecodeError as exc:
            raise LoadError(f"--replay is not valid JSON: {exc}") from None
        if not isinstance(replay, dict) or not args.invariant:
            raise LoadError("--replay takes the JSON object of a counterexample and needs --invariant")
    if args.max_examples is not None and args.max_examples < 1:
        raise LoadError(f"--max-examples {args.max_examples}: at least 1 example is needed")
    if args.timeout is not None and not args.timeout > 0:
        raise LoadError(f"--timeout {args.timeout}: seconds per target call must be more than 0")
    check_device(args.device)
    for flag, path in (("--report", args.report), ("--junit", args.junit)):
        reason = path and _writable(flag, path)
        if reason:
            raise LoadError(reason)
    env = _pairs(args.env, "--env", "NAME=VALUE")
    return options, env, replay


def cmd_check(args) -> int:
    try:
        component = get_component(args.component)
    except KeyError:
        return _cannot_run(unknown("component", args.component, components(), "`lmspec list` shows them"))
    try:
        options, env, replay = _validate(args, component)
    except (LoadError, ValueError) as exc:
        return _cannot_run(str(exc))
    os.environ.update(env)  # before the target (and the worker processes that run it) are imported
    try:
        target = load_target(args.target, component.name, args.adapter)
    except LoadError as exc:
        return _cannot_run(str(exc))
    config = RunConfig(profile=args.profile, max_examples=args.max_examples, seed=args.seed, device=args.device,
                       timeout_s=args.timeout, options=options, env=env)
    if args.scale:
        config.scale = args.scale
    config.backward = not args.no_backward
    if args.in_process:
        config.isolate = False
    identity = target.identity(args.device)
    print(f"lmspec check {component.name}: {args.target}" + (f" via adapter {args.adapter}" if args.adapter else "")
          + f" (torch {identity['torch_version']}, {args.device}, profile {args.profile}, scale {config.scale})")
    sys.stdout.flush()

    def print_result(r: Result) -> None:
        _print_result(r, args.quiet)

    run = dict(dtypes=args.dtype, only=args.invariant, replay=replay, on_result=print_result)
    if progress.wanted(args.quiet):
        chosen = selected_invariants(component, config, args.invariant)
        plan = [(inv.id, dtype_name(d)) for inv in chosen for d in selected_dtypes(component, inv, args.dtype)]
        with progress.CheckProgress(component.name, plan) as shown:
            results = run_component(component, target, config, **{**run, "on_result": shown.result(print_result)},
                                    on_example=shown.example)
    else:
        results = run_component(component, target, config, **run)
    code = exit_code(results)
    counts = Counter(r.verdict for r in results)
    others = "".join(f", {n} {v}" for v, n in sorted(counts.items()) if v not in VERDICTS)  # e.g. crash, timeout
    checked = sum(r.checked for r in results)
    print(f"summary: {counts['pass']} pass, {counts['fail']} fail, {counts['unsupported']} unsupported, "
          f"{counts['error']} error{others}; {checked} examples checked -> exit {code}")
    if code == 2 and counts["error"] == 0:
        print("lmspec: error: no invariant could be evaluated (every one unsupported)", file=sys.stderr)
    run_config = {"profile": args.profile, "scale": config.scale, "max_examples": args.max_examples, "seed": args.seed,
                  "options": options, "dtypes": args.dtype, "invariants": args.invariant, "timeout_s": args.timeout, "env": env,
                  "isolated": config.isolate}
    try:
        if args.report:
            write_json(args.report, json_report(component.name, identity, run_config, results, code))
        if args.junit:
            write_junit(args.junit, component.name, identity, results)
    except OSError as exc:  # checked writable before the run; it went away since
        return _cannot_run(f"cannot write the report: {exc}")
    return code


def cmd_catalog(args) -> int:
    text = catalog.render(components())
    if args.check:
        try:
            current = open(args.output, encoding="utf-8").read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{args.output} is out of date: run `lmspec catalog`", file=sys.stderr)
            return 1
        print(f"{args.output} is current")
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `lmspec list | head` ends quietly
    args = _parser().parse_args(argv)
    commands = {"list": cmd_list, "check": cmd_check, "catalog": cmd_catalog, "estimate": estimate.run,
                "doctor": cmd_doctor}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
