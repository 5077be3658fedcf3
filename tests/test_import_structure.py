"""The rooms and the one-way flow between them, read from the sources (no imports run).

spec -> pipeline -> components -> models -> artifacts -> push -> serving: the spec package
imports nothing else of Lamina's; models, components and serving import nothing of the pipeline
package but the spec; serving's front ends do not import each other; and no import circle is
left anywhere, counting imports inside functions too.
"""

import ast
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parent.parent
# The checkout's folders and the import names they are installed under (pyproject.toml).
PACKAGES = {"lamina": "lamina", "pipeline": "lamina.pipeline", "components": "lamina.components",
            "models": "lamina.models", "serving": "lamina.serving"}


def _modules() -> Dict[str, Path]:
    modules = {}
    for folder, name in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([name, *parts])] = path
    return modules


def _imports(path: Path, known: Set[str]) -> Set[str]:
    """The Lamina modules `path` imports, at module level or inside functions."""
    found = set()
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in ast.walk(block)}  # annotations only: never imported at run time
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from lamina import storage` imports the module storage, not what the package offers.
            submodules = [f"{node.module}.{a.name}" for a in node.names]
            names = submodules if all(n in known for n in submodules) else [node.module] + submodules
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = _modules()
    return {m: _imports(p, set(modules)) - {m} for m, p in modules.items()}


def test_no_import_uses_the_bare_folder_names():
    """Every import of Lamina's own code goes through `lamina.` (a user's `models` cannot shadow it)."""
    bare = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            bare += [f"{module}: {n}" for n in names if n.split(".")[0] in ("pipeline", "models", "components",
                                                                            "serving")]
    assert bare == []


def test_no_import_circle():
    graph = _graph()
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


def test_the_spec_package_is_a_leaf():
    """The spec sees only itself and lamina.storage (paths local or gs://), which sees nothing of Lamina's."""
    graph = _graph()
    assert graph["lamina.storage"] == set()
    outside = {m: sorted(i for i in imports if not i.startswith("lamina.pipeline.spec") and i != "lamina.storage")
               for m, imports in graph.items() if m.startswith("lamina.pipeline.spec")}
    assert {m: i for m, i in outside.items() if i} == {}


def test_models_components_and_serving_see_only_the_spec_of_the_pipeline_package():
    graph = _graph()
    wrong = {m: sorted(i for i in imports if i.startswith("lamina.pipeline") and not i.startswith("lamina.pipeline.spec"))
             for m, imports in graph.items() if m.startswith(("lamina.models", "lamina.components", "lamina.serving"))}
    assert {m: i for m, i in wrong.items() if i} == {}


def test_serving_front_ends_share_inference_and_not_each_other():
    graph = _graph()
    assert "lamina.serving.server" not in graph["lamina.serving.rest"]
    assert "lamina.serving.inference" in graph["lamina.serving.rest"]
    assert "lamina.serving.inference" in graph["lamina.serving.server"]
    assert not graph["lamina.serving.protocol"]  # the shared names depend on nothing
    # The Pusher's warmup writer needs the protocol names and a SavedModel reader, not the server.
    assert graph["lamina.serving.warmup"] == {"lamina.serving.protocol", "lamina.serving.saved_model"}
