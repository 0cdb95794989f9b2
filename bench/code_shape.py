"""The shape of `search/`, counted: modules and lines per layer, the floors of its import graph (the longest
chain of imports between its modules), and the modules a trial passes through.

A trial passes through the code Tune runs for it: the trainable in its worker, and on the driver the
per-trial hooks (the define-by-run function, the searcher, the scheduler, the MLflow and progress
callbacks); each with every `search` module it imports. Static: it reads the source, runs nothing.

    python bench/code_shape.py            # this checkout
    python bench/code_shape.py --root DIR --trial search.trainable search.searcher ...   # another layout
"""
from __future__ import annotations

import argparse
import ast
import functools
from collections import Counter
from pathlib import Path

TRIAL = ("search.tune.trainable", "search.space.optuna", "search.tune.searcher", "search.tune.mo_asha",
         "search.tracking.tracker", "search.tune.progress", "search.tracking.front_trace")


def modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in (root / "search").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m in known and m != name}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    p.add_argument("--trial", nargs="+", default=list(TRIAL), help="the modules Tune runs for a trial")
    args = p.parse_args()
    mods = modules(args.root)
    graph = {m: imports(m, path, set(mods)) for m, path in mods.items()}

    @functools.cache
    def floor(m: str, path: tuple[str, ...] = ()) -> int:  # 1: imports none of search; else above its highest
        if m in path:
            raise SystemExit("import cycle: " + " -> ".join(path + (m,)))
        return 1 + max((floor(d, path + (m,)) for d in graph[m]), default=0)

    def closure(start: list[str]) -> set[str]:
        seen, todo = set(), [m for m in start if m in graph]
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += graph[m]
        return seen

    real = {m: p for m, p in mods.items() if p.stat().st_size > 0 and m != "search"}
    lines = {m: len(p.read_text().splitlines()) for m, p in real.items()}
    layer = Counter(path.parent.name if path.parent.name != "search" else "(command-line aliases)"
                    for path in real.values() if path.name != "__init__.py")
    inits = sum(1 for m in real if real[m].name == "__init__.py")
    print(f"modules: {len(real) - inits} (and {inits} packages), lines: {sum(lines.values())}")
    print("per layer: " + ", ".join(f"{k} {v}" for k, v in sorted(layer.items())))
    aliases = {m for m, path in real.items() if path.parent.name == "search"}
    print(f"floors: {max(floor(m) for m in graph if m not in aliases)} (below the command-line aliases)")
    trial = closure(args.trial) - {"search"} - {m for m in mods if mods[m].name == "__init__.py" and not lines.get(m)}
    print(f"modules a trial passes through: {len(trial)}")
    print("  " + " ".join(sorted(trial)))


if __name__ == "__main__":
    main()
