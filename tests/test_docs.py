"""The docs cannot rot: every Python block in docs/*.md runs, and so does every `splat` command on
the demo scene (a command that names `outputs/demo...`), against short demo runs made by the
docs' own `splat demo` commands; the pages type no measured number, date or issue number, and
every `{{ bench: FILE path }}` names a value of its results file. (`make docs` builds the site
with `mkdocs build --strict`, which checks links and the API reference.) README.md is held to the
same rules, to at most 200 lines and to links that resolve; its blocks run like a page's.

How the blocks run: in a scratch folder, page by page in the nav's order. The Python blocks of a
page share one namespace, in order, as a reader runs them. `splat` commands run in this process
through `splat.cli.main` (the console script's code path, without a new interpreter for each);
`splat view` serves until its page answers over HTTP, then stops. To keep the test within a
minute or two, commands are shortened: `--steps N` becomes N // 200 (at least 2; `splat demo`
without `--steps` gets 1/200 of its default), `--max-seconds` at most 3, renders at most 4
frames, servers on a free port, and the field demo films 4 views at 16x12 (an untrained field's
renders march through every cell of its occupancy grid: at the demo's size they alone would take
minutes on two cores).
Commands on other data (`data/...`, `runs/...`, a video) are shown in the docs, not run.
"""

from __future__ import annotations

import re
import shlex
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from chromium import free_port

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
sys.path.insert(0, str(ROOT / "bench"))

import results_tables  # noqa: E402

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
BENCH = re.compile(r"\{\{\s*bench:\s*(\S+\.json)\s+(\S+?)(?:\s*\|\s*\S+)?\s*\}\}")
DEMO = re.compile(r"\boutputs/demo\w*")
STEP_DIVISOR, MAX_SECONDS, MAX_FRAMES = 200, "3", 4


def nav_pages() -> list[str]:
    """The pages in mkdocs.yml's nav order."""
    import yaml  # a dependency of mkdocs (the test extra)

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    return [page for entry in nav for page in entry.values()]


PAGES = nav_pages()


def blocks(page: str | Path) -> list[tuple[str, str, int]]:
    """(language, code, line number) of each fenced block of a page (a docs page's name, or a path)."""
    text = (DOCS / page).read_text()
    return [(m.group(1), m.group(2), text[: m.start()].count("\n") + 2) for m in FENCE.finditer(text)]


def prose(page: str | Path) -> str:
    """A page without its code blocks, inline code and `{{ bench: }}` references."""
    text = FENCE.sub("", (DOCS / page).read_text())
    return re.sub(r"`[^`\n]*`", "", BENCH.sub("", text))


def shell_commands(code: str) -> list[str]:
    """The command lines of a shell block (continuations joined, comments dropped)."""
    lines = code.replace("\\\n", " ").splitlines()
    return [" ".join(shlex.split(line, comments=True)) for line in lines if shlex.split(line, comments=True)]


def demo_commands(code: str) -> list[list[str]]:
    """The `splat` commands of a shell block that act on the demo scene."""
    return [shlex.split(c) for c in shell_commands(code) if c.startswith("splat ") and DEMO.search(c)]


