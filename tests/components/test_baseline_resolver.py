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


def _saved_model(folder, signatures):
    """A SavedModel's saved_model.pb with these signature names (what the strategy reads of it)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    meta_graph = proto.meta_graphs.add()
    meta_graph.meta_info_def.tags.append("serve")
    for name in signatures:
        meta_graph.signature_def[name].method_name = "tensorflow/serving/predict"
    serving = folder / "Format-Serving"
    serving.mkdir(parents=True)
    (serving / "saved_model.pb").write_bytes(proto.SerializeToString())
    return str(folder)


def test_a_blessed_model_from_before_transform_label_is_no_baseline(tmp_path):
    candidate, older, newer = _model(12), _model(7), _model(9)
    older.uri = _saved_model(tmp_path / "7", ["serving_default", "serving_raw", "transform_features"])
    newer.uri = _saved_model(tmp_path / "9", ["serving_default", "serving_raw", "transform_features",
                                               "transform_label"])
    inputs = {"model": [older, candidate], "model_blessing": [_blessing(21, 7, True)], "candidate": [candidate]}
    out = PreviousBlessedModelStrategy().resolve_artifacts(None, inputs)
    assert {k: [a.id for a in v] for k, v in out.items()} == {"model": [], "model_blessing": [], "candidate": [12]}
    inputs = {"model": [older, newer, candidate], "model_blessing": [_blessing(21, 7, True), _blessing(22, 9, True)],
              "candidate": [candidate]}
    out = PreviousBlessedModelStrategy().resolve_artifacts(None, inputs)
    assert {k: [a.id for a in v] for k, v in out.items()} == {"model": [9], "model_blessing": [22], "candidate": [12]}
