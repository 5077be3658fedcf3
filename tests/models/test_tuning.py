"""The tuner on a real Transform output (the shared penguins run): pruning, seeds, KerasTuner's engines.

The trials run in this process, as TFX's Tuner executor runs them (`tuner.search()`), without the
rest of the pipeline.
"""

import os

import pytest

from lamina.models.hyperparameters import apply_hyperparameters, combiner_units
from lamina.models.tuning import SpecTuner
from lamina.spec import Spec, SpecError
from tests.helpers import make_spec


def _tuning_spec(base_dir, **tuning) -> Spec:
    return make_spec(base_dir, training={"epochs": 4, "batch_size": 16, "learning_rate": 0.01, "early_stopping": None},
                     tuning=tuning)


def test_apply_hyperparameters_sets_what_each_parameter_names(tmp_path):
    spec = make_spec(tmp_path)
    tuned = apply_hyperparameters(spec, {"learning_rate": 0.003, "batch_size": 64, "dropout": 0.25, "width": 48,
                                         "depth": 3, "embedding_dim": 6, "tuner/epochs": 7, "tuner/trial_id": "0"})
    assert tuned.training.learning_rate == 0.003 and tuned.training.batch_size == 64
    assert tuned.model.combiner.dropout == 0.25
    assert tuned.model.combiner.hidden_units == [48, 24, 12]
    assert tuned.model.encoders["categorical"].dim == 6
    assert tuned.training.epochs == spec.training.epochs  # hyperband's bookkeeping is not a setting
    assert spec.training.learning_rate == 0.01  # the spec itself is untouched
    assert apply_hyperparameters(spec, {}) is spec
    assert combiner_units(6, 3) == [6, 4, 4]  # never narrower than 4 (or the width itself)
    assert combiner_units(2, 2) == [2, 2]


def test_tuning_spec_errors_name_the_key_and_the_choices(tmp_path):
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path, tuning={"engine": "grid", "trials": 0,
                                    "space": {"learning_rate": {"low": 0.1, "high": 0.01}}})
    text = str(info.value)
    assert "tuning.engine: Received 'grid'; expected one of: 'optuna', 'random', 'bayesian' or 'hyperband'." in text
    assert "tuning.trials: Received 0; expected an integer >= 1." in text
    assert "tuning.space.learning_rate: low must not exceed high. Received: low=0.1, high=0.01" in text
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path, tuning={"space": {"widht": {"low": 8, "high": 64}}})
    text = str(info.value)
    assert "'widht': expected one of: 'learning_rate', 'dropout', 'batch_size', 'width', 'depth', 'embedding_dim', " \
           "'unfreeze_blocks', 'fine_tune_learning_rate'. Did you mean 'width'?" in text
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path, tuning={"objective": "r2", "space": {"unfreeze_blocks": {"choices": [1, 2]}}})
    text = str(info.value)
    assert "tuning.objective: Received 'r2'; for a classification head expected one of: 'accuracy'" in text
    assert "tuning.space.unfreeze_blocks: tunes the fine-tuning phase, and training.fine_tune sets none" in text
    with pytest.raises(SpecError) as info:
        make_spec(tmp_path, tuning={"space": {"learning_rate": {"low": 0, "high": 0.1, "log": True}}})
    assert "a log-scale range needs low > 0. Received: low=0.0" in str(info.value)


@pytest.fixture(scope="module")
def transform_output(penguins_run):
    """(TFTransformOutput, train file patterns) of the shared penguins run."""
    import tensorflow_transform as tft

    _, result = penguins_run
    return tft.TFTransformOutput(result.transform_graph_dir), [os.path.join(result.examples_dir, "Split-train", "*")]


def _search(spec, transform_output, tmp_path) -> SpecTuner:
    tft_output, train_files = transform_output
    tuner = SpecTuner(spec, tft_output, train_files, str(tmp_path))
    tuner.search(verbose=0)
    return tuner


