"""pytest plugin: `pytest --lmspec-target COMPONENT=MODULE:ATTR` runs every invariant x dtype as a test item,
so JUnit output, `-n` (pytest-xdist) and `-k` work as for any test.

Also registers the Hypothesis profiles `ci`, `dev` and `fuzz`; `ci` is loaded unless another is chosen.
"""

from __future__ import annotations

import json

import pytest

from . import profiles


def pytest_addoption(parser):
    group = parser.getgroup("lmspec", "lmspec conformance")
    group.addoption("--lmspec-target", action="append", default=[], metavar="COMPONENT=MODULE:ATTR",
                    help="check this target against the component's invariants (repeatable)")
    group.addoption("--lmspec-adapter", action="append", default=[], metavar="COMPONENT=ADAPTER",
                    help="adapter for a component's target")
    group.addoption("--lmspec-option", action="append", default=[], metavar="KEY=VALUE", help="convention option")
    group.addoption("--lmspec-dtype", action="append", default=[], help="only these dtypes (repeatable)")
    group.addoption("--lmspec-profile", default="ci", choices=sorted(profiles.PROFILES))
    group.addoption("--lmspec-device", default="cpu")


def pytest_configure(config):
    config.addinivalue_line("markers", "lmspec: an lmspec invariant checked against a target")
    profiles.register()
    from hypothesis import settings

    if not config.getoption("--hypothesis-profile", default=None):
        settings.load_profile("ci")


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        if "=" not in item:
            raise pytest.UsageError(f"{flag} {item!r} is not KEY=VALUE")
        key, value = item.split("=", 1)
        out[key] = value
    return out


class InvariantItem(pytest.Item):
    def __init__(self, *, component, invariant, dtype, target, config_obj, **kwargs):
        super().__init__(**kwargs)
        self.component, self.invariant, self.dtype = component, invariant, dtype
        self.target, self.run_config = target, config_obj
        self.add_marker(pytest.mark.lmspec)

    def runtest(self):
        from .runner import run_invariant

        result = run_invariant(self.component, self.invariant, self.target, self.dtype, self.run_config)
        self.user_properties.append(("verdict", result.verdict))
        if result.verdict == "unsupported":
            pytest.skip(result.message)
        if result.verdict != "pass":
            raise InvariantFailed(result)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, InvariantFailed):
            r = excinfo.value.result
            lines = [f"{r.verdict}: {r.invariant} [{r.dtype}]: {r.message}"]
            if r.counterexample:
                lines.append("counterexample: " + json.dumps(r.counterexample["params"], sort_keys=True))
            if r.reproduce:
                lines.append("reproduce: " + r.reproduce)
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.target.path, None, f"{self.invariant.id}[{self.dtype}]"


class InvariantFailed(Exception):
    def __init__(self, result):
        super().__init__(result.message)
        self.result = result


def pytest_collection_modifyitems(session, config, items):
    specs = _pairs(config.getoption("--lmspec-target"), "--lmspec-target")
    if not specs:
        return
    from lmspec.spec import get_component

    from .loading import LoadError, load_target
    from .runner import RunConfig, dtype_name, selected_dtypes

    adapters = _pairs(config.getoption("--lmspec-adapter"), "--lmspec-adapter")
    options = _pairs(config.getoption("--lmspec-option"), "--lmspec-option")
    run_config = RunConfig(profile=config.getoption("--lmspec-profile"), device=config.getoption("--lmspec-device"), options=options)
    for name, path in specs.items():
        try:
            component = get_component(name)
            component.resolve_options(options)
            target = load_target(path, name, adapters.get(name))
        except (KeyError, ValueError, LoadError) as exc:
            raise pytest.UsageError(f"lmspec: {exc}") from exc
        for invariant in component.invariants:
            for dtype in selected_dtypes(component, invariant, config.getoption("--lmspec-dtype")):
                items.append(InvariantItem.from_parent(
                    session, name=f"lmspec[{name}]::{invariant.id}[{dtype_name(dtype)}]", component=component,
                    invariant=invariant, dtype=dtype, target=target, config_obj=run_config))
