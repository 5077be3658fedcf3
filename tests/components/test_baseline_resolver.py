"""The Evaluator's baseline: the latest blessed model that is not this run's candidate."""

import pytest
from tfx.types import standard_artifacts

from lamina.components.baseline_resolver import PreviousBlessedModelStrategy, previous_blessed


def _model(model_id):
    model = standard_artifacts.Model()
    model.id = model_id
    return model


def _blessing(blessing_id, model_id, blessed):
    blessing = standard_artifacts.ModelBlessing()
    blessing.id = blessing_id
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_int_custom_property("blessed", int(blessed))
    return blessing


def test_the_candidate_is_never_its_own_baseline():
    models = [_model(i) for i in (3, 7, 11, 12)]
    blessings = [_blessing(20, 3, True), _blessing(21, 7, True), _blessing(22, 11, False), _blessing(23, 12, True)]
    # A re-run whose cached Trainer gives model 12, blessed by the last run: the baseline is 7, as it was then.
    result = previous_blessed(models, blessings, [models[3]])
    assert [a.id for a in result["model"]] == [7] and [a.id for a in result["model_blessing"]] == [21]
    # A new model (13, not blessed yet): the newest blessed one, 12, as TFX's own strategy gives.
    result = previous_blessed(models + [_model(13)], blessings, [_model(13)])
    assert [a.id for a in result["model"]] == [12] and [a.id for a in result["model_blessing"]] == [23]
    # The first run, and a candidate that is the only blessed model: no baseline.
    assert previous_blessed([], [], [_model(1)]) == {"model": [], "model_blessing": []}
    assert previous_blessed([_model(3)], [_blessing(20, 3, True)], [_model(3)]) == {"model": [], "model_blessing": []}


def test_strategy_passes_the_candidate_through_and_names_a_missing_input():
    candidate = _model(12)
    out = PreviousBlessedModelStrategy().resolve_artifacts(
        None, {"model": [_model(7), candidate], "model_blessing": [_blessing(21, 7, True), _blessing(23, 12, True)],
               "candidate": [candidate]})
    assert {k: [a.id for a in v] for k, v in out.items()} == {"model": [7], "model_blessing": [21], "candidate": [12]}
    with pytest.raises(ValueError) as err:
        PreviousBlessedModelStrategy().resolve_artifacts(None, {"model": [], "model_blessing": []})
    assert str(err.value) == ("PreviousBlessedModelStrategy: expected the inputs 'model', 'model_blessing' and "
                              "'candidate'; missing candidate")
