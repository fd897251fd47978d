"""Compatibility shims shared by every layer (the bottom of the import graph; imports nothing).

`frozen_slots` exists because Python 3.9's dataclasses have no `slots=True`.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass, fields
from typing import Any, TypeVar

from typing_extensions import dataclass_transform

T = TypeVar("T")

__all__ = ["frozen_slots"]


@dataclass_transform(frozen_default=True)  # type checkers see the dataclass it makes
def frozen_slots(cls: type[T]) -> type[T]:
    """`@dataclass(frozen=True, slots=True)` on every Python we support."""
    plain: Any = dataclass(frozen=True)(cls)
    field_names = tuple(field.name for field in fields(plain))  # ClassVars are not fields
    namespace: dict[str, Any] = {
        key: value
        for key, value in plain.__dict__.items()
        # defaults live in the generated __init__; as class attributes they would clash with slots
        if key not in field_names and key not in ("__dict__", "__weakref__")
    }
    namespace["__slots__"] = field_names
    # pickling and copying rebuild through __init__: slot state restored by setattr would
    # trip the frozen check (3.10's slots=True adds __getstate__/__setstate__ for the same)
    namespace["__reduce__"] = _reduce_by_fields
    # dataclass's own frozen __setattr__ refers to the class it decorated, not to this one
    namespace["__setattr__"] = _refuse_change
    namespace["__delattr__"] = _refuse_change
    slotted: Any = type(plain)(plain.__name__, plain.__bases__, namespace)
    slotted.__qualname__ = plain.__qualname__
    return slotted  # type: ignore[no-any-return]


def _reduce_by_fields(self: Any) -> Any:
    return (type(self), tuple(getattr(self, name) for name in self.__slots__))


def _refuse_change(self: Any, name: str, *value: Any) -> None:
    raise FrozenInstanceError(f"cannot change {name!r}: {type(self).__name__} is immutable")
