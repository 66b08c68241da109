"""The store's checkpoint of each row of a board: the ``model.pt`` whose SHA-256 the row's records
name (training on another machine gives other weights, so the store must hold the board's own).

    python scripts/board_checkpoints.py RESULTS          # per row: model, defense, path (tab-separated)
    python scripts/board_checkpoints.py RESULTS MODEL    # the path of MODEL's checkpoint

The store is reidbench's (``$REIDBENCH_CHECKPOINTS``, else ``$REIDBENCH_HOME/checkpoints``).

Used by scripts/regenerate-leaderboard.sh (the model cards) and scripts/board-figures.sh.
"""

import sys
from pathlib import Path

from reidbench.matrix.records import iter_records
from reidbench.models import sha256_file
from reidbench.store import checkpoint_store


def main(results: str, model: str | None = None) -> None:
    store = checkpoint_store()
    rows = sorted({(r.cell["model"], r.cell["defense"], r.config["model"]["sha256"]) for r in iter_records(results)})
    if model is not None:
        rows = [row for row in rows if row[0] == model][:1]
        if not rows:
            sys.exit(f"no record of the model {model!r} under {results}")
    by_sha = {sha256_file(p): p for p in sorted(Path(store).glob("*/model.pt"))}
    for name, defense, sha in rows:
        if sha not in by_sha:
            sys.exit(f"no checkpoint under {store} has the SHA-256 {sha[:12]} that {name}'s records name: "
                     "train it there (scripts/regenerate-leaderboard.sh) or copy the board's store in")
        print(by_sha[sha] if model is not None else f"{name}\t{defense}\t{by_sha[sha]}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
