"""Audio encoders: WAV decoding in the graph, log-mel features and the networks over them.

An audio feature reaches the model as a WAV file's bytes. `decode_wav` reads the RIFF chunks with
TensorFlow string ops (PCM 8/16/24/32-bit and float 32/64-bit, EXTENSIBLE included; TensorFlow's
own `tf.audio.decode_wav` takes 16-bit PCM only), mixes the channels down to mono, cuts or
zero-pads the clip to the encoder's `seconds` at the file's own rate and resamples it to
`sample_rate` by FFT (what scipy.signal.resample does). tf.data calls it for training and the
serving signatures call it in the graph, so clients send only a file's bytes and TF Serving runs
only TensorFlow's ops. Inside the Keras model an audio encoder is:

    waveform -> augmentation (training only: time shift, noise)
             -> LogMelSpectrogram (tf.signal: STFT, HTK mel bands, log) [-> MFCC]
             -> SpecAugment masks (training only)
             -> audio_cnn (conv blocks, statistics-pooled, beside the spectrum's own statistics)
                or audio_resnet (the spectrogram as an image through the image encoders' ResNet)

`lamina.audio_headers` checks a file's header (and its declared duration) before any of this runs.
"""

import math
from typing import Optional

import keras
import tensorflow as tf

from lamina.spec import AudioEncoder

_MAX_CHUNKS = 64  # RIFF chunks walked before the data chunk
_LOG_OFFSET = 1e-6
# Batch norm's moving statistics settle within an epoch of a small dataset (Keras' default, 0.99, takes
# hundreds of steps); the image encoders use the same.
_BN_MOMENTUM = 0.9


# -- decoding (tf.data and the serving graph) -------------------------------------------------------


def _uint_le(data: tf.Tensor, pos, length: int) -> tf.Tensor:
    """The little-endian unsigned integer of `length` bytes at `pos` of the scalar string `data`, as int64."""
    raw = tf.cast(tf.io.decode_raw(tf.strings.substr(data, pos, length), tf.uint8), tf.int64)
    return tf.reduce_sum(raw * tf.constant([256 ** i for i in range(length)], tf.int64))


def _pcm24(raw: tf.Tensor) -> tf.Tensor:
    triples = tf.reshape(tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.int32), [-1, 3])
    value = triples[:, 0] + triples[:, 1] * 256 + triples[:, 2] * 65536
    return tf.cast(tf.where(value >= 2 ** 23, value - 2 ** 24, value), tf.float32) / 2.0 ** 23


