import subprocess
import sys

from reidbench import __version__
from reidbench.cli import main
from trees import market_tree


def test_help_and_version(capsys):
    assert main([]) == 2
    assert "list" in capsys.readouterr().out
    proc = subprocess.run([sys.executable, "-m", "reidbench.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_list_datasets(capsys):
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("market1501", "dukemtmcreid", "msmt17", "cuhk03np", "synthreid"):
        assert name in out
    assert "Zheng et al." in out


def test_list_everything_mentions_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for kind in ("attacks", "defenses", "models", "datasets"):
        assert kind in out


def test_data_synth_then_check(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["-q", "data", "synth", "--out", str(out), "--size", "tiny", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "synthreid-tiny" in text and "fingerprint" in text
    assert main(["-q", "data", "check", "--dataset", "market1501", "--root", str(out), "--decode"]) == 0
    text = capsys.readouterr().out
    assert "query: decoded" in text and "gallery: decoded" in text
    # a second synth into the same folder refuses without --force
    assert main(["-q", "data", "synth", "--out", str(out), "--size", "tiny"]) == 2
    assert "--force" in capsys.readouterr().err


def test_data_check_reports_layout_errors(tmp_path, capsys):
    market_tree(tmp_path)
    (tmp_path / "Market-1501-v15.09.15" / "query" / "0010_c1s1_001051_00.jpg").write_bytes(b"broken")
    assert main(["data", "check", "--dataset", "market1501", "--root", str(tmp_path)]) == 0
    assert main(["-q", "data", "check", "--dataset", "market1501", "--root", str(tmp_path), "--decode",
                 "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert "cannot decode image" in err and "0010_c1s1_001051_00.jpg" in err
    assert main(["-q", "data", "check", "--dataset", "market1501", "--root", str(tmp_path), "--decode",
                 "--no-cache", "--skip-corrupt"]) == 0
    assert "skipped 1 unreadable" in capsys.readouterr().out
    assert main(["data", "check", "--dataset", "market1501", "--root", str(tmp_path / "nowhere")]) == 2
    assert "Market-1501 not found" in capsys.readouterr().err


def test_unknown_dataset_suggests(capsys):
    assert main(["data", "check", "--dataset", "markt1501", "--root", "."]) == 2
    assert "Did you mean 'market1501'?" in capsys.readouterr().err


def test_train_then_eval_json_and_cross_domain(tiny_synth, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    assert main(["-q", "train", "--model", "baseline", "--data-root", str(tiny_synth), "--epochs", "2",
                 "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    # synthreid's default model: EfficientNet-Lite0 fine-tuned from its packaged ImageNet weights
    assert "trained baseline (efficientnet-lite0, init imagenet/efficientnet-lite0)" in text
    assert (out / "model.pt").is_file() and (out / "last.pt").is_file()
    assert json.loads((out / "model.json").read_text())["recipe"]["name"] == "cpu-imagenet"
    assert main(["-q", "eval", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth), "--json",
                 "--rerank"]) == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("R1", "R5", "R10", "mAP", "mINP"):
        assert 0 <= obj[key] <= 100 and 0 <= obj["rerank"][key] <= 100
    assert obj["R1"] <= obj["R5"] <= obj["R10"]
    # cross-domain: the synthreid model evaluated on a (tiny) Market-1501 tree
    market = market_tree(tmp_path / "market")
    assert main(["-q", "eval", "--checkpoint", str(out / "model.pt"), "--dataset", "market1501",
                 "--data-root", str(market)]) == 0
    assert "cross-domain: trained on synthreid-tiny" in capsys.readouterr().out


def test_eval_missing_checkpoint(tmp_path, capsys):
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_attack_command_json_and_saved_queries_evaluate_identically(tiny_synth, tmp_path, capsys):
    import json

    import torch

    from reidbench.attacks import load_adversarial
    from reidbench.data import load_dataset
    from reidbench.evaluation import evaluate_features, extract_features
    from reidbench.attacks.evaluate import prepare_evalset
    from reidbench.models import load_checkpoint

    out = tmp_path / "run"
    assert main(["-q", "train", "--data-root", str(tiny_synth), "--epochs", "2", "--init", "scratch", "--out", str(out),
                 "--no-eval", "--device", "cpu"]) == 0
    capsys.readouterr()
    saved = tmp_path / "adv.pt"
    assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                 "--attack", "sma", "--eps", "4/255", "--steps", "3", "--json", "--save", str(saved)]) == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(obj) >= {"clean", "attacked", "linf_max", "l2_mean", "seconds"}
    assert obj["linf_max"] <= 4 / 255 + 1e-6 and obj["io"] == "png"
    assert obj["attacked"] != obj["clean"]  # (a 2-epoch model is near chance: no claim on the direction)
    # the saved uint8 queries evaluate to exactly the reported numbers
    adv, meta = load_adversarial(saved)
    model, _ = load_checkpoint(out / "model.pt")
    ds = load_dataset("synthreid", tiny_synth)
    ev = prepare_evalset(model, ds)
    m = evaluate_features(extract_features(model, (adv * 255).round().to(torch.uint8)), ev.g_feats, ev.q_pids,
                          ev.g_pids, ev.q_camids, ev.g_camids)
    assert round(m["mAP"], 4) == obj["attacked"]["mAP"] and round(m["R1"], 4) == obj["attacked"]["R1"]
    assert "SMA(" in meta["attack"]
    # --resume keeps the attacked batches; a second run reuses them and reports the same numbers
    keep = tmp_path / "partial"
    for _ in range(2):
        assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                     "--attack", "sma", "--eps", "4/255", "--steps", "3", "--json", "--io", "png",
                     "--batch-size", "16", "--resume", str(keep)]) == 0
        again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert again["attacked"] == obj["attacked"] and len(list(keep.glob("*/*.pt"))) == -(-len(ev.q_pids) // 16)


def test_attack_command_table_and_unknown_attack(tiny_synth, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["-q", "train", "--data-root", str(tiny_synth), "--epochs", "1", "--init", "scratch", "--out", str(out),
                 "--no-eval", "--channels-last", "--stream", "--workers", "1"]) == 0
    import json

    assert json.loads((out / "model.json").read_text())["execution"] == {"channels_last": True, "compile": None}
    assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                 "--attack", "mifgsm", "--steps", "2", "--rerank"]) == 0
    text = capsys.readouterr().out
    assert "mifgsm + re-ranking" in text and "L-inf max" in text
    assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                 "--attack", "mifgsm", "--steps", "3", "--side", "gallery", "--json"]) == 0
    import json

    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert obj["side"] == "gallery" and obj["attacked"]["mAP"] < obj["clean"]["mAP"]
    assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                 "--attack", "smaa"]) == 2
    assert "Did you mean 'sma'?" in capsys.readouterr().err


