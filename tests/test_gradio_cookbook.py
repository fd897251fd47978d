"""cookbook/gradio-chat: the recipe's app serves a streamed, offline reply over a real socket."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest


def needed(module: str) -> Any:
    """Import `module`; without it skip, except in CI (`.ci/run` installs it): fail there."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} missing: pip install -e '.[test]'")


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
needed("gradio")
gradio_client = needed("gradio_client")

RECIPE = Path(__file__).resolve().parent.parent / "cookbook" / "gradio-chat" / "main.py"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def load_recipe():
    spec = importlib.util.spec_from_file_location("gradio_chat_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_recipe_streams_a_thought_and_an_answer():
    recipe = load_recipe()
    app = recipe.build_app(recipe.ScriptedModel(recipe.offline_reply, chunk_size=2))
    app.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = gradio_client.Client(app.local_url, verbose=False)
        job = client.submit("hello there", api_name="/chat")
        final = job.result(timeout=30)
        streamed = job.outputs()
        client.close()
    finally:
        app.close()
    thought, answer = final
    assert thought["metadata"]["title"] == "💭 Reply"
    assert thought["metadata"]["status"] == "done"
    assert thought["content"] == "The user wrote 2 words. I will answer briefly."
    assert answer["content"] == "(offline scripted model) You said: hello there"
    assert streamed[-1] == final
