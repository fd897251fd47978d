"""Benchmark: a streamed tool argument shown live, fragment by fragment.

Part 1, one string field live. A `save_file`-like argument (nested objects, a long multi-line
`content` with quotes, backslashes and \\uXXXX escapes, emoji as surrogate pairs) arrives in
5-character fragments.
After every fragment a UI wants the new text of `files[0].content`. Three ways, timed in the
same run:

- ours: one `PartialJSON` fed each fragment, `StringWatch.read()` after each;
- jiter: re-parse the whole prefix after each fragment with
  `jiter.from_json(prefix, partial_mode="trailing-strings")`, take the field, slice off the new
  suffix (the same UI work);
- partial-json-parser: the same with `partial_json_parser.loads(prefix)`.

Re-parsing is quadratic, so at 1 MB the two baselines run on the first fragments only, under a
time cap, and their full time is extrapolated (marked "~"). Targets: ours <= 1x jiter at 20 KB;
ours at 1 MB <= 60x ours at 20 KB.

Part 2, the whole value healed after every fragment, for two shapes: the `save_file` argument
above (mostly one long string) and `{"rows": [...]}`, an array of many small records (search
results, table rows). Two ways, same run: `PartialJSON.healed()` after each fragment, and
`jiter.from_json(prefix, partial_mode="trailing-strings")` on the whole prefix after each.
Targets, per shape: ours at 200 KB <= 12x ours at 20 KB; ours <= 0.5x jiter at 20 KB. It also
counts, in an untimed pass, the values each way showed that a later value contradicts (a number
that grew, a value that changed type), and times a floor per shape: what any healed value that
never changes once returned must copy. For the long string, its text as a new `str` after every
fragment; for the records, a new list of the rows shown, at each fragment that changes the value.

Times are the CPU time of this process (`time.process_time`), so that other work on a shared
machine distorts them less; the caps are wall-clock time.

Run: python bench/bench_partial_json.py [--repeats N] [--cap SECONDS]
Needs the bench extras: pip install -e '.[bench]'
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runs from a checkout too

from pocketflow_stream.llm.partial_json import PartialJSON  # noqa: E402

FRAGMENT_SIZE = 5
FIELD = ("files", 0, "content")

_LINES = [
    'def greet(name: str) -> str:\n    return f"Héllo, {name}! \\o/"\n',
    "# Ünïcödé comment: naïve café, crème brûlée, 東京, Ωmega — ok\n",
    'print("tab\\tseparated", \'single\', "emoji 🚀🎉 and 😀")\n',
    "    path = 'C:\\\\Users\\\\me\\\\file.txt'  # backslashes\n",
    "\n",
]


def make_argument(target_size: int) -> str:
    """The JSON text of a tool argument about `target_size` characters long."""
    meta = {
        "author": {"name": "Zoë", "email": "zoe@example.com", "roles": ["dev", "reviewer"]},
        "options": {"overwrite": True, "mode": 420, "ratio": 0.75, "tags": None},
        "history": [{"rev": index, "note": f"revision {index} ✓"} for index in range(5)],
    }
    argument = {"path": "src/app/main.py", "meta": meta, "files": [{"name": "main.py"}]}
    overhead = len(json.dumps(argument))
    lines: List[str] = []
    size = overhead
    index = 0
    while size < target_size:
        line = _LINES[index % len(_LINES)]
        lines.append(line)
        size += len(json.dumps(line)) - 2
        index += 1
    argument["files"][0]["content"] = "".join(lines)
    argument["files"].append({"name": "README.md", "content": "# Demo\n"})
    return json.dumps(argument)  # ensure_ascii: non-ASCII text arrives as \uXXXX escapes


def make_records(target_size: int) -> str:
    """The JSON text of `{"rows": [...]}` with small records, about `target_size` characters."""
    rows: List[Any] = []
    size = len('{"rows": []}')
    index = 0
    while size < target_size:
        row = {
            "id": index,
            "title": f"Result {index}: café ✓",
            "score": round(0.5 + (index % 7) / 10, 2),
            "done": index % 3 == 0,
            "tags": ["a", "b"] if index % 2 else [],
        }
        rows.append(row)
        size += len(json.dumps(row)) + 2
        index += 1
    return json.dumps({"rows": rows})


def fragments_of(text: str) -> List[str]:
    return [text[start : start + FRAGMENT_SIZE] for start in range(0, len(text), FRAGMENT_SIZE)]


def run_ours(fragments: List[str], limit: float) -> Tuple[str, int]:
    parser = PartialJSON()
    content = parser.watch(FIELD)
    shown: List[str] = []
    for fragment in fragments:
        parser.feed(fragment)
        new_text = content.read()
        if new_text:
            shown.append(new_text)
    parser.finish()
    return "".join(shown), len(fragments)


def _field(value: Any) -> str:
    try:
        text = value[FIELD[0]][FIELD[1]][FIELD[2]]
    except (KeyError, IndexError, TypeError):
        return ""
    return text if isinstance(text, str) else ""


def run_jiter(fragments: List[str], limit: float) -> Tuple[str, int]:
    import jiter

    prefix = bytearray()
    shown: List[str] = []
    shown_length = 0
    deadline = time.perf_counter() + limit
    for count, fragment in enumerate(fragments, 1):
        prefix += fragment.encode()
        text = _field(jiter.from_json(bytes(prefix), partial_mode="trailing-strings"))
        if len(text) > shown_length:
            shown.append(text[shown_length:])
            shown_length = len(text)
        if time.perf_counter() > deadline:
            return "".join(shown), count
    return "".join(shown), len(fragments)


def run_partial_json_parser(fragments: List[str], limit: float) -> Tuple[str, int]:
    import partial_json_parser

    prefix = ""
    shown: List[str] = []
    shown_length = 0
    deadline = time.perf_counter() + limit
    for count, fragment in enumerate(fragments, 1):
        prefix += fragment
        try:
            value = partial_json_parser.loads(prefix)
        except Exception:  # some prefixes it cannot heal: nothing new to show then
            value = None
        text = _field(value)
        if len(text) > shown_length:
            shown.append(text[shown_length:])
            shown_length = len(text)
        if time.perf_counter() > deadline:
            return "".join(shown), count
    return "".join(shown), len(fragments)


def run_ours_healed(fragments: List[str], limit: float) -> Tuple[Any, int]:
    parser = PartialJSON()
    value = None
    for fragment in fragments:
        parser.feed(fragment)
        value = parser.healed()
    parser.finish()
    return value, len(fragments)


def run_jiter_healed(fragments: List[str], limit: float) -> Tuple[Any, int]:
    import jiter

    prefix = bytearray()
    value = None
    deadline = time.perf_counter() + limit
    for count, fragment in enumerate(fragments, 1):
        prefix += fragment.encode()
        value = jiter.from_json(bytes(prefix), partial_mode="trailing-strings")
        if time.perf_counter() > deadline:
            return value, count
    return value, len(fragments)


def run_string_floor(fragments: List[str], limit: float) -> Tuple[Any, int]:
    """One new str of the open content's text per fragment: a single copy of it, nothing else."""
    content = _field(json.loads("".join(fragments)))
    step = len(content) / len(fragments)
    pieces = [
        content[int(index * step) : int((index + 1) * step)] for index in range(len(fragments))
    ]
    text = ""
    for piece in pieces:
        text = text + piece  # another reference is held below, as a shown value would be
        shown = text  # noqa: F841
    return None, len(fragments)


