"""One place per name: no module but the registry compares a user-given name with a string literal.

The scan walks every module of the package (the registry excepted) and flags a comparison
(``==``, ``!=``, ``in``, ``not in``) or a ``startswith``/``endswith`` whose literal is a name a user
gives: any registered attack, defense, model, architecture or dataset name or alias, a threat, or
``none``/``all``/``clean``. Such a rule belongs to the registry (entry metadata, specs) or to the
protocol (``Threat``), where it is written once."""

import ast
from pathlib import Path

import reidbench
from reidbench.protocol import Threat
from reidbench.registry import ARCHITECTURES, ATTACKS, DATASETS, DEFENSES, MODELS, REPRODUCTIONS, load_builtins

PACKAGE = Path(reidbench.__file__).parent
#: (file, literal): a literal that is not a user-given name there, with why
NOT_NAMES = {
    ("data/synthreid/rendering.py", "none"): "a generated person's logo attribute, not a user-given name",
    ("defenses/goat.py", "sma"): "GOAT's own guides option (fna | sma), validated by GOAT",
    ("cli/options.py", "auto"): "--device auto (pick CUDA when present), not the attack",
    ("data/msmt17.py", "auto"): "MSMT17's version=auto (v2, else v1), not the attack",
    ("matrix/ray_executor.py", "auto"): "Ray's --address auto (the cluster this node belongs to), not the attack",
}


def _names() -> set[str]:
    load_builtins()
    out = {t.value for t in Threat} | {"none", "all", "clean"}
    for reg in (ATTACKS, DEFENSES, MODELS, ARCHITECTURES, DATASETS, REPRODUCTIONS):
        for e in reg.entries():
            out.add(e.name)
            out.update(e.aliases)
    return out


def _literals(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for el in node.elts for s in _literals(el)]
    return []


def scan(source: str, names: set[str]) -> list[tuple[int, str]]:
    hits = []
    for node in ast.walk(ast.parse(source)):
        lits: list[str] = []
        if isinstance(node, ast.Compare):
            lits = [s for side in (node.left, *node.comparators) for s in _literals(side)]
            lits = [s for s in lits if s.lower() in names]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("startswith", "endswith") and node.args:
            lits = [s for s in _literals(node.args[0]) if len(s) >= 2 and any(n.startswith(s.lower()) for n in names)]
        hits += [(node.lineno, s) for s in lits]
    return hits


def test_the_scan_finds_what_it_looks_for():
    names = _names()
    bad = ('if cell.attack == "dmr": pass\nif d.lower() != "none": pass\nif t in ("adaptive", "x"): pass\n'
           'if n.lower().startswith("synth"): pass\nif n.startswith("ta:"): pass\n')
    assert [s for _, s in scan(bad, names | {"ta:"})] == ["dmr", "none", "adaptive", "synth", "ta:"]
    assert scan('if mode == "eval": pass\nif x.startswith("cuda"): pass\n', names) == []


def test_no_module_but_the_registry_compares_names_with_literals():
    names = _names()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel == "registry.py":
            continue
        for line, lit in scan(path.read_text(), names):
            if (rel, lit) not in NOT_NAMES:
                found.append(f"{rel}:{line}: {lit!r}")
    assert not found, "names compared outside the registry:\n" + "\n".join(found)
