"""Hyperparameter search inside TFX's Tuner: `tuner_fn`, the tuner, and the Optuna oracle.

The spec's `tuning.space` becomes a KerasTuner search space. Every engine drives one tuner,
`SpecTuner`, whose trials build and fit the model exactly as the Trainer does (models.trainer.fit:
the same phases, class weights and early stopping), on the train split less a holdout share, and
score it on that holdout with the spec's metric (models.metrics). The eval split stays unseen
until the Evaluator. Engines:

- optuna (default): an `OptunaOracle` asks an Optuna study with a TPE sampler for each trial and
  reports the holdout metric after every epoch to a median pruner, which stops hopeless trials.
- random, bayesian, hyperband: KerasTuner's own oracles.

The best trial's values are the Tuner's `best_hyperparameters` artifact; the Trainer applies them
to the spec with `apply_hyperparameters`, so it has no tuning code of its own.
"""

import io
import math
import os
import shutil
import sys
import tempfile
import time
import weakref
from typing import Any, Dict, List, Optional

import keras
import keras_tuner as kt
import numpy as np

from lamina.models.hyperparameters import apply_hyperparameters
from lamina.spec import ParamSpec, Spec

TRIALS_FILE = "trials.json"
HYPERBAND_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round", "tuner/trial_id")


def search_space(space: Dict[str, ParamSpec]) -> kt.HyperParameters:
    """The spec's space as KerasTuner HyperParameters (ints as Int, floats as Float, lists as Choice)."""
    from lamina.spec import TUNABLE

    hp = kt.HyperParameters()
    for name, p in space.items():
        if p.choices is not None:
            hp.Choice(name, p.choices)
        elif TUNABLE[name] is int:
            hp.Int(name, int(p.low), int(p.high), sampling="log" if p.log else "linear")
        else:
            hp.Float(name, float(p.low), float(p.high), sampling="log" if p.log else "linear")
    return hp


class OptunaOracle(kt.Oracle):
    """A KerasTuner oracle backed by an Optuna study: TPE sampling and a median pruner.

    `report(trial_id, epoch, value)` feeds the pruner after each epoch and says whether to stop.
    """

    def __init__(self, objective: kt.Objective, max_trials: int, space: Dict[str, ParamSpec], seed: int,
                 pruning: bool = True, warmup_epochs: int = 2):
        import optuna

        from lamina.spec import TUNABLE

        super().__init__(objective=objective, max_trials=max_trials, hyperparameters=search_space(space), seed=seed)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._distributions = {}
        for name, p in space.items():
            if p.choices is not None:
                self._distributions[name] = optuna.distributions.CategoricalDistribution(p.choices)
            elif TUNABLE[name] is int:
                self._distributions[name] = optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log)
            else:
                self._distributions[name] = optuna.distributions.FloatDistribution(p.low, p.high, log=p.log)
        pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup_epochs) if pruning
                  else optuna.pruners.NopPruner())
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, max_trials // 2)))
        self.study = optuna.create_study(direction="maximize" if objective.direction == "max" else "minimize",
                                         sampler=sampler, pruner=pruner)
        self._asked: Dict[str, Any] = {}
        self.pruned: set = set()

    def populate_space(self, trial_id):
        asked = self.study.ask(self._distributions)
        self._asked[trial_id] = asked
        return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": dict(asked.params)}

    def report(self, trial_id: str, epoch: int, value: float) -> bool:
        """Records the holdout metric after `epoch`; True when the pruner says to stop the trial."""
        asked = self._asked[trial_id]
        if math.isnan(value):
            return epoch >= 1
        asked.report(float(value), epoch)
        if asked.should_prune():
            self.pruned.add(trial_id)
            return True
        return False

    def end_trial(self, trial):
        import optuna

        super().end_trial(trial)
        asked = self._asked.get(trial.trial_id)
        if asked is None:
            return
        if trial.trial_id in self.pruned:
            self.study.tell(asked, state=optuna.trial.TrialState.PRUNED)
        elif trial.status == kt.engine.trial.TrialStatus.COMPLETED and trial.score is not None \
                and not math.isnan(trial.score):
            self.study.tell(asked, float(trial.score))
        else:
            self.study.tell(asked, state=optuna.trial.TrialState.FAIL)

    # Optuna's study is rebuilt on every run; KerasTuner's own state files need nothing of it.
    def get_state(self):
        state = super().get_state()
        state["optuna_pruned"] = sorted(self.pruned)
        return state


