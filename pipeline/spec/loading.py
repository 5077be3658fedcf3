"""Reading a spec file: YAML in, a mapping and the folder its relative paths resolve against out."""

import os
from pathlib import Path
from typing import Any, Tuple, Union

import yaml

from lamina.pipeline.spec.errors import SpecError


def read_spec_file(path: Union[str, os.PathLike]) -> Tuple[Any, str]:
    """(the parsed YAML, the spec file's folder); SpecError naming the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise SpecError([f"spec file not found: {str(path)!r}"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError([f"not valid YAML{where}: {getattr(e, 'problem', e)}"], str(path)) from None
    except UnicodeDecodeError as e:
        raise SpecError([f"not UTF-8 text: byte {e.start} ({e.object[e.start:e.start + 1]!r}) cannot be "
                         f"decoded"], str(path)) from None
    return data, str(path.parent.resolve())
