"""YAML written by strangers: PyYAML's safe loader with bounds, and duplicate keys refused.

`yaml.safe_load` runs no code, but a 1 KB file of nested aliases (a "billion laughs") expands into
billions of values, and a key written twice silently keeps the last value. Here the document is first
composed into PyYAML's node graph (linear in the file's size: an alias is a reference to a node), that
graph is walked as if every alias were expanded, stopping at `MAX_NODES` values or `MAX_DEPTH` levels,
and only then turned into Python objects. Every problem is one line naming the file or the key path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mtl_core.validation import ConfigError

MAX_BYTES = 256 * 1024  # a space or config file is a few KB
MAX_NODES = 20_000  # values after alias expansion (the largest shipped space has about 150)
MAX_DEPTH = 32  # nesting levels (a space's deepest leaf is about 8 down)
MERGE_TAG = "tag:yaml.org,2002:merge"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML was built with it


def load_file(path: str | Path) -> Any:
    """The YAML document in `path`, within the bounds above, or ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_BYTES // 1024} KiB (a space or config file is a few KB)")
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_BYTES:  # grew since stat
        raise ConfigError(f"{path}: larger than {MAX_BYTES // 1024} KiB (a space or config file is a few KB)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return loads(text, str(path))


def loads(text: str, where: str) -> Any:
    """Parse one YAML document; `where` names it in errors (a file, or `--set key`)."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_BYTES // 1024} KiB")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError(f"{where}: not valid YAML{line}") from None
    except ConfigError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date 2020-13-45, a 5000-digit integer
        raise ConfigError(f"{where}: not valid YAML ({type(exc).__name__}: {str(exc)[:80]})") from None
    finally:
        loader.dispose()


def _check_graph(root: yaml.Node, where: str) -> None:
    """Walk the node graph as expanded (each alias visit counts again): bounded size and depth, no
    duplicate keys. The walk itself stops at MAX_NODES, so a bomb costs milliseconds."""
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 1)]
    seen = 0
    while stack:
        node, path, depth = stack.pop()
        seen += 1
        if seen > MAX_NODES:
            raise ConfigError(f"{where}: more than {MAX_NODES} values once its aliases are expanded "
                              f"(at {_short(path) or 'the top'})")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels (at {_short(path)})")
        if isinstance(node, yaml.MappingNode):
            stack.extend(_mapping_children(node, path, depth, where))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(node.value))


def _short(path: str) -> str:
    return path if len(path) <= 60 else path[:57] + "..."


def _mapping_children(node: yaml.MappingNode, path: str, depth: int, where: str) -> list:
    children, lines = [], {}
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG:
            name = f"{path}.{key.value}" if path else str(key.value)
            ident = (key.tag, key.value)
            if ident in lines:
                raise ConfigError(f"{name}: duplicate key (lines {lines[ident]} and {key.start_mark.line + 1} "
                                  f"of {where})")
            lines[ident] = key.start_mark.line + 1
        else:
            name = f"{path}.<key>" if path else "<key>"
            children.append((key, name, depth + 1))
        children.append((value, name, depth + 1))
    return children
