"""The rooms and the one-way flow between them, read from the sources (no imports run).

    core (lamina.*: spec, constants, cells, tables, rows, storage, progress, image_headers)
      -> serving -> models -> components -> pipeline.runs -> pipeline -> pipeline.cli

A module may import its own room and the rooms to its left, never one to its right; imports inside
functions count too. `lamina/__init__.py` is the public facade (`from lamina import run_pipeline`):
it imports nothing at import time and reaches the top room lazily, so it sits above them all and no
room imports a name from it. No module imports another module's private (`_name`) name, and no
import circle is left anywhere. docs/architecture.md draws the same rooms.
"""

import ast
import shutil
from pathlib import Path
from typing import Dict, List, Set, Tuple

REPO = Path(__file__).resolve().parent.parent
# The checkout's folders and the import names they are installed under (pyproject.toml).
PACKAGES = {"lamina": "lamina", "pipeline": "lamina.pipeline", "components": "lamina.components",
            "models": "lamina.models", "serving": "lamina.serving"}
# The rooms, bottom first: (name, the module prefixes that belong to it). The longest prefix wins.
ROOMS: List[Tuple[str, Tuple[str, ...]]] = [
    ("core", ("lamina.",)),
    ("serving", ("lamina.serving",)),
    ("models", ("lamina.models",)),
    ("components", ("lamina.components",)),
    ("pipeline.runs", ("lamina.pipeline.runs",)),
    ("pipeline", ("lamina.pipeline",)),
    ("pipeline.cli", ("lamina.pipeline.cli",)),
    ("facade", ()),  # the `lamina` package itself
]


