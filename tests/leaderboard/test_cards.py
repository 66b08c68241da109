"""Model cards: made from a checkpoint's sidecar, stored beside the records, derived for rows without one."""

import json

import pytest
import torch

from reidbench.leaderboard.cards import (CARD_FORMAT, CardError, ModelCard, card_from_checkpoint, card_from_records,
                                         cards_for_board, read_cards, write_card)
from reidbench.matrix import iter_records
from reidbench.models import build_architecture, save_checkpoint

from .fakes import fixed_records


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_architecture("resnet-small", 5, widths=(8, 8, 8, 8))
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(model, path, arch="resnet-small", arch_kwargs={"widths": [8, 8, 8, 8]}, num_classes=5,
                    preset="pd", train_defense="pd", seed=3, dataset={"name": "synthreid-tiny", "fingerprint": "ab" * 32},
                    recipe={"name": "cpu", "epochs": 2})
    return path


def test_card_from_a_checkpoint_names_the_row_as_the_records_do(checkpoint, tmp_path):
    card = card_from_checkpoint(checkpoint, model="joint-defense", venue="CVPRW 2022", submitted_by="lab A")
    # the preset's alias is canonicalised by the registry, and jad's test-time defense is its default
    assert card.row == ("jad", "cs")
    assert card.architecture == "resnet-small" and card.initialisation == "scratch"
    assert card.training_data == "synthreid-tiny" and card.training_fingerprint == "ab" * 32
    assert card.training_recipe == {"recipe": "cpu", "epochs": 2, "train_defense": "pd", "seed": 3}
    assert "Gong" in card.paper and "3.2.2" in card.test_defense_paper  # PD's and CS's papers, from the registry
    assert card.venue == "CVPRW 2022" and card.submitted_by == "lab A" and not card.derived
    sidecar = json.loads(checkpoint.with_suffix(".json").read_text())
    assert card.checkpoint_sha256 == sidecar["sha256"]
    path = write_card(tmp_path, card)
    assert path.parent.name == "cards" and read_cards(tmp_path) == {("jad", "cs"): card}
    # the checkpoint's own preset, no defense
    own = card_from_checkpoint(checkpoint)
    assert own.row == ("pd", "none") and own.source == "preset" and own.source_name == "pd"
    assert card_from_checkpoint(checkpoint, model="mine", defense="cs+jpeg").row == ("mine", "cs+jpeg")


def test_a_staged_checkpoint_card_says_how_many_epochs_it_trained(tmp_path):
    # goat-ft and at-lta: the recipe's 8 normal epochs, then 20 adversarial ones in the same history
    model = build_architecture("resnet-small", 5, widths=(8, 8, 8, 8))
    staged, plain = tmp_path / "staged.pt", tmp_path / "plain.pt"
    for path, epochs in ((staged, 5), (plain, 2)):
        save_checkpoint(model, path, arch="resnet-small", arch_kwargs={"widths": [8, 8, 8, 8]}, num_classes=5,
                        preset="goat-ft", seed=0, recipe={"name": "cpu", "epochs": 2},
                        history=[{"epoch": i + 1} for i in range(epochs)])
    assert card_from_checkpoint(staged).training_recipe["epochs_trained"] == 5
    assert "epochs_trained" not in card_from_checkpoint(plain).training_recipe  # the recipe says it already


def test_changed_weights_or_a_bad_card_are_refused(checkpoint, tmp_path):
    changed = tmp_path / "model.pt"
    changed.write_bytes(checkpoint.read_bytes() + b"\0")
    changed.with_suffix(".json").write_text(checkpoint.with_suffix(".json").read_text())
    with pytest.raises(CardError, match="differs from its sidecar"):
        card_from_checkpoint(changed)
    assert card_from_checkpoint(changed, verify=False).checkpoint_sha256 != ""
    with pytest.raises(CardError, match="no sidecar"):
        (tmp_path / "bare.pt").write_bytes(b"x")
        card_from_checkpoint(tmp_path / "bare.pt")
    with pytest.raises(CardError, match="unknown card fields"):
        ModelCard.from_dict({"format": CARD_FORMAT, "model": "x", "accuracy": 99})
    with pytest.raises(CardError, match="not a reidbench-card-v1"):
        ModelCard.from_dict({"format": "other", "model": "x"})
    with pytest.raises(CardError, match="source"):
        ModelCard.from_dict({"format": CARD_FORMAT, "model": "x", "source": "hub"})


def test_rows_without_a_card_get_one_derived_and_a_card_of_other_weights_is_refused(tmp_path):
    results = fixed_records(tmp_path)
    recs = list(iter_records(results))
    cards = cards_for_board(recs, {})
    assert set(cards) == {("baseline", "none"), ("jad", "cs")}
    assert all(c.derived for c in cards.values())
    assert cards[("jad", "cs")].test_defense_paper  # CS's paper, from the registry
    stored = ModelCard(model="jad", defense="cs", paper="ours", checkpoint_sha256="0" * 64)
    with pytest.raises(CardError, match="names checkpoint"):
        cards_for_board(recs, {stored.row: stored})
    ok = ModelCard(model="jad", defense="cs", paper="ours")  # no SHA to compare: accepted as given
    assert cards_for_board(recs, {ok.row: ok})[("jad", "cs")].paper == "ours"
    with pytest.raises(CardError, match="at least one record"):
        card_from_records([])
