"""``reidbench eval --adversarial``: saved adversarial queries re-scored without their attack."""

import json

import pytest
import torch

from reidbench.attacks import load_adversarial, save_adversarial
from reidbench.cli import main


def last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def jad_run(tiny_synth, tmp_path_factory):
    """A one-epoch jad checkpoint (PD-trained, CS at test time) and a plain one."""
    root = tmp_path_factory.mktemp("replay")
    for model in ("jad", "baseline"):
        assert main(["-q", "train", "--model", model, "--data-root", str(tiny_synth), "--epochs", "1",
                     "--init", "scratch", "--out", str(root / model), "--no-eval"]) == 0
    return root


def test_saved_queries_re_score_to_the_attack_s_own_numbers_under_a_randomised_defense(tiny_synth, jad_run, tmp_path,
                                                                                      capsys):
    ckpt = str(jad_run / "jad" / "model.pt")
    common = ["--checkpoint", ckpt, "--data-root", str(tiny_synth), "--defense", "cs-r", "--json"]
    for target in (tmp_path / "adv.pt", tmp_path / "png"):
        assert main(["-q", "attack", *common, "--attack", "sma", "--steps", "2", "--adaptive", "--eot", "2",
                     "--save", str(target)]) == 0
        attacked = last_json(capsys)
        assert main(["-q", "eval", *common, "--adversarial", str(target)]) == 0
        replayed = last_json(capsys)
        # the same queries through the same keyed defense draws: the same metrics, to the digit
        assert replayed["attacked"] == attacked["attacked"] and replayed["clean"] == attacked["clean"]
        assert replayed["linf_max"] == pytest.approx(attacked["linf_max"], abs=1e-7)
        assert replayed["eps"] == pytest.approx(5 / 255) and not replayed["transfer"]
    # the same file on another checkpoint is a transfer evaluation, and says so
    assert main(["-q", "eval", "--checkpoint", str(jad_run / "baseline" / "model.pt"), "--data-root", str(tiny_synth),
                 "--adversarial", str(tmp_path / "adv.pt"), "--json"]) == 0
    other = last_json(capsys)
    assert other["transfer"] and other["defense"] is None and other["attacked"] != attacked["attacked"]


def test_a_file_that_breaks_its_budget_or_does_not_fit_is_refused(tiny_synth, jad_run, tmp_path, capsys):
    ckpt = str(jad_run / "baseline" / "model.pt")
    common = ["--checkpoint", ckpt, "--data-root", str(tiny_synth)]
    good = tmp_path / "adv.pt"
    assert main(["-q", "attack", *common, "--attack", "sma", "--steps", "1", "--eps", "4/255", "--save",
                 str(good)]) == 0
    capsys.readouterr()
    adv, meta = load_adversarial(good)
    names = meta.pop("names")

    def refused(images, meta_, *extra, path=None, order=None) -> str:
        path = path or tmp_path / "bad.pt"
        save_adversarial(images, path, names=order or names[:len(images)], meta=meta_)
        assert main(["-q", "eval", *common, "--adversarial", str(path), *extra]) == 2
        return capsys.readouterr().err

    pushed = adv.clone()
    pushed[3] = (pushed[3] + 3 / 255).clamp(0, 1)  # query 3 now 4 + 3 grey levels from its clean image
    err = refused(pushed, meta)
    assert "saved query 3" in err and "over the claimed budget 4.00/255" in err
    err = refused(adv, meta, "--eps", "2/255", path=good)  # a tighter claim than the attack's
    assert "over the claimed budget 2.00/255" in err
    assert "saved queries for" in refused(adv[:-1], meta)
    assert "another query set or order" in refused(adv.flip(0), meta, order=names[::-1])  # reordered, named so
    assert "made on other" in refused(adv, {**meta, "fingerprint": "0" * 64})
    assert main(["-q", "eval", *common, "--adversarial", str(tmp_path / "missing.pt")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["-q", "eval", *common, "--eps", "4/255"]) == 2
    assert "goes with --adversarial" in capsys.readouterr().err
    # the untouched file, re-scored with its own claim, passes
    assert main(["-q", "eval", *common, "--adversarial", str(good), "--json"]) == 0
    assert last_json(capsys)["eps"] == pytest.approx(4 / 255)


def test_replay_outside_an_evaluation_says_how_to_use_it(tiny_trained):
    from reidbench.attacks.evaluate import ReplayQueries, prepare_evalset

    model, ds, _ = tiny_trained
    ev = prepare_evalset(model, ds)
    x = torch.rand(len(ev.q_pids), 3, *model.input_size)
    with pytest.raises(ValueError, match="model takes"):
        ReplayQueries(x[..., :-1], ev, model.input_size)
    with pytest.raises(RuntimeError, match="inside attack_queries"):
        ReplayQueries(x, ev, model.input_size)(x[:2])
