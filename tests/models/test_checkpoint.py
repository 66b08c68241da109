import json

import pytest
import torch

from reidbench.models import CheckpointError, build_architecture, load_checkpoint, load_state, save_checkpoint


def small(num_classes=5, widths=(8, 16, 24, 32)):
    torch.manual_seed(0)
    return build_architecture("resnet-small", num_classes, widths=widths)


def save(tmp_path, model, **meta):
    return save_checkpoint(model, tmp_path / "model.pt", arch="resnet-small",
                           arch_kwargs={"widths": [8, 16, 24, 32]}, num_classes=5, seed=3, **meta)


def test_round_trip_is_bit_exact(tmp_path):
    m = small()
    with torch.no_grad():  # make BN statistics non-trivial
        m.train()(torch.rand(4, 3, 128, 64))
    m.eval()
    card = save(tmp_path, m, dataset={"name": "synthreid-tiny", "fingerprint": "abc"})
    loaded, card2 = load_checkpoint(tmp_path / "model.pt")
    assert card2 == card and card["seed"] == 3 and len(card["sha256"]) == 64
    for (k, a), (k2, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.rand(2, 3, 128, 64)
    with torch.no_grad():
        assert torch.equal(m(x), loaded(x))
    assert not loaded.training


def test_sidecar_records_provenance(tmp_path):
    save(tmp_path, small(), recipe={"lr": 0.1}, dataset={"name": "d", "fingerprint": "f"})
    card = json.loads((tmp_path / "model.json").read_text())
    for key in ("arch", "arch_kwargs", "num_classes", "reidbench_version", "torch_version", "sha256", "seed",
                "recipe", "dataset"):
        assert key in card


def test_other_architecture_is_named(tmp_path):
    save(tmp_path, small())
    with pytest.raises(CheckpointError, match="holds a 'resnet-small' model, not 'ft_net'"):
        load_checkpoint(tmp_path / "model.pt", arch="ft_net")
    other = build_architecture("resnet-small", 5, widths=(8, 16, 24, 48))
    with pytest.raises(CheckpointError, match="shape differs"):
        load_state(other, torch.load(tmp_path / "model.pt", weights_only=True))
    ftnet = build_architecture("ft_net", 5)
    with pytest.raises(CheckpointError, match="missing keys.*another architecture"):
        load_state(ftnet, torch.load(tmp_path / "model.pt", weights_only=True))


def test_class_count_mismatch_is_named(tmp_path):
    save(tmp_path, small())
    with pytest.raises(CheckpointError, match="class count.*5 identities, the model 9"):
        load_state(small(num_classes=9), torch.load(tmp_path / "model.pt", weights_only=True))


def test_damaged_checkpoint(tmp_path):
    save(tmp_path, small())
    path = tmp_path / "model.pt"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="does not match the SHA-256"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(path, verify=False)


def test_module_prefix_is_stripped(tmp_path):
    m = small()
    state = {f"module.{k}": v for k, v in m.state_dict().items()}
    fresh = small()
    torch.nn.init.zeros_(fresh.neck.classifier.weight)
    load_state(fresh, state)
    assert torch.equal(fresh.neck.classifier.weight, m.neck.classifier.weight)


def test_missing_sidecar(tmp_path):
    torch.save(small().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no sidecar"):
        load_checkpoint(tmp_path / "plain.pt")
