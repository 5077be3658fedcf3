"""Image encoders: architectures, block freezing, scaling, decoding and weight loading errors."""

import io
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from lamina.models import images
from lamina.models.images import (ImageScaling, WeightsError, build_backbone, decode_image, decode_images,
                                  residual_blocks, set_trainable_blocks)
from lamina.spec import ImageEncoder


@pytest.mark.parametrize("architecture, blocks, top", [
    ("resnet50", 16, "conv5_block3"), ("resnet101", 33, "conv5_block3"), ("resnet50v2", 16, "conv5_block3"),
    ("resnet_small", 6, "conv4_block2"),
])
def test_backbones_and_their_blocks(architecture, blocks, top):
    backbone = build_backbone(ImageEncoder(architecture=architecture, weights="random", image_size=[32, 32]))
    assert backbone.output_shape == (None, {"resnet_small": 64}.get(architecture, 2048))
    names = residual_blocks(backbone)
    assert len(names) == blocks and names[-1] == top


def test_unfreezing_the_top_blocks_keeps_batchnorm_frozen():
    backbone = build_backbone(ImageEncoder(architecture="resnet50", weights="random", image_size=[32, 32]))
    assert set_trainable_blocks(backbone, 2) == ["conv5_block2", "conv5_block3"]
    trainable = {w.path.split("/")[0] for w in backbone.trainable_weights}
    assert trainable == {f"conv5_block{b}_{i}_conv" for b in (2, 3) for i in (1, 2, 3)}
    assert set_trainable_blocks(backbone, 0) == [] and backbone.trainable_weights == []