def _samples(raw: tf.Tensor, tag: tf.Tensor, bits: tf.Tensor) -> tf.Tensor:
    """The data chunk's bytes -> float32 samples in [-1, 1], by the format tag and bit depth."""
    branches = [
        lambda: (tf.cast(tf.io.decode_raw(raw, tf.uint8), tf.float32) - 128.0) / 128.0,
        lambda: tf.cast(tf.io.decode_raw(raw, tf.int16, little_endian=True), tf.float32) / 2.0 ** 15,
        lambda: _pcm24(raw),
        lambda: tf.cast(tf.io.decode_raw(raw, tf.int32, little_endian=True), tf.float32) / 2.0 ** 31,
        lambda: tf.io.decode_raw(raw, tf.float32, little_endian=True),
        lambda: tf.cast(tf.io.decode_raw(raw, tf.float64, little_endian=True), tf.float32),
    ]
    index = tf.where(tf.equal(tag, 3), tf.where(tf.equal(bits, 32), 4, 5),
                     tf.cast(bits // 8 - 1, tf.int32))
    return tf.switch_case(tf.cast(index, tf.int32), branches)


def _wav_layout(data: tf.Tensor):
    """(format tag, channels, rate, bits, data offset, data bytes) of a scalar WAV string, as int64."""
    size = tf.cast(tf.strings.length(data), tf.int64)
    tf.debugging.assert_equal(tf.logical_and(tf.equal(tf.strings.substr(data, 0, 4), "RIFF"),
                                             tf.equal(tf.strings.substr(data, 8, 4), "WAVE")), True,
                              message="not a WAV file (a RIFF/WAVE header)")
    zero = tf.constant(0, tf.int64)

    def body(i, pos, fmt_at, data_at, data_size):
        chunk = tf.strings.substr(data, pos, 4)
        length = _uint_le(data, pos + 4, 4)
        fmt_at = tf.where(tf.equal(chunk, "fmt "), pos + 8, fmt_at)
        is_data = tf.equal(chunk, "data")
        data_at = tf.where(is_data, pos + 8, data_at)
        data_size = tf.where(is_data, length, data_size)
        return i + 1, pos + 8 + length + length % 2, fmt_at, data_at, data_size

    def more(i, pos, fmt_at, data_at, data_size):
        return tf.logical_and(tf.logical_and(i < _MAX_CHUNKS, pos + 8 <= size), tf.equal(data_at, 0))

    _, _, fmt_at, data_at, data_size = tf.while_loop(
        more, body, [tf.constant(0), tf.constant(12, tf.int64), zero, zero, zero])
    tf.debugging.assert_positive(fmt_at * data_at, message="a WAV file without a fmt or a data chunk")
    tag = _uint_le(data, fmt_at, 2)
    tag = tf.where(tf.equal(tag, 0xFFFE), _uint_le(data, fmt_at + 24, 2), tag)  # EXTENSIBLE: the sub-format
    channels = _uint_le(data, fmt_at + 2, 2)
    rate = _uint_le(data, fmt_at + 4, 4)
    bits = _uint_le(data, fmt_at + 14, 2)
    supported = tf.logical_or(tf.logical_and(tf.equal(tag, 1), tf.reduce_any(tf.equal(bits, [8, 16, 24, 32]))),
                              tf.logical_and(tf.equal(tag, 3), tf.reduce_any(tf.equal(bits, [32, 64]))))
    tf.debugging.assert_equal(tf.logical_and(supported, tf.logical_and(channels > 0, rate > 0)), True,
                              message="a WAV file whose sample format Lamina does not decode")
    return tag, channels, rate, bits, data_at, tf.minimum(data_size, size - data_at)


def resample(x: tf.Tensor, num: int) -> tf.Tensor:
    """A 1-D float32 signal resampled to `num` samples by FFT, as scipy.signal.resample(x, num)."""
    n = tf.shape(x)[0]
    spectrum = tf.signal.rfft(x, fft_length=tf.reshape(n, [1]))
    keep = tf.minimum(n, num)  # the shorter length's bins survive
    bins = num // 2 + 1
    kept = spectrum[:keep // 2 + 1]
    kept = tf.concat([kept, tf.zeros([bins - tf.shape(kept)[0]], tf.complex64)], axis=0)
    # An even shorter length has a Nyquist bin, which scipy splits (upsampling) or folds (downsampling).
    nyquist = tf.one_hot(keep // 2, bins, dtype=tf.float32)
    factor = tf.where(tf.equal(keep % 2, 0),
                      tf.where(num < n, 2.0, tf.where(num > n, 0.5, 1.0)), 1.0)
    kept = kept * tf.cast(1.0 + nyquist * (factor - 1.0), tf.complex64)
    y = tf.signal.irfft(kept, fft_length=[num])
    return y * tf.cast(num, tf.float32) / tf.cast(n, tf.float32)


def decode_wav(encoded: tf.Tensor, sample_rate: int, seconds: float) -> tf.Tensor:
    """A scalar string of WAV bytes -> [round(seconds * sample_rate)] float32 mono samples in [-1, 1]."""
    encoded = tf.reshape(encoded, [])
    tag, channels, rate, bits, data_at, data_bytes = _wav_layout(encoded)
    block = channels * bits // 8
    raw = tf.strings.substr(encoded, data_at, data_bytes // block * block)
    mono = tf.reduce_mean(tf.reshape(_samples(raw, tag, bits), [-1, channels]), axis=1)
    # The clip at the file's own rate: its first `seconds`, zero-padded; then the model's rate.
    length = tf.cast(tf.round(seconds * tf.cast(rate, tf.float64)), tf.int32)
    clip = tf.pad(mono[:length], [[0, length - tf.minimum(length, tf.shape(mono)[0])]])
    num = int(round(seconds * sample_rate))
    clip = tf.cond(tf.equal(length, num), lambda: clip, lambda: resample(clip, num))
    return tf.ensure_shape(clip, [num])


def decode_wavs(encoded: tf.Tensor, sample_rate: int, seconds: float) -> tf.Tensor:
    """[batch] (or [batch, 1]) strings of WAV bytes -> [batch, samples] float32."""
    num = int(round(seconds * sample_rate))
    return tf.map_fn(lambda e: decode_wav(e, sample_rate, seconds), tf.reshape(encoded, [-1]),
                     fn_output_signature=tf.TensorSpec([num], tf.float32))


# -- features --------------------------------------------------------------------------------------


def frame_settings(config: AudioEncoder):
    """(frame length, hop, FFT length) in samples at the model's rate."""
    frame = int(round(config.frame_ms * config.sample_rate / 1000))
    hop = int(round(config.hop_ms * config.sample_rate / 1000))
    return frame, hop, 2 ** int(math.ceil(math.log2(frame)))


def frames(config: AudioEncoder) -> int:
    """Spectrogram frames per clip."""
    frame, hop, _ = frame_settings(config)
    return 1 + (config.samples - frame) // hop


@keras.saving.register_keras_serializable(package="lamina")
class LogMelSpectrogram(keras.layers.Layer):
    """[batch, samples] -> [batch, frames, bins]: log of the mel-band power of a Hann-windowed STFT,
    or its first `mfcc` MFCCs when `mfcc` > 0."""

    def __init__(self, sample_rate: int, frame_length: int, hop: int, fft_length: int, mel_bins: int,
                 fmin: float, fmax: float, mfcc: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.sample_rate, self.frame_length, self.hop, self.fft_length = sample_rate, frame_length, hop, fft_length
        self.mel_bins, self.fmin, self.fmax, self.mfcc = mel_bins, fmin, fmax, mfcc

    def call(self, waveform):
        stft = tf.signal.stft(tf.cast(waveform, tf.float32), self.frame_length, self.hop, self.fft_length,
                              window_fn=tf.signal.hann_window)
        power = tf.math.square(tf.abs(stft))
        mel = tf.signal.linear_to_mel_weight_matrix(self.mel_bins, self.fft_length // 2 + 1, self.sample_rate,
                                                    self.fmin, self.fmax)
        log_mel = tf.math.log(tf.matmul(power, mel) + _LOG_OFFSET)
        if self.mfcc:
            return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., :self.mfcc]
        return log_mel

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1 + (input_shape[1] - self.frame_length) // self.hop, self.mfcc or self.mel_bins)

    def get_config(self):
        return {**super().get_config(), "sample_rate": self.sample_rate, "frame_length": self.frame_length,
                "hop": self.hop, "fft_length": self.fft_length, "mel_bins": self.mel_bins, "fmin": self.fmin,
                "fmax": self.fmax, "mfcc": self.mfcc}


def log_mel_layer(config: AudioEncoder, name: str) -> LogMelSpectrogram:
    frame, hop, fft = frame_settings(config)
    return LogMelSpectrogram(config.sample_rate, frame, hop, fft, config.mel_bins, config.fmin,
                             config.fmax or config.sample_rate / 2, config.mfcc if config.features == "mfcc" else 0,
                             name=name)


# -- augmentation (training only) ------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="lamina")
class WaveAugmentation(keras.layers.Layer):
    """Training only: each clip rolled by up to `time_shift` of its length either way, plus Gaussian
    noise of standard deviation `noise`."""

    def __init__(self, time_shift: float = 0.0, noise: float = 0.0, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.time_shift, self.noise, self.seed = time_shift, noise, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training:
            return x
        n = tf.shape(x)[1]
        if self.time_shift:
            most = tf.cast(tf.cast(n, tf.float32) * self.time_shift, tf.int32)
            shift = keras.random.randint([tf.shape(x)[0], 1], -most, most + 1, seed=self.seed_generator)
            x = tf.gather(x, (tf.range(n)[None, :] - shift) % n, batch_dims=1)
        if self.noise:
            x = x + keras.random.normal(tf.shape(x), stddev=self.noise, dtype=x.dtype, seed=self.seed_generator)
        return x

    def get_config(self):
        return {**super().get_config(), "time_shift": self.time_shift, "noise": self.noise, "seed": self.seed}


@keras.saving.register_keras_serializable(package="lamina")
class SpecAugment(keras.layers.Layer):
    """Training only: per example, a band of up to `freq_mask` bins and a run of up to `time_mask`
    frames set to the spectrogram's mean (SpecAugment's masks, without time warping)."""

    def __init__(self, freq_mask: int = 0, time_mask: int = 0, seed: Optional[int] = None, **kwargs):
        super().__init__(**kwargs)
        self.freq_mask, self.time_mask, self.seed = freq_mask, time_mask, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def _band(self, batch, size, most):
        width = tf.minimum(keras.random.randint([batch, 1], 0, most + 1, seed=self.seed_generator), size)
        room = tf.cast(size - width + 1, tf.float32)  # where the band may start, per example
        start = tf.cast(keras.random.uniform([batch, 1], seed=self.seed_generator) * room, tf.int32)
        steps = tf.range(size)[None, :]
        return tf.logical_and(steps >= start, steps < start + width)  # [batch, size]

    def call(self, x, training=None):
        if not training:
            return x
        shape = tf.shape(x)
        mask = tf.zeros_like(x, tf.bool)
        if self.time_mask:
            mask = tf.logical_or(mask, self._band(shape[0], shape[1], self.time_mask)[:, :, None])
        if self.freq_mask:
            mask = tf.logical_or(mask, self._band(shape[0], shape[2], self.freq_mask)[:, None, :])
        mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        return tf.where(mask, mean + tf.zeros_like(x), x)

    def get_config(self):
        return {**super().get_config(), "freq_mask": self.freq_mask, "time_mask": self.time_mask, "seed": self.seed}


@keras.saving.register_keras_serializable(package="lamina")
class SpectrogramImage(keras.layers.Layer):
    """[batch, frames, bins] -> [batch, H, W, 3] grey pixels in [0, 255]: frequency up, time across,
    each spectrogram min-max scaled, so the image encoders take it as a picture."""

    def __init__(self, image_size, **kwargs):
        super().__init__(**kwargs)
        self.image_size = list(image_size)

    def call(self, x):
        image = tf.image.resize(tf.reverse(tf.transpose(x, [0, 2, 1]), [1])[..., None], self.image_size)
        low = tf.reduce_min(image, axis=[1, 2, 3], keepdims=True)
        high = tf.reduce_max(image, axis=[1, 2, 3], keepdims=True)
        return tf.tile((image - low) / tf.maximum(high - low, 1e-6) * 255.0, [1, 1, 1, 3])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.image_size, 3)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size}


# -- encoders --------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="lamina")
class StatisticsPooling(keras.layers.Layer):
    """[batch, time, frequency, channels] -> [batch, 2 * frequency * channels]: each band's channels'
    mean and standard deviation over time (x-vector style). Where a sound sits in frequency is kept,
    when it happens is not."""

    def call(self, x):
        shape = tf.shape(x)
        x = tf.reshape(x, [shape[0], shape[1], x.shape[2] * x.shape[3]])
        mean, variance = tf.nn.moments(x, axes=[1])
        return tf.concat([mean, tf.sqrt(variance + 1e-6)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[2] * input_shape[3])


def _cnn(x, config: AudioEncoder, name: str):
    x = keras.layers.Reshape((*x.shape[1:], 1), name=f"{name}_channel")(x)
    # The spectrum's own statistics (each band's mean and spread over time, what MFCC statistics hold)
    # beside the convolutions': a voice's average spectrum is often what tells classes apart.
    spectrum = StatisticsPooling(name=f"{name}_spectrum_statistics")(x)
    spectrum = keras.layers.LayerNormalization(name=f"{name}_spectrum_norm")(spectrum)
    # Each spectrogram standardized on its own: a recording's level does not decide, and there are no
    # input statistics to learn (a BatchNorm here leaves the first epochs' evaluation far off).
    x = keras.layers.LayerNormalization(axis=[1, 2, 3], center=False, scale=False, name=f"{name}_input_norm")(x)
    for i, filters in enumerate((config.width, 2 * config.width, 4 * config.width, 4 * config.width)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn{i + 1}")(x)
        x = keras.layers.Activation("relu", name=f"{name}_relu{i + 1}")(x)
        if i < 3:
            x = keras.layers.MaxPooling2D(2, padding="same", name=f"{name}_pool{i + 1}")(x)
    x = StatisticsPooling(name=f"{name}_statistics")(x)
    x = keras.layers.Concatenate(name=f"{name}_features")([x, spectrum])
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name=f"{name}_dropout")(x)
    return x


def build_audio_encoder(name: str, config: AudioEncoder, base_dir: Optional[str] = None,
                        seed: Optional[int] = None) -> keras.Model:
    """[batch, samples] float32 waveform -> [batch, width] encoding (see the module docstring)."""
    inputs = keras.Input((config.samples,), name=name)
    x = inputs
    aug = config.augmentation
    if aug.time_shift or aug.noise:
        x = WaveAugmentation(aug.time_shift, aug.noise, seed=seed, name=f"{name}_wave_augmentation")(x)
    x = log_mel_layer(config, f"{name}_spectrogram")(x)
    if aug.freq_mask or aug.time_mask:
        x = SpecAugment(aug.freq_mask, aug.time_mask, seed=seed, name=f"{name}_spec_augment")(x)
    if config.type == "audio_cnn":
        x = _cnn(x, config, name)
    else:
        from lamina.models.images import build_image_encoder

        image = SpectrogramImage(config.image_size, name=f"{name}_image")(x)
        x = build_image_encoder(name, (*config.image_size, 3), config.image_encoder(), base_dir=base_dir,
                                seed=seed)(image)
    return keras.Model(inputs, x, name=f"{name}_encoder")
