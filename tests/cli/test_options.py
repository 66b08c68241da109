"""The option groups shared by commands and their readers: one spelling, errors that name the option."""

import argparse
import json

import pytest

from reidbench.cli import build_parser
from reidbench.cli import options
from reidbench.cli.options import CLIError
from reidbench.cli.report import Report, attack_report


def test_commands_that_share_an_option_group_spell_it_the_same():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    budget = {"attack": "--attack-arg", "matrix": "--attack-arg"}
    for cmd, flag in budget.items():
        assert flag in sub.choices[cmd]._option_string_actions
    for cmd in ("eval", "attack"):
        p = sub.choices[cmd]
        assert {"--checkpoint", "--dataset", "--data-root", "--synth-size", "--device", "--defense"} <= set(
            p._option_string_actions)


def test_attack_args_per_attack_and_on_one_attack():
    assert options.per_attack_args(["mifgsm:gong_faithful=true", "i-fgsm:steps=3", "lta:eps=0.02"]) == {
        "mifgsm": {"gong_faithful": True, "steps": 3}, "lta": {"eps": 0.02}}   # the alias resolves to its attack
    with pytest.raises(CLIError, match="ATTACK:KEY=VALUE"):
        options.per_attack_args(["gong_faithful=true"])
    ns = argparse.Namespace(attack="mifgsm(steps=2)", attack_arg=["gong_faithful=true"])
    assert options.attack_spec(ns).text == "mifgsm(gong_faithful=true, steps=2)"
    with pytest.raises(CLIError, match="KEY=VALUE"):
        options.attack_spec(argparse.Namespace(attack="sma", attack_arg=["oops"]))


def test_readers_name_the_option_they_read():
    with pytest.raises(ValueError, match="--eps"):
        options.eps_list("5/255,abc")
    assert options.eps_list(None) == (None,) and options.eps_list("5/255") == (5 / 255,)
    with pytest.raises(CLIError, match="--seeds"):
        options.int_list("0,x", "--seeds")
    ns = argparse.Namespace(seed=3, eps="8/255", alpha=None, steps=7)
    assert options.budget(ns) == {"seed": 3, "eps": 8 / 255, "steps": 7}


def test_one_report_prints_a_table_or_one_json_object(capsys):
    m = {"R1": 50.0, "R5": 60.0, "R10": 70.0, "mAP": 40.0, "mINP": 20.0, "rerank": {
        "R1": 55.0, "R5": 65.0, "R10": 75.0, "mAP": 45.0, "mINP": 25.0}}
    res = {"clean": m, "attacked": {**m, "mAP": 10.0}, "linf_max": 5 / 255, "linf_mean": 4 / 255, "l2_mean": 1.5,
           "seconds": 2.0}

    class Atk:
        name = "sma"

        def __repr__(self):
            return "SMA(eps=5/255)"

    rep = attack_report(res, Atk(), True, "header", queries=10, dataset="d")
    rep.print()
    out = capsys.readouterr().out
    assert out.startswith("header\n") and "sma + re-ranking" in out and "5.00/255" in out and "(5 queries/s)" in out
    rep.print(as_json=True)
    obj = json.loads(capsys.readouterr().out)
    assert obj["attacked"]["mAP"] == 10.0 and obj["attacked"]["rerank"]["mAP"] == 45.0 and obj["queries"] == 10
    Report().add("x", m).print()
    assert "| x " in capsys.readouterr().out