def run_array_floor(fragments: List[str], limit: float) -> Tuple[Any, int]:
    """The copy any never-changing view of a growing array must make: at each fragment after
    which the shown value changes, one new list of the rows shown so far (nothing else)."""
    rows = json.loads("".join(fragments))["rows"]
    parser = PartialJSON()
    counts: List[int] = []  # rows shown after each fragment that changes the value (untimed)
    previous = None
    for fragment in fragments:
        parser.feed(fragment)
        value = parser.healed()
        if value is not previous:
            counts.append(len(value.get("rows", ())) if isinstance(value, dict) else 0)
        previous = value
    start = time.process_time()
    for count in counts:
        view = rows[:count]  # noqa: F841
    return time.process_time() - start, len(fragments)


def _same(left: Any, right: Any) -> bool:
    return json.dumps(left) == json.dumps(right)


def _consistent(partial: Any, final: Any) -> bool:
    """Whether `partial` can grow into `final` (strings are prefixes, containers gain members at
    their end, and everything before an open container's last member is already final)."""
    if isinstance(partial, str):
        return isinstance(final, str) and final.startswith(partial)
    if isinstance(partial, list):
        if not isinstance(final, list) or len(partial) > len(final):
            return False
        done = all(_same(a, b) for a, b in zip(partial[:-1], final))
        return done and (not partial or _consistent(partial[-1], final[len(partial) - 1]))
    if isinstance(partial, dict):
        if not isinstance(final, dict) or list(partial) != list(final)[: len(partial)]:
            return False
        keys = list(partial)
        done = all(_same(partial[key], final[key]) for key in keys[:-1])
        return done and (not keys or _consistent(partial[keys[-1]], final[keys[-1]]))
    return _same(partial, final)


