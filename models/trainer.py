"""The Trainer's entry point: `run_fn`, as TFX's generic Trainer calls it.

Reads ExampleGen's splits through Transform's graph (models.datasets), builds the model from the spec, fits it in one
phase (or two for a pretrained image backbone: head first, then the top blocks) with one progress
line per epoch and TensorBoard logs, and exports the SavedModel with the Transform graph and,
beside it, the Keras model and its inputs (models.artifacts). More than one replica trains in
Lamina's own loop (models.distributed); worker processes are started by models.launcher.
"""

import logging
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from lamina import storage
from lamina.models.artifacts import HISTORY_FILE, keras_model_path, save_keras_model, write_features, write_history
from lamina.models.builder import build_model, compile_model
from lamina.models.callbacks import EpochProgress, early_stopping
from lamina.models.datasets import (TRANSFORM_BATCH, cache_plan, count_records, expand_file_patterns, label_counts,
                                    label_moments, make_dataset, raw_decoder)
from lamina.models.device import configure_devices
from lamina.models.export import export_serving_model
from lamina.models.features import (TEXT, describe_transformed_features, label_vocabulary,
                                    safe_name, transformed_name)
from lamina.models.finetune import apply_phase, training_phases
from lamina.models.linear import fit_linear, linear_model, linear_start_applies, tabular_only
from lamina.models.trees import (MODEL_CHOICE_FILE, MODEL_NAMES, blend_model, choice_reason, compare_on_eval,
                                 train_trees)
from lamina.spec import SequenceEncoder, Spec, TransformerEncoder

log = logging.getLogger("lamina.train")

def learn_text_vocabularies(spec: Spec, tf_transform_output, train_files: List[str], out_dir: str) -> Dict[str, str]:
    """WordPiece vocabularies, learned from the train split, for scratch Transformers and recurrent text
    encoders given none."""
    from lamina.models.text import learn_vocabulary

    learned = {}
    for name, kind in spec.data.feature_types.items():
        if kind != TEXT:
            continue
        cfg = spec.text_encoder(name)
        if not isinstance(cfg, (TransformerEncoder, SequenceEncoder)) or cfg.vocabulary:
            continue
        key = transformed_name(name)
        decode = raw_decoder(tf_transform_output, [name])  # the text's column alone, through the graph
        texts = tf.data.TFRecordDataset(expand_file_patterns(train_files), compression_type="GZIP").batch(
            TRANSFORM_BATCH).map(lambda r, decode=decode, key=key: decode(r)[key]).unbatch()
        started = time.perf_counter()
        learned[name] = learn_vocabulary(texts, cfg.vocabulary_size, cfg.lowercase,
                                         os.path.join(out_dir, f"{safe_name(name)}_vocab.txt"))
        with tf.io.gfile.GFile(learned[name]) as f:
            size = sum(1 for _ in f)
        print(f"    learned a WordPiece vocabulary for {name!r}: {size} tokens in "
              f"{time.perf_counter() - started:.1f}s", flush=True)
    return learned


IMBALANCE_SHARE = 0.2  # `class_weights: auto` weighs classes when the rarest is under this share


def class_weights(spec: Spec, classes: List[str], counts: List[int]) -> Optional[Dict[int, float]]:
    """Keras' class_weight from `training.class_weights`, or None for unweighted training.

    'balanced' (and 'auto' when the rarest class is under IMBALANCE_SHARE of the train split)
    gives class c the weight n / (k * n_c); a mapping gives the named classes their weight and the
    others 1.
    """
    setting = spec.training.class_weights
    if setting == "none":
        return None
    if isinstance(setting, dict):
        unknown = sorted(set(setting) - set(classes))
        if unknown:
            raise ValueError(f"training.class_weights: no class {', '.join(repr(u) for u in unknown)} in the "
                             f"label; the classes are {', '.join(repr(c) for c in classes)}.")
        return {i: float(setting.get(c, 1.0)) for i, c in enumerate(classes)}
    total = sum(counts)
    if not total or (setting == "auto" and min(counts) / total >= IMBALANCE_SHARE):
        return None
    return {i: total / (len(classes) * max(n, 1)) for i, n in enumerate(counts)}


