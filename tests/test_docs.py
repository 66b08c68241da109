"""docs/ does not rot: generated pages match the registry, links resolve, every page is reachable,
the commands it shows exist, and the worked example runs."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from reidbench.cli import build_parser
from reidbench.docgen import registry_pages
from reidbench.leaderboard import render
from reidbench.registry import ATTACKS, DEFENSES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_generated_pages_are_up_to_date():
    for rel, text in registry_pages().items():
        path = DOCS / rel
        assert path.is_file(), f"{rel} missing: run `python -m reidbench.docgen docs`"
        assert path.read_text() == text, f"{rel} is stale: run `python -m reidbench.docgen docs`"
    generated = {p.relative_to(DOCS).as_posix() for p in DOCS.glob("attacks/*.md")} | \
                {p.relative_to(DOCS).as_posix() for p in DOCS.glob("defenses/*.md")}
    assert generated == {r for r in registry_pages()}, "pages of unregistered names: regenerate the docs"


def test_every_registered_attack_and_defense_has_a_page():
    for e in ATTACKS.entries():
        assert (DOCS / "attacks" / f"{e.name}.md").is_file()
    for e in DEFENSES.entries():
        assert (DOCS / "defenses" / f"{e.name}.md").is_file()


@pytest.mark.parametrize("page", PAGES + [ROOT / "README.md", ROOT / "leaderboards" / "README.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def test_every_page_is_reachable_from_the_index():
    seen, todo = set(), [DOCS / "index.md"]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md" or DOCS not in page.parents and page != DOCS / "index.md":
            continue
        seen.add(page)
        for target in LINK.findall(page.read_text()):
            if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
                todo.append((page.parent / target.split("#")[0]).resolve())
    assert set(PAGES) <= seen, f"unreachable: {sorted(str(p.relative_to(DOCS)) for p in set(PAGES) - seen)}"


def test_commands_shown_in_the_docs_exist():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    shown = 0
    for page in PAGES + [ROOT / "README.md"]:
        text = page.read_text()
        # command blocks and inline code; ```text blocks are docstrings (prose)
        code = [ln for lang, block in re.findall(r"```([a-z]*)\n(.*?)```", text, re.S) if lang != "text"
                for ln in block.splitlines()]
        code += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for line in code:
            for m in re.finditer(r"(?:^|[\s(;&|])reidbench ([a-z]+)(?: ([a-z]+))?", line):
                cmd, action = m.group(1), m.group(2)
                if cmd in ("list", "matrix", "leaderboard"):
                    shown += 1
                assert cmd in sub, f"{page.name}: `reidbench {cmd}` is not a command"
                nested = [a for a in sub[cmd]._actions if a.dest in ("viz_command", "data_command")]
                if nested and action:
                    assert action in nested[0].choices, f"{page.name}: `reidbench {cmd} {action}` does not exist"
    assert shown > 5


def test_the_worked_example_runs(tmp_path):
    text = (DOCS / "adding.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert 25 <= len(code.strip().splitlines()) <= 60
    script = tmp_path / "example.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


def test_the_own_model_example_runs(tmp_path):
    """docs/examples/own_model_ranks.py (quickstart step 4, a model reidbench did not train)."""
    pytest.importorskip("matplotlib")
    out_png = tmp_path / "ranks.png"
    out = subprocess.run([sys.executable, str(DOCS / "examples" / "own_model_ranks.py"), "--synth-size", "tiny",
                          "--input-size", "128,64", "--queries", "0,3", "--out", str(out_png)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out_png.stat().st_size > 10_000 and out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_leaderboards_readme_table_is_the_one_its_records_make():
    """leaderboards/README.md shows the committed board as a table: generated from the records
    (scripts/regenerate-leaderboard.sh writes it between the markers), never typed."""
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "scripts" / "readme_table.py")
    readme = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme)
    assert readme.table_in(readme.PAGE.read_text()) == render(ROOT / "leaderboards" / "synthreid", "compact"), \
        "leaderboards/README.md's table is stale: run scripts/regenerate-leaderboard.sh with SKIP_MATRIX=1"
