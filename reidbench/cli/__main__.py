"""``python -m reidbench.cli``: the same as the ``reidbench`` script."""

import sys

from . import main

sys.exit(main())
