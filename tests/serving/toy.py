"""Small real SavedModels for the serving tests: seconds to write, distinguishable by version.

`write_toy_model(base, version, scale)` writes `<base>/<version>/` with three signatures:

  serving_default  predict   x: float32 [None, 3]              -> y = scale * sum(x) + version
  classify         classify  inputs: serialized tf.Examples (x: 3 floats)
                                                              -> classes ['neg', 'pos'], scores
  regress          regress   inputs: serialized tf.Examples    -> outputs = scale * sum(x) + version
  text             predict   s: string [None]                  -> n = characters in each (UTF-8 only)

Every answer is a closed-form function of the input, the scale and the version, so a test can
say which version answered and what the right answer is.
"""

import os

import numpy as np
import tensorflow as tf

from lamina.constants import CLASSIFY_METHOD, REGRESS_METHOD
from lamina.models.export import set_signature_method

FEATURES = {"x": tf.io.FixedLenFeature([3], tf.float32)}


class _Toy(tf.Module):
    def __init__(self, scale: float, version: int):
        super().__init__()
        self.scale = tf.Variable(scale, dtype=tf.float32)
        self.offset = tf.Variable(float(version), dtype=tf.float32)

    def value(self, x):
        return self.scale * tf.reduce_sum(x, axis=1) + self.offset

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def predict(self, x):
        return {"y": self.value(x)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        v = self.value(tf.io.parse_example(inputs, FEATURES)["x"])
        p = tf.sigmoid(v)
        scores = tf.stack([1.0 - p, p], axis=1)
        classes = tf.tile(tf.constant([["neg", "pos"]]), tf.stack([tf.shape(v)[0], 1]))
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": self.value(tf.io.parse_example(inputs, FEATURES)["x"])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="s")])
    def text(self, s):
        # strict decoding: bytes that are not UTF-8 fail the call (INVALID_ARGUMENT)
        return {"n": tf.strings.unicode_decode(s, "UTF-8", errors="strict").row_lengths()}


def write_toy_model(base: str, version: int, scale: float = 1.0, warmup: bool = False) -> str:
    path = os.path.join(base, str(version))
    toy = _Toy(scale, version)
    tf.saved_model.save(toy, path, signatures={"serving_default": toy.predict, "classify": toy.classify,
                                               "regress": toy.regress, "text": toy.text})
    set_signature_method(path, "classify", CLASSIFY_METHOD)
    set_signature_method(path, "regress", REGRESS_METHOD)
    if warmup:
        from lamina.serving.warmup import write_warmup_requests
        write_warmup_requests(path, [example([1.0, 2.0, 3.0]).SerializeToString()],
                              predict_inputs={"x": np.ones([2, 3], np.float32)})
    return path


def expected_y(x, scale: float, version: int) -> np.ndarray:
    return (scale * np.asarray(x, np.float32).sum(axis=1) + version).astype(np.float32)


def example(x) -> tf.train.Example:
    ex = tf.train.Example()
    ex.features.feature["x"].float_list.value.extend(float(v) for v in x)
    return ex


class _ImageToy(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image")])
    def mean_pixel(self, image):
        """Decodes each encoded image for real (as an image model's serving_raw does): the mean pixel."""
        def one(encoded):
            return tf.reduce_mean(tf.cast(tf.io.decode_image(encoded, channels=3, expand_animations=False),
                                          tf.float32))

        return {"mean": tf.map_fn(one, image, fn_output_signature=tf.float32)}


def write_image_model(base: str, version: int = 1) -> str:
    """`<base>/<version>/`: serving_default takes encoded images (`image`: string [None]) -> `mean` pixel."""
    path = os.path.join(base, str(version))
    toy = _ImageToy()
    tf.saved_model.save(toy, path, signatures={"serving_default": toy.mean_pixel})
    return path
