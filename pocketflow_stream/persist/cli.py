"""The runs command line: list, show and delete the runs checkpointed in a SQLite file.

    python -m pocketflow_stream runs --db runs.db list [--status paused] [--json]
    python -m pocketflow_stream runs --db runs.db show RUN_ID [--seq N] [--shared] [--json]
    python -m pocketflow_stream runs --db runs.db delete RUN_ID [RUN_ID ...]

(`python -m pocketflow_stream.persist ...` is the same.) `--db` defaults to
$POCKETFLOW_STREAM_DB, else `runs.db`. It only reads and deletes: resuming needs the app's
flow, so it happens in the app.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from typing import Any, Optional, Sequence, TextIO

from .sqlite_store import SQLiteStore
from .store import STATUSES, RunInfo
from .strict_json import CheckpointError

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None, out: Optional[TextIO] = None) -> int:
    """Run the command line with `argv` (without the program name; a leading "runs" is
    accepted too). Returns the exit status: 0 done, 1 no such run, 2 bad usage or file."""
    out = out or sys.stdout
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["runs"]:
        args = args[1:]
    parser = _parser()
    try:
        options = parser.parse_args(args)
    except SystemExit as exit:
        return int(exit.code or 0)
    if not os.path.exists(options.db):
        print(
            f"no runs database at {options.db!r}: pass --db PATH (or set POCKETFLOW_STREAM_DB) "
            f"to the SQLite file the app checkpoints to",
            file=sys.stderr,
        )
        return 2
    try:
        with SQLiteStore(options.db) as store:
            return int(options.command(store, options, out))
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pocketflow_stream runs",
        description="List, show and delete the runs checkpointed in a SQLite file.",
    )
    parser.add_argument(
        "--db",
        default=os.environ.get("POCKETFLOW_STREAM_DB", "runs.db"),
        help="the SQLite file (default: $POCKETFLOW_STREAM_DB or runs.db)",
    )
    commands = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="the runs, most recently moved first")
    listing.add_argument("--status", choices=STATUSES, help="only runs with this status")
    listing.add_argument("--limit", type=int, default=None, help="at most this many")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(command=_list)

    show = commands.add_parser("show", help="where a run stands, its pending interrupts")
    show.add_argument("run_id")
    show.add_argument("--seq", type=int, default=None, help="an older checkpoint (history=N)")
    show.add_argument("--shared", action="store_true", help="print its shared state too")
    show.add_argument("--json", action="store_true", help="the whole checkpoint as JSON")
    show.set_defaults(command=_show)

    delete = commands.add_parser("delete", help="remove runs and their history")
    delete.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    delete.set_defaults(command=_delete)
    return parser


def _list(store: SQLiteStore, options: argparse.Namespace, out: TextIO) -> int:
    infos = store.list(status=options.status, limit=options.limit)
    if options.json:
        for info in infos:
            print(json.dumps(info.to_dict()), file=out)
        return 0
    if not infos:
        print("no runs", file=out)
        return 0
    rows = [("RUN", "STATUS", "SEQ", "MOVED", "AT", "WAITING FOR")]
    for info in infos:
        rows.append(
            (
                info.run_id,
                info.status + (" (busy)" if _busy(info) else ""),
                str(info.seq),
                _ago(info.updated_at),
                info.at or "-",
                ", ".join(str(ask.get("id")) for ask in info.interrupts) or "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)
    return 0


def _show(store: SQLiteStore, options: argparse.Namespace, out: TextIO) -> int:
    try:
        record = store.load(options.run_id, options.seq)
    except KeyError as missing:
        print(f"error: {missing}", file=sys.stderr)
        return 1
    if record is None:
        print(f"error: no run {options.run_id!r} in {options.db!r}", file=sys.stderr)
        return 1
    if options.json:
        print(record.to_json(record.seq, record.updated_at), file=out)
        return 0
    info = next((i for i in store.list() if i.run_id == record.run_id), None)
    kept = store.seqs(record.run_id)
    kept = kept if len(kept) > 1 else []
    lines = [
        f"run:        {record.run_id}",
        f"status:     {record.status}",
        f"at:         {record.at or '-'}",
        f"checkpoint: {record.seq}" + (f" (kept: {', '.join(map(str, kept))})" if kept else ""),
        f"moved:      {_when(record.updated_at)} ({_ago(record.updated_at)} ago)",
    ]
    if info is not None and _busy(info):
        lines.append(f"lease:      held by {info.lease_owner} (running right now)")
    if record.error:
        lines.append(f"error:      {record.error}")
    if record.interrupts:
        lines.append(f"waiting for {len(record.interrupts)} answer(s):")
        for ask in record.interrupts:
            where = " > ".join(ask.get("path") or []) or ask.get("node") or "?"
            lines.append(f"  {ask.get('id')}  (asked by {where})")
            lines.extend("    " + line for line in _pretty(ask.get("payload")).splitlines())
    print("\n".join(lines), file=out)
    if options.shared:
        print("shared:", file=out)
        print(_pretty(record.shared), file=out)
    return 0


def _delete(store: SQLiteStore, options: argparse.Namespace, out: TextIO) -> int:
    status = 0
    for run_id in options.run_ids:
        if store.delete(run_id):
            print(f"deleted {run_id}", file=out)
        else:
            print(f"error: no run {run_id!r} in {options.db!r}", file=sys.stderr)
            status = 1
    return status


def _busy(info: RunInfo) -> bool:
    return info.lease_expires is not None and info.lease_expires >= time.time()


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _when(timestamp: float) -> str:
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _ago(timestamp: float) -> str:
    seconds = max(0, int(time.time() - timestamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
