"""The catalog of components and invariants, generated from spec/ (docs/catalog.md; CI checks it is current)."""

from __future__ import annotations

from lmspec.spec import Component


def _dtype(d) -> str:
    return str(d).replace("torch.", "")


def as_data(registry: dict[str, Component]) -> list[dict]:
    return [
        {
            "name": c.name,
            "family": c.family,
            "signature": c.signature,
            "summary": c.summary,
            "reference": c.reference_path,
            "dtypes": [_dtype(d) for d in c.dtypes] or ["any"],
            "bound": c.bound,
            "options": [{"name": o.name, "default": o.default, "choices": list(o.choices), "doc": o.doc} for o in c.options],
            "features": dict(c.features),
            "invariants": [
                {
                    "id": i.id,
                    "kind": i.kind,
                    "statement": i.statement,
                    "source": i.source,
                    "requires": sorted(i.requires),
                    "dtypes": [_dtype(d) for d in (i.dtypes or c.dtypes)] or ["any"],
                    "declared": i.location,
                }
                for i in c.invariants
            ],
        }
        for c in registry.values()
    ]


def render(registry: dict[str, Component]) -> str:
    data = as_data(registry)
    lines = [
        "# lmspec catalog",
        "",
        "Generated from `spec/` by `lmspec catalog`; CI fails if it is out of date. Do not edit by hand.",
        "",
        f"{len(data)} components, {sum(len(c['invariants']) for c in data)} invariants.",
        "",
    ]
    families: dict[str, list[dict]] = {}
    for comp in data:
        families.setdefault(comp["family"], []).append(comp)
    for family, comps in families.items():
        lines += [f"## Family `{family}`", ""]
        for c in comps:
            lines += [
                f"### `{c['name']}`",
                "",
                c["summary"],
                "",
                f"- signature: `{c['signature']}`",
                f"- reference: `{c['reference']}`",
                f"- dtypes: {', '.join(c['dtypes'])}",
                f"- tolerance bound: {c['bound']} (docs/tolerance.md)",
            ]
            for o in c["options"]:
                lines.append(f"- option `{o['name']}` = {' | '.join(o['choices'])} (default `{o['default']}`): {o['doc']}")
            for name, doc in c["features"].items():
                lines.append(f"- feature `{name}` (a target may declare it unsupported): {doc}")
            lines += ["", "| invariant | kind | statement | source | declared |", "|---|---|---|---|---|"]
            for i in c["invariants"]:
                req = f" (needs {', '.join(i['requires'])})" if i["requires"] else ""
                lines.append(f"| `{i['id']}` | {i['kind']} | {i['statement']}{req} | {i['source']} | {i['declared']} |")
            lines.append("")
    return "\n".join(lines)
