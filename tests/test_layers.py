"""Layers without cycles: what each package of reidbench may import, at module level or inside a
function. Image operations sit in ``data`` (below attacks and defenses), the defended-model wrapper
in ``models``; training and defenses meet in ``reidbench.training_protocol`` only."""

import ast
import sys
from pathlib import Path

import pytest

import reidbench

PACKAGE = Path(reidbench.__file__).parent
UPPER = {"matrix", "leaderboard", "viz", "reproduce", "cli"}  # the commands and what they drive
#: package -> the reidbench packages it must not import
FORBIDDEN = {
    "data": {"models", "evaluation", "attacks", "defenses", "train"} | UPPER,
    "models": {"evaluation", "attacks", "defenses", "train"} | UPPER,
    "evaluation": {"attacks", "defenses", "train"} | UPPER,
    "attacks": {"defenses", "train"} | UPPER,
    "defenses": {"train"} | UPPER,
    "train": {"defenses", "attacks"} | UPPER,
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, wherever it is written."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            if not node.module:  # from . import x: x may be a subpackage
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _violations() -> list[str]:
    found = []
    for pkg, banned in FORBIDDEN.items():
        for path in sorted((PACKAGE / pkg).rglob("*.py")):
            for line, mod in _imports(path):
                parts = mod.split(".")
                if parts[0] == "reidbench" and len(parts) > 1 and parts[1] in banned:
                    found.append(f"{path.relative_to(PACKAGE)}:{line} imports {mod}")
    return found


def test_packages_import_only_what_sits_below_them():
    found = _violations()
    assert not found, "imports across layers:\n" + "\n".join(found)


def test_the_scan_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The scan is not blind: an import written inside a function counts."""
    fake = tmp_path / "reidbench" / "attacks"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("def f():\n    from ..defenses.pd import lgt\n    return lgt\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "reidbench")
    for pkg in FORBIDDEN:
        (tmp_path / "reidbench" / pkg).mkdir(exist_ok=True)
    assert _violations() == ["attacks/x.py:2 imports reidbench.defenses.pd"]


@pytest.mark.parametrize("pkg", sorted(FORBIDDEN))
def test_every_layer_exists(pkg):
    assert (PACKAGE / pkg / "__init__.py").is_file()
