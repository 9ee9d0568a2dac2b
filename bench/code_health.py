#!/usr/bin/env python
"""Code-health numbers of a git revision, for comparing a refactor before and after (issue 14).

    python bench/code_health.py                    # HEAD
    python bench/code_health.py f1ea8ab 0617095 HEAD

For each revision (exported with `git archive`, so the working tree is not touched): Python
lines (all, and non-blank non-comment), `# fmt: skip` markers, test functions, duplicate pairs of
six or more lines (the `duplicates` tool, when on PATH), ruff findings under this checkout's
ruff configuration (so every revision is judged by the same rules), import circles between the
product's modules (two modules that import each other, lazily or for type checking included) and
the product modules over 450 lines. Writes bench/results/code_health.json.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from common import header, results_dir, write_result

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("splat/", "renderer/", "fields/", "train/", "datasets/", "viewer/", "scenes/")
MAX_MODULE_LINES = 450


def module_name(rel: Path) -> str:
    """`renderer/slicing.py` -> `splat.renderer.slicing` (setup.py maps each folder to `splat.<folder>`)."""
    parts = list(rel.with_suffix("").parts)
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(parts if parts[0] == "splat" else ["splat", *parts])


def imported_modules(tree: Path, rel: Path, modules: set[str]) -> set[str]:
    """The product modules one module imports anywhere (at the top, in a function, for type checking)."""
    me = module_name(rel)
    package = me if rel.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse((tree / rel).read_text(errors="replace"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rpartition(".")[0]
            base = ".".join(filter(None, [base if node.level else "", node.module or ""]))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != me:
                found.add(name)
    return found


def structure(tree: Path, files: list[Path]) -> dict:
    """Import circles (pairs of product modules that import each other) and the modules over MAX_MODULE_LINES."""
    rels = [p.relative_to(tree) for p in files if str(p.relative_to(tree)).startswith(PRODUCT)]
    modules = {module_name(r): r for r in rels}
    imports = {m: imported_modules(tree, r, set(modules)) for m, r in modules.items()}
    circles = sorted(f"{a} <-> {b}" for a in imports for b in imports[a] if a < b and a in imports[b])
    sizes = {str(r): len((tree / r).read_text(errors="replace").splitlines()) for r in rels}
    big = [f"{r} ({n})" for r, n in sorted(sizes.items(), key=lambda item: -item[1]) if n > MAX_MODULE_LINES]
    return {
        "import_circles": len(circles),
        "circles": circles,
        f"modules_over_{MAX_MODULE_LINES}_lines": len(big),
        "big_modules": big,
        "largest_module_lines": max(sizes.values(), default=0),
    }


def export(rev: str, into: Path) -> str:
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True)
    data = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return sha.stdout.strip()


def measure(tree: Path) -> dict:
    files = sorted(p for p in tree.rglob("*.py") if "/." not in str(p.relative_to(tree)))
    lines = code = product = markers = tests = 0
    for p in files:
        text = p.read_text(errors="replace").splitlines()
        rel = str(p.relative_to(tree))
        lines += len(text)
        n_code = sum(1 for t in text if t.strip() and not t.lstrip().startswith("#"))
        code += n_code
        product += n_code if rel.startswith(PRODUCT) else 0
        markers += sum(t.count("fmt: skip") for t in text)
        if rel.startswith("tests/"):
            tests += sum(1 for t in text if re.match(r"\s*def test_", t))
    out = {
        **structure(tree, files),
        "python_lines": lines,
        "code_lines": code,
        "product_code_lines": product,
        "fmt_skip_markers": markers,
        "test_functions": tests,
    }
    if shutil.which("duplicates"):
        r = subprocess.run(
            ["duplicates", "--repo", str(tree), "--most", "200", "--seconds", "120"], capture_output=True
        )
        first = r.stdout.decode(errors="replace").splitlines()[:1]
        m = re.match(r"(\d+) pairs", first[0]) if first else None
        out["duplicate_pairs"] = int(m.group(1)) if m else None
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    r = subprocess.run(
        [ruff, "check", "--config", str(ROOT / "pyproject.toml"), "--statistics", "--exit-zero", "."],
        cwd=tree,
        capture_output=True,
        text=True,
    )
    counts = [line.split() for line in r.stdout.splitlines()]
    out["ruff_findings"] = sum(int(c[0]) for c in counts if len(c) > 1 and c[0].isdigit())
    r = subprocess.run(
        [ruff, "format", "--config", str(ROOT / "pyproject.toml"), "--check", "."], cwd=tree, capture_output=True
    )
    m = re.search(r"(\d+) files? would be reformatted", r.stdout.decode())
    out["files_ruff_would_reformat"] = int(m.group(1)) if m else 0
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("revs", nargs="*", default=["HEAD"])
    args = p.parse_args(argv)
    rows = []
    for rev in args.revs:
        with tempfile.TemporaryDirectory() as tmp:
            sha = export(rev, Path(tmp))
            row = {"rev": rev, "commit": sha, **measure(Path(tmp))}
        rows.append(row)
        print(", ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    path = write_result(
        results_dir() / "code_health.json",
        {
            **header("code_health", "cpu"),
            "results": rows,
            "notes": "ruff with this checkout's configuration for every revision; duplicate pairs from the "
            "duplicates tool (6+ identical or same-shape lines, tests and bench included); import circles: pairs of "
            "product modules that import each other (lazily or for type checking included); big modules: product "
            f"modules over {MAX_MODULE_LINES} lines",
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