def make_oracle(spec: Spec) -> kt.Oracle:
    tuning = spec.tuning
    metric, direction = spec.tuning_objective
    objective = kt.Objective("score", direction=direction)
    seed = spec.training.seed if tuning.seed is None else tuning.seed
    if tuning.engine == "optuna":
        return OptunaOracle(objective, tuning.trials, tuning.space, seed, tuning.pruning, tuning.pruning_warmup_epochs)
    hp = search_space(tuning.space)
    if tuning.engine == "random":
        return kt.oracles.RandomSearchOracle(objective=objective, max_trials=tuning.trials, hyperparameters=hp,
                                             seed=seed)
    if tuning.engine == "bayesian":
        return kt.oracles.BayesianOptimizationOracle(objective=objective, max_trials=tuning.trials,
                                                     hyperparameters=hp, seed=seed)
    return kt.oracles.HyperbandOracle(objective=objective, max_epochs=tuning.epochs or spec.training.epochs,
                                      factor=3, hyperparameters=hp, seed=seed)


class _Budget:
    """Stops the search after `trials` trials or `seconds`, whichever comes first, for any oracle."""

    def __init__(self, oracle: kt.Oracle, trials: int, seconds: Optional[float]):
        self.deadline = time.monotonic() + seconds if seconds else None
        self.reason = ""
        inner = oracle.populate_space

        def populate(trial_id):
            if len(oracle.trials) >= trials:
                self.reason = f"{trials} trials"
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.reason = f"the time budget of {seconds:g}s"
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            return inner(trial_id)

        oracle.populate_space = populate


