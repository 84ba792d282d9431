"""Reports: the JSON report (schema in docs/report-schema.md) and JUnit XML."""

from __future__ import annotations

import json
import platform
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from . import environment
from .runner import Result

SCHEMA_VERSION = 1


def json_report(component: str, identity: dict, config: dict, results: list[Result], exit_code: int) -> dict:
    counts = {v: sum(r.verdict == v for r in results) for v in ("pass", "fail", "crash", "timeout", "unsupported", "error")}
    counts["examples_checked"] = sum(r.checked for r in results)
    return {
        "schema_version": SCHEMA_VERSION,
        "component": component,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target": identity,
        "python": platform.python_version(),
        "environment": environment.identity(),
        "config": config,
        "summary": {**counts, "exit_code": exit_code},
        "results": [r.as_dict() for r in results],
    }


def write_json(path: str, report: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_clean(report), f, indent=2, allow_nan=False, default=repr)
        f.write("\n")


def _clean(report):
    """JSON has no inf/nan: write them as strings."""
    if isinstance(report, dict):
        return {k: _clean(v) for k, v in report.items()}
    if isinstance(report, list):
        return [_clean(v) for v in report]
    if isinstance(report, float) and (report != report or report in (float("inf"), float("-inf"))):
        return str(report)
    return report


def write_junit(path: str, component: str, identity: dict, results: list[Result]) -> None:
    suite = ET.Element(
        "testsuite",
        name=f"lmspec.{component}",
        tests=str(len(results)),
        failures=str(sum(r.verdict in ("fail", "crash", "timeout") for r in results)),
        errors=str(sum(r.verdict == "error" for r in results)),
        skipped=str(sum(r.verdict == "unsupported" for r in results)),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for key, value in identity.items():
        ET.SubElement(props, "property", name=key, value=str(value))
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"lmspec.{component}", name=f"{r.invariant}[{r.dtype}]", time=f"{r.seconds:.3f}")
        if r.verdict in ("fail", "crash", "timeout"):
            node = ET.SubElement(case, "failure", message=r.message or "")
            node.text = json.dumps(_clean(r.counterexample), indent=2) + f"\nreproduce: {r.reproduce}"
        elif r.verdict == "error":
            ET.SubElement(case, "error", message=r.message or "")
        elif r.verdict == "unsupported":
            ET.SubElement(case, "skipped", message=r.message or "unsupported")
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
