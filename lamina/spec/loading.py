"""Reading a spec file: YAML in, a mapping and the folder its relative paths resolve against out.

Specs travel (they are shared and submitted to Kubeflow), so reading one is bounded: a file of at
most MAX_SPEC_BYTES, and a document that expands, through YAML anchors and aliases, to at most
MAX_SPEC_NODES values nested at most MAX_SPEC_DEPTH deep. A "billion laughs" spec is refused
in milliseconds instead of growing to gigabytes in validation.
"""

import os
from pathlib import Path
from typing import Any, Tuple, Union

import yaml

from lamina.spec.errors import SpecError

MAX_SPEC_BYTES = 1024 * 1024
MAX_SPEC_NODES = 100_000
MAX_SPEC_DEPTH = 64


def check_expansion(data: Any, source: str = "") -> None:
    """Raises SpecError when `data`, with every alias expanded, exceeds the node or depth bound."""
    count = 0
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_SPEC_NODES:
            raise SpecError([f"the spec expands to more than {MAX_SPEC_NODES:,} values (YAML anchors and aliases "
                             f"repeat parts of it); a spec this large is refused."], source or None)
        if depth > MAX_SPEC_DEPTH:
            raise SpecError([f"the spec nests deeper than {MAX_SPEC_DEPTH} levels (or an alias refers to itself); "
                             f"a spec this deep is refused."], source or None)
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for kv in value.items() for v in kv)
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


def read_spec_file(path: Union[str, os.PathLike]) -> Tuple[Any, str]:
    """(the parsed YAML, the spec file's folder); SpecError naming the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise SpecError([f"spec file not found: {str(path)!r}"])
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise SpecError([f"the file is {size:,} bytes; a spec may be at most {MAX_SPEC_BYTES:,}."], str(path))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([f"not valid YAML{where}: {getattr(e, 'problem', e)}"], str(path)) from None
    except UnicodeDecodeError as e:
        raise SpecError([f"not UTF-8 text: byte {e.start} ({e.object[e.start:e.start + 1]!r}) cannot be "
                         f"decoded"], str(path)) from None
    check_expansion(data, str(path))
    return data, str(path.parent.resolve())