def class_balance(classes: Optional[List[str]], counts: Optional[List[int]],
                  weights: Optional[Dict[int, float]]) -> dict:
    """For model_choice.json and the run summary: the train split's majority class and its share, and with
    two weighted classes the decision threshold the weights imply. Weighted training scales each class's odds
    by its weight, so answering the rarer class r where its weighted probability passes 0.5 is answering r
    where its unweighted probability passes w_other / (w_other + w_r)."""
    if not classes or not counts or not sum(counts):
        return {}
    majority = int(np.argmax(counts))
    out = {"majority": classes[majority], "majority_share": counts[majority] / sum(counts)}
    present = [i for i, n in enumerate(counts) if n]
    if weights and len(present) == 2:
        rare, other = sorted(present, key=lambda i: counts[i])
        w_rare, w_other = weights.get(rare, 1.0), weights.get(other, 1.0)
        if w_rare != w_other:
            out["threshold"] = {"class": classes[rare], "probability": w_other / (w_other + w_rare)}
    return out


def regression_moments(spec: Spec, tf_transform_output, train_files: List[str]):
    """The regression label's train-split (mean, std) for the head (`model.head.standardize`), else None."""
    if spec.task != "regression" or not spec.model.head.standardize:
        return None
    mean, std = label_moments(train_files, tf_transform_output, spec)
    print(f"    label {spec.data.label!r} in standard units (model.head.standardize): mean {mean:.6g}, "
          f"standard deviation {std:.6g}", flush=True)
    return mean, std


def fit(model: keras.Model, spec: Spec, train_ds, eval_ds, steps_per_epoch: Optional[int] = None,
        callbacks: Optional[list] = None, stream=None,
        batches_per_epoch: Optional[int] = None,
        class_weight: Optional[Dict[int, float]] = None, from_start: bool = False) -> List[keras.callbacks.History]:
    """Fits `model` phase by phase (see models.finetune); returns one History per phase.

    `batches_per_epoch` (when `steps_per_epoch` is None) sizes a warmup/decay schedule.
    With `class_weight`, the validation loss is weighted the same way: the loss the model is fitted on is the one
    early stopping watches and the history records (the metrics, such as accuracy, stay unweighted).
    `from_start`: the model before training is a fitted one (`model.head.linear_start`); early stopping must beat
    its score on `eval_ds`, else restores it.
    """
    if class_weight:  # validation weighs the classes as training does, so early stopping watches the same loss
        eval_ds = weighted_by_class(eval_ds, class_weight)
    phases = training_phases(model, spec)
    total = sum(p.epochs for p in phases)
    progress = EpochProgress(total, stream)
    histories, epoch = [], 0
    for i, phase in enumerate(phases, start=1):
        unfrozen = apply_phase(model, spec, phase)
        per_epoch = steps_per_epoch or batches_per_epoch
        compile_model(model, spec, phase.learning_rate, total_steps=phase.epochs * per_epoch if per_epoch else None)
        trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
        if len(phases) > 1:
            print(f"    phase {i}/{len(phases)}: {phase.name}; {phase.epochs} epochs at learning rate "
                  f"{phase.learning_rate:g}, {trainable} trainable parameters"
                  + (f" ({', '.join(unfrozen)})" if unfrozen else ""), file=stream or sys.stdout, flush=True)
        phase_callbacks = [progress] + list(callbacks or []) + early_stopping(spec, starting_score(model, spec, eval_ds)
                                                                               if from_start else None)
        histories.append(model.fit(train_ds, validation_data=eval_ds, initial_epoch=epoch,
                                   epochs=epoch + phase.epochs, steps_per_epoch=steps_per_epoch,
                                   callbacks=phase_callbacks, class_weight=class_weight, verbose=0))
        epoch += phase.epochs
    return histories