def shortened(argv: list[str]) -> list[str]:
    """A docs command with training and rendering cut short, and servers on a free port."""
    argv = list(argv)
    command = argv[1]

    def option(name):
        return argv.index(name) + 1 if name in argv else None

    if (i := option("--steps")) is not None:
        argv[i] = str(max(2, int(argv[i]) // STEP_DIVISOR))
    elif command == "demo":
        argv += ["--steps", str(max(2, (500 if "--field" in argv else 1500) // STEP_DIVISOR))]
    elif command == "train" and "--max-seconds" not in argv and "--resume" not in argv:
        argv += ["--max-seconds", MAX_SECONDS]
    if command == "demo" and "--field" in argv:  # a field's first renders march every cell: tiny images
        argv += ["--views", "4", "--width", "16", "--height", "12"]
    if (i := option("--max-seconds")) is not None:
        argv[i] = str(min(float(argv[i]), float(MAX_SECONDS)))
    if command == "render":
        if (i := option("--frames")) is not None:
            argv[i] = str(min(int(argv[i]), MAX_FRAMES))
        else:
            argv += ["--frames", str(MAX_FRAMES)]
        if (i := option("--times")) is not None:
            t0, t1, n = argv[i].split(":")
            argv[i] = f"{t0}:{t1}:{min(int(n), MAX_FRAMES)}"
    if command == "view" and "--port" not in argv:
        argv += ["--port", str(free_port())]
    if "--viewer" in argv and "--viewer-port" not in argv:
        argv += ["--viewer-port", str(free_port())]
    return argv


def answer_then_close(viewer) -> None:
    """In place of `Viewer.wait` (serve until Ctrl-C): the page answers over HTTP, then stop."""
    try:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{viewer.port}/", timeout=30) as r:
                assert r.status == 200
        except urllib.error.HTTPError as e:  # an answer all the same
            assert e.code < 500, e
    finally:
        viewer.close()


class Workspace:
    """The scratch folder the docs' commands run in, with the demo runs made on first use."""

    def __init__(self, root: Path):
        self.root = root
        self.demos = {}  # output folder -> the docs' `splat demo` command that makes it
        for page in PAGES:
            for lang, code, _ in blocks(page):
                for argv in demo_commands(code) if lang in ("bash", "sh") else []:
                    if argv[1] == "demo":
                        self.demos[argv[argv.index("--out") + 1]] = argv

    def run(self, argv: list[str], capsys) -> None:
        from splat.cli import main

        argv = shortened(argv)
        rc = main(argv[1:])
        out = capsys.readouterr()
        assert rc == 0, f"{' '.join(argv)}: exit {rc}\n{out.out[-3000:]}\n{out.err[-3000:]}"

    def need(self, text: str, capsys) -> None:
        """Make the demo runs a page's blocks use (the docs' own demo commands, shortened)."""
        for out in sorted(set(DEMO.findall(text))):
            if out in self.demos and not (self.root / out).exists():
                self.run(self.demos[out], capsys)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("docs"))


def run_blocks(page: str | Path, workspace, monkeypatch, capsys) -> int:
    """Run a page's Python blocks (in one namespace, in order) and its `splat` commands on the demo
    scene, in the workspace; the number of blocks and commands run."""
    from splat.viewer.app import Viewer

    monkeypatch.chdir(workspace.root)
    monkeypatch.setattr(Viewer, "wait", answer_then_close)
    namespace = {"__name__": f"docs.{Path(page).name}"}
    ran = 0
    for lang, code, line in blocks(page):
        if lang == "python":
            workspace.need(code, capsys)
            exec(compile(code, str(DOCS / page) + f":{line}", "exec"), namespace)  # noqa: S102
            ran += 1
        elif lang in ("bash", "sh"):
            for argv in demo_commands(code):
                if argv[1] == "demo":
                    workspace.need(" ".join(argv), capsys)
                    assert (workspace.root / argv[argv.index("--out") + 1] / "run").is_dir()
                else:
                    workspace.need(" ".join(argv), capsys)
                    workspace.run(argv, capsys)
                ran += 1
    return ran


@pytest.mark.parametrize("page", PAGES)
def test_page_runs(page, workspace, monkeypatch, capsys):
    ran = run_blocks(page, workspace, monkeypatch, capsys)
    if page in ("index.md", "training.md", "rendering.md", "formats.md", "viewer.md", "dynamic.md", "fields.md"):
        assert ran, f"{page}: no block ran (the pages that show the demo scene should be tested)"


def test_every_page_is_in_the_nav():
    assert sorted(PAGES) == sorted(p.name for p in DOCS.glob("*.md"))


def test_bench_references_name_values_of_results_files():
    for page in PAGES:
        for name, path in BENCH.findall((DOCS / page).read_text()):
            results_tables.value(name, path)  # KeyError / FileNotFoundError name the reference


MEASURED = re.compile(r"\d[\d,.]*\s*(dB|ms|FPS|fps|it/s|steps/s)\b|\d(\.\d+)?x (faster|slower)\b")
DATED = re.compile(r"\b20\d\d-\d\d(-\d\d)?\b|\b\d\d-\d\d,? \d\d:\d\d\b|\b\d\d:\d\d UTC\b")
ISSUE = re.compile(r"\b(issue|PR|pull request|ticket)\s*#?\d+|(?<![\w&])#\d+\b", re.IGNORECASE)
TOOL = re.compile(r"\b(give_back|budget_left|device tool|files_at|remote GPU)\b", re.IGNORECASE)


def assert_tells_the_present(page: str | Path) -> None:
    """No typed measurement in the prose, and no date, issue number or internal tool anywhere."""
    text, whole = prose(page), (DOCS / page).read_text()
    assert not MEASURED.search(text), f"{page}: a typed measurement: {MEASURED.search(text).group(0)!r}"
    assert not DATED.search(whole), f"{page}: a date: {DATED.search(whole).group(0)!r}"
    assert not ISSUE.search(whole), f"{page}: an issue number: {ISSUE.search(whole).group(0)!r}"
    assert not TOOL.search(whole), f"{page}: {TOOL.search(whole).group(0)!r}"


def test_no_typed_measurements_dates_or_issue_numbers():
    """Measured numbers come from `{{ bench: }}`; the docs tell the present, not their history."""
    for page in PAGES:
        assert_tells_the_present(page)


def test_readme(workspace, monkeypatch, capsys):
    """README.md speaks to users: at most 200 lines, no typed measurement (numbers live on the
    Benchmarks page, which reads them from bench/results), date, issue number or internal tool;
    its links into the repository resolve, and its Python and demo-scene commands run."""
    text = README.read_text()
    assert len(text.splitlines()) <= 200, f"README.md: {len(text.splitlines())} lines"
    assert_tells_the_present(README)
    for target in re.findall(r"\]\(([^):#]+)(?:#[^)]*)?\)", text):
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
    assert run_blocks(README, workspace, monkeypatch, capsys) >= 2, "README.md: its Python example should run"