def room_of(module: str) -> int:
    if module == "lamina":
        return len(ROOMS) - 1
    best, rank = "", 0
    for i, (_, prefixes) in enumerate(ROOMS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix.rstrip(".") + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    return rank


def modules_under(repo: Path) -> Dict[str, Path]:
    modules = {}
    for folder, name in PACKAGES.items():
        for path in sorted((repo / folder).rglob("*.py")):
            parts = list(path.relative_to(repo / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([name, *parts])] = path
    return modules


def _typing_only(tree: ast.AST) -> Set[int]:
    return {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
            and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
            for n in ast.walk(block)}  # annotations only: never imported at run time


def imports_of(path: Path, known: Set[str]) -> Dict[str, int]:
    """The Lamina modules `path` imports, at module level or inside functions, with a line of each."""
    found: Dict[str, int] = {}
    tree = ast.parse(path.read_text(), str(path))
    skip = _typing_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from lamina import storage` imports the module storage; `from lamina import Spec` the facade.
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                     for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.setdefault(name, node.lineno)
    return found


def import_graph(repo: Path = REPO) -> Dict[str, Dict[str, int]]:
    modules = modules_under(repo)
    graph = {}
    for m, p in modules.items():
        imports = imports_of(p, set(modules))
        imports.pop(m, None)
        graph[m] = imports
    return graph


def upward_imports(repo: Path = REPO) -> List[str]:
    """Every import of a room above the importer's, as 'module:line imports module (room -> room)'."""
    wrong = []
    for module, imports in sorted(import_graph(repo).items()):
        for imported, line in sorted(imports.items()):
            if room_of(imported) > room_of(module):
                wrong.append(f"{module}:{line} imports {imported} "
                             f"({ROOMS[room_of(module)][0]} -> {ROOMS[room_of(imported)][0]})")
    return wrong


def private_imports(repo: Path = REPO, folders=("lamina", "pipeline", "components", "models", "serving", "tests",
                                                "benchmarks", "examples")) -> List[str]:
    """`from lamina.x import _name` and `x._name` on an imported Lamina module, anywhere in the tree."""
    found = []
    for folder in folders:
        for path in sorted((repo / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            aliases = set()
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "lamina":
                    for a in node.names:
                        aliases.add(a.asname or a.name)
                        if a.name.startswith("_") and not a.name.startswith("__"):
                            found.append(f"{path.relative_to(repo)}:{node.lineno}: from {node.module} import {a.name}")
                elif isinstance(node, ast.Import):
                    aliases.update(a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("lamina"))
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                        and isinstance(node.value, (ast.Name, ast.Attribute))
                        and ast.unparse(node.value).split(".")[0] in aliases):
                    found.append(f"{path.relative_to(repo)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_every_room_imports_only_its_own_room_and_those_below():
    assert upward_imports() == []


def test_an_upward_import_is_found(tmp_path):
    """The check above is not vacuous: a copy of the tree with one planted upward import fails it."""
    for folder in PACKAGES:
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.json",
                                                                                        "*.j2", "*.yaml", "*.csv"))
    assert upward_imports(tmp_path) == []
    cells = tmp_path / "lamina" / "cells.py"
    cells.write_text(cells.read_text() + "\n\ndef _planted():\n    from lamina.models.trainer import run_fn\n")
    planted = upward_imports(tmp_path)
    assert len(planted) == 1 and planted[0].startswith("lamina.cells:")
    assert planted[0].endswith("imports lamina.models.trainer (core -> models)")


def test_the_rooms_are_the_ones_the_docs_draw():
    assert [name for name, _ in ROOMS] == ["core", "serving", "models", "components", "pipeline.runs", "pipeline",
                                           "pipeline.cli", "facade"]
    assert room_of("lamina.spec.data") == room_of("lamina.constants") == 0
    assert room_of("lamina.pipeline.cli.serve") > room_of("lamina.pipeline.local_runner") > \
        room_of("lamina.pipeline.runs.report") > room_of("lamina.components.gates")
    text = (REPO / "docs" / "architecture.md").read_text()
    assert "core → serving → models → components → pipeline.runs → pipeline → pipeline.cli" in text


def test_no_module_imports_another_modules_private_name():
    assert private_imports() == []


def test_no_import_uses_the_bare_folder_names_or_the_old_spec_path():
    """Every import of Lamina's own code goes through `lamina.` (a user's `models` cannot shadow it)."""
    bare = []
    for module, path in modules_under(REPO).items():
        text = path.read_text()
        if "lamina.pipeline.spec" in text:
            bare.append(f"{module}: lamina.pipeline.spec")
        for node in ast.walk(ast.parse(text)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            bare += [f"{module}: {n}" for n in names if n.split(".")[0] in ("pipeline", "models", "components",
                                                                            "serving")]
    assert bare == []


def test_no_import_circle():
    graph = {m: set(i) for m, i in import_graph().items()}
    cycles: List[List[str]] = []
    state: Dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_core_leaves_are_leaves():
    """constants, storage and the cell grammar see nothing (or only each other); the spec sees only the core."""
    graph = import_graph()
    assert set(graph["lamina.constants"]) == set()
    assert set(graph["lamina.storage"]) == set()
    assert set(graph["lamina.cells"]) <= {"lamina.storage"}
    assert set(graph["lamina.image_headers"]) == set()
    outside = {m: sorted(i for i in imports if room_of(i) != 0)
               for m, imports in graph.items() if m.startswith("lamina.spec")}
    assert {m: i for m, i in outside.items() if i} == {}


def test_serving_front_ends_share_inference_and_not_each_other():
    graph = {m: set(i) for m, i in import_graph().items()}
    assert "lamina.serving.server" not in graph["lamina.serving.rest"]
    assert "lamina.serving.inference" in graph["lamina.serving.rest"]
    assert "lamina.serving.inference" in graph["lamina.serving.server"]
    assert not graph["lamina.serving.protocol"]  # the errors depend on nothing
    # The Pusher's warmup writer needs the protocol names and a SavedModel reader, not the server.
    assert graph["lamina.serving.warmup"] == {"lamina.constants", "lamina.serving.saved_model"}
    # Serving loads no pydantic spec: the server starts without it.
    assert not any(i.startswith("lamina.spec") for m, imports in graph.items() if m.startswith("lamina.serving")
                   for i in imports)
