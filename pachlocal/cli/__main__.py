"""``python -m pachlocal.cli``: the same as ``python -m pachlocal``."""

import sys

from . import main

sys.exit(main())
