"""pocketflow_stream: PocketFlow's nodes and flows, with streaming as a first-class path.

    from pocketflow_stream import StreamNode, StreamFlow

Layers, each importing only the ones before it:
    _compat, events, errors -> graph -> frames -> interrupts -> requests -> positions
        -> engine -> nodes -> flows                          the core: no LLM, no UI
    async_driver -> async_nodes -> async_flows -> bridges    the async drivers, on anyio
    persist                                                   checkpoints, stores, durable runs
                                                              (import pocketflow_stream.persist)
    llm                                                       provider-neutral LLM streaming
    ui                                                        showing runs to people
    demo                                                      public names only
"""

from .async_driver import FlowStream, Return
from .async_flows import AsyncBatchFlow, AsyncFlow, AsyncParallelBatchFlow, AsyncStreamFlow
from .async_nodes import (
    AsyncBatchNode,
    AsyncNode,
    AsyncParallelBatchNode,
    AsyncStreamBatchNode,
    AsyncStreamNode,
)
from .bridges import (
    SyncFlowStream,
    resume_stream_in_thread,
    resume_stream_sync,
    run_stream_in_thread,
    run_stream_sync,
)
from .engine import STOPPED, Paused, StopSignal, ask, drain
from .errors import FlowError, MaxStepsExceeded, node_path_of
from .events import (
    Ask,
    Chunk,
    Event,
    FlowFinished,
    Interrupt,
    NodeFinished,
    NodeStarted,
    Origin,
    Progress,
    Retry,
    StreamItem,
    json_ready,
)
from .flows import BatchFlow, Flow, StreamFlow
from .nodes import AskNode, BaseNode, BatchNode, Node, StreamBatchNode, StreamNode

__all__ = [
    "BaseNode",
    "Node",
    "BatchNode",
    "StreamNode",
    "StreamBatchNode",
    "AskNode",
    "Flow",
    "StreamFlow",
    "BatchFlow",
    "AsyncNode",
    "AsyncBatchNode",
    "AsyncParallelBatchNode",
    "AsyncStreamNode",
    "AsyncStreamBatchNode",
    "AsyncFlow",
    "AsyncStreamFlow",
    "AsyncBatchFlow",
    "AsyncParallelBatchFlow",
    "Return",
    "FlowStream",
    "SyncFlowStream",
    "run_stream_sync",
    "run_stream_in_thread",
    "resume_stream_sync",
    "resume_stream_in_thread",
    "Chunk",
    "Origin",
    "Event",
    "StreamItem",
    "NodeStarted",
    "NodeFinished",
    "Retry",
    "FlowFinished",
    "Progress",
    "Ask",
    "ask",
    "Interrupt",
    "Paused",
    "StopSignal",
    "STOPPED",
    "FlowError",
    "MaxStepsExceeded",
    "node_path_of",
    "json_ready",
    "drain",
]

__version__ = "0.1.0"
