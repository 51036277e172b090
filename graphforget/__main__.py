"""``python -m graphforget``: the command line (see :mod:`graphforget.cli`)."""
import sys

from .cli import main

sys.exit(main())
