"""The flagship demo: a plan <-> act research agent streamed live to the terminal, by node.

    python -m pocketflow_stream                       # offline: the built-in scripted model
    python -m pocketflow_stream "How much heavier is Jupiter than Earth? Save a note."
    python -m pocketflow_stream --async               # the same agent on the async driver
    OPENAI_API_KEY=... python -m pocketflow_stream    # a real model (extra [openai])
    python -m pocketflow_stream --ui                  # the same agent in a Gradio chat

Tools, each safe to give a model (`demo/tools.py`): `calculate` (arithmetic, never eval),
`search` (the few documents bundled in `demo/docs/`), `save_file` (into a sandbox folder it
cannot leave), `ask_user`. A tool runs only when its call's arguments parsed strictly; a cut
off or invalid call is shown and answered with an error, never run. With no key the scripted
model (`demo/offline.py`) plans with the tools from the words of the question asked.

Exit codes: 0 done, 1 the provider failed (one line says what to do), 2 bad arguments,
130 Ctrl-C, 141 the reader of stdout went away (`| head`), as a shell reports SIGPIPE.
Uses only public names, like any app would.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple

from pocketflow_stream import (
    Ask,
    AsyncStreamFlow,
    Paused,
    StreamFlow,
    StreamNode,
    resume_stream_sync,
    run_stream_sync,
)
from pocketflow_stream.llm import (
    AnthropicModel,
    AssistantMessage,
    AsyncAnthropicModel,
    AsyncLLMNode,
    AsyncOpenAIChatModel,
    LLMNode,
    OpenAIChatModel,
    ScriptedModel,
    ToolCall,
)
from pocketflow_stream.llm.models import DEFAULT_ANTHROPIC_MODEL, DEFAULT_OPENAI_MODEL
from pocketflow_stream.ui import TerminalRenderer, ToolResult, render

from .offline import OFFLINE_BANNER, scripted_agent
from .tools import TOOLS, Sandbox, SandboxError, calculate, format_number, search

__all__ = [
    "main",
    "build_flow",
    "choose_model",
    "Plan",
    "AsyncPlan",
    "Act",
    "TOOLS",
    "QUESTION",
    "SYSTEM_PROMPT",
    "calculate",
    "search",
    "Sandbox",
    "scripted_agent",
    "DemoError",
]

QUESTION = "What is 17% of 2,340? Save a short note about it."
SYSTEM_PROMPT = (
    "You are a research agent with tools. Use calculate for every calculation, search for "
    "facts from the bundled documents, save_file when the user asks to save or write "
    "something, ask_user when you need the user to decide. Answer briefly."
)
DEFAULT_SANDBOX = Path(tempfile.gettempdir()) / "pocketflow_stream_demo"

AskFunction = Callable[[str], str]


class DemoError(Exception):
    """A problem the demo explains in one line (its message) and exits 1 for."""


def ask_on_stdin(question: str) -> str:
    """`ask_user` in a terminal: the question on stdout, the answer from stdin ("" when
    stdin is closed)."""
    sys.stdout.write(f"? {question} ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    return line.strip() if line else ""


def answer_on_stdin() -> str:
    """The answer to the question the terminal view just showed ("" when stdin is closed);
    echoed when stdin is not a terminal, so a log shows what was answered."""
    sys.stdout.write("answer> ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not sys.stdin.isatty():
        sys.stdout.write(f"{line.strip()}\n")
    return line.strip() if line else ""


def record_reply(shared: Dict[str, Any], reply: AssistantMessage) -> str:
    shared["messages"].append(reply.to_openai())
    shared["tool_calls"] = list(reply.tool_calls)
    return "act" if reply.tool_calls else "done"


class Plan(LLMNode):
    """Asks the model what to do next; streams its thoughts, words and tool calls."""

    def post(self, shared: Dict[str, Any], prep_res: Any, reply: AssistantMessage) -> str:
        return record_reply(shared, reply)


class AsyncPlan(AsyncLLMNode):
    """Plan, awaiting the model's stream (for the async driver)."""

    async def post_async(self, shared: Dict[str, Any], prep_res: Any, reply: Any) -> str:
        return record_reply(shared, reply)


