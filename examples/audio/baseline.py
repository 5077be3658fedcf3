"""The audio example's baseline: MFCC statistics and logistic regression, on Lamina's own split.

For every clip of the last run's train and eval splits (the examples ImageExampleGen wrote, so the
same files on each side), 20 MFCCs per 25 ms frame, every 10 ms, of the clip the model sees (mono,
16 kHz, the spec's `seconds`); the clip's features are each coefficient's mean and standard
deviation over its frames (40 numbers). A standardized logistic regression learns from the train
split and is scored on the eval split. `python examples/audio/baseline.py [SPEC]` prints it beside
the pushed model's accuracy.
"""

import glob
import os
import sys

import numpy as np


def split_clips(spec, split: str):
    """(clips [n, samples] float32, labels) of one split of the spec's last run, decoded as the model does."""
    import tensorflow as tf

    from lamina.models.audio import decode_wav
    from lamina.pipeline.runs.summary import latest_run_outputs

    examples = latest_run_outputs(spec)[("ImageExampleGen", "examples")]
    config = spec.audio_encoder(spec.data.file_feature)
    clips, labels = [], []
    files = glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        clips.append(decode_wav(tf.constant(feature[spec.data.file_feature].bytes_list.value[0]),
                                config.sample_rate, config.seconds).numpy())
        labels.append(feature[spec.data.label].bytes_list.value[0].decode())
    return np.stack(clips), np.array(labels)


def mfcc_statistics(clips: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """[n, 40]: each of 20 MFCCs' mean and standard deviation over the clip's frames."""
    from lamina.models.audio import LogMelSpectrogram

    layer = LogMelSpectrogram(sample_rate, int(0.025 * sample_rate), int(0.010 * sample_rate), 512, 40, 20.0,
                              sample_rate / 2, mfcc=20)
    mfcc = np.concatenate([layer(clips[i:i + 64]).numpy() for i in range(0, len(clips), 64)])
    return np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)], axis=1)


def baseline_accuracy(spec) -> float:
    """The MFCC-statistics logistic regression's accuracy on the eval split."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rate = spec.audio_encoder(spec.data.file_feature).sample_rate
    x_train, y_train = split_clips(spec, "train")
    x_eval, y_eval = split_clips(spec, "eval")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))
    model.fit(mfcc_statistics(x_train, rate), y_train)
    return float(np.mean(model.predict(mfcc_statistics(x_eval, rate)) == y_eval))


def main(argv=None) -> int:
    from lamina.pipeline.runs.summary import latest_run_outputs
    from lamina.spec import load_spec

    argv = sys.argv[1:] if argv is None else argv
    spec = load_spec(argv[0] if argv else os.path.join(os.path.dirname(os.path.abspath(__file__)), "spec.yaml"))
    from lamina.pipeline.runs.summary import overall_metrics

    evaluation = latest_run_outputs(spec)[("Evaluator", "evaluation")]
    ours = overall_metrics(evaluation.uri)["sparse_categorical_accuracy"]
    print(f"eval accuracy: Lamina's model {ours:.3f}; MFCC statistics + logistic regression "
          f"{baseline_accuracy(spec):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
