"""`python -m pocketflow_stream.demo`: the flagship demo (also `python -m pocketflow_stream`)."""

import sys

from . import main

if __name__ == "__main__":
    sys.exit(main())
