"""Grad-CAM explains a score with a real gradient: the maps of a trained model are stable, lie on the
person (synthreid knows where it is) and differ from a random model's; the old score (the image's
own feature) has no gradient and is refused."""

import numpy as np
import pytest
import torch

pytest.importorskip("matplotlib")

from reidbench.data.synthreid import SIZES, plan_synthreid, render_job  # noqa: E402
from reidbench.models import build_architecture  # noqa: E402
from reidbench.viz import grad_cam, identity_references, plot_grad_cam  # noqa: E402


@pytest.fixture(scope="module")
def persons():
    """Query images of the tiny synthreid (seed 0, as ``tiny_synth``) with where the person is, and
    for each another image of its identity from another camera: ``(queries, masks, references)``."""
    jobs = plan_synthreid(SIZES["tiny"], 0)

    def render(job):
        pil, mask = render_job(job, 0, with_mask=True)
        return torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255, torch.from_numpy(mask).float()

    q, m, g = [], [], []
    for job in jobs:
        if job["folder"] != "query" or job["truncate"]:
            continue
        other = next((j for j in jobs if j["folder"] == "bounding_box_test" and j["look"] == job["look"]
                      and j["cam"] != job["cam"]), None)
        if other is not None:
            (x, mask), (y, _) = render(job), render(other)
            q.append(x)
            m.append(mask)
            g.append(y)
    return torch.stack(q), torch.stack(m), torch.stack(g)


def on_person(cams, masks, top=0.15):
    """Share of each map's top ``top`` pixels that lie on the person."""
    out = []
    for cam, mask in zip(cams, masks):
        hot = cam >= torch.quantile(cam.flatten(), 1 - top)
        out.append(float((mask[hot] > 0.5).float().mean()))
    return float(np.mean(out))


def test_grad_cam_of_a_trained_model_is_stable_lies_on_the_person_and_differs_from_a_random_model(tiny_trained,
                                                                                                  persons):
    model, _, tr = tiny_trained
    model.eval()                                              # references are evaluation features
    x, masks, others = persons
    with torch.no_grad():
        ref = model(others)
    cam = grad_cam(model, x, ref)
    share = float((masks > 0.5).float().mean())             # the person covers about a quarter of the image
    assert on_person(cam, masks) > 1.3 * share               # noise maps: at chance (measured 1.05x; here 1.56x)
    noisy = (x + 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert float((grad_cam(model, noisy, ref) - cam).abs().mean()) < 0.02   # noise maps move by ~0.24
    torch.manual_seed(1)
    random = build_architecture("resnet-small", int(tr.pids.max()) + 1, widths=(16, 32, 48, 64)).eval()
    with torch.no_grad():
        random_ref = random(others)
    assert float((grad_cam(random, x, random_ref) - cam).abs().mean()) > 0.15
    with torch.no_grad():
        own = model(x)
    with pytest.raises(ValueError, match="no gradient"):    # the image's own feature: a stationary score
        grad_cam(model, x, own)


def test_identity_references_pick_another_camera_of_the_identity(tiny_trained, tmp_path):
    from reidbench.attacks.evaluate import prepare_evalset

    model, ds, _ = tiny_trained
    ev = prepare_evalset(model, ds, progress=False)
    refs = identity_references(ev, [0, 3])
    for row, q in zip(refs, (0, 3)):
        g = int((ev.g_feats == row).all(1).nonzero()[0])
        assert ev.g_pids[g] == ev.q_pids[q] and ev.g_camids[g] != ev.q_camids[q]
    clean = torch.rand(2, 3, 128, 64, generator=torch.Generator().manual_seed(0))
    out = plot_grad_cam({"m": model}, clean, {"m": {}}, tmp_path / "cam.png", references={"m": refs})
    assert out.is_file() and out.stat().st_size > 1000