class Act(StreamNode):
    """Runs the last reply's tool calls — only those whose arguments parsed strictly — and
    streams each result as a `ToolResult` (shown under its call) before adding them all to
    the conversation. `ask_user` pauses the run with an interrupt (`yield Ask(...)`) whose
    answer is the tool's result; with `ask` given, that function answers instead."""

    def __init__(self, sandbox: Sandbox, ask: Optional[AskFunction] = None) -> None:
        super().__init__(name="Act")
        self.sandbox = sandbox
        self.ask = ask

    def prep(self, shared: Dict[str, Any]) -> List[ToolCall]:
        return list(shared.get("tool_calls") or [])

    def exec_stream(self, calls: List[ToolCall]) -> Generator[Any, None, List[Dict[str, Any]]]:
        results = []
        for call in calls:
            question = (call.arguments or {}).get("question") if call.valid else None
            if call.name == "ask_user" and isinstance(question, str) and self.ask is None:
                answer = yield Ask({"question": question, "tool_call_id": call.id})
                output, failed = ("" if answer is None else str(answer)), False
            else:
                output, failed = self.run_tool(call)
            yield ToolResult(call.id, output, name=call.name, is_error=failed)
            results.append({"role": "tool", "tool_call_id": call.id, "content": output})
        return results

    def run_tool(self, call: ToolCall) -> Tuple[str, bool]:
        """(the tool's output, whether it failed). An invalid call is never run."""
        if not call.valid or call.arguments is None:
            return f"error: the arguments are not valid JSON ({call.error}); not run", True
        arguments = call.arguments
        try:
            if call.name == "calculate":
                return format_number(calculate(arguments["expression"])), False
            if call.name == "search":
                return search(arguments["query"]), False
            if call.name == "save_file":
                return self.sandbox.save(arguments["path"], arguments["content"]), False
            if call.name == "ask_user":
                ask = self.ask or ask_on_stdin
                return ask(str(arguments["question"])), False
            return f"error: no tool named {call.name!r}", True
        except KeyError as missing:
            return f"error: the {call.name} call has no {missing} argument", True
        except (SandboxError, ValueError, TypeError, ZeroDivisionError, OverflowError) as exc:
            return f"error: {exc}", True

    def post(self, shared: Dict[str, Any], prep_res: Any, results: List[Dict[str, Any]]) -> str:
        shared["messages"].extend(results)
        shared["tool_calls"] = []
        return "default"


def build_flow(
    model: Any = None,
    asynchronous: bool = False,
    *,
    sandbox: Optional[Sandbox] = None,
    ask: Optional[AskFunction] = None,
) -> Any:
    """The agent: a StreamFlow, or with `asynchronous` an AsyncStreamFlow whose plan awaits
    the model (Act, a sync StreamNode, runs inside it as it is)."""
    plan = (AsyncPlan if asynchronous else Plan)(model, tools=TOOLS, name="Plan")
    act = Act(sandbox or Sandbox(DEFAULT_SANDBOX), ask)
    plan - "act" >> act
    act >> plan
    flow_class = AsyncStreamFlow if asynchronous else StreamFlow
    return flow_class(start=plan, name="Agent", max_steps=40)


def new_conversation(question: str) -> Dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": question},
        ]
    }


