"""``python -m reidbench`` (and ``torchrun ... -m reidbench train|eval|attack``): the ``reidbench``
command line."""

import sys

from .cli import main

sys.exit(main())
