"""The shape of the code: no import cycles in mtl_core or search (every import counts, function-level ones
too: a function-level import is how a cycle hides), `mtl_core` never imports Ray, MLflow or `search`, and
no function in search/ runs past 60 lines; a trial worker imports no heavy library it may not need. The
project stands alone: nothing points into the research group's private notes, and every method has its
section in docs/methods.md."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mtl_core", "search")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _main_guard(node: ast.stmt) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare) and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__" and any(isinstance(c, ast.Constant) and c.value == "__main__"
                                                          for c in node.test.comparators))


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules `name` imports (`from pkg import sub` counts as importing pkg.sub)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    tree = ast.parse(path.read_text())
    # A module's `if __name__ == "__main__":` block runs only when it is the script, not this module: an
    # import there (a command handing over to its own module) closes no cycle.
    tree.body = [n for n in tree.body if not _main_guard(n)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_checker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a"}}) is None


def test_no_import_cycles():
    graph = _graph()
    assert len(graph) > 40  # the walk found the packages
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_mtl_core_knows_nothing_of_ray_mlflow_or_search():
    for name, path in _modules().items():
        if not name.startswith("mtl_core"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for mod in names:
                assert mod.split(".")[0] not in ("ray", "mlflow", "optuna", "search"), f"{name} imports {mod}"


# --- search/'s layers ----------------------------------------------------------------------------------
# Lowest first; a module imports only its own layer and those below (docs/layout.md). The command-line
# aliases at the top (`search/launch.py`, ...) sit above every layer.
LAYERS = ("io", "analysis", "space", "tracking", "tune", "report", "run")


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] != "search" or len(parts) < 2 or parts[1] not in LAYERS:
        return len(LAYERS)  # `search` itself and the aliases
    return LAYERS.index(parts[1])


def _climbing(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in graph.items() if m.startswith("search")
                  for d in deps if d.startswith("search") and _layer(d) > _layer(m))


def test_the_layer_check_finds_an_import_that_climbs():
    assert _climbing({"search.io.lock": {"search.run.sweep"}, "search.run.sweep": {"search.io.lock"}}) == \
        ["search.io.lock -> search.run.sweep"]


def test_no_import_in_search_climbs_back_up_a_layer():
    graph = _graph()
    assert all(_layer(m) < len(LAYERS) for m in graph if m.startswith("search.") and m.count(".") > 1)
    assert _climbing(graph) == []


def test_no_function_in_search_is_longer_than_60_lines():
    """search/ reads as a pipeline of small steps (a long function there is where a newcomer got lost)."""
    long = []
    for path in (ROOT / "search").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long


def test_a_trial_worker_imports_no_heavy_library_it_may_not_need():
    """torchjd (it brings cvxpy) and transformers' model code cost seconds in every Ray worker; only the
    gradient methods and an uncached or fine-tuned text encoder need them, so they load on first use."""
    import subprocess
    import sys

    heavy = ("torchjd", "cvxpy", "transformers")
    code = ("import sys, search.tune.trainable, mtl_core.prepare, mtl_core.config; "
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# --- the project stands alone -------------------------------------------------------------------------
# The research group keeps private notes in a folder beside the checkout (`shared`, one level up) that a
# clone does not have. Nothing here may point into it: no note by name or section number, no path into
# the folder. The one allowed path is the real Comic Mischief data the group keeps there too
# (tests/conftest.py REAL_DATA, bench/bench_data.py, the real-text commands in docs/results.md): its users skip or
# say so when it is absent. The cluster files' absolute `/shared/...` is a cluster mount, not this folder,
# and is not matched: only `../shared...` strings and `... / "shared"` path joins are.
SCANNED = ("mtl_core", "search", "tests", "bench", "spaces", "cluster", "configs", "docs", ".ci",
           "README.md", "pyproject.toml")
PRIVATE_NOTE = re.compile(r"\bMETHODS(?:\.md|\s+\d)|RAY_TUNE_NOTES|/work/shared")
SHARED_PATH = re.compile(r"""\.\./shared(?:/[\w.-]+)*|/\s*["']shared["'](?:\s*/\s*["'][\w.-]+["'])*""")
REAL_DATA = "shared/data/comic_mischief"


def _private_references(text: str) -> list[str]:
    found = [m.group() for m in PRIVATE_NOTE.finditer(text)]
    for m in SHARED_PATH.finditer(text):
        path = re.sub(r"""["'\s]""", "", m.group()).removeprefix("../").removeprefix("/")
        if path != REAL_DATA and not path.startswith(REAL_DATA + "/"):
            found.append(m.group())
    return found


def _scanned_files():
    for name in SCANNED:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f == Path(__file__).resolve():  # this file spells the patterns out
                continue
            try:
                yield f, f.read_text()
            except UnicodeDecodeError:
                continue  # not text


