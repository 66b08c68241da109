"""The evaluation matrix: plan cells, run them (resumably), write one JSON record per cell.

    reidbench matrix --models baseline,jad --attacks all
"""

from .plan import ALL_ATTACKS, Cell, MatrixConfig, cell_key, defense_label, plan_cells, resolve_attacks
from .records import (CellClaim, RecordError, decode_hits, encode_hits, iter_records, read_record, record_path,
                      write_record)
from .runner import DMR_SYNTH_CONFIG, MatrixRun, checkpoint_store, ensure_checkpoint, fitted_dmr, run_matrix

__all__ = ["MatrixConfig", "Cell", "plan_cells", "cell_key", "defense_label", "resolve_attacks", "ALL_ATTACKS",
           "run_matrix", "MatrixRun", "ensure_checkpoint", "fitted_dmr", "checkpoint_store", "DMR_SYNTH_CONFIG",
           "CellClaim", "RecordError", "encode_hits", "decode_hits", "iter_records", "read_record", "record_path",
           "write_record"]
