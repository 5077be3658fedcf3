"""Pydantic's validation errors as one readable line per problem.

Each line names the key path, the bad value and what is allowed, with a suggestion for a near
miss, e.g.::

    model.head.units: Received -3; expected an integer >= 1.
    model.hed: unknown key. Did you mean 'head'? Allowed keys: combiner, encoders, head.
"""

import difflib
import re
import typing
from typing import Annotated, Any, Dict, List, Optional, Tuple, Union

from pydantic import BaseModel, Tag, ValidationError

# The error type a tagged union (the encoders) raises for an unknown `type`.
UNKNOWN_TYPE_ERROR = "unknown_type"


class SpecError(ValueError):
    """A spec failed validation. `problems` holds one readable line per error."""

    def __init__(self, problems: List[str], source: Optional[str] = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Invalid spec{where}:\n{lines}")


class CrossFieldError(ValueError):
    """Several problems found by the cross-field checks, reported as separate lines."""

    def __init__(self, problems: List[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def one_of(word: str, choices: List[str]) -> str:
    """"expected one of: 'a', 'b'." plus a suggestion for a near miss."""
    return f"expected one of: {', '.join(repr(c) for c in choices)}.{did_you_mean(word, list(choices))}"


def did_you_mean(word: str, choices: List[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def tagged_members(annotation: Any) -> Dict[str, type]:
    """{tag: class} of a tagged union (`Union[Annotated[A, Tag('A')], ...]`); {} for anything else."""
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    if typing.get_origin(annotation) is not Union:
        return {}
    members = {}
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Annotated:
            cls, *meta = typing.get_args(arg)
            members.update({m.tag: cls for m in meta if isinstance(m, Tag)})
    return members


def _unwrap_optional(annotation: Any) -> Any:
    """Optional[X] -> X; leaves Dict, List and tagged unions alone so their keys can be walked."""
    if typing.get_origin(annotation) is Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return _unwrap_optional(args[0])
    if typing.get_origin(annotation) is Annotated and not tagged_members(annotation):
        return _unwrap_optional(typing.get_args(annotation)[0])
    return annotation


def _walk(root: type, loc: tuple) -> Tuple[tuple, Any]:
    """Follows a pydantic error location from `root`: (the location without pydantic's union tags
    and validator names, the annotation found there)."""
    current: Any = root
    clean = []
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        members = tagged_members(current)
        if members and part in members:  # `encoders.island.CategoricalEncoder.dim`: the tag picks a class
            current = members[part]
            continue
        clean.append(part)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            current = field.annotation if field is not None else None
        else:  # inside a Dict[str, X] or List[X]: the key or index selects an X
            args = [a for a in typing.get_args(current) if a is not str] if current is not None else []
            current = args[-1] if args else None
        current = _unwrap_optional(current)
    return tuple(clean), current


def _type_names(annotation: Any) -> List[str]:
    """Every `type` value the members of a tagged union answer to."""
    names = []
    for cls in tagged_members(annotation).values():
        names += list(typing.get_args(cls.model_fields["type"].annotation))
    return sorted(names)


def _loc_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "<root>"


def format_validation_error(err: ValidationError, root: type) -> List[str]:
    """One line per error in `err`, for a spec section of class `root`."""
    problems = []
    for e in err.errors(include_url=False):
        raw_loc = tuple(e["loc"])
        loc, here = _walk(root, raw_loc)
        path = _loc_path(loc)
        kind = e["type"]
        value = e.get("input")
        ctx = e.get("ctx") or {}
        if kind == "extra_forbidden":
            parent = _walk(root, raw_loc[:-1])[1]
            is_model = isinstance(parent, type) and issubclass(parent, BaseModel)
            allowed = sorted(parent.model_fields) if is_model else []
            allowed = [a for a in allowed if a != "base_dir"]
            key = str(loc[-1])
            msg = f"{path}: unknown key.{did_you_mean(key, allowed)}"
            if allowed:
                msg += f" Allowed keys: {', '.join(allowed)}."
            problems.append(msg)
        elif kind == UNKNOWN_TYPE_ERROR:
            allowed = _type_names(here)
            t = value.get("type") if isinstance(value, dict) else value
            if isinstance(value, dict) and t is None:
                problems.append(f"{path}.type: required key is missing; expected one of: {', '.join(repr(a) for a in allowed)}.")
            else:
                problems.append(
                    f"{path}.type: Received {t!r}; {one_of(str(t), allowed)}"
                )
        elif kind == "missing":
            problems.append(f"{path}: required key is missing.")
        elif kind in ("literal_error", "enum"):
            expected = ctx.get("expected", "")
            choices = re.findall(r"'([^']*)'", str(expected))
            problems.append(
                f"{path}: Received {value!r}; expected one of: {expected}.{did_you_mean(str(value), choices)}"
            )
        elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
            op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
            bound = ctx.get({"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}[kind])
            noun = "an integer" if isinstance(bound, int) and not isinstance(bound, bool) else "a number"
            problems.append(f"{path}: Received {value!r}; expected {noun} {op} {bound}.")
        elif kind in ("int_type", "int_parsing", "int_from_float"):
            problems.append(f"{path}: Received {value!r}; expected an integer.")
        elif kind in ("float_type", "float_parsing"):
            problems.append(f"{path}: Received {value!r}; expected a number.")
        elif kind in ("bool_type", "bool_parsing"):
            problems.append(f"{path}: Received {value!r}; expected true or false.")
        elif kind in ("string_type",):
            problems.append(f"{path}: Received {value!r}; expected a string.")
        elif kind in ("list_type",):
            problems.append(f"{path}: Received {value!r}; expected a list.")
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            problems.append(f"{path}: Received {value!r}; expected a mapping of keys to values.")
        elif kind == "value_error":
            msg = str(ctx.get("error", e["msg"]))
            if isinstance(ctx.get("error"), CrossFieldError):
                problems.extend(ctx["error"].problems)
            else:
                problems.append(f"{path}: {msg}")
        else:
            problems.append(f"{path}: {e['msg']}. Received: {value!r}")
    return problems
