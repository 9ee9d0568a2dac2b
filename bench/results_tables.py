#!/usr/bin/env python
"""bench/results/*.json as Markdown tables, for the docs' Benchmarks page (built, never copied).

    python bench/results_tables.py            # print every table
    python bench/results_tables.py process    # only the files whose name starts with "process"

Each results file becomes a section: its device and date, its notes, a table of its single values
(one row each) and one table per group of records: a list of records (cases, runs...) or a dict
of named records (variants, formats...), one row per record. A file's history (`earlier_runs`),
logs, curves, configurations and versions stay in the JSON. `value(file, "a.b.0.c")` reads one value for the
docs' prose (`{{ bench: FILE a.b.0.c }}` in a page), so that a number in the docs always comes
from a file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SKIP = {"earlier_runs", "log", "curve", "versions", "config", "benchmark", "device", "device_name", "date", "history"}
NOTES = ("what", "notes", "note", "produced_by")  # prose: a paragraph under the title, not a table cell
MAX_COLUMNS = 40  # a dict of named records wider than this is split into its parts instead


def load(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


LABELS = ("case", "name", "label", "scene", "variant")  # what names a record in a list


def _child(node, key: str):
    """node[key] for a dict; for a list, the record at that index or the one labelled key."""
    if isinstance(node, dict):
        return node.get(key, KeyError)
    if isinstance(node, list):
        if key.isdigit():
            return node[int(key)] if int(key) < len(node) else KeyError
        return next((r for r in node if isinstance(r, dict) and any(r.get(k) == key for k in LABELS)), KeyError)
    return KeyError


def value(name: str, path: str):
    """The value at a dotted path of a results file; KeyError if absent. A list's records are
    reached by index or by their label (`cases.beer-video.wall_seconds`: the case named so), and
    keys that hold dots themselves ("velocity_0.2") are found whole."""
    node, parts, i = load(name), path.split("."), 0
    while i < len(parts):
        for j in range(len(parts), i, -1):
            child = _child(node, ".".join(parts[i:j]))
            if child is not KeyError:
                node, i = child, j
                break
        else:
            raise KeyError(f"bench/results/{name}: no {path!r} (stopped at {parts[i]!r})")
    return node


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, list) and all(not isinstance(x, (dict, list)) for x in v):
        text = ", ".join(fmt(x) for x in v[:8]) + (", ..." if len(v) > 8 else "")
        return text or "-"
    return str(v).replace("|", "/").replace("\n", " ")


def is_records(v) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def flat(d: dict, prefix: str = "") -> dict:
    """{dotted key: value} of every scalar (or list of scalars) in a dict, at any depth."""
    out = {}
    for k, v in d.items():
        if k in SKIP:
            continue
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        elif not is_records(v) and not (isinstance(v, list) and any(isinstance(x, list) for x in v)):
            out[f"{prefix}{k}"] = v
    return out


def is_named_records(v) -> bool:
    """A dict of records (variants, formats...): every value a dict of values, not of more groups."""
    if not (isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values())):
        return False
    columns = {k for x in v.values() for k in flat(x)}
    return len(columns) <= MAX_COLUMNS and not any(groups(x) for x in v.values())


def groups(d: dict, prefix: str = "") -> dict[str, list[dict]]:
    """{dotted key: rows} of the record groups in a dict (named records get a `name` column)."""
    out = {}
    for k, v in d.items():
        if k in SKIP:
            continue
        if is_records(v):
            out[f"{prefix}{k}"] = v
        elif isinstance(v, dict) and is_named_records(v):
            out[f"{prefix}{k}"] = [{"name": name, **row} for name, row in v.items()]
        elif isinstance(v, dict):
            out.update(groups(v, f"{prefix}{k}."))
    return out


def singles(d: dict, prefix: str = "") -> dict:
    """{dotted key: value} of the values outside every record group."""
    out = {}
    for k, v in d.items():
        if k in SKIP or (not prefix and k in NOTES):
            continue
        if isinstance(v, dict) and not is_named_records(v):
            out.update(singles(v, f"{prefix}{k}."))
        elif not isinstance(v, (dict, list)) or (isinstance(v, list) and not is_records(v)):
            if not (isinstance(v, list) and any(isinstance(x, list) for x in v)):
                out[f"{prefix}{k}"] = v
    return out


def table(rows: list[dict]) -> str:
    flats = [flat(r) for r in rows]
    columns = list(dict.fromkeys(k for f in flats for k in f))
    if not columns:
        return ""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(f[c]) if c in f else "" for c in columns) + " |" for f in flats]
    return "\n".join(lines)


def section(path: Path) -> str:
    data = json.loads(path.read_text())
    title = data.get("benchmark", path.stem)
    where = ", ".join(str(data[k]) for k in ("device_name",) if k in data)
    if isinstance(data.get("date"), str):
        where += (", " if where else "") + data["date"][:10]
    parts = [f"### {title} (`{path.name}`)", f"*{where}*" if where else ""]
    parts += [fmt(data[k]) for k in NOTES if isinstance(data.get(k), str) and data[k]]
    values = singles(data)
    if values:
        parts.append("| quantity | value |\n|---|---:|\n" + "\n".join(f"| {k} | {fmt(v)} |" for k, v in values.items()))
    for key, rows in groups(data).items():
        parts += [f"**{key}**", table(rows)]
    return "\n\n".join(p for p in parts if p)


def all_sections(prefix: str = "") -> str:
    files = sorted(p for p in RESULTS.glob("*.json") if p.name.startswith(prefix))
    return "\n\n".join(section(p) for p in files)


if __name__ == "__main__":
    print(all_sections(sys.argv[1] if len(sys.argv) > 1 else ""))
