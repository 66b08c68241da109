"""Plugins are first-class: an attack and a test-time defense registered by a module outside the
package (named in REIDBENCH_PLUGINS) flow through `list`, `attack`, `matrix`, `leaderboard` and the
generated docs, with no edit to reidbench."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

PLUGIN = textwrap.dedent('''
    import torch
    import torch.nn.functional as F

    from reidbench.attacks import MetricAttack
    from reidbench.defenses import Defense
    from reidbench.registry import ATTACKS, DEFENSES


    @ATTACKS.register("toy-push", aliases=("toypush",), paper="a test plugin")
    class ToyPush(MetricAttack):
        """Toy plugin attack: push the feature away from the clean one from a random start."""

        title, order, randomised = "ToyPush", 70, True

        def __init__(self, model, *, eps=3 / 255, alpha=1 / 255, steps=2, random_start=True, **kw):
            super().__init__(model, eps=eps, alpha=alpha, steps=steps, random_start=random_start, **kw)

        def loss(self, x_adv, state, step):
            return (self.features(x_adv) - state["clean"]).pow(2).sum(1)


    @DEFENSES.register("toy-blur", paper="a test plugin", kind="test-time")
    class ToyBlur(Defense):
        """Toy plugin defense: 3x3 average pooling at test time (differentiable)."""

        name = "toy-blur"
        differentiable = True

        def test_transform(self, x):
            return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
''')


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "toyplugin.py").write_text(PLUGIN)
    env = dict(os.environ, REIDBENCH_PLUGINS="toyplugin",
               PYTHONPATH=os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    return env


def reidbench(env, *args, check=True):
    out = subprocess.run([sys.executable, "-m", "reidbench.cli", "-q", *args], env=env, capture_output=True,
                         text=True, timeout=600)
    if check and out.returncode != 0:
        raise AssertionError(f"reidbench {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


def test_a_plugin_attack_and_defense_run_everywhere_a_builtin_does(plugin_env, tiny_synth, tmp_path):
    listed = reidbench(plugin_env, "list").stdout
    assert "toy-push" in listed and "toy-blur" in listed and "a test plugin" in listed

    results, store = tmp_path / "results", tmp_path / "store"
    reidbench(plugin_env, "matrix", "--models", "baseline", "--attacks", "toy-push,sma", "--defenses", "toy-blur",
              "--synth-size", "tiny", "--data-root", str(tiny_synth), "--epochs", "1", "--steps", "2",
              "--no-rerank", "--batch-size", "32", "--init", "scratch", "--results", str(results), "--checkpoints", str(store))
    recs = [json.loads(p.read_text()) for p in (results / "records").glob("*.json")]
    cells = {(r["cell"]["defense"], r["cell"]["attack"], r["cell"]["threat"]) for r in recs}
    assert {("none", "toy-push", "white-box"), ("toy-blur", "toy-push", "oblivious"),
            ("toy-blur", "toy-push", "adaptive"), ("toy-blur", "clean", "clean")} <= cells
    adaptive = next(r for r in recs if r["cell"]["attack"] == "toy-push" and r["cell"]["threat"] == "adaptive")
    assert adaptive["eps"] == pytest.approx(3 / 255)  # the plugin's default budget, resolved and recorded
    assert adaptive["perturbation"]["linf_max"] <= 3 / 255 + 1e-6

    board = reidbench(plugin_env, "leaderboard", "--results", str(results), "--format", "csv").stdout
    header = board.splitlines()[0]
    assert "ToyPush 3/255 R1" in header and "ToyPush 3/255 adapt. mAP" in header  # its registry title
    assert header.index("ToyPush 3/255 R1") < header.index("SMA 5/255 R1")  # columns by budget first, then `order`
    assert any(line.split(",")[2] == "toy-blur" for line in board.splitlines()[1:])

    ckpt = next(store.rglob("model.pt"))
    out = reidbench(plugin_env, "attack", "--checkpoint", str(ckpt), "--attack", "toypush(steps=1)", "--defense",
                    "toy-blur", "--adaptive", "--data-root", str(tiny_synth), "--json").stdout
    obj = json.loads(out.strip().splitlines()[-1])
    assert obj["defense"] == "toy-blur" and obj["adaptive"] and "ToyPush" in obj["attack"]
    assert obj["linf_max"] <= 3 / 255 + 1e-6


def test_a_plugin_gets_its_docs_page(plugin_env, tmp_path):
    subprocess.run([sys.executable, "-m", "reidbench.docgen", str(tmp_path)], env=plugin_env, check=True,
                   capture_output=True, timeout=300)
    page = (tmp_path / "attacks" / "toy-push.md").read_text()
    assert "Toy plugin attack" in page and "a test plugin" in page
    assert (tmp_path / "defenses" / "toy-blur.md").is_file()


def test_a_plugin_that_cannot_be_imported_is_named(tmp_path):
    env = dict(os.environ, REIDBENCH_PLUGINS="no_such_plugin_module")
    out = reidbench(env, "list", check=False)
    assert out.returncode == 2 and "no_such_plugin_module" in out.stderr and "REIDBENCH_PLUGINS" in out.stderr
