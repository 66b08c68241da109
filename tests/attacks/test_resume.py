"""A killed query evaluation resumes from the batches it had attacked and gives the uninterrupted result."""

import pytest
import torch

import reidbench.attacks.evaluate as evaluate_mod
from reidbench.attacks import build_attack
from reidbench.attacks.evaluate import attack_queries, prepare_evalset

BATCH = 8


@pytest.fixture(scope="module")
def setup(tiny_trained):
    model, ds, _ = tiny_trained
    evalset = prepare_evalset(model, ds, "cpu", 64, False)
    assert len(evalset.q_pids) > 3 * BATCH  # several batches
    return model, evalset


def auto(model):
    return build_attack("auto", model, steps=3)  # components: sd, margin, ap (random starts: keyed draws)


def same(a, b):
    assert torch.equal(a["features"], b["features"]) and torch.equal(a["linf"], b["linf"])
    assert torch.equal(a["l2"], b["l2"]) and a["indices"] == b["indices"]
    assert (a["zero_grad"] is None) == (b["zero_grad"] is None)
    if a["zero_grad"] is not None:
        assert torch.equal(a["zero_grad"], b["zero_grad"])
    assert set(a.get("components", {})) == set(b.get("components", {}))
    for name, c in a.get("components", {}).items():
        assert torch.equal(c["features"], b["components"][name]["features"])
        assert c["linf_max"] == b["components"][name]["linf_max"] and c["l2_mean"] == b["components"][name]["l2_mean"]


def killed_after(monkeypatch, n):
    """Make the n-th attacked batch raise (a kill); returns the list of batches attacked."""
    real = evaluate_mod._attack_batch
    calls = []

    def batch(*a, **k):
        calls.append(a[3])
        if len(calls) == n:
            raise KeyboardInterrupt("simulated kill")
        return real(*a, **k)

    monkeypatch.setattr(evaluate_mod, "_attack_batch", batch)
    return calls


def test_a_killed_evaluation_resumes_its_saved_batches_and_gives_the_uninterrupted_result(setup, tmp_path, monkeypatch):
    model, evalset = setup
    ref = attack_queries(auto(model), evalset, model, batch_size=BATCH, key="cell", keep_images=True)
    folder = tmp_path / "partial"
    calls = killed_after(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        attack_queries(auto(model), evalset, model, batch_size=BATCH, key="cell", resume=folder, keep_images=True)
    assert len(sorted(folder.glob("*.pt"))) == 2  # the two finished batches, nothing of the killed one
    monkeypatch.undo()
    calls = killed_after(monkeypatch, 0)  # count only
    out = attack_queries(auto(model), evalset, model, batch_size=BATCH, key="cell", resume=folder, keep_images=True)
    n_batches = -(-len(evalset.q_pids) // BATCH)
    assert len(calls) == n_batches - 2  # the saved batches were not attacked again
    assert calls[0][0] == 2 * BATCH
    same(out, ref)
    assert torch.equal(out["images"], ref["images"])
    assert out["seconds"] > 0
    # a third run attacks nothing
    calls.clear()
    again = attack_queries(auto(model), evalset, model, batch_size=BATCH, key="cell", resume=folder)
    assert calls == []
    same(again, ref)


def test_batches_of_another_evaluation_are_refused_not_reused(setup, tmp_path):
    model, evalset = setup
    folder = tmp_path / "partial"
    sub = list(range(2 * BATCH))
    attack_queries(auto(model), evalset, model, batch_size=BATCH, key="cell-a", resume=folder, indices=sub)
    with pytest.raises(ValueError, match="another evaluation"):  # another key: other random draws
        attack_queries(auto(model), evalset, model, batch_size=BATCH, key="cell-b", resume=folder, indices=sub)
    with pytest.raises(ValueError, match="another evaluation"):  # another attack, same key
        attack_queries(build_attack("sma", model, steps=2), evalset, model, batch_size=BATCH, key="cell-a",
                       resume=folder, indices=sub)
    with torch.no_grad():  # the same model with other weights
        w = next(model.parameters())
        saved = w.clone()
        w.add_(1e-3)
        try:
            with pytest.raises(ValueError, match="another evaluation"):
                attack_queries(auto(model), evalset, model, batch_size=BATCH, key="cell-a", resume=folder, indices=sub)
        finally:
            w.copy_(saved)
    # the same evaluation reuses them
    attack_queries(auto(model), evalset, model, batch_size=BATCH, key="cell-a", resume=folder, indices=sub)