def weighted_by_class(ds, class_weight: Dict[int, float]):
    """(features, label) batches -> (features, label, each example's class weight)."""
    table = tf.constant([class_weight.get(i, 1.0) for i in range(max(class_weight) + 1)], tf.float32)

    def add(x, y):
        ids = tf.reshape(tf.cast(y, tf.int32), [-1])
        return x, y, tf.gather(table, tf.clip_by_value(ids, 0, int(table.shape[0]) - 1))
    return ds.map(add)


def starting_score(model: keras.Model, spec: Spec, eval_ds) -> Optional[float]:
    """The value early stopping monitors (a `val_` metric) for `model` as it is, or None."""
    es = spec.training.early_stopping
    if not es or not es.monitor.startswith("val_"):
        return None
    value = model.evaluate(eval_ds, verbose=0, return_dict=True).get(es.monitor[len("val_"):])
    if value is not None:
        print(f"    before training: {es.monitor}={value:.4f}", flush=True)
    return value


def scaled_learning_rate(spec: Spec, replicas: int) -> Spec:
    """`training.distribution.scale_learning_rate`: every phase's learning rate times the replicas."""
    if not spec.training.distribution.scale_learning_rate or replicas == 1:
        return spec
    t = spec.training
    update = {"learning_rate": t.learning_rate * replicas}
    if t.fine_tune:
        update["fine_tune"] = t.fine_tune.model_copy(update={"learning_rate": t.fine_tune.learning_rate * replicas})
    print(f"    learning rate x{replicas} replicas: {t.learning_rate:g} -> {t.learning_rate * replicas:g}", flush=True)
    return spec.model_copy(update={"training": t.model_copy(update=update)})


