"""Image encoders: ResNet backbones, their weights, in-graph decoding and augmentation.

An image feature reaches the model as encoded bytes (JPEG, PNG, GIF, BMP). `decode_image`
turns them into float32 RGB pixels in [0, 255] at the encoder's size; tf.data calls it in
parallel for training and the serving signatures call it in the graph, so clients send
only a file's bytes. Inside the Keras model an image encoder is:

    augmentation (training only) -> the backbone's own input scaling -> ResNet -> dropout

Backbones: `keras.applications` ResNet50/101/152 and their V2 variants, plus `resnet_small`,
a CIFAR-style ResNet that a CPU trains in seconds. All name their residual blocks
`conv{stage}_block{n}_*`, which is what "unfreeze the top N blocks" counts.

Weights: 'imagenet' (from the Keras cache, `$KERAS_HOME/models`), 'random', a Keras weights
file, or a Lamina model directory whose export carries the backbone's weights under
`assets.extra/lamina/` (pipeline-to-pipeline transfer).
"""

import json
import os
import re
from typing import List, Optional

import keras
import tensorflow as tf

from lamina.spec import AugmentationSpec, ImageEncoder

# keras.applications' weights location; a module constant so a test can point it elsewhere.
IMAGENET_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
# MD5 of each published no-top weights file, as keras.applications publishes them (the test
# test_imagenet_hashes_match_keras compares them with the installed Keras).
IMAGENET_NOTOP_MD5 = {
    "resnet50": "4d473c1dd8becc155b73f8504c6f6626",
    "resnet101": "88cf7a10940856eca736dc7b7e228a21",
    "resnet152": "ee4c566cf9a93f14d82f913c2dc6dd0c",
    "resnet50v2": "fac2f116257151a9d068a22e544a4917",
    "resnet101v2": "c0ed64b8031c3730f411d2eb4eea35b5",
    "resnet152v2": "ed17cf2e0169df9d443503ef94b23b33",
}
BACKBONE_DIR = os.path.join("assets.extra", "lamina")
BACKBONE_WEIGHTS = "backbone.weights.h5"
BACKBONE_CONFIG = "backbone.json"
_BLOCK = re.compile(r"^(conv\d+_block\d+)_")

# architecture -> (constructor, how its ImageNet weights expect pixels to be scaled)
_APPLICATIONS = {
    "resnet50": (keras.applications.ResNet50, "caffe"),
    "resnet101": (keras.applications.ResNet101, "caffe"),
    "resnet152": (keras.applications.ResNet152, "caffe"),
    "resnet50v2": (keras.applications.ResNet50V2, "tf"),
    "resnet101v2": (keras.applications.ResNet101V2, "tf"),
    "resnet152v2": (keras.applications.ResNet152V2, "tf"),
}


class WeightsError(ValueError):
    """Backbone weights could not be found or loaded; the message says which file and why."""


# -- decoding --------------------------------------------------------------------------------


def decode_image(encoded: tf.Tensor, image_size) -> tf.Tensor:
    """One encoded image (scalar string) -> float32 [height, width, 3] in [0, 255].

    Grayscale and RGBA images become RGB; animated GIFs keep their first frame.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(image, list(image_size))
    return tf.ensure_shape(image, [*image_size, 3])


def decode_images(encoded: tf.Tensor, image_size) -> tf.Tensor:
    """A [batch] string tensor of encoded images -> float32 [batch, height, width, 3]."""
    return tf.map_fn(lambda e: decode_image(e, image_size), tf.reshape(encoded, [-1]),
                     fn_output_signature=tf.TensorSpec([*image_size, 3], tf.float32))


# -- layers ----------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="lamina")
class ImageScaling(keras.layers.Layer):
    """Scales [0, 255] RGB pixels the way the backbone's weights expect.

    'caffe' (ResNet v1): RGB -> BGR, minus the ImageNet channel means. 'tf' (ResNet v2):
    to [-1, 1]. 'unit' (resnet_small): to [0, 1].
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "unit"):
            raise ValueError(f"unknown scaling mode; expected 'caffe', 'tf' or 'unit'. Received: {mode!r}")
        self.mode = mode

    def call(self, x):
        if self.mode == "caffe":
            mean = keras.ops.convert_to_tensor([103.939, 116.779, 123.68], dtype=x.dtype)
            return keras.ops.flip(x, axis=-1) - mean
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return x / 255.0

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def augmentation(config: AugmentationSpec, seed: Optional[int] = None) -> Optional[keras.Sequential]:
    """Random flip, rotation, zoom and contrast; Keras runs them only when training."""
    layers = []
    if config.flip != "none":
        layers.append(keras.layers.RandomFlip(config.flip, seed=seed))
    if config.rotation:
        layers.append(keras.layers.RandomRotation(config.rotation, seed=seed))
    if config.zoom:
        layers.append(keras.layers.RandomZoom(config.zoom, seed=seed))
    if config.contrast:
        layers.append(keras.layers.RandomContrast(config.contrast, seed=seed))
    return keras.Sequential(layers, name="augmentation") if layers else None


