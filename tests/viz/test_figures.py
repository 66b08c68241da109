"""Figures from fixed records and tensors: files written, sizes, deterministic bytes, and the
properties behind the pictures (ranked lists follow the Market protocol, t-SNE keeps clusters)."""

import hashlib

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from reidbench.viz import (grad_cam, plot_eps_curves, plot_heatmap, plot_perturbation, plot_ranked_lists,  # noqa: E402
                           ranked_lists, tsne)

from ..leaderboard.test_tables import fixed_records, record  # noqa: E402


def png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_heatmap_from_records_is_deterministic(tmp_path):
    res = fixed_records(tmp_path / "res")
    a, b = plot_heatmap(res, tmp_path / "a.png"), plot_heatmap(res, tmp_path / "b.png")
    w, h = png_size(a)
    assert w > 300 and h > 150 and digest(a) == digest(b)
    svg = plot_heatmap(res, tmp_path / "a.svg", metric="R1")
    assert svg.read_text().lstrip().startswith("<?xml") and digest(svg) == digest(plot_heatmap(res, tmp_path / "b.svg",
                                                                                              metric="R1"))
    with pytest.raises(ValueError, match="mAP"):
        plot_heatmap(res, tmp_path / "c.png", metric="mINP")


def test_eps_curves_need_several_budgets(tmp_path):
    from reidbench.matrix import write_record

    res = fixed_records(tmp_path / "res")
    with pytest.raises(ValueError, match="one budget only"):
        plot_eps_curves(res, tmp_path / "x.png")
    ones = [1] * 8
    for k, eps in enumerate((2 / 255, 8 / 255)):
        slug, rec = record("baseline", "none", "sma", "white-box", [1, 0, 0, 0, 1, 0, 0, 0], [0.5] * 8, eps=eps)
        slug += f"__e{k}"
        rec["slug"], rec["key"] = slug, slug.ljust(64, "1")
        write_record(res / "records" / f"{slug}.json", rec)
    assert ones  # the clean cell of the fixed records is the curve's eps-0 point
    out = plot_eps_curves(res, tmp_path / "curves.png")
    assert png_size(out)[0] > 500 and digest(out) == digest(plot_eps_curves(res, tmp_path / "again.png"))


def test_perturbation_panel_from_fixed_tensors(tmp_path):
    from reidbench.defenses import build_defense

    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 128, 64, generator=g)
    adv = (clean + (torch.rand(clean.shape, generator=g) - 0.5) * 10 / 255).clamp(0, 1)
    out = plot_perturbation(clean, adv, tmp_path / "p.png", defense=build_defense("cs"))
    out2 = plot_perturbation(clean, adv, tmp_path / "q.png", defense=build_defense("cs"))
    assert digest(out) == digest(out2)
    three = plot_perturbation(clean[0], adv[0], tmp_path / "r.png")  # no defense: 3 columns
    assert png_size(three)[0] < png_size(out)[0]


def test_ranked_lists_follow_the_market_protocol(tiny_trained, tmp_path):
    from reidbench.attacks.evaluate import prepare_evalset
    from reidbench.evaluation import evaluate_features

    model, ds, _ = tiny_trained
    ev = prepare_evalset(model, ds)
    res = evaluate_features(ev.q_feats, ev.g_feats, ev.q_pids, ev.g_pids, ev.q_camids, ev.g_camids)
    queries = [0, 3, 7]
    noise = torch.rand(len(queries), 3, 128, 64)
    lists = ranked_lists(model, ds, queries, adversarial={"noise": noise}, topk=5, evalset=ev)
    assert list(lists.panels) == ["clean", "noise"]
    x, idx, match = lists.panels["clean"]
    assert idx.shape == (3, 5)
    for row, q in enumerate(queries):
        g = idx[row]
        # never a same-identity image from the query's own camera, matches flagged by identity
        same_cam = (ev.g_pids.cpu()[g] == int(ev.q_pids[q])) & (ev.g_camids.cpu()[g] == int(ev.q_camids[q]))
        assert not same_cam.any()
        assert torch.equal(match[row], ev.g_pids.cpu()[g] == int(ev.q_pids[q]))
        assert bool(match[row, 0]) == (res["per_query"]["first_match_rank"][q] == 0)
    out = plot_ranked_lists(lists, tmp_path / "ranks.png", title="t")
    w, h = png_size(out)
    assert h > w  # 6 strips of 6 images
    with pytest.raises(ValueError, match="out of range"):
        ranked_lists(model, ds, [10_000], evalset=ev)
    with pytest.raises(ValueError, match="one per selected query"):
        ranked_lists(model, ds, queries, adversarial={"bad": noise[:2]}, evalset=ev)


def test_grad_cam_maps_and_model_state(tiny_trained):
    model, ds, tr = tiny_trained
    x = tr.images[:3].float() / 255
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    cam = grad_cam(model, x)
    assert cam.shape == (3, 128, 64) and float(cam.min()) >= 0 and float(cam.max()) <= 1
    peak = cam.flatten(1).amax(1)
    assert bool(((peak - 1).abs() < 1e-6).logical_or(peak == 0).all()) and bool((peak > 0).any())
    assert model.training  # restored
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    model.eval()


def test_tsne_keeps_separated_clusters_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=g) * 10
    x = torch.cat([c + torch.randn(20, 16, generator=g) for c in centres])
    labels = np.repeat(np.arange(3), 20)
    y = tsne(x, perplexity=10, iters=400, seed=1)
    assert y.shape == (60, 2) and np.isfinite(y).all()
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95
    assert np.array_equal(y, tsne(x, perplexity=10, iters=400, seed=1))
    with pytest.raises(ValueError, match="at least 4"):
        tsne(x[:3])
