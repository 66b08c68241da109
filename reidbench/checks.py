"""Self-checks of an attack evaluation, in the spirit of AutoAttack's ``checks.py``: signs that a
cell's number overstates robustness, detected from the run itself rather than declared.

* ``unconverged``: on a fixed subset of queries, the same attack with 4x the iterations lowers mAP
  by more than 1 point -- the cell's attack stopped before it converged.
* ``zero-gradient``: more than 1 % of the queries had an all-zero input gradient at the attack's
  first step (gradient masking, a saturated loss, or a bug).
* ``randomised-no-eot``: two evaluations of the model the attacker differentiates, on the same
  input, differ (the defense is randomised, whatever it declares) and the attack averaged no EOT
  samples.

:func:`run_checks` returns one JSON-able dict per cell (each check's measurements and whether it
``fired``); the matrix stores it in the record and the leaderboard shows fired checks as flags.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from . import rng
from .data.transforms import select_rows, to_model_input

__all__ = ["run_checks", "check_subset", "CHECK_FLAGS", "UNCONVERGED_MAP_POINTS", "ZERO_GRAD_FRACTION"]

#: a cell is unconverged when 4x the iterations lower the subset's mAP by more than this (points)
UNCONVERGED_MAP_POINTS = 1.0
#: the zero-gradient check fires above this fraction of queries
ZERO_GRAD_FRACTION = 0.01
#: the check's name in a record -> the board's flag
CHECK_FLAGS = {"unconverged": "unconverged", "zero_gradient": "zero-gradient", "randomised_no_eot": "randomised-no-eot"}


def check_subset(n_queries: int, size: int) -> list[int]:
    """The fixed subset of queries the convergence check attacks again: ``size`` indices evenly
    spread over the query set (all queries when there are fewer)."""
    if size <= 0 or n_queries <= 0:
        return []
    if size >= n_queries:
        return list(range(n_queries))
    step = n_queries / size
    return sorted({int(i * step) for i in range(size)})


def _iterations(attack) -> int | None:
    steps = getattr(attack, "steps", None)
    return int(steps) if isinstance(steps, int) and steps > 0 else None


def run_checks(attack, out: dict[str, Any], evalset, eval_model: torch.nn.Module, *,
               rebuild: Callable[[int], Any], context=None, batch_size: int = 64, device="cpu", io: str = "memory",
               key: str = "", ap: str = "torchreid", subset: int = 32, resume=None) -> dict[str, Any]:
    """The self-checks of one attacked cell.

    ``attack``: the attack that ran; ``out``: its :func:`~reidbench.attacks.evaluate.attack_queries`
    output; ``rebuild(steps)``: the same attack with ``steps`` iterations (the convergence check);
    ``subset``: how many queries the convergence check attacks again (0: skip it); ``resume``: the
    folder where the check's longer run keeps its finished batches (see ``attack_queries``)."""
    from .attacks.evaluate import attack_queries, evaluate_attacked

    checks: dict[str, Any] = {}
    # zero gradient at the first step
    zero = out.get("zero_grad")
    if zero is not None and len(zero):
        frac = float(zero.float().mean())
        checks["zero_gradient"] = {"fraction": round(frac, 4), "queries": int(len(zero)),
                                   "fired": frac > ZERO_GRAD_FRACTION}
    # convergence: 4x the iterations on a fixed subset of queries
    steps = _iterations(attack)
    idx = check_subset(len(evalset.q_pids), subset)
    if steps is not None and idx:
        ran = evaluate_attacked({"features": out["features"][torch.tensor(idx)]}, evalset, ap=ap, indices=idx)
        longer = rebuild(4 * steps)
        again = attack_queries(longer, evalset, eval_model, batch_size=batch_size, device=device, io=io,
                               context=context, key=key, indices=idx, resume=resume)
        res = evaluate_attacked(again, evalset, ap=ap, indices=idx)
        drop = ran["attacked"]["mAP"] - res["attacked"]["mAP"]
        checks["unconverged"] = {"queries": len(idx), "steps": steps, "steps_check": 4 * steps,
                                 "mAP": round(ran["attacked"]["mAP"], 4), "mAP_check": round(res["attacked"]["mAP"], 4),
                                 "R1": round(ran["attacked"]["R1"], 4), "R1_check": round(res["attacked"]["R1"], 4),
                                 "fired": drop > UNCONVERGED_MAP_POINTS}
    # a randomised forward path without EOT: detected on the attacker's model
    model = getattr(attack, "model", None)
    if isinstance(model, torch.nn.Module):
        probe = list(range(min(8, len(evalset.q_pids))))
        x = to_model_input(select_rows(evalset.query_images, probe), tuple(eval_model.input_size), device)
        feats = []
        was = model.training
        model.eval()
        try:
            with torch.no_grad(), rng.scope(key=key, purpose="check", indices=probe, step="randomness"):
                for j in range(2):
                    with rng.scope(eot=j):
                        feats.append(model(x))
        finally:
            model.train(was)
        differs = not torch.allclose(feats[0], feats[1], rtol=0, atol=1e-6)
        eot = int(getattr(attack, "eot_samples", 1) or 1)
        checks["randomised_no_eot"] = {"differs": differs, "eot_samples": eot, "fired": differs and eot <= 1}
    return checks
