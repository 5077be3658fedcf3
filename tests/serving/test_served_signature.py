"""How the server calls a loaded signature: the graph function directly, on the caller's thread where
TensorFlow allows it, with the public call's answers."""

import struct

import numpy as np
import pytest
import tensorflow as tf

from lamina.serving.inference import InputLimits, check_files, tf_error_summary
from lamina.serving.protocol import ServingError
from lamina.serving.signature import ServedSignature
from tests.serving.toy import write_toy_model


class _Loops(tf.Module):
    """A signature with low-level control flow: tf.map_fn lowers to a while loop."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def squares(self, x):
        return {"y": tf.map_fn(lambda v: v * v + 1.0, x)}


class _Columns(tf.Module):
    """Arguments declared in an order that is not their sorted order, each with its own weight."""

    def __init__(self):
        super().__init__()
        self.w = tf.Variable([1.0, 10.0, 100.0])

    @tf.function(input_signature=[{"zeta": tf.TensorSpec([None], tf.float32, name="zeta"),
                                   "alpha": tf.TensorSpec([None], tf.float32, name="alpha"),
                                   "mid": tf.TensorSpec([None], tf.float32, name="mid")}])
    def raw(self, inputs):
        return {"y": self.w[0] * inputs["zeta"] + self.w[1] * inputs["alpha"] + self.w[2] * inputs["mid"]}


class _Logs(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def logs(self, x):
        return {"y": tf.math.log(x)}


def _load(module, fn, tmp_path, name="serving_default"):
    path = str(tmp_path / "m")
    tf.saved_model.save(module, path, signatures={name: fn})
    return tf.saved_model.load(path).signatures[name]


def test_a_plain_signature_runs_inline_and_direct_with_the_public_calls_answers(tmp_path):
    write_toy_model(str(tmp_path), 3, scale=2.0)
    loaded = tf.saved_model.load(str(tmp_path / "3")).signatures["serving_default"]
    served = ServedSignature(loaded, "serving_default")
    x = tf.constant([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]])
    for _ in range(3):  # the first call also compares with the public call
        got = served(x=x)
        assert served.inline and served.flat
        np.testing.assert_array_equal(got["y"].numpy(), [2.0 * 6.0 + 3.0, 2.0 * 3.5 + 3.0])
        np.testing.assert_array_equal(got["y"].numpy(), loaded(x=x)["y"].numpy())


def test_a_model_error_from_the_direct_call_names_the_key_without_tensorflows_op_suffix(tmp_path):
    write_toy_model(str(tmp_path), 1)
    loaded = tf.saved_model.load(str(tmp_path / "1")).signatures["classify"]
    served = ServedSignature(loaded, "classify")
    example = tf.train.Example()
    example.features.feature["x"].bytes_list.value.append(b"long")
    inputs = tf.constant([example.SerializeToString()])
    summaries = []
    for call in (served, loaded):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            call(inputs=inputs)
        summaries.append(tf_error_summary(info.value))
    # ParseExample words the mismatch in one of two ways, from one call to the next; both name the key.
    wordings = {"Key: x, Index: 0.  Data types don't match. Data type: string but expected type: float",
                "Key: x, Index: 0.  Data types don't match. Expected type: float, Actual type: string"}
    assert set(summaries) <= wordings, summaries


def test_control_flow_falls_back_to_the_default_executor_with_the_same_answers(tmp_path, caplog):
    module = _Loops()
    loaded = _load(module, module.squares, tmp_path)
    served = ServedSignature(loaded, "serving_default")
    x = tf.constant([1.0, 2.0, -3.0])
    with caplog.at_level("INFO", logger="lamina.serving"):
        first = served(x=x)
    assert not served.inline
    assert ("signature 'serving_default' runs on TensorFlow's default executor: Single-threaded executor does not "
            "support low level control flow,  but saw control flow node") in caplog.text
    np.testing.assert_array_equal(first["y"].numpy(), [2.0, 5.0, 10.0])
    np.testing.assert_array_equal(served(x=x)["y"].numpy(), loaded(x=x)["y"].numpy())


def test_inputs_reach_their_own_arguments_whatever_the_declared_order(tmp_path):
    module = _Columns()
    loaded = _load(module, module.raw, tmp_path, "serving_raw")
    served = ServedSignature(loaded, "serving_raw")
    assert list(served.inputs) == list(loaded.structured_input_signature[1])
    got = served(zeta=tf.constant([1.0]), alpha=tf.constant([2.0]), mid=tf.constant([3.0]))
    assert served.flat
    np.testing.assert_array_equal(got["y"].numpy(), [1.0 + 20.0 + 300.0])


def test_a_nan_in_the_first_answer_still_counts_as_the_same_answer(tmp_path):
    module = _Logs()
    served = ServedSignature(_load(module, module.logs, tmp_path), "serving_default")
    got = served(x=tf.constant([-1.0, 1.0]))["y"].numpy()
    assert served.flat
    assert np.isnan(got[0]) and got[1] == 0.0


def _png_header(width, height):
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + struct.pack(">II", width, height) + b"\x08\x00\x00\x00\x00"


def test_examples_are_parsed_for_files_only_when_their_bytes_could_hold_one():
    def example(**features):
        ex = tf.train.Example()
        for k, v in features.items():
            ex.features.feature[k].bytes_list.value.append(v)
        return ex.SerializeToString()

    limits = InputLimits(max_image_pixels=1_000_000)
    plain = np.array([example(model=b"BMW 320d", note=b"RIFF raff")], dtype=object)  # markers, but no files
    check_files("inputs", plain, limits, examples=True)
    bomb = np.array([example(model=b"x"), example(photo=_png_header(20000, 20000))], dtype=object)
    with pytest.raises(ServingError) as info:
        check_files("inputs", bomb, limits, examples=True)
    assert info.value.code == "INVALID_ARGUMENT"
    assert str(info.value) == ("Input 'inputs' example 1 feature 'photo' is a 20000x20000 PNG (400,000,000 pixels); "
                               "the limit is 1,000,000 pixels (lamina serve --max-image-pixels).")