# -- backbones -------------------------------------------------------------------------------


# Moving statistics that settle within a few hundred steps: small datasets get a usable
# inference-mode BatchNorm (Keras's 0.99 needs thousands of steps).
_BN_MOMENTUM = 0.9


def _bn(name: str) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=name)


def _basic_block(x, filters: int, stride: int, name: str):
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv")(x)
        shortcut = _bn(f"{name}_0_bn")(shortcut)
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_1_conv")(x)
    x = _bn(f"{name}_1_bn")(x)
    x = keras.layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x)
    x = _bn(f"{name}_2_bn")(x)
    x = keras.layers.Add(name=f"{name}_add")([shortcut, x])
    return keras.layers.Activation("relu", name=f"{name}_out")(x)


def small_resnet(input_shape, width: int = 16, name: str = "resnet_small") -> keras.Model:
    """A CIFAR-style ResNet: a 3x3 stem, then 3 stages of 2 basic blocks (width, 2x, 4x)."""
    inputs = keras.Input(shape=input_shape)
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name="conv1_conv")(inputs)
    x = _bn("conv1_bn")(x)
    x = keras.layers.Activation("relu", name="conv1_relu")(x)
    for stage, (mult, stride) in enumerate([(1, 1), (2, 2), (4, 2)], start=2):
        for block in (1, 2):
            x = _basic_block(x, width * mult, stride if block == 1 else 1, f"conv{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name=name)


def scaling_mode(architecture: str) -> str:
    return "unit" if architecture == "resnet_small" else _APPLICATIONS[architecture][1]


def build_backbone(config: ImageEncoder, name: str = "resnet", base_dir: Optional[str] = None) -> keras.Model:
    """The headless, average-pooled ResNet with the weights the encoder config names."""
    shape = (*config.image_size, 3)
    if config.architecture == "resnet_small":
        backbone = small_resnet(shape, config.width, name=name)
    else:
        constructor, _ = _APPLICATIONS[config.architecture]
        backbone = constructor(include_top=False, weights=None, input_shape=shape, pooling="avg", name=name)
    load_backbone_weights(backbone, config, base_dir)
    return backbone


def residual_blocks(backbone: keras.Model) -> List[str]:
    """The backbone's residual block names (`conv4_block2`...), input side first."""
    blocks = []
    for layer in backbone.layers:
        match = _BLOCK.match(layer.name)
        if match and match.group(1) not in blocks:
            blocks.append(match.group(1))
    return blocks


def set_trainable_blocks(backbone: keras.Model, blocks: int) -> List[str]:
    """Freezes the backbone but its top `blocks` residual blocks; returns the unfrozen blocks.

    0 freezes everything. BatchNormalization layers stay frozen in unfrozen blocks too, as
    the Keras transfer-learning guide advises (the encoder also calls them in inference mode).
    Layers after the last block (ResNet V2's post-norm) unfreeze with it.
    """
    names = residual_blocks(backbone)
    if blocks <= 0:
        backbone.trainable = False
        return []
    top = names[-blocks:]
    first = next(i for i, layer in enumerate(backbone.layers) if _BLOCK.match(layer.name)
                 and _BLOCK.match(layer.name).group(1) in top)
    backbone.trainable = True
    for i, layer in enumerate(backbone.layers):
        layer.trainable = i >= first and not isinstance(layer, keras.layers.BatchNormalization)
    return top


_BACKBONE_SUFFIX = "_resnet"


def backbone_feature(backbone: keras.Model, columns=()) -> str:
    """The image feature a backbone encodes (backbones are named `<feature's safe name>_resnet`): the
    column of `columns` with that safe name, else the name itself."""
    from lamina.models.features import safe_name

    key = backbone.name[: -len(_BACKBONE_SUFFIX)]
    return next((c for c in columns if safe_name(c) == key), key)


def image_backbones(model: keras.Model) -> List[keras.Model]:
    """Every image backbone inside `model` (they are named `<feature>_resnet`)."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            if layer.name.endswith(_BACKBONE_SUFFIX):
                found.append(layer)
            else:
                found.extend(image_backbones(layer))
    return found


def build_image_encoder(name: str, input_shape, config: ImageEncoder, base_dir: Optional[str] = None,
                        seed: Optional[int] = None) -> keras.Model:
    """[batch, H, W, 3] pixels in [0, 255] -> [batch, features] for image feature `name`.

    A pretrained backbone is called with training=False, so its BatchNorm statistics stay
    as they were learned even while its top blocks fine-tune. A randomly initialised one
    trains normally.
    """
    inputs = keras.Input(shape=input_shape, name=name)
    x = inputs
    augment = augmentation(config.augmentation, seed)
    if augment is not None:
        x = augment(x)
    x = ImageScaling(scaling_mode(config.architecture), name=f"{name}_scaling")(x)
    backbone = build_backbone(config, name=name + _BACKBONE_SUFFIX, base_dir=base_dir)
    x = backbone(x, training=False) if config.pretrained else backbone(x)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name=f"{name}_dropout")(x)
    return keras.Model(inputs, x, name=f"{name}_encoder")


# -- weights ---------------------------------------------------------------------------------


def keras_home() -> str:
    """Keras's cache root as its documentation states it: $KERAS_HOME, else ~/.keras."""
    return os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))


