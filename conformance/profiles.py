"""Hypothesis profiles: `ci` (derandomized, bounded; the default under pytest), `dev`, `fuzz`.

The example database lives in `.hypothesis/` so failures found by `dev` or `fuzz` replay first next time.
"""

from __future__ import annotations

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILES = {
    "ci": dict(max_examples=12, derandomize=True, database=None),
    "dev": dict(max_examples=60),
    "fuzz": dict(max_examples=5000),
}

_SUPPRESSED = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.differing_executors]


def build_settings(profile: str, max_examples: int | None = None, budget: float = 1.0) -> settings:
    """Settings for one invariant run: the profile's budget scaled by the invariant's share."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    base = dict(PROFILES[profile])
    base.setdefault("database", DirectoryBasedExampleDatabase(".hypothesis/examples"))
    n = max_examples if max_examples is not None else base["max_examples"]
    base["max_examples"] = max(1, int(round(n * budget)))
    # no `explain` phase: it replays each failure ~100 times to annotate lines, and our counterexample is the
    # shrunk parameter dict, printed with a --replay command.
    phases = [p for p in Phase if p != Phase.explain]
    return settings(deadline=None, phases=phases, suppress_health_check=_SUPPRESSED, print_blob=False, report_multiple_bugs=False, **base)


def register() -> None:
    """Register the profiles with Hypothesis under their own names (for `--hypothesis-profile`)."""
    for name in PROFILES:
        settings.register_profile(name, build_settings(name))
