"""`python -m pocketflow_stream.persist ...`: the runs command line (see cli.py)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