def contradicted_values(fragments: List[str], heal: Callable[[str], Any]) -> int:
    """How many successive healed values a later one contradicts (checked pairwise, untimed)."""
    count = 0
    previous: Any = None
    prefix = ""
    for fragment in fragments:
        prefix += fragment
        value = heal(prefix)
        if previous is not None and value is not None and not _consistent(previous, value):
            count += 1
        previous = value
    return count


def measure(
    run: Callable[[List[str], float], Tuple[str, int]],
    fragments: List[str],
    repeats: int,
    cap: float,
    quadratic: bool,
) -> Tuple[float, bool, str]:
    """Best time of `repeats` runs, the full-run estimate if capped, and the text shown."""
    best = float("inf")
    shown = ""
    for _ in range(repeats):
        gc.collect()  # start each run from the same heap, whatever ran before
        start = time.process_time()
        shown, done = run(fragments, cap)
        elapsed = time.process_time() - start
        if done < len(fragments):
            # Each re-parse costs about its prefix length, so the first k cost ~k^2 of N^2.
            scale = (len(fragments) / done) ** 2 if quadratic else len(fragments) / done
            return elapsed * scale, True, shown
        best = min(best, elapsed)
    return best, False, shown


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeats", type=int, default=5, help="best of N runs (default 5)")
    options.add_argument(
        "--cap", type=float, default=5.0, help="seconds before a baseline is extrapolated"
    )
    arguments = options.parse_args()

    sizes = [("20 KB", 20 * 1024), ("1 MB", 1024 * 1024)]
    contenders = [
        ("ours (PartialJSON)", run_ours, False),
        ("jiter re-parse", run_jiter, True),
        ("partial-json-parser", run_partial_json_parser, True),
    ]
    results = {}
    print(f"fragments of {FRAGMENT_SIZE} characters; best of {arguments.repeats}\n")
    print(
        f"{'size':>6}  {'fragments':>9}  {'contender':<22}{'total':>12}  {'per fragment':>12}"
        "  shown text"
    )
    streams = []
    for label, size in sizes:
        text = make_argument(size)
        streams.append((label, fragments_of(text), json.loads(text)["files"][0]["content"]))
    # Ours at both sizes first and back to back, so the growth ratio compares like with like.
    for name, run, quadratic in contenders:
        for label, fragments, expected in streams:
            seconds, estimated, shown = measure(
                run, fragments, arguments.repeats, arguments.cap, quadratic
            )
            if run is run_ours and shown != expected:
                raise SystemExit(f"ours at {label} showed a different text than the field's")
            results[(label, name)] = seconds
            mark = "~" if estimated else " "
            if estimated:
                note = "extrapolated"
            else:
                note = "same text" if shown == expected else "text differs (see below)"
            print(
                f"{label:>6}  {len(fragments):>9}  {name:<22}{mark}{seconds:>10.4f} s"
                f"  {seconds / len(fragments) * 1e6:>9.2f} µs  {note}"
            )

    ours_small = results[("20 KB", "ours (PartialJSON)")]
    ours_large = results[("1 MB", "ours (PartialJSON)")]
    jiter_small = results[("20 KB", "jiter re-parse")]
    parser_small = results[("20 KB", "partial-json-parser")]
    print()
    print(f"ours / jiter at 20 KB:               {ours_small / jiter_small:6.2f}x  (target <= 1x)")
    print(f"ours 1 MB / ours 20 KB:              {ours_large / ours_small:6.1f}x  (target <= 60x)")
    print(f"ours / partial-json-parser at 20 KB: {ours_small / parser_small:6.3f}x")
    jiter_large = results[("1 MB", "jiter re-parse")]
    print(f"ours / jiter at 1 MB:                {ours_large / jiter_large:6.4f}x")
    print(
        "\n'text differs': the suffix shown after each fragment, joined, is not the field's text;"
        "\npartial-json-parser shows the first half of a surrogate pair (\\ud83d) before the"
        "\nsecond arrives, so a UI that appends new suffixes prints a broken character."
    )
    healed_part(arguments.repeats, arguments.cap)