def imagenet_weights_file(architecture: str) -> str:
    """The cached ImageNet weights of `architecture` (no top), downloaded into the cache if missing.

    A file already in the cache is used as it is (a user may have copied it there); a download
    goes through `keras.utils.get_file`, which checks it against the published MD5.
    Set LAMINA_OFFLINE=1 to never try the network.
    """
    file_name = f"{architecture}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    cached = os.path.join(keras_home(), "models", file_name)
    if os.path.isfile(cached):
        return cached
    url = IMAGENET_WEIGHTS_URL + file_name
    if os.environ.get("LAMINA_OFFLINE", "") not in ("", "0"):
        reason = "LAMINA_OFFLINE is set"
    else:
        try:
            return keras.utils.get_file(file_name, url, cache_subdir="models", cache_dir=keras_home(),
                                        file_hash=IMAGENET_NOTOP_MD5[architecture])
        except Exception as e:  # urllib, socket and hash errors all end the same way
            reason = f"{type(e).__name__}: {e}".strip()
    raise WeightsError(
        f"ImageNet weights for {architecture} are not in the Keras cache and could not be downloaded "
        f"from {url} ({reason}). Download that file where there is network access and put it at "
        f"{cached} (the cache is $KERAS_HOME/models, default ~/.keras/models), or set the encoder's "
        f"weights to a local weights file.")


def lamina_backbone_dir(path: str) -> str:
    """The `assets.extra/lamina` folder of a Lamina model: a version directory or a model directory."""
    if os.path.isfile(os.path.join(path, BACKBONE_DIR, BACKBONE_CONFIG)):
        return os.path.join(path, BACKBONE_DIR)
    versions = sorted((int(d) for d in os.listdir(path) if d.isdigit()), reverse=True)
    for version in versions:
        candidate = os.path.join(path, str(version), BACKBONE_DIR)
        if os.path.isfile(os.path.join(candidate, BACKBONE_CONFIG)):
            return candidate
    raise WeightsError(
        f"{path}: not a Lamina image model. Expected {os.path.join(BACKBONE_DIR, BACKBONE_CONFIG)} in it or in "
        f"one of its numbered version folders (found versions: {versions or 'none'}).")


def load_backbone_weights(backbone: keras.Model, config: ImageEncoder, base_dir: Optional[str] = None) -> str:
    """Loads the weights `config.weights` names into `backbone`; returns where they came from."""
    weights = config.weights
    if weights == "random":
        return "random"
    if weights == "imagenet":
        path = imagenet_weights_file(config.architecture)
    else:
        path = os.path.expanduser(weights)
        if base_dir and not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        if os.path.isdir(path):
            source = lamina_backbone_dir(path)
            with open(os.path.join(source, BACKBONE_CONFIG)) as f:
                saved = json.load(f)
            for key in ("architecture", "width"):
                if key == "width" and config.architecture != "resnet_small":
                    continue
                if saved.get(key) != getattr(config, key):
                    raise WeightsError(
                        f"{os.path.join(source, BACKBONE_CONFIG)}: the backbone was trained with {key} "
                        f"{saved.get(key)!r}, but the spec asks for {getattr(config, key)!r}.")
            path = os.path.join(source, BACKBONE_WEIGHTS)
        elif not os.path.isfile(path):
            raise WeightsError(f"weights file {path!r} does not exist; expected 'imagenet', 'random', a Keras "
                               f"weights file (.weights.h5 or .h5) or a Lamina model directory.")
    try:
        backbone.load_weights(path)
    except Exception as e:
        raise WeightsError(f"{path}: cannot load these weights into {config.architecture} "
                           f"(image size {config.image_size}): {type(e).__name__}: {e}") from None
    return path


def save_backbone(backbone: keras.Model, directory: str, config: ImageEncoder) -> str:
    """Writes the backbone's weights and architecture where `weights: <model dir>` finds them."""
    os.makedirs(directory, exist_ok=True)
    backbone.save_weights(os.path.join(directory, BACKBONE_WEIGHTS))
    with open(os.path.join(directory, BACKBONE_CONFIG), "w") as f:
        json.dump({"architecture": config.architecture, "width": config.width,
                   "image_size": list(config.image_size)}, f, indent=2)
    return directory
