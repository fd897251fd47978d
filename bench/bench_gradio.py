"""Gradio view benchmarks, in a real headless Chromium: every figure against a baseline run in
this process — a bare Gradio chat handler that yields the whole text again for every chunk
(no transcript, no coalescing), the simplest streaming app one would write.

    python bench/bench_gradio.py            # needs gradio, playwright and Debian's chromium
    python bench/bench_gradio.py --quick    # a smaller run

1. Latency: time from a chunk being produced (the node records `time.perf_counter()` as it
   yields it) to that chunk's text being in the page (a MutationObserver records
   `performance.now()` when it first sees it; the page clock is mapped to the server's by the
   round trip with the smallest delay). Chunks paced like a fast model (one per 20 ms).
   Median and p95, ours against the baseline. Target: no visible latency (p95 <= ~1/30 s
   above the baseline's).
2. A 10,000-chunk burst: the update rate the coalescing gives (in-process: updates sent and
   updates per second), and the time until the whole burst is on the page, ours against the
   baseline sending one update per chunk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # measure this checkout
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

try:
    import gradio as gr  # noqa: E402
    from playwright.sync_api import sync_playwright  # noqa: E402
except ImportError:  # pragma: no cover
    sys.exit("bench_gradio needs gradio and playwright: pip install -e .[test]")

from pocketflow_stream import StreamFlow, StreamNode  # noqa: E402
from pocketflow_stream.ui.gradio import DEFAULT_INTERVAL, LiveRun, chat_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PACE = 0.02  # seconds between two paced chunks
BURST = 10_000  # chunks of the in-process burst
PAGE_BURST = 2_000  # chunks of the burst sent to the page (the baseline's cost is quadratic)

# every run records when each chunk was produced: run name -> [perf_counter per chunk]
PRODUCED: Dict[str, List[float]] = {}


def paced_chunks(name: str, count: int) -> Iterator[Tuple[int, str]]:
    times = PRODUCED.setdefault(name, [])
    for index in range(count):
        if index:
            time.sleep(PACE)
        times.append(time.perf_counter())
        yield index, f"«{index}» "  # plain text in markdown (no ~strike~)


def burst_chunks(name: str, count: int) -> Iterator[str]:
    PRODUCED[name] = [time.perf_counter()]
    for _ in range(count - 1):
        yield "x"
    yield " END"


class Paced(StreamNode):
    def exec_stream(self, prep_res: Any) -> Iterator[str]:
        kind, name, count = self.params["message"].split()
        if kind == "burst":
            yield from burst_chunks(name, int(count))
        else:
            for _, text in paced_chunks(name, int(count)):
                yield text


def ours() -> Any:
    def make_flow(message: str, history: Any) -> Any:
        flow = StreamFlow(start=Paced())
        flow.set_params({"message": message})
        return flow, {}

    return chat_app(make_flow)


def baseline() -> Any:
    def respond(message: str, history: Any) -> Iterator[str]:
        kind, name, count = message.split()
        text = ""
        if kind == "burst":
            for piece in burst_chunks(name, int(count)):
                text += piece
                yield text
        else:
            for _, piece in paced_chunks(name, int(count)):
                text += piece
                yield text

    return gr.ChatInterface(respond, concurrency_limit=None, api_name="chat")


OBSERVER = """
() => {
  window.__seen = [];
  const seen = window.__seen;
  const look = () => {
    const now = performance.now();
    const bots = document.querySelectorAll('[data-testid="bot"]');
    if (!bots.length) return;
    const text = bots[bots.length - 1].textContent;
    let top = -1;
    for (const match of text.matchAll(/«(\\d+)»/g)) top = Math.max(top, Number(match[1]));
    for (let k = seen.length; k <= top; k++) seen.push(now);
    if (text.includes(' END') && window.__end === undefined) window.__end = now;
  };
  new MutationObserver(look).observe(document.body,
    {childList: true, subtree: true, characterData: true});
}
"""


def clock_offset(page: Any) -> float:
    """page performance.now() (ms) minus server perf_counter() (s) * 1000, from the round
    trip with the smallest delay among a few."""
    best = None
    for _ in range(15):
        before = time.perf_counter()
        page_now = page.evaluate("() => performance.now()")
        after = time.perf_counter()
        if best is None or after - before < best[0]:
            best = (after - before, page_now - (before + after) / 2 * 1000)
    assert best is not None
    return best[1]


def send(page: Any, message: str) -> None:
    box = page.locator('textarea[data-testid="textbox"]')
    box.fill(message)
    box.press("Enter")


def latencies(browser: Any, app: Any, name: str, count: int) -> List[float]:
    page = browser.new_page()
    page.goto(app.local_url)
    page.evaluate(OBSERVER)
    offset = clock_offset(page)
    send(page, f"paced {name} {count}")
    page.wait_for_function(f"() => window.__seen.length >= {count}", timeout=120_000)
    shown = page.evaluate("() => window.__seen")
    page.close()
    produced = PRODUCED[name]
    return [(seen - offset) / 1000 - made for seen, made in zip(shown, produced)]


def burst_in_page(browser: Any, app: Any, name: str) -> float:
    page = browser.new_page()
    page.goto(app.local_url)
    page.evaluate(OBSERVER)
    offset = clock_offset(page)
    send(page, f"burst {name} {PAGE_BURST}")
    page.wait_for_function("() => window.__end !== undefined", timeout=600_000)
    end = page.evaluate("() => window.__end")
    page.close()
    return (end - offset) / 1000 - PRODUCED[name][0]


def burst_updates(interval: float, spread: bool) -> Tuple[int, float]:
    """Updates LiveRun sends for a burst of BURST chunks, and the seconds it took; `spread`
    pauses 10 ms every BURST/100 chunks (the burst lasts ~1 s, ~30 intervals)."""

    class Burst(StreamNode):
        def exec_stream(self, prep_res: Any) -> Iterator[str]:
            for index, chunk in enumerate(burst_chunks("inprocess", BURST)):
                if spread and index % (BURST // 100) == 0:
                    time.sleep(0.01)
                yield chunk

    async def read() -> int:
        run = LiveRun(StreamFlow(start=Burst()).run_stream({}, events=True), interval=interval)
        async for _ in run.updates():
            pass
        return run.coalescer.updates

    started = time.perf_counter()
    updates = asyncio.run(read())
    return updates, time.perf_counter() - started


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    global BURST, PAGE_BURST
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    args = parser.parse_args()
    count = 100 if args.quick else 300
    if args.quick:
        BURST, PAGE_BURST = 2_000, 500
    if not os.path.exists(CHROMIUM):
        sys.exit(f"bench_gradio needs Chromium at {CHROMIUM}: apt-get install chromium")

    print(
        f"bench_gradio: {count} paced chunks ({PACE * 1000:.0f} ms apart), bursts of "
        f"{BURST:,} chunks (in-process) and {PAGE_BURST:,} (to the page)"
    )
    ours_app, base_app = ours(), baseline()
    ours_app.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    base_app.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            try:
                latencies(browser, ours_app, "warm-ours", 10)  # first page loads, caches
                latencies(browser, base_app, "warm-base", 10)
                base = latencies(browser, base_app, "base", count)
                mine = latencies(browser, ours_app, "ours", count)
                base_burst = burst_in_page(browser, base_app, "base-burst")
                our_burst = burst_in_page(browser, ours_app, "ours-burst")
            finally:
                browser.close()
    finally:
        ours_app.close()
        base_app.close()

    def quantiles(values: List[float]) -> Tuple[float, float]:
        ordered = sorted(values)
        return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]

    base_median, base_p95 = quantiles(base)
    our_median, our_p95 = quantiles(mine)
    print("\n1. chunk produced -> visible in the browser")
    print(
        f"   baseline (bare Gradio, an update per chunk): median {ms(base_median)}, "
        f"p95 {ms(base_p95)}"
    )
    print(
        f"   chat_app (transcript, coalesced 1/30 s):     median {ms(our_median)}, "
        f"p95 {ms(our_p95)}"
    )
    print(
        f"   ratio median {our_median / base_median:.2f}x, p95 {our_p95 / base_p95:.2f}x; "
        f"p95 above the baseline's: {ms(our_p95 - base_p95)} "
        f"(budget {ms(DEFAULT_INTERVAL)})"
    )

    print("\n2. bursts")
    for spread in (False, True):
        updates, seconds = burst_updates(DEFAULT_INTERVAL, spread)
        how = "spread over ~1 s" if spread else "as fast as the engine makes them"
        print(
            f"   {BURST:,} chunks in-process, {how}: {updates} updates in {seconds:.2f} s "
            f"({updates / seconds:.0f} updates/s, budget {1 / DEFAULT_INTERVAL:.0f}/s; "
            f"the baseline sends {BURST:,}: {BURST / updates:.0f}x fewer)"
        )
    print(
        f"   {PAGE_BURST:,} chunks, all on the page: baseline {base_burst:.2f} s, "
        f"chat_app {our_burst:.2f} s ({base_burst / our_burst:.0f}x faster)"
    )


if __name__ == "__main__":
    main()