class _EpochScore(keras.callbacks.Callback):
    """Scores the holdout after every epoch; with an Optuna oracle, stops the trial when it is pruned."""

    def __init__(self, score_fn, oracle: kt.Oracle, trial_id: str):
        super().__init__()
        self.score_fn = score_fn
        self.oracle = oracle
        self.trial_id = trial_id
        self.curve: List[float] = []
        self.pruned_at: Optional[int] = None

    def on_epoch_end(self, epoch, logs=None):
        value = self.score_fn(self.model)
        self.curve.append(value)
        if isinstance(self.oracle, OptunaOracle) and self.oracle.report(self.trial_id, epoch, value):
            self.pruned_at = epoch + 1
            self.model.stop_training = True


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class SpecTuner(kt.engine.base_tuner.BaseTuner):
    """Runs one trial: the spec with the trial's values, trained as the Trainer trains, scored on the holdout.

    Each trial's values, its metric per epoch, whether it was pruned and its time are kept in
    `records`, which the Tuner component writes to `trials.json`.
    """

    def __init__(self, spec: Spec, tf_transform_output, train_files: List[str], working_dir: str,
                 learned_vocabularies: Optional[Dict[str, str]] = None, stream=None):
        from lamina.models.features import describe_transformed_features, label_vocabulary
        from lamina.models.trainer import regression_moments

        self.spec = spec
        self.metric, self.direction = spec.tuning_objective
        self.tf_transform_output = tf_transform_output
        self.train_files = train_files
        self.features = describe_transformed_features(spec, tf_transform_output, learned_vocabularies or {})
        self.classes = label_vocabulary(tf_transform_output) if spec.task == "classification" else None
        self.seed = spec.training.seed if spec.tuning.seed is None else spec.tuning.seed
        self.records: List[dict] = []
        self.stream = stream
        self._holdout_labels: Optional[np.ndarray] = None
        self._train_records: Optional[int] = None
        self._label_counts = None  # read once: every trial weighs the classes alike
        self._linear = None  # model.head.linear_start: fitted once, for every trial
        self.label_moments = regression_moments(spec, tf_transform_output, train_files)  # once, as the Trainer does
        self._started = 0.0
        oracle = make_oracle(spec)
        self.budget = _Budget(oracle, spec.tuning.trials, spec.tuning.time_budget_s)
        super().__init__(oracle=oracle, directory=working_dir, project_name="lamina_tuning", overwrite=True)

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def search_space_summary(self, extended=False):
        t = self.spec.tuning
        space = ", ".join(f"{k} in {p.choices}" if p.choices is not None
                          else f"{k} in [{p.low:g}, {p.high:g}]{' (log)' if p.log else ''}" for k, p in t.space.items())
        self._print(f"    tuning with {t.engine}: up to {t.trials} trials"
                    + (f" or {t.time_budget_s:g}s" if t.time_budget_s else "")
                    + f", {self.direction}imizing {self.metric} on {t.holdout:.0%} of the train split held out; "
                    f"{space}")

    def results_summary(self, num_trials=10):
        best = self.best_record()
        if best:
            self._print(f"    best trial {best['trial']}: {self.metric}={best['score']:.4f}  "
                        + "  ".join(f"{k}={_fmt(v)}" for k, v in best["values"].items()))
        if self.budget.reason:
            self._print(f"    the search stopped after {self.budget.reason}")

    def best_record(self) -> Optional[dict]:
        from lamina.models.metrics import better

        done = [r for r in self.records if r["status"] == "completed" and not math.isnan(r["score"])]
        best = None
        for r in done:
            if best is None or better(self.metric, r["score"], best["score"], self.direction):
                best = r
        return best

    def _datasets(self, spec: Spec):
        from lamina.models.datasets import make_dataset

        share = spec.tuning.holdout
        batch = spec.training.batch_size
        train = make_dataset(self.train_files, self.tf_transform_output, spec, self.features, batch, shuffle=True,
                             seed=self.seed, part=(share, False))
        holdout = make_dataset(self.train_files, self.tf_transform_output, spec, self.features, batch,
                               shuffle=False, part=(share, True))
        return train, holdout

    def _scorer(self, holdout):
        from lamina.models.metrics import compute

        if self._holdout_labels is None:
            self._holdout_labels = np.concatenate([np.asarray(y).reshape(-1) for _, y in holdout])
            if not len(self._holdout_labels):
                raise ValueError(f"tuning.holdout: {self.spec.tuning.holdout:.0%} of the train split holds no "
                                 f"example to score trials on; the train split is too small.")
        labels = self._holdout_labels
        inputs = holdout.map(lambda x, y: x)

        def score(model) -> float:
            predictions = model.predict(inputs, verbose=0)
            return compute(self.spec.task, [self.metric], labels, predictions,
                           self.spec.evaluation.decision_threshold, self.spec.evaluation.positive_index)[self.metric]
        return score

    def _linear_start(self, spec: Spec, weights):
        """`model.head.linear_start`: the linear model fitted once, on the trials' rows without the holdout."""
        from lamina.models.linear import fit_linear, linear_start_applies

        if not linear_start_applies(spec, self.features):
            return None
        if self._linear is None:
            self._linear = fit_linear(spec, self.tf_transform_output, self.features, self.train_files, self.classes,
                                      weights, part=(spec.tuning.holdout, False))
        return self._linear

    def on_search_begin(self):
        self._started = time.perf_counter()
        super().on_search_begin()

    def run_trial(self, trial, *args, **kwargs):
        from lamina.models.builder import build_model
        from lamina.models.datasets import expand_file_patterns, count_records, label_counts
        from lamina.models.trainer import class_weights, fit

        values = dict(trial.hyperparameters.values)
        epochs = int(values.get("tuner/epochs") or self.spec.tuning.epochs or self.spec.training.epochs)
        spec = apply_hyperparameters(self.spec, values)
        spec = spec.model_copy(update={"training": spec.training.model_copy(update={"epochs": epochs})})
        number = int(trial.trial_id)
        keras.utils.set_random_seed(self.seed + number)
        train, holdout = self._datasets(spec)
        score_fn = self._scorer(holdout)
        weights = None
        if self.classes and spec.training.class_weights != "none":
            if self._label_counts is None:
                self._label_counts = label_counts(self.train_files, self.tf_transform_output, spec, len(self.classes))
            weights = class_weights(spec, self.classes, self._label_counts)
        linear = self._linear_start(spec, weights)
        model = build_model(spec, self.features, num_classes=len(self.classes) if self.classes else None,
                            compile=False, label_moments=self.label_moments, linear=linear)
        batches = None
        if spec.lr_schedule != "constant":  # a warmup/decay schedule is sized by the steps, as in the Trainer
            if self._train_records is None:
                self._train_records = count_records(expand_file_patterns(self.train_files))
            batches = max(1, math.ceil(self._train_records * (1 - spec.tuning.holdout) / spec.training.batch_size))
        scorer = _EpochScore(score_fn, self.oracle, trial.trial_id)
        started = time.perf_counter()
        histories = fit(model, spec, train, holdout, callbacks=[scorer], stream=io.StringIO(), class_weight=weights,
                        batches_per_epoch=batches, from_start=linear is not None)
        final = score_fn(model) if scorer.pruned_at is None else scorer.curve[-1]
        shown = {k: v for k, v in values.items() if k not in HYPERBAND_KEYS}
        record = {"trial": number, "values": shown, "epochs": sum(len(h.epoch) for h in histories),
                  "curve": [float(v) for v in scorer.curve], "score": float(final),
                  "status": "pruned" if scorer.pruned_at else "completed", "pruned_at_epoch": scorer.pruned_at,
                  "seconds": round(time.perf_counter() - started, 3)}
        self.records.append(record)
        budget = f"/{self.spec.tuning.trials}" if self.spec.tuning.engine != "hyperband" else ""
        self._print(f"    trial {number + 1:>3}{budget}  {self.metric}={final:.4f}  "
                    + "  ".join(f"{k}={_fmt(v)}" for k, v in shown.items())
                    + f"  {record['epochs']} epochs {record['seconds']:.1f}s"
                    + (f"  pruned after epoch {scorer.pruned_at}" if scorer.pruned_at else ""))
        return {"score": float(final)}

    def on_trial_end(self, trial):
        if isinstance(self.oracle, OptunaOracle) and trial.trial_id in self.oracle.pruned:
            trial.status = kt.engine.trial.TrialStatus.STOPPED  # never the best: it did not finish
        super().on_trial_end(trial)

    def summary(self) -> dict:
        """What trials.json holds: the search, every trial and the best one."""
        best = self.best_record()
        return {"engine": self.spec.tuning.engine, "objective": self.metric, "direction": self.direction,
                "holdout": self.spec.tuning.holdout, "seed": self.seed, "trials": self.records,
                "best": best, "stopped_by": self.budget.reason,
                "seconds": round(time.perf_counter() - self._started, 3) if self._started else None}


