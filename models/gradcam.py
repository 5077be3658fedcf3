"""Grad-CAM (Selvaraju et al., 2017) for image and audio features: the last convolutional block's
activations, weighted by the mean gradient of the explained class over each channel; and the pictures
it is drawn over (a spectrogram for audio) and the PNG overlays."""

from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from lamina.models.attribution import explained_score, replaced_output, walk_layers
from lamina.models.features import AUDIO, FeatureInfo


def _encoder(model, feature: FeatureInfo):
    """The feature's encoder model inside `model` (named `<feature key>_encoder`)."""
    found = next((l for l in walk_layers(model) if isinstance(l, keras.Model) and l.name == f"{feature.key}_encoder"), None)
    if found is None:
        raise ValueError(f"no encoder for feature {feature.name!r}")
    return found


def last_conv_layer(model, feature: FeatureInfo):
    """The image encoder's (or an audio encoder's) last layer with a 4-D (batch, height, width, channels)
    output: the ResNet backbone's, or audio_cnn's last block."""
    from lamina.models.images import backbone_feature, image_backbones

    backbone = next((b for b in image_backbones(model) if backbone_feature(b, [feature.name]) == feature.name), None)
    if backbone is None and feature.kind == AUDIO:
        backbone = _encoder(model, feature)
    if backbone is None:
        raise ValueError(f"no image backbone for feature {feature.name!r}")
    convs = [l for l in backbone.layers if len(getattr(l, "output").shape) == 4]
    return convs[-1]


def spectrogram_pictures(model, feature: FeatureInfo, waveforms: np.ndarray) -> np.ndarray:
    """[n, H, W, 3] pixels in [0, 255] of what an audio encoder looks at, frequency up and time across:
    its spectrogram image (audio_resnet), or its log-mel spectrogram as grey pixels (audio_cnn)."""
    from lamina.models.audio import LogMelSpectrogram, SpectrogramImage

    encoder = _encoder(model, feature)
    image = next((l for l in encoder.layers if isinstance(l, SpectrogramImage)), None)
    if image is not None:
        return keras.Model(encoder.input, image.output)(tf.constant(waveforms)).numpy()
    spectrogram = next(l for l in encoder.layers if isinstance(l, LogMelSpectrogram))
    frames, bins = spectrogram.output.shape[1:]
    return SpectrogramImage([bins, frames])(spectrogram(tf.constant(waveforms))).numpy()


def _spectrogram_orientation(cam: tf.Tensor, feature: FeatureInfo, size) -> tf.Tensor:
    """audio_cnn's activations run (time, frequency): as a picture, frequency up and time across."""
    return tf.reverse(tf.transpose(cam, [0, 2, 1, 3]), [1]) if feature.kind == AUDIO and size is None else cam


def grad_cam(model, inputs: Dict[str, np.ndarray], feature: FeatureInfo, task: str,
             targets: Optional[np.ndarray] = None) -> tuple:
    """(heatmaps [n, H, W] in [0, 1] at the image's size, targets, scores) for image feature `feature`."""
    layer = last_conv_layer(model, feature)
    store = {}
    with tf.GradientTape() as tape:
        def keep(out):
            tape.watch(out)
            store["activations"] = out
            return out

        with replaced_output(layer, keep):
            outputs = model(inputs, training=False)
        if task == "classification" and targets is None:
            targets = np.argmax(np.asarray(outputs), axis=-1)
        scores = explained_score(outputs, targets, task)
    activations = tf.cast(store["activations"], tf.float32)
    grads = tf.cast(tape.gradient(scores, store["activations"]), tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))[..., None]
    if feature.kind == AUDIO:  # at the size of the picture spectrogram_pictures draws
        from lamina.models.audio import SpectrogramImage

        encoder = _encoder(model, feature)
        image = next((l for l in encoder.layers if isinstance(l, SpectrogramImage)), None)
        cam = _spectrogram_orientation(cam, feature, image and image.image_size)
        size = image.image_size if image else spectrogram_pictures(model, feature, inputs[feature.key][:1]).shape[1:3]
    else:
        size = feature.image_size
    cam = tf.image.resize(cam, size)[..., 0].numpy()
    peak = cam.reshape(cam.shape[0], -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0), targets, scores.numpy()


# -- rendering -----------------------------------------------------------------------------------


def overlay_png(pixels: np.ndarray, heatmap: np.ndarray, size: int = 160) -> bytes:
    """PNG of the image (float [0, 255]) beside the same image with the heatmap blended over it, each
    scaled up to about `size` pixels."""
    import io

    from matplotlib import colormaps
    from PIL import Image

    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB")
    heat = (colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255).astype(np.uint8)
    blended = Image.blend(image, Image.fromarray(heat).resize(image.size), 0.45)
    scale = max(1, size // max(blended.size))
    w, h = blended.size[0] * scale, blended.size[1] * scale
    pair = Image.new("RGB", (2 * w + 4, h), "white")
    pair.paste(image.resize((w, h), Image.NEAREST), (0, 0))
    pair.paste(blended.resize((w, h), Image.NEAREST), (w + 4, 0))
    buf = io.BytesIO()
    pair.save(buf, format="PNG")
    return buf.getvalue()
