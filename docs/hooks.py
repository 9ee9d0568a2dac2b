"""MkDocs hooks: numbers and tables in the docs come from bench/results, never typed by hand; the
API reference reads the docstrings of the installed layout.

- `{{ bench: FILE dotted.path }}` in a page becomes that value of bench/results/FILE (a missing
  one fails the build; `{{ bench: FILE path | .1f }}` formats it, `| len` counts a list);
- a line `<!-- bench-results -->` becomes every results file as tables (bench/results_tables.py);
- a line `<!-- cli: COMMAND -->` becomes the table of `splat COMMAND`'s arguments, read from the
  CLI's own parser (so a flag, its help and its default are the ones `splat COMMAND --help` prints).

mkdocstrings finds modules on disk, and `splat.renderer`, `splat.fields`, ... live in top-level
folders (setup.py's PACKAGE_DIR), so the API reference reads a tree of links laid out as the
installed package: outputs/api_src/splat/ (`paths` in mkdocs.yml).
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority

ROOT = Path(__file__).resolve().parents[1]
API_SRC = ROOT / "outputs" / "api_src"
sys.path.insert(0, str(ROOT / "bench"))

import results_tables  # noqa: E402

PATTERN = re.compile(r"\{\{\s*bench:\s*(\S+\.json)\s+(\S+?)(?:\s*\|\s*(\S+))?\s*\}\}")
CLI = re.compile(r"^<!--\s*cli:\s*([\w-]+)\s*-->$", re.MULTILINE)
RESULTS = re.compile(r"^<!--\s*bench-results\s*-->$", re.MULTILINE)
CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.MULTILINE | re.DOTALL)


def package_dirs() -> dict[str, str]:
    """setup.py's PACKAGE_DIR (read, not imported: importing setup.py runs setup())."""
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PACKAGE_DIR" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("setup.py has no PACKAGE_DIR")


def build_api_tree() -> None:
    """outputs/api_src/splat/...: splat/'s files, and each subsystem folder under its package name."""
    shutil.rmtree(API_SRC, ignore_errors=True)
    top = API_SRC / "splat"
    top.mkdir(parents=True)
    for entry in (ROOT / "splat").iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for name, folder in package_dirs().items():
        if name != "splat":
            (top / name.split(".", 1)[1]).symlink_to(ROOT / folder)


@event_priority(100)  # before mkdocstrings sets up its handler
def on_config(config):
    build_api_tree()
    return config


def _number(match: re.Match) -> str:
    name, path, spec = match.groups()
    try:
        value = results_tables.value(name, path)
    except (OSError, KeyError, ValueError) as e:
        raise PluginError(f"{{{{ bench: {name} {path} }}}}: {e}") from None
    if spec == "len":
        return results_tables.fmt(len(value))
    if spec and isinstance(value, (int, float)):
        return format(value, spec)
    return results_tables.fmt(value)


def cli_table(command: str) -> str:
    """`splat COMMAND`'s arguments as Markdown tables, one per argument group."""
    import argparse

    from splat.cli import build_parser

    (subparsers,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    if command not in subparsers.choices:
        raise PluginError(f"<!-- cli: {command} -->: splat has no command {command!r}")
    parser = subparsers.choices[command]
    formatter = parser._get_formatter()
    parts = []
    for group in parser._action_groups:
        rows = []
        for action in group._group_actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = ", ".join(action.option_strings) or action.dest
            if action.option_strings and action.nargs != 0:
                name += " " + formatter._metavar_formatter(action, action.dest.upper())(1)[0]
            text = formatter._expand_help(action) if action.help else ""
            if not text and action.default not in (None, argparse.SUPPRESS):
                text = f"default: {action.default}"
            text = text.replace("<", "&lt;").replace(">", "&gt;")
            if action.choices and "{" not in name:
                text += f" Choices: {', '.join(map(str, action.choices))}."
            rows.append(f"| `{name}` | {' '.join(text.split()).replace('|', '/')} |")
        if rows:
            title = group.title if group.title not in ("options", "optional arguments") else "options"
            parts.append(f"**{title}**\n\n| argument | what it does |\n|---|---|\n" + "\n".join(rows))
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    markdown = PATTERN.sub(_number, markdown)
    if re.search(r"\{\{\s*bench:", CODE.sub("", markdown)):
        raise PluginError(f"{page.file.src_path}: a {{{{ bench: ... }}}} that names no results file (FILE.json path)")
    markdown = CLI.sub(lambda m: cli_table(m.group(1)), markdown)
    return RESULTS.sub(lambda m: results_tables.all_sections(), markdown)