def test_scaling_matches_keras_applications_preprocessing():
    x = np.random.RandomState(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(ImageScaling("caffe")(x), keras.applications.resnet.preprocess_input(x.copy()),
                               atol=1e-4)
    np.testing.assert_allclose(ImageScaling("tf")(x), keras.applications.resnet_v2.preprocess_input(x.copy()),
                               atol=1e-5)


def test_decoding_converts_gray_and_resizes():
    gray = np.arange(64, dtype="uint8").reshape(8, 8) * 4
    buf = io.BytesIO()
    Image.fromarray(gray, mode="L").save(buf, "PNG")
    one = decode_image(tf.constant(buf.getvalue()), (16, 16))
    assert one.shape == (16, 16, 3) and one.dtype == tf.float32
    np.testing.assert_array_equal(one[..., 0], one[..., 2])
    same = decode_image(tf.constant(buf.getvalue()), (8, 8))
    np.testing.assert_array_equal(same[..., 1].numpy(), gray.astype("float32"))
    batch = decode_images(tf.constant([buf.getvalue()] * 3), (16, 16))
    assert batch.shape == (3, 16, 16, 3)


def test_imagenet_offline_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("LAMINA_OFFLINE", "1")
    cached = tmp_path / "keras" / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with pytest.raises(WeightsError) as info:
        build_backbone(ImageEncoder(architecture="resnet50", weights="imagenet", image_size=[32, 32]))
    assert str(info.value) == (
        "ImageNet weights for resnet50 are not in the Keras cache and could not be downloaded from "
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5 (LAMINA_OFFLINE is set). Download that file where "
        f"there is network access and put it at {cached} (the cache is $KERAS_HOME/models, default "
        "~/.keras/models), or set the encoder's weights to a local weights file.")


def test_imagenet_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    """No network: the real download code fails against a closed loopback port, not a stack trace."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("LAMINA_OFFLINE", raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(images, "IMAGENET_WEIGHTS_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(WeightsError) as info:
        build_backbone(ImageEncoder(architecture="resnet50v2", weights="imagenet", image_size=[32, 32]))
    message = str(info.value)
    assert message.startswith("ImageNet weights for resnet50v2 are not in the Keras cache and could not be "
                              f"downloaded from http://127.0.0.1:{port}/resnet50v2_weights_tf_dim_ordering_tf_"
                              "kernels_notop.h5 (Exception: URL fetch failure")
    assert "Connection refused" in message
    assert str(tmp_path / "keras" / "models" / "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5") in message


def test_imagenet_hashes_match_keras():
    """Lamina's copy of the published weight hashes equals the installed Keras's (private) table."""
    from keras.src.applications.resnet import WEIGHTS_HASHES

    assert images.IMAGENET_NOTOP_MD5 == {a: WEIGHTS_HASHES[a][1] for a in images.IMAGENET_NOTOP_MD5}


def test_keras_home_is_where_keras_caches(tmp_path):
    """Our reading of $KERAS_HOME is where Keras itself (which reads it at import) finds a cached file."""
    (tmp_path / "kh" / "models").mkdir(parents=True)
    (tmp_path / "kh" / "models" / "x.bin").write_bytes(b"cached")
    code = ("import keras; from lamina.models import images; "
            # An unreachable origin: only a cache hit can answer.
            "print(images.keras_home()); print(keras.utils.get_file('x.bin', 'http://127.0.0.1:9/x.bin', "
            "cache_subdir='models'))")
    env = dict(os.environ, KERAS_HOME=str(tmp_path / "kh"))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(tmp_path / "kh"), str(tmp_path / "kh" / "models" / "x.bin")]


def test_imagenet_weights_come_from_the_keras_cache(tmp_path, monkeypatch):
    """A file in $KERAS_HOME/models is what 'imagenet' loads (here: weights we saved there)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("LAMINA_OFFLINE", "1")
    source = build_backbone(ImageEncoder(architecture="resnet50", weights="random", image_size=[32, 32]))
    os.makedirs(tmp_path / "keras" / "models")
    # keras.applications ships legacy HDF5 weight files; write one in that layout.
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    path = tmp_path / "keras" / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, source)
    loaded = build_backbone(ImageEncoder(architecture="resnet50", weights="imagenet", image_size=[32, 32]))
    for a, b in zip(source.weights, loaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_local_weight_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(WeightsError, match="^weights file '.*nope.weights.h5' does not exist; expected 'imagenet', "
                                           "'random', a Keras weights file"):
        build_backbone(ImageEncoder(architecture="resnet_small", weights=str(missing), image_size=[16, 16]))
    small = build_backbone(ImageEncoder(architecture="resnet_small", weights="random", image_size=[16, 16], width=8))
    small.save_weights(str(tmp_path / "small.weights.h5"))
    with pytest.raises(WeightsError) as info:
        build_backbone(ImageEncoder(architecture="resnet_small", weights=str(tmp_path / "small.weights.h5"),
                                    image_size=[16, 16], width=16))
    assert str(info.value).startswith(f"{tmp_path / 'small.weights.h5'}: cannot load these weights into "
                                      "resnet_small (image size [16, 16]): ")
    with pytest.raises(WeightsError, match="not a Lamina image model. Expected assets.extra/lamina/backbone.json"):
        build_backbone(ImageEncoder(architecture="resnet_small", weights=str(tmp_path), image_size=[16, 16]))


def test_augmentation_and_dropout_act_only_in_training():
    from lamina.models.builder import build_model
    from lamina.models.features import IMAGE, FeatureInfo
    from tests.helpers import digits_spec

    spec = digits_spec("/tmp", model={"encoders": {"image": {
        "type": "resnet", "architecture": "resnet_small", "weights": "random", "image_size": [16, 16], "width": 8,
        "dropout": 0.5, "augmentation": {"flip": "horizontal", "rotation": 0.1, "zoom": 0.2, "contrast": 0.3}}},
        "combiner": {"hidden_units": []}})
    model = build_model(spec, [FeatureInfo("image", IMAGE, image_size=(16, 16))], num_classes=3)
    encoder = model.get_layer("backbone").get_layer("image_encoder")
    assert [l.__class__.__name__ for l in encoder.get_layer("augmentation").layers] == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast"]
    x = {"image": np.random.RandomState(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")}
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))
    assert not np.allclose(model(x, training=True), model(x, training=True))