#: (key, SDK package, provider, model variable, default model, client classes, model classes),
#: in the order `default_model` prefers them; each pair is (sync, async).
_PROVIDERS = (
    (
        "OPENAI_API_KEY",
        "openai",
        "OpenAI",
        "POCKETFLOW_STREAM_OPENAI_MODEL",
        DEFAULT_OPENAI_MODEL,
        ("OpenAI", "AsyncOpenAI"),
        (OpenAIChatModel, AsyncOpenAIChatModel),
    ),
    (
        "ANTHROPIC_API_KEY",
        "anthropic",
        "Anthropic",
        "POCKETFLOW_STREAM_ANTHROPIC_MODEL",
        DEFAULT_ANTHROPIC_MODEL,
        ("Anthropic", "AsyncAnthropic"),
        (AnthropicModel, AsyncAnthropicModel),
    ),
)


def choose_model(offline: bool, asynchronous: bool, fast: bool) -> Tuple[Any, str]:
    """(model, the line that says which it is). A real one when a key is set and not
    `offline`, built to fail fast (no retries, a 5 s connect timeout); raises DemoError when
    the key's package is missing."""
    for key, package, provider, variable, default, clients, models in _PROVIDERS:
        if offline or not os.environ.get(key):
            continue
        sdk = _sdk(package, key)
        client = getattr(sdk, clients[asynchronous])(
            max_retries=0, timeout=sdk.Timeout(120.0, connect=5.0)
        )
        name = os.environ.get(variable) or default
        model: Any = models[asynchronous](name, client)
        return model, f"(model: {provider} {name} at {client.base_url})"
    scripted = ScriptedModel(scripted_agent, chunk_size=3, delay=0 if fast else 0.02)
    return scripted, OFFLINE_BANNER


def _sdk(package: str, key: str) -> Any:
    try:
        return __import__(package)
    except ImportError:
        raise DemoError(
            f"{key} is set but the {package!r} package is not installed: "
            f"pip install 'pocketflow-stream[{package}]', or run with --offline"
        ) from None


