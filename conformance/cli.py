"""The `lmspec` command: list components, check a target, regenerate the docs catalog.

Exit codes of `check`: 0 every invariant holds, 1 any violation, 2 could not run (one-line reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys

from lmspec.spec import components, get_component

from . import catalog, environment, estimate
from .loading import LoadError, all_adapters, load_target
from .report import json_report, write_json, write_junit
from .runner import DTYPES, Result, RunConfig, exit_code, run_component

SYMBOL = {"pass": "PASS", "fail": "FAIL", "unsupported": "UNSUP", "error": "ERROR"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lmspec", description="Executable spec and conformance suite for LLM building blocks.")
    sub = parser.add_subparsers(dest="command", required=True)

    ls = sub.add_parser("list", help="list components, signatures, references and invariants")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.add_argument("--adapters", action="store_true", help="list the adapters for known libraries instead")

    check = sub.add_parser("check", help="check a target against a component's invariants")
    check.add_argument("component")
    check.add_argument("--target", required=True, help="MODULE:ATTR of the implementation to check")
    check.add_argument("--adapter", help="adapt a known library's signature to the canonical one")
    check.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="choose a convention")
    check.add_argument("--dtype", action="append", choices=sorted(DTYPES), help="check only these dtypes (repeatable)")
    check.add_argument("--invariant", action="append", help="check only these invariant ids (repeatable)")
    check.add_argument("--profile", default="ci", choices=["ci", "dev", "fuzz"])
    check.add_argument("--max-examples", type=int)
    check.add_argument("--seed", type=int)
    check.add_argument("--device", default="cpu", help="device the target's inputs are placed on (cpu, cuda, ...)")
    check.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per target call")
    check.add_argument("--replay", help="run exactly one example, given as the JSON printed with a counterexample")
    check.add_argument("--report", metavar="FILE.json")
    check.add_argument("--junit", metavar="FILE.xml")
    check.add_argument("-q", "--quiet", action="store_true", help="print failures and the summary only")

    cat = sub.add_parser("catalog", help="write docs/catalog.md from spec/ (or check it is current)")
    cat.add_argument("--output", default="docs/catalog.md")
    cat.add_argument("--check", action="store_true", help="exit 1 if the file differs from what spec/ generates")
    estimate.add_parser(sub)
    sub.add_parser("doctor", help="print the versions of torch, transformers, ... and whether each is in the verified range")
    return parser


def cmd_doctor(args: argparse.Namespace) -> int:
    """Exit 0 when every installed watched package is in its verified range, 1 otherwise."""
    lines, ok = environment.doctor_lines()
    print("\n".join(lines))
    return 0 if ok else 1


def _cannot_run(reason: str) -> int:
    print(f"lmspec: error: {reason}", file=sys.stderr)
    return 2


def _adapters_data() -> list[dict]:
    return [{"name": a.name, "components": list(a.components), "doc": a.doc, "unsupported_dtypes": sorted(a.unsupported_dtypes),
             "unsupported_features": sorted(a.unsupported_features), "implied_options": dict(a.implied_options)}
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
    err = f", max err {r.max_abs_error:.3g} ({r.max_eps_error:.2f} eps)" if r.max_abs_error is not None else ""
    line = f"{SYMBOL[r.verdict]:5} {r.invariant} [{r.dtype}]  {r.examples} examples{err}"
    print(line)
    if r.verdict != "pass" and r.message:
        print(f"      {r.message}")
    if r.counterexample:
        print(f"      counterexample: {json.dumps(r.counterexample['params'], sort_keys=True)}")
    if r.reproduce:
        print(f"      reproduce: {r.reproduce}")
    sys.stdout.flush()


def cmd_check(args) -> int:
    try:
        component = get_component(args.component)
    except KeyError as exc:
        return _cannot_run(exc.args[0])
    options = {}
    for item in args.option:
        if "=" not in item:
            return _cannot_run(f"--option {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        options[key] = value
    try:
        component.resolve_options(options)
    except ValueError as exc:
        return _cannot_run(str(exc))
    known = {inv.id for inv in component.invariants}
    unknown = sorted(set(args.invariant or ()) - known)
    if unknown:
        return _cannot_run(f"unknown invariant(s) for {component.name}: {', '.join(unknown)}")
    replay = None
    if args.replay:
        try:
            replay = json.loads(args.replay)
        except json.JSONDecodeError as exc:
            return _cannot_run(f"--replay is not valid JSON: {exc}")
        if not isinstance(replay, dict) or not args.invariant:
            return _cannot_run("--replay takes the JSON object of a counterexample and needs --invariant")
    try:
        target = load_target(args.target, component.name, args.adapter)
    except LoadError as exc:
        return _cannot_run(str(exc))
    config = RunConfig(profile=args.profile, max_examples=args.max_examples, seed=args.seed, device=args.device,
                       timeout_s=args.timeout, options=options)
    identity = target.identity(args.device)
    print(f"lmspec check {component.name}: {args.target}" + (f" via adapter {args.adapter}" if args.adapter else "")
          + f" (torch {identity['torch_version']}, {args.device}, profile {args.profile})")
    results = run_component(component, target, config, dtypes=args.dtype, only=args.invariant, replay=replay,
                            on_result=lambda r: _print_result(r, args.quiet))
    code = exit_code(results)
    counts = {v: sum(r.verdict == v for r in results) for v in SYMBOL}
    print(f"summary: {counts['pass']} pass, {counts['fail']} fail, {counts['unsupported']} unsupported, {counts['error']} error"
          f" -> exit {code}")
    if code == 2 and counts["error"] == 0:
        print("lmspec: error: no invariant could be evaluated (every one unsupported)", file=sys.stderr)
    run_config = {"profile": args.profile, "max_examples": args.max_examples, "seed": args.seed, "options": options,
                  "dtypes": args.dtype, "invariants": args.invariant, "timeout_s": args.timeout}
    if args.report:
        write_json(args.report, json_report(component.name, identity, run_config, results, code))
    if args.junit:
        write_junit(args.junit, component.name, identity, results)
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
    commands = {"list": cmd_list, "check": cmd_check, "catalog": cmd_catalog, "estimate": estimate.run, "doctor": cmd_doctor}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
