"""A loaded signature as the server calls it: inputs by the SignatureDef's keys, the input specs
read once, the graph function called directly, and run on the caller's thread where TensorFlow
allows it.

Why the caller's thread: TensorFlow's default executor hands a function's kernels to its
inter-op threads. Back to back, those threads are spinning and the hand-off is cheap; between
requests they fall asleep, and waking them costs a penguins request about 0.1 ms, a third
of the model's own time. The single-threaded executor runs the kernels inline (each kernel
still uses the intra-op threads for its own work), so a request that arrives after a pause
costs what one arriving back to back does. It refuses graphs with low-level control flow
(`tf.map_fn`, `tf.while_loop` lowered to Switch/Merge, as image decoding in a batch has); such
a signature says so on its first call, which warmup makes at load, and keeps the default
executor from then on. The answers are the same kernels' answers either way (tests compare
them, and the first call of each signature compares the direct call with the public one).
"""

import dataclasses
import logging
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context  # the executor of a function call is only set here

log = logging.getLogger("lamina.serving")

INLINE_EXECUTOR = "SINGLE_THREADED_EXECUTOR"
# How each of that executor's refusals begins (reference-typed edges, low-level control flow, Switch).
REFUSED = "Single-threaded executor does not support"


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One input of a signature, as plain values: checking a request against it costs no TensorShape."""

    dtype: tf.DType
    enum: int  # the DataType enum a TensorProto carries
    shape: Optional[Tuple[Optional[int], ...]]  # None: any rank; a None dimension: any size

    @classmethod
    def of(cls, spec: tf.TensorSpec) -> "InputSpec":
        shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
        return cls(spec.dtype, spec.dtype.as_datatype_enum, shape)

    def accepts(self, dims) -> bool:
        if self.shape is None:
            return True
        return len(dims) == len(self.shape) and all(s is None or s == d for s, d in zip(self.shape, dims))

    def describe(self) -> str:
        """The shape as error messages show it: [None, 1] (None: any size), or 'any shape'."""
        return "any shape" if self.shape is None else str(list(self.shape))


class KeyedSignature:
    """A loaded signature that takes its inputs by the SignatureDef's keys, as TF Serving does.

    TensorFlow's loader names a signature's arguments after its placeholders, which must be
    identifiers; a SavedModel may key its SignatureDef otherwise (Lamina's exports key
    `serving_raw` by the columns' own names, such as 'monthly spend'). Each key maps to the
    argument whose placeholder its tensor names (`<signature>_<argument>:0`).
    """

    def __init__(self, fn, aliases: Dict[str, str]):
        self._fn = fn
        self.aliases = aliases  # SignatureDef key -> argument
        args, kwargs = fn.structured_input_signature
        inverse = {arg: key for key, arg in aliases.items()}
        self.structured_input_signature = (args, {inverse.get(k, k): v for k, v in kwargs.items()})
        self.structured_outputs = fn.structured_outputs

    @classmethod
    def wrap(cls, fn, signature: str, sig_def):
        arguments = set(fn.structured_input_signature[1])
        if set(sig_def.inputs) == arguments:
            return fn
        by_tensor = {f"{signature}_{arg}:0": arg for arg in arguments}
        aliases = {key: by_tensor[info.name] for key, info in sig_def.inputs.items()
                   if key not in arguments and info.name in by_tensor}
        return cls(fn, aliases) if aliases else fn

    def __call__(self, **inputs):
        return self._fn(**{self.aliases.get(k, k): v for k, v in inputs.items()})


class ServedSignature:
    """What the server calls for one signature of one loaded version.

    `inputs`: key -> InputSpec, in the signature's order. `inline`: whether calls still run on the
    single-threaded executor (False once the graph refused it). `flat`: whether calls go straight
    to the function's graph (see `_flat_function`).
    """

    def __init__(self, fn, key: str, sig_def=None):
        self.key = key
        self.fn = KeyedSignature.wrap(fn, key, sig_def) if sig_def is not None else fn
        self.structured_input_signature = self.fn.structured_input_signature
        self.structured_outputs = self.fn.structured_outputs
        self.inputs = {k: InputSpec.of(s) for k, s in self.structured_input_signature[1].items()}
        self.takes_examples = list(self.inputs) == ["inputs"] and self.inputs["inputs"].dtype == tf.string
        self.inline = True
        self._loaded = fn
        self._graph, self._order = _flat_function(fn, self.fn)
        self._checked = False
        self.flat = self._graph is not None

    def __call__(self, **tensors):
        if self.inline:
            try:
                with context.function_executor_type(INLINE_EXECUTOR):
                    return self._call(tensors)
            except tf.errors.OpError as e:
                if REFUSED not in str(e):
                    raise
                self.inline = False
                reason = str(e)[str(e).index(REFUSED):].split(".")[0]
                log.info("signature %r runs on TensorFlow's default executor: %s", self.key, reason)
        return self._call(tensors)

    def _call(self, tensors):
        if not self.flat:
            return self.fn(**tensors)
        outputs = self._graph.call_preflattened([tensors[k] for k in self._order] + self._loaded.captured_inputs)
        if not self._checked:  # the first call (warmup's) also takes the public path and compares
            self._checked = True
            public = self.fn(**tensors)
            if not _same_outputs(outputs, public):
                self.flat = False
                log.warning("signature %r: the direct call's outputs differ from the public call's; using the "
                            "public call", self.key)
                return public
        return outputs


def _flat_function(loaded, keyed):
    """(graph function, request keys in its argument order) for a call that skips the Python binding
    of arguments and outputs, or (None, None) where this TensorFlow has no such entry point.

    A loaded signature's public call binds keyword arguments to its FunctionType, checks them, looks
    for a gradient tape and resolves distributed variables: about 0.1 ms a request on penguins,
    0.2 ms after a pause. The server has checked every input against the signature before it calls,
    records no gradients and uses no distribution strategy, so it calls the graph function with the
    flat tensors and the captured resources, as the public call ends up doing.
    """
    graph = getattr(loaded, "_inference_function", None)
    function_type = getattr(loaded, "function_type", None)
    if graph is None or function_type is None or not hasattr(graph, "call_preflattened"):
        return None, None
    aliases = keyed.aliases if isinstance(keyed, KeyedSignature) else {}
    key_of = {argument: key for key, argument in aliases.items()}
    order = [key_of.get(name, name) for name in function_type.parameters]
    if sorted(order) != sorted(keyed.structured_input_signature[1]):
        return None, None
    return graph, order


def _same_outputs(a, b) -> bool:
    if not isinstance(a, dict) or not isinstance(b, dict) or sorted(a) != sorted(b):
        return False
    for k in b:
        x, y = a[k].numpy(), b[k].numpy()
        if x.dtype != y.dtype or not np.array_equal(x, y, equal_nan=x.dtype.kind in "fc"):
            return False
    return True
