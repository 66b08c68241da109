import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/oracles.py


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    """Caches and generated data of the test session live in a temporary REIDBENCH_HOME."""
    home = tmp_path_factory.mktemp("reidbench_home")
    old = os.environ.get("REIDBENCH_HOME")
    os.environ["REIDBENCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("REIDBENCH_HOME", None)
    else:
        os.environ["REIDBENCH_HOME"] = old


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory):
    """A tiny synthreid written once per test session."""
    from reidbench.data.synthreid import generate_synthreid

    out = tmp_path_factory.mktemp("synth") / "tiny"
    return generate_synthreid(out, size="tiny", seed=0, workers=1, progress=False)
