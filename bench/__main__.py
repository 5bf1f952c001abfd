"""``python -m bench``: see :mod:`bench.runner` (or ``python -m bench --help``)."""

import sys

from .runner import main

sys.exit(main())