@pytest.mark.e2e
def test_optuna_prunes_hopeless_trials(tmp_path, transform_output):
    # Learning rates down to 1e-6 cannot get anywhere in 5 epochs: the median pruner stops them.
    spec = _tuning_spec(tmp_path, trials=8, epochs=5, pruning_warmup_epochs=1, seed=3,
                        space={"learning_rate": {"low": 1e-6, "high": 0.3, "log": True}})
    tuner = _search(spec, transform_output, tmp_path / "search")
    records = tuner.records
    assert len(records) == 8
    pruned = [r for r in records if r["status"] == "pruned"]
    assert pruned, [(r["values"], r["curve"]) for r in records]
    for r in pruned:
        assert r["epochs"] < 5 and r["pruned_at_epoch"] == r["epochs"] and len(r["curve"]) == r["epochs"]
    best = tuner.best_record()
    assert best["status"] == "completed" and best["score"] >= 0.9
    assert best["values"]["learning_rate"] > 1e-3
    # KerasTuner's own record agrees: a pruned trial is never the best one.
    assert tuner.get_best_hyperparameters()[0].values["learning_rate"] == best["values"]["learning_rate"]
    summary = tuner.summary()
    assert summary["best"] == best and summary["engine"] == "optuna" and summary["objective"] == "accuracy"


@pytest.mark.e2e
def test_the_same_seed_gives_the_same_trials(tmp_path, transform_output):
    spec = _tuning_spec(tmp_path, trials=4, epochs=2, seed=11,
                        space={"learning_rate": {"low": 1e-4, "high": 0.1, "log": True}, "width": {"choices": [8, 16]}})
    first = _search(spec, transform_output, tmp_path / "a").records
    second = _search(spec, transform_output, tmp_path / "b").records
    assert [r["values"] for r in first] == [r["values"] for r in second]
    assert [v for r in first for v in r["curve"]] == pytest.approx([v for r in second for v in r["curve"]])
    other = _search(_tuning_spec(tmp_path, trials=4, epochs=2, seed=12, space=spec.tuning.space),
                    transform_output, tmp_path / "c").records
    assert [r["values"] for r in other] != [r["values"] for r in first]


@pytest.mark.e2e
@pytest.mark.parametrize("engine", ["random", "bayesian", "hyperband"])
def test_kerastuner_engines_search_the_same_space(tmp_path, transform_output, engine):
    spec = _tuning_spec(tmp_path, engine=engine, trials=3, epochs=3, seed=5,
                        space={"learning_rate": {"low": 1e-3, "high": 0.1, "log": True}, "depth": {"low": 1, "high": 2}})
    tuner = _search(spec, transform_output, tmp_path / engine)
    records = tuner.records
    assert 1 <= len(records) <= 3  # the trial budget holds for hyperband too
    for r in records:
        assert set(r["values"]) == {"learning_rate", "depth"}
        assert 1e-3 <= r["values"]["learning_rate"] <= 0.1 and r["values"]["depth"] in (1, 2)
        assert r["status"] == "completed" and len(r["curve"]) == r["epochs"] and r["curve"][-1] == r["score"]
    best = tuner.get_best_hyperparameters()[0].values
    assert best["learning_rate"] == tuner.best_record()["values"]["learning_rate"]


@pytest.mark.e2e
def test_a_linear_start_is_fitted_once_without_the_trials_holdout(tmp_path, transform_output, capsys):
    from lamina.models.datasets import count_records, expand_file_patterns

    spec = make_spec(tmp_path, model={**make_spec(tmp_path).model.model_dump(),
                                      "head": {"type": "classification", "linear_start": True}},
                     training={"epochs": 3, "batch_size": 16, "learning_rate": 0.01},
                     tuning={"trials": 2, "epochs": 3, "seed": 4, "space": {"width": {"choices": [8, 16]}}})
    tuner = _search(spec, transform_output, tmp_path / "search")
    out = capsys.readouterr().out
    assert out.count("linear model: ") == 1, out  # one fit serves every trial
    fitted_rows = int(out.split("linear model: ")[1].split(" rows")[0].split(" on ")[-1])
    total = count_records(expand_file_patterns(transform_output[1]))
    assert fitted_rows + len(tuner._holdout_labels) == total  # the holdout the trials are scored on is left out
    assert [r["status"] for r in tuner.records] == ["completed", "completed"]
    assert all(r["score"] >= 0.9 for r in tuner.records), tuner.records
