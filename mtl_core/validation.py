"""One validation mechanism for every typed section a user writes: run configs, a space file's `search`
settings and each strategy's own parameters.

Plain dicts from YAML go in, frozen dataclasses come out, and every problem is collected (not just the
first) as one line naming its key path, e.g. ``train.lr: expected a number, got 'fast'``. Callers
collect into a `Problems` and raise them together as one `ConfigError` (one problem per line).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import reprlib
import types
import typing
from contextlib import contextmanager
from typing import Any, Iterator


class ConfigError(ValueError):
    """User mistakes in a config: one line per problem, each naming its key path."""

    def __init__(self, *problems: str):
        self.problems = list(dict.fromkeys(problems))  # the same problem found twice is said once
        super().__init__("\n".join(self.problems))


class Problems:
    """Collects problems while validation goes on; `raise_if_any` reports them all at once."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    @contextmanager
    def collect(self, prefix: str = "") -> Iterator[None]:
        """Record the ConfigErrors raised inside (prefixed, e.g. with `space.`) instead of stopping."""
        try:
            yield
        except ConfigError as exc:
            self.items.extend(prefix + p for p in exc.problems)

    def raise_if_any(self) -> None:
        if self.items:
            raise ConfigError(*self.items)


def build_dataclass(cls: type, raw: Any, path: str, problems: Problems) -> Any:
    """`cls` from a mapping, every field coerced to its annotated type; a field with a problem keeps
    its default (so validation can go on and find the next problem). A class with a `from_raw(raw, path)`
    classmethod parses itself (e.g. a strategy choice written as a bare name)."""
    if hasattr(cls, "from_raw"):
        with problems.collect():
            return cls.from_raw(raw, path)
        return None
    if not isinstance(raw, dict):
        problems.add(f"{path or 'config'}: expected a mapping, got {show(raw)}")
        return cls()
    hints = _type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    for key in sorted(set(raw) - set(fields), key=str):  # YAML keys need not be strings
        problems.add(f"{_join(path, key)}: unknown key; valid keys here: {', '.join(fields)}")
    kwargs = {}
    for name in [f for f in fields if f in raw]:
        if dataclasses.is_dataclass(hints[name]) and not hasattr(hints[name], "from_raw"):  # a section: go on inside
            kwargs[name] = build_dataclass(hints[name], raw[name], _join(path, name), problems)
            continue
        with problems.collect():
            kwargs[name] = coerce_value(hints[name], raw[name], _join(path, name))
    return cls(**kwargs)


@functools.lru_cache(maxsize=None)
def _type_hints(cls: type) -> dict[str, Any]:
    """typing.get_type_hints, once per class (it re-evaluates every annotation on each call)."""
    return typing.get_type_hints(cls)


def coerce_value(tp: Any, value: Any, path: str) -> Any:
    """`value` as type `tp` (dataclasses, unions with None, tuples, dicts, scalars), or ConfigError."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        return coerce_value([a for a in args if a is not type(None)][0], value, path)
    if dataclasses.is_dataclass(tp) or hasattr(tp, "from_raw"):
        problems = Problems()
        built = build_dataclass(tp, value, path, problems)
        problems.raise_if_any()
        return built
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {show(value)}")
        item = typing.get_args(tp)[0]
        return tuple(coerce_value(item, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {show(value)}")
        item = typing.get_args(tp)[1]
        return {k: coerce_value(item, v, f"{path}.{k}") for k, v in value.items()}
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {show(value)}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{path}: expected an integer, got {show(value)}")
    if tp is int and abs(value) > MAX_INT:
        raise ConfigError(f"{path}: {show(value)} is out of range (at most {MAX_INT:.0e} in magnitude)")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {show(value)}")
        if not finite(value):
            raise ConfigError(f"{path}: expected a finite number, got {show(value)}")
        return float(value)
    if tp is str and not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {show(value)}")
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


MAX_INT = 10**15  # any integer setting beyond this is a typo (and may not fit a C integer)
_SHORT = reprlib.Repr()  # Python 3.11's Repr takes no keyword arguments
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxtuple, _SHORT.maxset = 2, 4, 4, 4, 4
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 30


def finite(value: Any) -> bool:
    """A number that is neither inf nor NaN (large integers included: float() of them may overflow)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def show(value: Any) -> str:
    """A short repr for an error line; bounded work whatever the value's size (reprlib stops early)."""
    text = _SHORT.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
