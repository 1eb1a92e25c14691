"""``python -m simulations``: the same as ``drift simulate``."""

import sys

from simulations.cli import main

sys.exit(main())
