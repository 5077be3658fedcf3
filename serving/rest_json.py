"""TF Serving's REST JSON: request bodies to arrays and tf.Examples, answers back to JSON.

JSON follows TF Serving's (its api_rest "JSON conformance"): `{"b64": "..."}` for bytes, row
format (`instances`) answers `predictions`, columnar format (`inputs`) answers `outputs`. As TF
Serving does, `NaN`, `Infinity` and `-Infinity` are accepted as float values (and written in
answers); a number outside the float64 range (`1e400`) is refused, naming it, as TF Serving's
parser refuses it. Bodies nested deeper than `MAX_JSON_DEPTH` are refused before they are walked.
"""

import base64
import binascii
import json
import math
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from lamina.serving.inference import check_input_names, expected_inputs
from lamina.serving.protocol import ServingError, invalid_argument

MAX_JSON_DEPTH = 64  # TF Serving's inputs are at most a few levels deep: rows, then a tensor's dimensions


def _finite_number(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise invalid_argument(f"The number {text[:40]} is outside the float64 range; send Infinity or "
                               "-Infinity for an infinite value.")
    return value


def _depth(value) -> int:
    """How deeply lists and objects nest in `value` (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def parse_body(raw: bytes) -> dict:
    """A request body as a JSON object; ServingError (INVALID_ARGUMENT) saying what is wrong with it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise invalid_argument(f"The request body is not valid UTF-8 (byte {e.start}).") from None
    try:
        body = json.loads(text, parse_float=_finite_number)
    except json.JSONDecodeError as e:
        raise invalid_argument(f"The request body is not valid JSON: {e.msg} at line {e.lineno} "
                               f"column {e.colno}.") from None
    except RecursionError:
        raise invalid_argument(f"The request body nests lists or objects too deeply; the limit is "
                               f"{MAX_JSON_DEPTH} levels.") from None
    except ValueError as e:  # a number Python cannot hold (e.g. an integer of thousands of digits)
        raise invalid_argument(f"The request body has a number that cannot be read: {e}") from None
    if not isinstance(body, dict):
        raise invalid_argument("The request body must be a JSON object.")
    if _depth(body) > MAX_JSON_DEPTH:
        raise invalid_argument(f"The request body nests lists or objects more than {MAX_JSON_DEPTH} levels deep.")
    return body


def _decode_b64(value, where: str) -> bytes:
    if not isinstance(value.get("b64"), str) or len(value) != 1:
        raise invalid_argument(f"{where}: an object value must be {{\"b64\": \"<base64 string>\"}}; got keys "
                               f"{sorted(value)}.")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise invalid_argument(f"{where}: invalid base64 in {{\"b64\": ...}}: {e}.") from None


def _element(value, dtype: tf.DType, where: str):
    if dtype == tf.string:
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            return _decode_b64(value, where)
        raise invalid_argument(f"{where}: value {value!r} is not a string (or {{\"b64\": ...}}); "
                               f"the input is {dtype.name}.")
    if dtype == tf.bool:
        if isinstance(value, bool):
            return value
        raise invalid_argument(f"{where}: value {value!r} is not a bool; the input is bool.")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_argument(f"{where}: value {value!r} is not a number; the input is {dtype.name}.")
    if dtype.is_integer and not float(value).is_integer():
        raise invalid_argument(f"{where}: value {value!r} is not an integer; the input is {dtype.name}.")
    return value


def json_to_array(value, dtype: tf.DType, where: str) -> np.ndarray:
    """A JSON value (nested lists of scalars, {"b64": ...} for bytes) as an array of `dtype`."""
    def convert(v):
        if isinstance(v, list):
            return [convert(x) for x in v]
        return _element(v, dtype, where)

    converted = convert(value)
    try:
        if dtype == tf.string:
            array = np.array(converted, dtype=object)
            if array.dtype != object or any(isinstance(x, list) for x in array.reshape(-1)):
                raise ValueError
        else:
            array = np.array(converted, dtype=dtype.as_numpy_dtype)
    except (ValueError, OverflowError):
        raise invalid_argument(f"{where}: the values do not form a rectangular {dtype.name} array "
                               "(all rows must have the same shape).") from None
    return array


def _json_value(value):
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return value  # json writes NaN/Infinity, as TF Serving does
    return value


def array_to_json(array: np.ndarray):
    if array.dtype == object:
        return np.vectorize(_json_value, otypes=[object])(array).tolist() if array.size else array.tolist()
    return array.tolist()


def predict_arrays(body: dict, fn, signature: str) -> (Dict[str, np.ndarray], bool):
    """The input arrays of a :predict body and whether it used the row format."""
    expected = expected_inputs(fn)
    if ("instances" in body) == ("inputs" in body):
        raise invalid_argument("The request must have exactly one of 'instances' (row format) or 'inputs' "
                               "(columnar format).")
    unknown = sorted(set(body) - {"instances", "inputs", "signature_name"})
    if unknown:
        raise invalid_argument(f"Unknown request key {unknown}; allowed: instances, inputs, signature_name.")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise invalid_argument("'instances' must be a non-empty list.")
        named = all(isinstance(r, dict) and "b64" not in r for r in instances)
        if named:
            columns = {}
            for n, row in enumerate(instances):
                if set(row) != set(expected):
                    try:
                        check_input_names(expected, row, signature)
                    except ServingError as e:
                        raise invalid_argument(f"instances[{n}]: {e}") from None
                for key in expected:
                    columns.setdefault(key, []).append(row[key])
        elif len(expected) == 1:
            columns = {next(iter(expected)): instances}
        else:
            raise invalid_argument(f"Signature {signature!r} has {len(expected)} inputs "
                                   f"({', '.join(sorted(expected))}); each instance must be an object naming them.")
        arrays = {k: json_to_array(v, expected[k].dtype, f"Input {k!r}") for k, v in columns.items()
                  if k in expected}
        return arrays, True
    inputs = body["inputs"]
    if isinstance(inputs, dict) and not (len(inputs) == 1 and "b64" in inputs):
        check_input_names(expected, inputs, signature)
        return {k: json_to_array(v, expected[k].dtype, f"Input {k!r}") for k, v in inputs.items()}, False
    if len(expected) != 1:
        raise invalid_argument(f"Signature {signature!r} has {len(expected)} inputs ({', '.join(sorted(expected))}); "
                               "'inputs' must be an object naming them.")
    key = next(iter(expected))
    return {key: json_to_array(inputs, expected[key].dtype, f"Input {key!r}")}, False


def predict_answer(outputs: Dict[str, np.ndarray], rows: bool) -> dict:
    if not rows:
        if len(outputs) == 1:
            return {"outputs": array_to_json(next(iter(outputs.values())))}
        return {"outputs": {k: array_to_json(v) for k, v in sorted(outputs.items())}}
    names = sorted(outputs)
    if len(names) == 1:
        return {"predictions": array_to_json(outputs[names[0]])}
    lists = {k: array_to_json(v) for k, v in outputs.items()}
    count = len(next(iter(lists.values())))
    return {"predictions": [{k: lists[k][i] for k in names} for i in range(count)]}


def _feature(example: tf.train.Example, name: str, value, dtype: Optional[int], where: str) -> None:
    values = value if isinstance(value, list) else [value]
    feature = example.features.feature[name]
    feature.Clear()
    if not values:
        return
    if all(isinstance(v, (str, dict)) for v in values):
        feature.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else _decode_b64(v, where)
                                        for v in values)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        floats = dtype in (tf.float32.as_datatype_enum, tf.float64.as_datatype_enum) or (
            dtype is None and not all(isinstance(v, int) for v in values))
        if floats:
            feature.float_list.value.extend(float(v) for v in values)
        else:
            if not all(float(v).is_integer() for v in values):
                raise invalid_argument(f"{where}: feature {name!r} has non-integer values {values}; the model "
                                       "reads it as an integer.")
            feature.int64_list.value.extend(int(v) for v in values)
    else:
        raise invalid_argument(f"{where}: feature {name!r} has value {value!r}; a feature is a string, a number, "
                               "{\"b64\": ...} or a list of one kind.")


def examples_from_json(body: dict, raw_dtypes: Dict[str, int]) -> list:
    """tf.Examples from a :classify/:regress body; numbers follow the model's raw input dtypes."""
    unknown = sorted(set(body) - {"examples", "context", "signature_name"})
    if unknown:
        raise invalid_argument(f"Unknown request key {unknown}; allowed: examples, context, signature_name.")
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise invalid_argument("'examples' must be a non-empty list of objects.")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise invalid_argument("'context' must be an object of feature names to values.")
    out = []
    for n, row in enumerate(examples):
        if not isinstance(row, dict):
            raise invalid_argument(f"examples[{n}] is not an object of feature names to values.")
        example = tf.train.Example()
        for name, value in {**context, **row}.items():
            _feature(example, name, value, raw_dtypes.get(name), f"examples[{n}]")
        out.append(example)
    return out


def model_status_json(response) -> dict:
    return {"model_version_status": [
        {"version": str(s.version), "state": type(s).State.Name(s.state),
         "status": {"error_code": "OK" if s.status.error_code == 0 else "UNKNOWN",
                    "error_message": s.status.error_message}}
        for s in response.model_version_status]}