def describe_provider_failure(error: BaseException) -> Optional[str]:
    """One line for an error of the provider's SDK (connection, refused request), else None."""
    package = type(error).__module__.split(".")[0]
    if package not in ("openai", "anthropic", "httpx", "httpcore"):
        return None
    names = {cls.__name__ for cls in type(error).__mro__}
    provider = "Anthropic" if package == "anthropic" else "OpenAI"
    base = "ANTHROPIC_BASE_URL" if package == "anthropic" else "OPENAI_BASE_URL"
    key = "ANTHROPIC_API_KEY" if package == "anthropic" else "OPENAI_API_KEY"
    request = getattr(error, "request", None)
    where = f" at {request.url}" if request is not None else ""
    if names & {"APIConnectionError", "APITimeoutError", "ConnectError", "TimeoutException"}:
        return (
            f"error: cannot reach the {provider} API{where} ({error}); check the base URL "
            f"({base}) and the network, or run with --offline"
        )
    status = getattr(error, "status_code", None)
    if "AuthenticationError" in names or status == 401:
        return f"error: the {provider} API refused the key ({status}); check {key}, or --offline"
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"error: the {provider} API refused the request ({status}): {message}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pocketflow_stream",
        description="A plan <-> act research agent streamed live, every part tagged with "
        "its node. Also: 'python -m pocketflow_stream mermaid module:flow' draws a flow, "
        "'python -m pocketflow_stream runs ...' manages saved runs.",
    )
    parser.add_argument(
        "question",
        nargs="?",
        default=QUESTION,
        help=f"what to ask the agent (default: {QUESTION.replace('%', '%%')!r}); offline, "
        "its words choose the tools: numbers -> calculate, a topic of the bundled "
        "documents -> search, 'save'/'write' -> save_file, 'ask me' -> ask_user",
    )
    parser.add_argument("--fast", action="store_true", help="no pauses in the scripted model")
    parser.add_argument("--events", action="store_true", help="show node lifecycle events")
    parser.add_argument("--offline", action="store_true", help="scripted model even with a key")
    parser.add_argument(
        "--async",
        dest="asynchronous",
        action="store_true",
        help="run the agent on the async driver (an event loop in a worker thread)",
    )
    parser.add_argument(
        "--sandbox",
        type=Path,
        default=DEFAULT_SANDBOX,
        help=f"the folder save_file writes in (default: {DEFAULT_SANDBOX})",
    )
    parser.add_argument(
        "--ui", action="store_true", help="open the agent in a Gradio chat on 127.0.0.1"
    )
    parser.add_argument("--port", type=int, default=7860, help="the --ui port (default 7860)")
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the --ui address (default 127.0.0.1, this machine only; 0.0.0.0 opens the "
        "agent and its tools to your network)",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.question.strip():
        parser.error('the question is empty: ask something, e.g. "What is 6 x 7?"')
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C: the stream is closed already; end quietly
        _quietly(lambda: sys.stdout.write("\n"))
        return 130
    except BrokenPipeError:  # the reader went away (| head): nothing more to say to it
        _silence_stdout()
        return 141


def _run(args: argparse.Namespace) -> int:
    try:
        model, banner = choose_model(args.offline, args.asynchronous, args.fast)
    except DemoError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.ui:
        return _run_ui(args, model, banner)
    # Ending the loop with "done" (no successor) is the PocketFlow way, and PocketFlow warns
    # "Flow ends: 'done' not found" when it happens; here that end is the plan.
    warnings.filterwarnings("ignore", message="Flow ends: 'done'")
    print(banner)
    print(f"user: {args.question}")
    shared = new_conversation(args.question)
    flow = build_flow(model, args.asynchronous, sandbox=Sandbox(args.sandbox))
    if args.asynchronous:  # sync code iterating an async flow: the bridge a sync handler uses
        stream = run_stream_sync(flow, shared, events=args.events)
    else:
        stream = flow.run_stream(shared, events=args.events)
    renderer = TerminalRenderer(events=args.events)
    try:
        action = render(stream, renderer=renderer)
        while isinstance(action, Paused):  # ask_user: the question is on screen; answer it
            interrupt = action.interrupts[0]
            try:
                answers = {interrupt.id: answer_on_stdin()}
            except BaseException:  # Ctrl-C at the prompt: the waiting node is closed too
                action.close()
                raise
            if args.asynchronous:
                stream = resume_stream_sync(action, answers)
            else:
                stream = action.resume(answers)
            action = render(stream, renderer=renderer)
    except Exception as error:
        line = describe_provider_failure(error)
        if line is None:
            raise
        sys.stdout.flush()
        print(line, file=sys.stderr)
        return 1
    finally:
        renderer.finish()
    print(f"(flow finished with action {action!r} after {len(shared['messages'])} messages)")
    sys.stdout.flush()
    return 0


def _run_ui(args: argparse.Namespace, model: Any, banner: str) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a demo does not phone home
    try:
        from pocketflow_stream.ui.gradio import launch_chat
    except ImportError as error:
        print(
            f"error: --ui needs Gradio ({error}); pip install 'pocketflow-stream[gradio]'",
            file=sys.stderr,
        )
        return 1
    sandbox = Sandbox(args.sandbox)

    def make_flow(message: str, history: List[Dict[str, Any]]) -> Tuple[Any, Dict[str, Any]]:
        shared = new_conversation(message)
        shared["messages"][1:1] = list(history)  # after the system prompt, before the message
        return build_flow(model, args.asynchronous, sandbox=sandbox), shared

    print(banner)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"(warning: --host {args.host} lets other machines use the agent and its tools)")
    print(f"(the chat: http://{args.host}:{args.port}; Ctrl-C stops it)", flush=True)
    launch_chat(
        make_flow,
        server_name=args.host,
        server_port=args.port,
        app_options={
            "title": "pocketflow_stream: a research agent",
            "description": banner,
        },
        quiet=True,
    )
    return 0


def _quietly(action: Callable[[], Any]) -> None:
    try:
        action()
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    """Points stdout at /dev/null, so the interpreter's last flush finds nobody to fail on."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
