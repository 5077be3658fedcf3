"""No module that handles artifact URIs, data paths or push destinations calls a local-only API.

`open`, `os.listdir`, `os.walk`, `glob.glob`, `os.path.realpath` and friends work on the local
disk only: on `gs://` a glob returns nothing and an `open` raises, so a component that uses them
passes every local test and fails (or, worse, silently does less) on Kubeflow. Those modules go
through `tf.io.gfile`, TFX's `io_utils` or `lamina.storage`, the one home of the local-only
calls, each behind `storage.is_uri` (read from the sources; nothing is imported).
"""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Every module whose paths can be an artifact URI, a data path or a push destination.
URI_MODULES = sorted(
    [p for p in (REPO / "components").glob("*.py")]
    + [REPO / "pipeline" / n for n in ("runs/summary.py", "runs/report.py", "runs/metadata.py", "pipeline.py")]
    + [REPO / "lamina" / n for n in ("tables.py", "cells.py", "image_headers.py")]
    + [REPO / "serving" / n for n in ("registry.py", "deploy.py", "batching.py", "warmup.py", "saved_model.py")]
    + [REPO / "models" / n for n in ("export.py", "trainer.py", "tuning.py")])
LOCAL_ONLY = {"open", "io.open", "os.listdir", "os.scandir", "os.walk", "os.stat", "os.makedirs", "os.mkdir",
              "os.remove", "os.rename", "os.path.realpath", "os.path.isfile", "os.path.isdir", "os.path.exists",
              "os.path.getsize", "os.path.getmtime", "glob.glob", "glob.iglob", "shutil.copy", "shutil.copyfile",
              "shutil.copytree", "shutil.move", "pathlib.Path"}


def local_only_calls(path: Path):
    """(line, name) of every call in `path` to a function in LOCAL_ONLY, imported aliases included."""
    tree = ast.parse(path.read_text(), str(path))
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
        elif isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname})
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            head, _, rest = name.partition(".")
            name = aliases.get(head, head) + (f".{rest}" if rest else "")
            if name in LOCAL_ONLY:
                found.append((node.lineno, name))
    return found


def test_modules_that_handle_uris_call_no_local_only_api():
    assert len(URI_MODULES) >= 15 and all(p.exists() for p in URI_MODULES)
    offenders = [f"{p.relative_to(REPO)}:{line}: {name}(...)" for p in URI_MODULES for line, name in local_only_calls(p)]
    assert not offenders, ("Use tf.io.gfile, tfx.utils.io_utils or lamina.storage on paths that may be "
                           "gs:// or ram://:\n" + "\n".join(offenders))


def test_the_check_sees_aliases_and_methods(tmp_path):
    """The checker itself: it catches the spellings a module could use."""
    source = tmp_path / "m.py"
    source.write_text("import os\nimport glob as g\nfrom os.path import realpath\nfrom os import listdir as ls\n"
                      "open('x')\nos.walk('.')\ng.glob('*')\nrealpath('a')\nls('.')\nos.path.join('a', 'b')\n"
                      "import tensorflow as tf\ntf.io.gfile.listdir('ram://x')\n")
    assert local_only_calls(source) == [(5, "open"), (6, "os.walk"), (7, "glob.glob"), (8, "os.path.realpath"),
                                        (9, "os.listdir")]


def test_the_local_only_calls_live_behind_is_uri_in_lamina_storage():
    calls = local_only_calls(REPO / "lamina" / "storage.py")
    local = {"os.listdir", "os.path.realpath", "open", "glob.glob", "os.path.isdir", "os.path.isfile", "os.stat"}
    assert {name for _, name in calls} == local
    source = (REPO / "lamina" / "storage.py").read_text()
    tree = ast.parse(source)
    for func in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        names = {ast.unparse(c.func) for c in ast.walk(func) if isinstance(c, ast.Call)}
        if names & (local | {"_glob.glob"}):
            assert "is_uri" in names, f"lamina.storage.{func.name} calls a local-only API without is_uri"