def train(spec: Spec, tf_transform_output, train_files: List[str], eval_files: List[str],
          serving_model_dir: str, log_dir: Optional[str] = None, steps_per_epoch: Optional[int] = None,
          strategy: Optional[tf.distribute.Strategy] = None, checkpoint_dir: Optional[str] = None):
    """Builds, fits and exports the model. Returns (model, one History per phase).

    Into the SavedModel's assets.extra/lamina/ it also writes the Keras model (`model.keras`) and
    its inputs (`features.json`); with a `log_dir`, the per-epoch history (`history.json`).

    `strategy`: given by a launched worker (models.worker); else `configure_devices` makes it. Under a
    MultiWorkerMirroredStrategy the model is fitted by `models.distributed.fit_loop`, each worker
    reading its shard of every global batch, and only the chief exports, while the others wait.
    """
    from lamina.models.distributed import barrier, fit_loop, is_chief

    strategy = strategy or configure_devices(spec.training)
    keras.utils.set_random_seed(spec.training.seed)
    # Lamina's loop for more than one replica: `fit` under MultiWorkerMirroredStrategy breaks (keras#20585),
    # and under MirroredStrategy its first epoch already differs from one device's (docs/distributed.md).
    own_loop = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or strategy.num_replicas_in_sync > 1
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    chief = is_chief(strategy) if multi_worker else True
    spec = scaled_learning_rate(spec, strategy.num_replicas_in_sync)
    vocab_dir = tempfile.mkdtemp(prefix="lamina_vocab_")
    learned = learn_text_vocabularies(spec, tf_transform_output, train_files, vocab_dir)
    features = describe_transformed_features(spec, tf_transform_output, learned)
    classes = label_vocabulary(tf_transform_output) if spec.task == "classification" else None
    batch = spec.training.batch_size * strategy.num_replicas_in_sync
    steps = steps_per_epoch or spec.training.steps_per_epoch
    train_ds, eval_ds = _training_input(spec, tf_transform_output, features, train_files, eval_files, batch, steps,
                                        own_loop)
    trees_fit = spec.model.type != "network" and tabular_only(features)
    if spec.model.type == "auto" and not trees_fit:
        print("    model.type auto: the network only (gradient-boosted trees take tabular features only)", flush=True)
    counts = label_counts(train_files, tf_transform_output, spec, len(classes)) if classes else None
    if spec.model.type == "gbt":
        weights = class_weights(spec, classes, counts) if classes and spec.training.class_weights != "none" else None
        trees = train_trees(spec, tf_transform_output, features, train_files, classes, weights)
        if chief:
            _export(spec, trees, tf_transform_output, features, serving_model_dir, log_dir, [], eval_files, classes,
                    {"type": "gbt", "exported": "gbt", **class_balance(classes, counts, weights)})
        if multi_worker:
            barrier(strategy)
        shutil.rmtree(vocab_dir, ignore_errors=True)
        return trees, []
    check_positive_class(spec, classes, counts)
    weights = _network_class_weights(spec, classes, counts)
    moments = regression_moments(spec, tf_transform_output, train_files)
    linear = _linear_start(spec, tf_transform_output, features, train_files, classes, weights)
    with strategy.scope():
        model = build_model(spec, features, num_classes=len(classes) if classes else None, compile=False,
                            label_moments=moments, linear=linear)

    batches = None
    if not steps and spec.lr_schedule != "constant":
        batches = math.ceil(count_records(expand_file_patterns(train_files)) / batch)
    callbacks = _board_callbacks(spec, model, log_dir, tf_transform_output, features, train_files, batch,
                                 own_loop) if log_dir and chief else []
    device = "GPU" if tf.config.list_physical_devices("GPU") else "CPU"
    replicas = strategy.num_replicas_in_sync
    print(f"    training {model.name}: {len(features)} features, batch {batch}"
          + (f" ({replicas} replicas x {spec.training.batch_size})" if replicas > 1 else "")
          + f", {model.count_params()} parameters, on {device}"
          + ("" if keras.mixed_precision.global_policy().name == "float32"
             else f" in {keras.mixed_precision.global_policy().name}"), flush=True)
    if own_loop:
        histories = fit_loop(model, spec, strategy, train_ds, eval_ds, steps, callbacks, batches_per_epoch=batches,
                             class_weight=weights, checkpoint_dir=checkpoint_dir, from_start=linear is not None)
    else:
        with strategy.scope():  # optimizers created at each phase's compile belong to the strategy
            histories = fit(model, spec, train_ds, eval_ds, steps, callbacks, batches_per_epoch=batches,
                            class_weight=weights, from_start=linear is not None)
    if chief:
        exported = model
        if own_loop:  # a plain copy of the weights: saving never waits on the other workers
            exported = build_model(spec, features, num_classes=len(classes) if classes else None, compile=False,
                                   label_moments=moments, linear=linear)
            exported.set_weights(model.get_weights())
        choice = {"type": spec.model.type, "exported": "network", **class_balance(classes, counts, weights)}
        if trees_fit:
            trees = train_trees(spec, tf_transform_output, features, train_files, classes, weights)
            if spec.model.type == "blend":
                exported, choice["exported"] = blend_model(features, [exported, trees]), "blend"
            else:
                exported, scored = _best_candidate(spec, exported, trees, linear, tf_transform_output, features,
                                                   train_files, eval_files, classes, weights)
                choice.update(scored)
        _export(spec, exported, tf_transform_output, features, serving_model_dir, log_dir, histories, eval_files,
                classes, choice)
    if multi_worker:
        barrier(strategy)  # the other workers end when the chief's export is written
    shutil.rmtree(vocab_dir, ignore_errors=True)
    return model, histories


def _training_input(spec: Spec, tf_transform_output, features, train_files: List[str], eval_files: List[str],
                    batch: int, steps: Optional[int], own_loop: bool):
    """(train, eval) input: datasets for `fit`; for Lamina's own loop, `InputContext -> dataset` functions of each
    worker's share, the train one made per epoch."""
    cache_train, cache_eval = cache_plan(expand_file_patterns(train_files), expand_file_patterns(eval_files), features)
    if not own_loop:
        train_ds = make_dataset(train_files, tf_transform_output, spec, features, batch, shuffle=True,
                                seed=spec.training.seed, cache=cache_train)
        eval_ds = make_dataset(eval_files, tf_transform_output, spec, features, batch, shuffle=False, cache=cache_eval)
        return (train_ds.repeat() if steps else train_ds), eval_ds

    def dataset_fn(files, shuffle, cache, repeat, seed=spec.training.seed):
        def fn(context: tf.distribute.InputContext):
            ds = make_dataset(files, tf_transform_output, spec, features, context.get_per_replica_batch_size(batch),
                              shuffle=shuffle, seed=seed, cache=cache,
                              shard=(context.num_input_pipelines, context.input_pipeline_id))
            return ds.repeat() if repeat else ds
        return fn

    # Every epoch's input is built afresh from seed + epoch (a distributed iterator rebuilds its
    # dataset, so a reshuffle would repeat the first order); epoch 1 is one device's first epoch.
    train_ds = lambda epoch: dataset_fn(train_files, True, cache_train, bool(steps),  # noqa: E731
                                        seed=spec.training.seed + epoch)
    return train_ds, dataset_fn(eval_files, False, cache_eval, False)


