"""The demo agent's tools, each safe to hand to a model: arithmetic without eval, a search over
the few documents bundled with the package, and file saving that cannot leave its sandbox.

Knows files and text only: nothing of models, flows or terminals.
"""

from __future__ import annotations

import ast
import operator
import os
import re
from functools import lru_cache
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Callable, Dict, List, Tuple, Union

__all__ = [
    "TOOLS",
    "calculate",
    "format_number",
    "Document",
    "documents",
    "search",
    "Sandbox",
    "SandboxError",
]

TOOLS: List[Dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "calculate",
            "description": "Evaluate an arithmetic expression: numbers, + - * / // % ** and "
            "parentheses. Use it for every calculation.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the bundled documents (PocketFlow, streaming model output, "
            "the solar system, coffee and caffeine, honeybees); returns the best passages.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "save_file",
            "description": "Save a text file in the demo's sandbox folder (a relative path).",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path", "content"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "ask_user",
            "description": "Ask the user a question and wait for the answer.",
            "parameters": {
                "type": "object",
                "properties": {"question": {"type": "string"}},
                "required": ["question"],
            },
        },
    },
]

# -- calculate -------------------------------------------------------------------------------

_OPERATORS: Dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_MAX_EXPONENT = 1000  # 9 ** 9 ** 9 would take the process down
_MAX_LENGTH = 500
_MAX_BITS = 100_000  # about 30,000 digits


def calculate(expression: str) -> Union[int, float]:
    """Arithmetic only: numbers, + - * / // % ** and parentheses (no names, no calls, no
    attribute access). Thousands separators are allowed (`2,340`). Raises ValueError for
    anything else, ZeroDivisionError as Python does."""
    if not isinstance(expression, str):
        raise ValueError(f"the expression must be a string, got {type(expression).__name__}")
    if len(expression) > _MAX_LENGTH:
        raise ValueError(f"the expression is longer than {_MAX_LENGTH} characters")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", expression).replace("^", "**")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"not an arithmetic expression: {expression!r}") from None

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow):
                if abs(right) > _MAX_EXPONENT:
                    raise ValueError(f"exponent {right} is too large (at most {_MAX_EXPONENT})")
                if isinstance(left, int) and left.bit_length() * abs(right) > _MAX_BITS:
                    raise ValueError(f"{left} ** {right} is too large a number")
            return _OPERATORS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.operand))
        raise ValueError(f"not arithmetic: {ast.unparse(node)!r}")

    result = value(tree.body)
    if isinstance(result, complex):
        raise ValueError("the result is a complex number")
    return result  # type: ignore[no-any-return]


def format_number(number: Union[int, float]) -> str:
    """`397.8` for 0.17 * 2340 (no float noise), `42` for 42.0."""
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    if isinstance(number, float):
        return format(number, ".12g")
    return str(number)


# -- search ----------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its me my of on or "
    "please so tell than that the their them then there these this to was what when where "
    "which who why will with would you your about many much some".split()
)


def words(text: str) -> List[str]:
    """Lower-case words of `text`, plural `s` dropped, stop words left out."""
    found = []
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        found.append(word)
    return found


class Document:
    """One bundled text: `name` (its file), `title` (its first line), `text` (the rest)."""

    __slots__ = ("name", "title", "text", "sentences", "vocabulary")

    def __init__(self, name: str, content: str) -> None:
        title, _, body = content.strip().partition("\n")
        self.name, self.title, self.text = name, title.strip(), body.strip()
        self.sentences = re.split(r"(?<=[.!?])\s+", self.text)
        self.vocabulary = frozenset(words(content))


@lru_cache(maxsize=1)
def documents() -> Tuple[Document, ...]:
    """The documents bundled with the package (`pocketflow_stream/demo/docs/*.txt`)."""
    folder = Path(__file__).resolve().parent / "docs"
    return tuple(
        Document(path.name, path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("*.txt"))
    )


def search(query: str, limit: int = 2) -> str:
    """The best passages of the bundled documents for `query`: up to `limit` documents, each
    as `title (file): its two best sentences`, or a line saying nothing matched."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query is empty: say what to look for")
    terms = set(words(query))
    scored = []
    for document in documents():
        hits = len(terms & document.vocabulary)
        if hits:
            scored.append((hits, document.name, document))
    scored.sort(key=lambda entry: (-entry[0], entry[1]))
    if not scored:
        titles = ", ".join(document.title for document in documents())
        return f"nothing found for {query!r}; the documents are about: {titles}"
    passages = []
    for _, _, document in scored[:limit]:
        ranked = sorted(
            range(len(document.sentences)),
            key=lambda index: -len(terms & set(words(document.sentences[index]))),
        )
        best = sorted(ranked[:2])  # in the document's order
        passage = " ".join(document.sentences[index] for index in best)
        passages.append(f"{document.title} ({document.name}): {passage}")
    return "\n".join(passages)


# -- save_file -------------------------------------------------------------------------------

_MAX_FILE_CHARACTERS = 100_000


class SandboxError(ValueError):
    """A path the sandbox refuses: absolute, with `..`, or leading out through a symlink."""


class Sandbox:
    """A folder the model may write text files in, and nothing outside it.

    Refused: absolute paths (and drive letters, `~`), any `..` part, a path whose existing
    folders lead out of the sandbox through a symlink, writing through a symlink, NUL bytes,
    content over 100,000 characters.
    """

    def __init__(self, root: Union[str, os.PathLike[str]]) -> None:
        self.root = Path(root)

    def resolve(self, relative: str) -> Path:
        """The sandboxed path for `relative`; raises SandboxError saying why it is refused."""
        if not isinstance(relative, str) or not relative.strip():
            raise SandboxError("a file name is needed, e.g. notes.md")
        if "\x00" in relative:
            raise SandboxError("the path contains a NUL byte")
        posix = PurePosixPath(relative.replace("\\", "/"))
        if posix.is_absolute() or PureWindowsPath(relative).drive or relative.startswith("~"):
            raise SandboxError(
                f"{relative!r} is an absolute path: give a path inside the sandbox, e.g. notes.md"
            )
        if ".." in posix.parts:
            raise SandboxError(f"{relative!r} contains '..': paths must stay inside the sandbox")
        root = self.root.resolve()
        target = root.joinpath(*posix.parts)
        real = target.resolve()  # follows every symlink on the way
        if real != root and root not in real.parents:
            raise SandboxError(f"{relative!r} leads out of the sandbox through a symlink")
        if target.is_symlink():
            raise SandboxError(f"{relative!r} is a symlink: the sandbox does not write through one")
        if real == root:
            raise SandboxError("a file name is needed, e.g. notes.md")
        return target

    def save(self, relative: str, content: str) -> str:
        """Writes `content` to `relative` inside the sandbox; returns a one-line report."""
        if not isinstance(content, str):
            raise SandboxError(f"the content must be text, got {type(content).__name__}")
        if len(content) > _MAX_FILE_CHARACTERS:
            raise SandboxError(f"the content is over {_MAX_FILE_CHARACTERS} characters")
        target = self.resolve(relative)
        self.root.mkdir(parents=True, exist_ok=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        target = self.resolve(relative)  # again: nothing was swapped in while making folders
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        try:
            descriptor = os.open(target, flags, 0o644)
        except OSError as error:
            raise SandboxError(f"cannot write {relative!r}: {error.strerror}") from None
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(content)
        size = len(content.encode("utf-8"))
        return f"saved {relative} ({size} bytes) in {self.root.resolve()}"