def tuner_fn(fn_args):
    """TFX Tuner entry point: the SpecTuner for the spec in `custom_config`, and nothing to pass to search."""
    import tensorflow_transform as tft
    from tfx.components.tuner.component import TunerFnResult

    from lamina.models.device import configure_devices
    from lamina.models.trainer import learn_text_vocabularies

    spec = Spec.from_json(fn_args.custom_config["spec"])
    configure_devices(spec.training)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    # The text vocabularies are local files (KerasHub writes them with `open`), as in the Trainer: the
    # working directory may be gs:// or ram://. They are removed with the tuner.
    vocab_dir = tempfile.mkdtemp(prefix="lamina_vocab_")
    learned = learn_text_vocabularies(spec, tf_transform_output, fn_args.train_files, vocab_dir)
    tuner = SpecTuner(spec, tf_transform_output, fn_args.train_files, fn_args.working_dir, learned)
    weakref.finalize(tuner, shutil.rmtree, vocab_dir, True)
    return TunerFnResult(tuner=tuner, fit_kwargs={"verbose": 0})


def read_trials(folder: str) -> Optional[dict]:
    """trials.json from a Tuner's tuner_results folder, or None."""
    from lamina import storage

    return storage.read_json_if_exists(os.path.join(folder, TRIALS_FILE))
