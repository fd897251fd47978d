"""`python -m pocketflow_stream`: the flagship demo, and two commands.

    python -m pocketflow_stream [question] [--fast --events --async --offline --ui]
    python -m pocketflow_stream mermaid module:flow     # draw a flow as a Mermaid flowchart
    python -m pocketflow_stream runs ...                # list, show, resume saved runs

Each command is a `main(argv) -> int` of its own layer; this module only dispatches.
"""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["mermaid"]:
        from .ui import mermaid

        return mermaid.main(args[1:])
    if args[:1] == ["runs"]:
        try:
            from .persist import cli
        except ImportError:
            print(
                "error: this version has no saved runs (pocketflow_stream.persist)", file=sys.stderr
            )
            return 2
        return int(cli.main(args[1:]))
    from . import demo

    return demo.main(args)


if __name__ == "__main__":
    sys.exit(main())
