"""The one schema of every settings object: frozen dataclasses whose fields are typed and documented.

A settings class subclasses `Settings`. Each field has a type (`Literal[...]` for a choice among
names) and, on the line after it, a docstring saying what it means:

    @dataclass(frozen=True)
    class PipelineSettings(Settings):
        schedule: Literal["gpipe", "1f1b"] = "1f1b"
        \"\"\"The torch.distributed.pipelining schedule.\"\"\"

On construction every value is checked against its field's type, so a bad value fails with one
line naming the key, however the object was made (from the config, or in code). Range checks that a
type cannot say go in `validate`. `field_docs` reads the docstrings back, for docs/configuration.md.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal


class Settings:
    """Base of the settings dataclasses: type checks on construction, then `validate()`."""

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # a YAML list: settings are frozen, so store a tuple
                value = tuple(value)
                object.__setattr__(self, f.name, value)
            check_type(value, hints[f.name], f.name)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError (one line, naming the key) for a value its type allows but the
        algorithm cannot use, e.g. a negative count."""


def check_type(value: Any, hint: Any, key: str) -> None:
    """ValueError naming `key` unless `value` fits `hint`: int, float (an int is a float too), str,
    bool, Path, tuple, dict, None, a nested Settings class, `Literal` choices, or a union of these."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = typing.get_args(hint) if is_union else (hint,)
    for option in allowed:
        if _fits(value, option):
            return
    choices = [a for option in allowed if typing.get_origin(option) is Literal for a in typing.get_args(option)]
    if choices and all(o is type(None) or typing.get_origin(o) is Literal for o in allowed):
        valid = ", ".join(map(str, choices)) + (" or null" if type(None) in allowed else "")
        raise ValueError(f"{key} must be one of {valid}; got {value!r}")
    names = " or ".join(_type_name(o) for o in allowed)
    raise ValueError(f"{key} must be {names}, got {value!r}")


def _fits(value: Any, option: Any) -> bool:
    origin = typing.get_origin(option) or option
    if option is type(None) or value is None:
        return option is type(None) and value is None
    if origin is typing.Any:
        return True
    if origin is Literal:
        return any(value == choice and type(value) is type(choice) for choice in typing.get_args(option))
    if origin is bool:
        return isinstance(value, bool)
    if origin is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if origin is Path:
        return isinstance(value, (str, Path))
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        args = typing.get_args(option)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return item is None or all(_fits(v, item) for v in value)
    if isinstance(origin, type):
        return isinstance(value, origin)
    return False


def _type_name(option: Any) -> str:
    if option is type(None):
        return "null"
    origin = typing.get_origin(option) or option
    if origin is tuple:
        return "a list"
    if origin is dict:
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(option)))
    if dataclasses.is_dataclass(origin):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(origin))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false", Path: "a path"}.get(
        origin, getattr(origin, "__name__", str(option)))


def positive(value: Any) -> bool:
    """A positive number (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def check_range(key: str, value: Any, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> None:
    """ValueError naming `key` unless `value` is a finite number in the interval from `low` to
    `high` (None: unbounded), each end closed unless `*_open`. NaN and infinities never pass.

    The message names the interval as a mathematician would: `[0, 1)`, `> 0`, `>= 1`.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    # Written so that NaN fails every comparison (`not (nan > 0)` is True).
    ok = number and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if ok:
        return
    if low is not None and high is not None:
        interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        interval = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        interval = f"{'<' if high_open else '<='} {high:g}"
    else:
        interval = "(not NaN or infinite)"
    raise ValueError(f"{key} must be a finite number {interval}, got {value!r}")


def field_docs(cls: type) -> dict[str, str]:
    """{field name: its docstring} for `cls` and its dataclass bases (the string literal on the
    line after each field, torchtitan's style); a field without one maps to ""."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # defined without source (interactive)
            continue
        body = tree.body[0].body
        for node, after in zip(body, body[1:] + [None]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                text = ""
                if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                        and isinstance(after.value.value, str):
                    text = " ".join(after.value.value.split())
                docs[node.target.id] = text or docs.get(node.target.id, "")
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}