def healed_part(repeats: int, cap: float) -> None:
    import jiter

    shapes = [("save_file", make_argument), ("records", make_records)]
    sizes = [("20 KB", 20 * 1024), ("200 KB", 200 * 1024)]
    print("\n-- the whole value, healed after every fragment --\n")
    heading = f"{'shape':<10}{'size':>7}  {'fragments':>9}  {'contender':<22}{'total':>12}"
    print(f"{heading}  {'per fragment':>12}")
    times = {}
    for shape, make in shapes:
        streams = [(label, make(size)) for label, size in sizes]
        runs = [("ours (healed)", run_ours_healed, label, text) for label, text in streams]
        runs.append(("jiter re-parse", run_jiter_healed, "20 KB", streams[0][1]))
        floor = run_string_floor if shape == "save_file" else run_array_floor
        runs += [("floor (see above)", floor, label, text) for label, text in streams]
        # Round by round, every run once per round and the best of each kept, so that a busy
        # moment of the machine hits the small and the large runs alike.
        best = [float("inf")] * len(runs)
        for _ in range(repeats):
            for index, (name, run, label, text) in enumerate(runs):
                fragments = fragments_of(text)
                gc.collect()
                start = time.process_time()
                value, done = run(fragments, cap)
                seconds = time.process_time() - start
                if run is run_array_floor:
                    seconds = value  # it times only its copies
                best[index] = min(best[index], seconds)
                if run is run_ours_healed and value != json.loads(text):
                    raise SystemExit(f"ours healed a different {shape} value at {label}")
                if done < len(fragments):
                    raise SystemExit(f"{name} at {label} did not finish in --cap {cap} s")
        for (name, _run, label, text), seconds in zip(runs, best):
            fragments = fragments_of(text)
            times[(shape, label, name)] = seconds
            print(
                f"{shape:<10}{label:>7}  {len(fragments):>9}  {name:<22} {seconds:>10.4f} s"
                f"  {seconds / len(fragments) * 1e6:>9.2f} µs"
            )
    print()
    for shape, make in shapes:
        small = times[(shape, "20 KB", "ours (healed)")]
        large = times[(shape, "200 KB", "ours (healed)")]
        jiter_small = times[(shape, "20 KB", "jiter re-parse")]
        growth = len(make(200 * 1024)) / len(make(20 * 1024))
        print(
            f"{shape:<10} ours 200 KB / ours 20 KB: {large / small:6.1f}x"
            f"  (input {growth:.1f}x; target <= 12x)"
        )
        print(
            f"{shape:<10} ours / jiter at 20 KB:     {small / jiter_small:6.3f}x  (target <= 0.5x)"
        )
    for shape, _make in shapes:
        ours_small = times[(shape, "20 KB", "ours (healed)")]
        floor_large = times[(shape, "200 KB", "floor (see above)")]
        print(f"{shape:<10} floor at 200 KB / ours at 20 KB: {floor_large / ours_small:6.1f}x")
    print("\nvalues shown that a later value contradicts (20 KB, untimed):")

    def ours_heal(prefix: str) -> Any:
        parser = PartialJSON()
        parser.feed(prefix)
        return parser.healed()

    def jiter_heal(prefix: str) -> Any:
        return jiter.from_json(prefix.encode(), partial_mode="trailing-strings")

    for shape, make in shapes:
        fragments = fragments_of(make(20 * 1024))
        # Every 7th prefix is enough to catch numbers that grow and values that change type.
        sample = ["".join(fragments[start : start + 7]) for start in range(0, len(fragments), 7)]
        print(
            f"{shape:<10} ours: {contradicted_values(sample, ours_heal)}"
            f"   jiter: {contradicted_values(sample, jiter_heal)}  (of {len(sample)})"
        )


if __name__ == "__main__":
    main()