def test_jad_preset_carries_cs_and_adaptive_attack(tiny_synth, tmp_path, capsys):
    import json

    out = tmp_path / "jad"
    assert main(["-q", "train", "--model", "jad", "--data-root", str(tiny_synth), "--epochs", "1", "--init", "scratch",
                 "--out", str(out),
                 "--no-eval"]) == 0
    card = json.loads((out / "model.json").read_text())
    assert card["train_defense"] == "pd" and card["test_defense"] == "cs"
    capsys.readouterr()
    assert main(["-q", "eval", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["defense"] == "cs"
    assert main(["-q", "eval", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth), "--json",
                 "--defense", "none"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["defense"] is None
    assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                 "--attack", "sma", "--steps", "2", "--adaptive", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert obj["adaptive"] and obj["defense"] == "cs" and obj["linf_max"] <= 5 / 255 + 1e-6
    assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                 "--attack", "sma", "--steps", "1", "--adaptive", "--defense", "cs-r", "--eot", "2"]) == 0
    assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                 "--attack", "sma", "--adaptive", "--defense", "none"]) == 2
    assert "--adaptive attacks through a test-time defense" in capsys.readouterr().err


def test_a_bad_option_value_names_the_option(tmp_path, capsys):
    from reidbench.cli import main

    assert main(["attack", "--checkpoint", str(tmp_path / "missing.pt"), "--eps", "abc"]) == 2
    err = capsys.readouterr().err
    assert "--eps" in err and "'abc'" in err and "5/255" in err
    assert main(["matrix", "--eps", "5/255,x"]) == 2
    assert "--eps" in capsys.readouterr().err


def test_attack_command_auto_reports_its_worst_case_and_components(tiny_synth, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    assert main(["-q", "train", "--data-root", str(tiny_synth), "--epochs", "1", "--init", "scratch", "--out", str(out),
                 "--no-eval"]) == 0
    capsys.readouterr()
    assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                 "--attack", "aa", "--steps", "3", "--json"]) == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(obj["components"]) == {"sd", "margin", "ap"}
    # the ensemble's chosen image per query is never better for the model than its best component in mAP terms
    # by more than its early-stopping floor (0.5 points), and it is an attack
    assert obj["attacked"]["mAP"] < obj["clean"]["mAP"]
    assert obj["attacked"]["mAP"] <= min(c["mAP"] for c in obj["components"].values()) + 0.5 + 1e-9
    assert main(["-q", "attack", "--checkpoint", str(out / "model.pt"), "--data-root", str(tiny_synth),
                 "--attack", "auto", "--steps", "2"]) == 0
    assert "auto/margin" in capsys.readouterr().out