def check_positive_class(spec: Spec, classes: Optional[List[str]], counts) -> None:
    """`evaluation.positive_class` must be a label value of the train split (ValueError naming the values)."""
    positive = spec.evaluation.positive_class
    if classes and positive is not None and not counts[0]:
        # reserved at index 0 by Transform, so present in the vocabulary even when absent
        seen = ", ".join(repr(c) for c, n in zip(classes, counts) if n)
        raise ValueError(f"evaluation.positive_class: {positive!r} is not a value of the label "
                         f"{spec.data.label!r} in the train split; its values are {seen}.")


def _network_class_weights(spec: Spec, classes: Optional[List[str]], counts) -> Optional[Dict[int, float]]:
    """`training.class_weights` for the network, with a line that says what they are and the threshold they imply."""
    if not classes or spec.training.class_weights == "none":
        return None
    weights = class_weights(spec, classes, counts)
    if weights:
        setting = spec.training.class_weights
        shares = ", ".join(f"{c!r} {n / max(sum(counts), 1):.0%} -> {weights[i]:.2f}"
                           for i, (c, n) in enumerate(zip(classes, counts)))
        implied = class_balance(classes, counts, weights).get("threshold")
        print(f"    class weights (training.class_weights: {setting if isinstance(setting, str) else 'set'}): "
              f"{shares}" + (f"; the model answers {implied['class']!r} where its unweighted probability passes "
                             f"{implied['probability']:.2f}, not 0.5" if implied else ""), flush=True)
    return weights


def _linear_start(spec: Spec, tf_transform_output, features, train_files: List[str], classes, weights):
    """The fitted linear model's arrays for `model.head.linear_start`, or None where it is off (said so)."""
    if linear_start_applies(spec, features):
        # Every worker fits the linear model on the whole train split; the fit is deterministic, so all hold the
        # same fixed weights (tests/models/test_distributed.py compares two workers' with one device's).
        linear = fit_linear(spec, tf_transform_output, features, train_files, classes, weights)
        print(f"    model.head.linear_start: the network starts as the {MODEL_NAMES['linear']} and learns "
              "what it misses", flush=True)
        return linear
    if spec.model.head.linear_start and spec.task in ("classification", "regression"):
        print("    model.head.linear_start: off, the linear model takes tabular features only", flush=True)
    return None


