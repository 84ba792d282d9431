"""The versions lmspec runs with, and whether each lies in the range the suite is verified on.

The verified ranges are lmspec's own requirements (pyproject.toml, read back from the installed metadata), and
constraints.txt pins the one set the suite last passed with. `lmspec doctor` prints them; every JSON report
records them beside the target's identity, so a verdict can be traced to the library versions that produced it.
"""

from __future__ import annotations

import platform
import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

#: what a verdict may depend on: the numerics (torch), the search (hypothesis), the libraries checked against.
WATCHED = ("torch", "transformers", "tokenizers", "tiktoken", "sentencepiece", "hypothesis", "numpy", "jaxtyping",
           "beartype", "regex")


def verified_ranges() -> dict[str, str]:
    """Each watched package's specifier from lmspec's requirements (extras included), e.g. '<5.26,>=5.23'."""
    try:
        requirements = metadata.requires("lmspec") or []
    except metadata.PackageNotFoundError:
        requirements = []
    ranges = {}
    for line in requirements:
        req = Requirement(line)
        name = req.name.lower()
        if name in WATCHED and str(req.specifier):
            ranges[name] = ",".join(sorted((str(s) for s in req.specifier), key=lambda s: not s.startswith(">")))
    return ranges


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, dict]:
    """{package: {"version": str | None, "verified": specifier | None, "in_range": bool | None}}; in_range is None
    where the package is absent or lmspec states no range for it."""
    ranges = verified_ranges()
    found = {}
    for name in WATCHED:
        version, spec = _installed(name), ranges.get(name)
        in_range = None
        if version is not None and spec is not None:
            try:
                in_range = Requirement(f"{name}{spec}").specifier.contains(Version(version), prereleases=True)
            except InvalidVersion:
                in_range = False
        found[name] = {"version": version, "verified": spec, "in_range": in_range}
    return found


def identity() -> dict:
    """lmspec's own version, Python's, and the watched packages' (what the JSON report records)."""
    return {"lmspec": _installed("lmspec"), "python": platform.python_version(),
            "packages": {name: info["version"] for name, info in versions().items()}}


def doctor_lines() -> tuple[list[str], bool]:
    """The table `lmspec doctor` prints, and whether every installed watched package lies in its verified range."""
    rows = versions()
    lines = [f"lmspec {_installed('lmspec') or '(not installed)'} on Python {platform.python_version()}",
             f"{'package':<14} {'installed':<16} {'verified range':<20} status"]
    ok = True
    for name, info in rows.items():
        if info["version"] is None:
            status = "not installed" + (" (optional)" if name in ("transformers", "tokenizers", "tiktoken", "sentencepiece")
                                        else "")
        elif info["in_range"] is None:
            status = "no range stated"
        elif info["in_range"]:
            status = "ok"
        else:
            status, ok = "OUTSIDE the verified range", False
        lines.append(f"{name:<14} {info['version'] or '-':<16} {info['verified'] or '-':<20} {status}")
    if not ok:
        lines.append("Versions outside the verified range may change verdicts; install with -c constraints.txt (README).")
    return lines, ok


def short(version: str | None) -> str | None:
    """'2.13.0+cpu' -> '2.13.0' (for messages)."""
    return None if version is None else re.sub(r"\+.*$", "", version)