def test_the_private_reference_check_finds_them():
    assert _private_references("rule as in METHODS" + ".md 5.1") and _private_references("see METHODS 9")
    assert _private_references("--set data.root=../shared/seed") and _private_references("cat ../shared")
    assert _private_references('ROOT.parent / "shared" / "hooks"') and _private_references("ROOT / 'shared'")
    assert not _private_references("--set data.root=../shared/data/comic_mischief   # real text")
    assert not _private_references('ROOT.parent / "shared" / "data" / "comic_mischief"')
    assert not _private_references("--storage /shared/experiments, the shared encoder, shared_params")


def test_nothing_points_into_the_private_notes():
    bad = [f"{f.relative_to(ROOT)}: {ref}" for f, text in _scanned_files() for ref in _private_references(text)]
    assert not bad, bad


METHODS_DOC = ROOT / "docs" / "methods.md"


def test_every_registered_strategy_has_a_section_in_docs_methods():
    from mtl_core.strategies import REGISTRIES

    text = METHODS_DOC.read_text()
    missing = [f"{axis}-{name}" for axis, registry in REGISTRIES.items() for name in registry
               if not re.search(rf'<a id="{axis}-{name}"></a>\n### `{name}`', text)]
    assert not missing, f"docs/methods.md has no section for: {missing}"


def _method_links(f: Path, text: str) -> list[str]:
    """The anchors a file links to in docs/methods.md (the document's own `](#...)` links included)."""
    links = re.findall(r"docs/methods\.md#([\w-]+)", text)
    return links + re.findall(r"\]\(#([\w-]+)\)", text) if f == METHODS_DOC else links


def test_every_link_into_docs_methods_names_an_anchor_it_has():
    anchors = set(re.findall(r'<a id="([\w-]+)"></a>', METHODS_DOC.read_text()))
    linked = [(f, a) for f, text in _scanned_files() for a in _method_links(f, text)]
    broken = [f"{f.relative_to(ROOT)}: #{a}" for f, a in linked if a not in anchors]
    assert not broken, broken
    unlisted = anchors - {a for f, a in linked if f == METHODS_DOC}
    assert not unlisted, f"docs/methods.md's contents leave out: {sorted(unlisted)}"


def test_each_method_has_a_module_of_its_own():
    """Findable methods: the module of a registered strategy holds no other registered strategy."""
    from mtl_core.strategies import REGISTRIES

    modules = [cls.__module__ for registry in REGISTRIES.values() for cls in registry.values()]
    assert not {m for m in modules if modules.count(m) > 1}


# --- every name defined once -----------------------------------------------------------------------------
# A metric key (`val/avg_f1`, `final/test/avg_f1/mean`), the experiment folder's file names and the
# checkpoint folder are spelt in one place each (`mtl_core.keys`, `search.io.files.Files`,
# `mtl_core.checkpoint.FOLDER`); elsewhere code builds them from there. A bare namespace (`"test/"` in a
# `startswith`) is not a key. Docstrings may quote them.
KEY_LITERAL = re.compile(r"(val|test|train|final|search|strategy|affinity|pretrain|f1)/\w[\w/]*|val_avg_f1")
DEFINED_IN = ("mtl_core/keys.py", "search/io/files.py", "mtl_core/checkpoint.py")


def _names_spelt_out(path: Path, names: set[str], base: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [f"{path.relative_to(base)}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
            and (KEY_LITERAL.fullmatch(n.value) or n.value in names)]


def _defined_names() -> set[str]:
    from mtl_core.checkpoint import FOLDER
    from search.io.files import Files

    return {v for k, v in vars(Files).items() if k.isupper() and isinstance(v, str)} | {FOLDER}


def test_the_literal_check_finds_a_key_and_a_file_name_but_not_a_namespace_or_a_docstring(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text('"""Reads `val/avg_f1`."""\nA = "test/avg_f1"\nB = "trials.parquet"\nC = x.startswith("val/")\n')
    assert _names_spelt_out(path, _defined_names(), tmp_path) == ["probe.py:2: 'test/avg_f1'", "probe.py:3: 'trials.parquet'"]


def test_metric_keys_and_file_names_are_spelt_only_where_they_are_defined():
    names = _defined_names()
    found = [hit for pkg in PACKAGES for path in sorted((ROOT / pkg).rglob("*.py"))
             if path.relative_to(ROOT).as_posix() not in DEFINED_IN for hit in _names_spelt_out(path, names)]
    assert found == []


def test_docs_layout_names_every_module_of_search_in_its_package():
    """docs/layout.md draws search/ as a tree: each package's block names each of its modules."""
    tree = (ROOT / "docs" / "layout.md").read_text().split("mtl_core/ ")[0]
    blocks = re.split(r"\n├── (\w+)/", tree)  # [top, name, body, name, body, ...]
    named = {name: set(re.findall(r"([\w_]+\.py)", body)) for name, body in zip(blocks[1::2], blocks[2::2])}
    missing = [path.relative_to(ROOT).as_posix() for path in sorted((ROOT / "search").rglob("*.py"))
               if path.name != "__init__.py" and path.parent != ROOT / "search"
               and path.name not in named.get(path.parent.name, set())]
    assert named and missing == []
    assert set(named) == set(LAYERS)
