"""pytest plugin: `pytest --lmspec-target COMPONENT=MODULE:ATTR` runs every invariant x dtype as a test item,
so JUnit output, `-n` (pytest-xdist) and `-k` work as for any test.

With `--lmspec-target` the run collects the lmspec items only: not the project's own tests (`testpaths`, or paths
given on the command line), so `python -m pytest --lmspec-target attention=mykernels:attention` from a checkout
checks the target and nothing else, and the header counts them ("collected 48 items / 44 deselected / 4 selected"
with `-k`). The items come from one collector that stands in for the directory pytest would have searched.

Also registers the Hypothesis profiles `ci`, `dev` and `fuzz`; `ci` is loaded unless another is chosen.
"""

from __future__ import annotations

import json
import os

import pytest

from . import profiles

_TARGETS = pytest.StashKey[list]()


def pytest_addoption(parser):
    group = parser.getgroup("lmspec", "lmspec conformance")
    group.addoption("--lmspec-target", action="append", default=[], metavar="COMPONENT=MODULE:ATTR",
                    help="check this target against the component's invariants (repeatable); "
                    "only lmspec items are collected then")
    group.addoption("--lmspec-adapter", action="append", default=[], metavar="COMPONENT=ADAPTER",
                    help="adapter for a component's target")
    group.addoption("--lmspec-option", action="append", default=[], metavar="KEY=VALUE", help="convention option")
    group.addoption("--lmspec-dtype", action="append", default=[], help="only these dtypes (repeatable)")
    group.addoption("--lmspec-profile", default="ci", choices=sorted(profiles.PROFILES))
    group.addoption("--lmspec-device", default="cpu")
    group.addoption("--lmspec-no-backward", action="store_true", help="skip the gradient invariants")
    group.addoption("--lmspec-scale", default=None, help="sizes to draw: small, kernel or production (docs/scale.md)")
    group.addoption("--lmspec-env", action="append", default=[], metavar="NAME=VALUE",
                    help="set an environment variable before the targets are imported (repeatable)")


def pytest_configure(config):
    config.addinivalue_line("markers", "lmspec: an lmspec invariant checked against a target")
    profiles.register()
    from hypothesis import settings

    if not config.getoption("--hypothesis-profile", default=None):
        settings.load_profile("ci")
    if config.getoption("--lmspec-target"):
        config.stash[_TARGETS] = _load(config)
        # collect from one directory, which pytest_collect_directory below answers with the lmspec items: the
        # confcutdir (the rootdir unless given), so that it is the only path pytest walks (none of its parents)
        start = config.known_args_namespace.confcutdir or str(config.rootpath)
        config.args = [str(start)]
        config.args_source = pytest.Config.ArgsSource.INVOCATION_DIR


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise pytest.UsageError(f"{flag} {item!r} is not KEY=VALUE")
        out[key] = value
    return out


def _load(config) -> list[tuple]:
    """(component, target, dtypes) for each --lmspec-target, everything checked before any item runs; a usage error
    (exit 4, one line) for an unknown name, a target that cannot be loaded or a device torch cannot use."""
    from lmspec.spec import components, get_component

    from .loading import LoadError, check_device, load_target, unknown
    from lmspec.spec.strategies import SCALES

    from .runner import DTYPES, RunConfig

    specs = _pairs(config.getoption("--lmspec-target"), "--lmspec-target")
    adapters = _pairs(config.getoption("--lmspec-adapter"), "--lmspec-adapter")
    options = _pairs(config.getoption("--lmspec-option"), "--lmspec-option")
    env = _pairs(config.getoption("--lmspec-env"), "--lmspec-env")
    device = config.getoption("--lmspec-device")
    dtypes = config.getoption("--lmspec-dtype")
    for name in list(adapters) + list(specs):
        if name not in components():
            raise pytest.UsageError(f"lmspec: {unknown('component', name, components(), '`lmspec list` shows them')}")
    for name in dtypes:
        if name not in DTYPES:
            raise pytest.UsageError(f"lmspec: {unknown('dtype', name, DTYPES, 'known: ' + ', '.join(DTYPES))}")
    try:
        check_device(device)
    except LoadError as exc:
        raise pytest.UsageError(f"lmspec: --lmspec-device: {exc}") from None
    os.environ.update(env)  # before the targets are imported
    run_config = RunConfig(profile=config.getoption("--lmspec-profile"), device=device, options=options, env=env)
    run_config.backward = not config.getoption("--lmspec-no-backward")
    if config.getoption("--lmspec-scale"):
        run_config.scale = config.getoption("--lmspec-scale")
    if run_config.scale not in SCALES:
        raise pytest.UsageError(f"lmspec: --lmspec-scale {run_config.scale!r}: choose one of {', '.join(SCALES)}")
    loaded = []
    for name, path in specs.items():
        component = get_component(name)
        try:
            component.resolve_options(options)
            target = load_target(path, name, adapters.get(name))
        except (ValueError, LoadError) as exc:
            raise pytest.UsageError(f"lmspec: {exc}") from None
        loaded.append((component, target, run_config, dtypes))
    return loaded


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path, parent):
    """With --lmspec-target, the one directory collected (see pytest_configure) yields the lmspec items."""
    if _TARGETS in parent.config.stash and isinstance(parent, pytest.Session):
        return LmspecCollector.from_parent(parent, name="lmspec", path=path, nodeid="")
    return None


class LmspecCollector(pytest.Collector):
    """The root of the lmspec items: one TargetCollector per --lmspec-target."""

    def collect(self):
        for component, target, run_config, dtypes in self.config.stash[_TARGETS]:
            yield TargetCollector.from_parent(self, name=f"lmspec[{component.name}]", component=component,
                                              target=target, run_config=run_config, dtypes=dtypes)


class TargetCollector(pytest.Collector):
    """One target's items: every invariant x dtype of its component (node ids `::lmspec[COMPONENT]::ID[DTYPE]`)."""

    def __init__(self, *, component, target, run_config, dtypes, **kwargs):
        super().__init__(**kwargs)
        self.component, self.target, self.run_config, self.dtypes = component, target, run_config, dtypes

    def collect(self):
        from .runner import dtype_name, selected_dtypes, selected_invariants

        for invariant in selected_invariants(self.component, self.run_config):
            for dtype in selected_dtypes(self.component, invariant, self.dtypes):
                yield InvariantItem.from_parent(
                    self, name=f"{invariant.id}[{dtype_name(dtype)}]", component=self.component, invariant=invariant,
                    dtype=dtype, target=self.target, config_obj=self.run_config)


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
