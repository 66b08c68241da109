"""The evaluation matrix: plan cells, run them (resumably), write one JSON record per cell.

    reidbench matrix --models baseline,jad --attacks all
"""

from .plan import Cell, MatrixConfig, cell_key, defense_label, plan_cells, resolve_attacks
from .records import (CellClaim, Record, RecordError, decode_hits, encode_hits, iter_records, read_record, record_path,
                      write_record)
from ..store import checkpoint_store
from .runner import MatrixRun, cell_extra, ensure_checkpoint, run_matrix

__all__ = ["MatrixConfig", "Cell", "plan_cells", "cell_key", "defense_label", "resolve_attacks", "ALL_ATTACKS",
           "run_matrix", "MatrixRun", "ensure_checkpoint", "cell_extra", "checkpoint_store",
           "CellClaim", "Record", "RecordError", "encode_hits", "decode_hits", "iter_records", "read_record", "record_path",
           "write_record"]


def __getattr__(name: str):
    if name == "ALL_ATTACKS":  # derived from the registry: the attacks that declare in_all
        from . import plan

        return plan.ALL_ATTACKS
    raise AttributeError(name)
