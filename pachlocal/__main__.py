"""``python -m pachlocal``."""

import sys

from .cli import main

sys.exit(main())