def _board_callbacks(spec: Spec, model: keras.Model, log_dir: str, tf_transform_output, features,
                     train_files: List[str], batch: int, own_loop: bool) -> list:
    """TensorBoard's callbacks for the chief: scalars per epoch, and `tensorboard.histograms` when asked."""
    board = spec.training.tensorboard
    profile = tuple(board.profile_batches) if board.profile_batches else 0
    callbacks = [keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch", profile_batch=profile)]
    if board.histograms:
        from lamina.models.tensorboard import NetworkHistograms

        # Gradients on one fixed batch, read from a dataset of its own: iterating the training one would
        # move its reshuffling on. The own loop's replicas keep theirs, so it writes weights only.
        sample = None
        if not own_loop:
            sample = tuple(next(iter(make_dataset(train_files, tf_transform_output, spec, features, batch,
                                                  shuffle=False).take(1))))[:2]
        total = sum(p.epochs for p in training_phases(model, spec))
        callbacks.append(NetworkHistograms(log_dir, total, board.max_layers, board.histogram_epochs, sample))
    return callbacks


def _best_candidate(spec: Spec, network: keras.Model, trees: keras.Model, linear, tf_transform_output, features,
                    train_files: List[str], eval_files: List[str], classes, weights):
    """`model.type: auto`: the network, the trees, the linear model and the network and trees averaged, scored on
    the eval split; returns (the network unless another's lead is significant, what `compare_on_eval` found)."""
    candidates = {"network": network, "gbt": trees,
                  "linear": linear_model(spec, features, linear if linear is not None else fit_linear(
                      spec, tf_transform_output, features, train_files, classes, weights)),
                  "blend": blend_model(features, [network, trees])}
    eval_batches = make_dataset(eval_files, tf_transform_output, spec, features, spec.training.batch_size,
                                shuffle=False)
    scored = compare_on_eval(spec, candidates, eval_batches)
    print(f"    model.type auto on the eval split ({scored['metric']}): "
          + ", ".join(f"{MODEL_NAMES[k]} {v:.4f}" for k, v in scored["scores"].items())
          + f": exporting the {MODEL_NAMES[scored['exported']]}"
          + (f"; {reason}" if (reason := choice_reason(scored)) else ""), flush=True)
    return candidates[scored["exported"]], scored


def _export(spec: Spec, exported: keras.Model, tf_transform_output, features, serving_model_dir: str,
            log_dir: Optional[str], histories, eval_files: List[str], classes, choice: dict) -> None:
    """The SavedModel, the Keras model and its inputs beside it, and in the run folder the history, the
    model choice and the projector (a network's)."""
    export_serving_model(exported, tf_transform_output, spec, features, serving_model_dir)
    save_keras_model(exported, keras_model_path(serving_model_dir))
    write_features(features, serving_model_dir, spec.data.label, spec.task,
                   {k: v.dtype.name for k, v in tf_transform_output.raw_feature_spec().items()})
    if not log_dir:
        return
    write_history(histories, os.path.join(log_dir, HISTORY_FILE))
    storage.write_json(os.path.join(log_dir, MODEL_CHOICE_FILE), choice)
    board = spec.training.tensorboard
    if board.projector and spec.task != "forecast" and choice["exported"] == "network":
        from lamina.models.tensorboard import write_projector

        sample_ds = make_dataset(eval_files, tf_transform_output, spec, features, spec.training.batch_size,
                                 shuffle=False)
        write_projector(log_dir, exported, features, sample_ds, board.projector_samples, classes,
                        tf_transform_output)


def run_fn(fn_args):
    """TFX Trainer entry point (`Trainer(run_fn='models.trainer.run_fn')`)."""
    spec = Spec.from_json(fn_args.custom_config["spec"])
    if fn_args.hyperparameters:  # the Tuner's best trial
        from lamina.models.hyperparameters import apply_hyperparameters

        values = {k: v for k, v in fn_args.hyperparameters.get("values", {}).items() if not k.startswith("tuner/")}
        spec = apply_hyperparameters(spec, values)
        print("    tuned hyperparameters: " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                      for k, v in sorted(values.items())), flush=True)
    from lamina.models.device import needs_workers

    strategy = checkpoint_dir = None
    if needs_workers(spec.training):
        if spec.training.distribution.launcher != "vertex":
            from lamina.models.launcher import launch_workers

            launch_workers(spec, fn_args.transform_output, fn_args.train_files, fn_args.eval_files,
                           fn_args.serving_model_dir, fn_args.model_run_dir)
            return
        # Vertex AI started this process as one of its replicas, with TF_CONFIG set: it is a worker.
        from lamina.models.distributed import checkpoint_dir_for

        strategy = configure_devices(spec.training, cluster=True)
        checkpoint_dir = checkpoint_dir_for(spec, fn_args.transform_output, fn_args.train_files,
                                            fn_args.model_run_dir)
    train(spec, tft.TFTransformOutput(fn_args.transform_output), fn_args.train_files, fn_args.eval_files,
          fn_args.serving_model_dir, log_dir=fn_args.model_run_dir, strategy=strategy, checkpoint_dir=checkpoint_dir)
