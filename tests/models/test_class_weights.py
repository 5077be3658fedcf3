"""`training.class_weights`: Keras' class_weight from the spec and the train split's class counts."""

import pytest

from lamina.models.trainer import check_positive_class, class_weights
from lamina.spec import Spec


def _spec(setting):
    return Spec.from_dict({"data": {"path": "x.csv", "label": "y"}, "training": {"class_weights": setting}})


@pytest.mark.parametrize("setting, counts, expected", [
    ("auto", [90, 10], {0: 100 / 180, 1: 5.0}),  # the rare class is under 20%: balanced
    ("auto", [60, 40], None),                    # not rare enough to weigh
    ("balanced", [60, 40], {0: 100 / 120, 1: 100 / 80}),
    ("none", [99, 1], None),
    ({"yes": 3.0}, [90, 10], {0: 1.0, 1: 3.0}),
])
def test_class_weights(setting, counts, expected):
    got = class_weights(_spec(setting), ["no", "yes"], counts)
    assert got == (pytest.approx(expected) if expected else None)


def test_a_weight_for_a_class_the_label_lacks_names_the_classes():
    with pytest.raises(ValueError) as e:
        class_weights(_spec({"Yes": 2.0}), ["no", "yes"], [9, 1])
    assert str(e.value) == "training.class_weights: no class 'Yes' in the label; the classes are 'no', 'yes'."


def test_weights_must_be_positive():
    from lamina.spec import SpecError

    with pytest.raises(SpecError, match=r"training.class_weights: .*expected a positive weight per class name"):
        _spec({"yes": 0})



def test_the_threshold_balanced_weights_imply_is_the_rare_class_share_and_the_summary_says_so():
    """modeldata's mlc_churn: 14.6% of 3,226 train rows churn. Balanced weights scale the odds of 'yes' by
    w_yes / w_no, so the weighted model answers 'yes' where the unweighted probability passes 0.146."""
    import numpy as np

    from lamina.models.trainer import class_balance
    from lamina.pipeline.runs.summary import class_balance_lines

    counts = [0, 2755, 471]  # index 0: Transform's reserved slot, absent
    classes = ["", "no", "yes"]
    weights = class_weights(_spec("auto"), classes, counts)
    balance = class_balance(classes, counts, weights)
    assert balance["majority"] == "no" and balance["majority_share"] == pytest.approx(2755 / 3226)
    assert balance["threshold"] == {"class": "yes", "probability": pytest.approx(471 / 3226)}
    # The weighted model's 0.5 is the unweighted model's 0.146: odds scaled by w_yes / w_no.
    p = balance["threshold"]["probability"]
    odds = p / (1 - p) * weights[2] / weights[1]
    assert odds / (1 + odds) == pytest.approx(0.5)
    lines = class_balance_lines(balance, {"sparse_categorical_accuracy": 0.8421})
    assert lines == [
        "  threshold:      the class weights make the model answer 'yes' where its unweighted probability passes "
        "0.15, not 0.5",
        "  warning:        accuracy 0.8421 on the eval split is below always answering 'no' (0.8540 of the train "
        "split); that is the class weights' doing (training.class_weights: none answers at 0.5)"]
    assert class_balance_lines(class_balance(classes, counts, None), {"sparse_categorical_accuracy": 0.9}) == []
    assert class_balance(["a", "b", "c"], [5, 3, 2], {0: 1.0, 1: 2.0, 2: 3.0}).get("threshold") is None
    assert np.isclose(class_balance(["a", "b"], [5, 5], None)["majority_share"], 0.5)


def test_with_class_weights_early_stopping_watches_the_weighted_loss_training_minimizes(tmp_path):
    import keras
    import numpy as np
    import tensorflow as tf

    from lamina.models.builder import build_model
    from lamina.models.features import NUMERIC, FeatureInfo
    from lamina.models.trainer import fit, weighted_by_class
    from tests.helpers import make_spec

    rng = np.random.RandomState(0)
    x = rng.randn(400, 2).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.randn(400) > 1.2).astype(np.int64)  # about 15% positive
    features = [FeatureInfo("a", NUMERIC), FeatureInfo("b", NUMERIC)]
    spec = make_spec(tmp_path, training={"epochs": 3, "batch_size": 32, "learning_rate": 0.01, "early_stopping": None})

    def ds(rows):
        return tf.data.Dataset.from_tensor_slices(({"a": x[rows, :1], "b": x[rows, 1:]}, y[rows])).batch(32)
    weights = {0: 0.6, 1: 3.0}
    keras.utils.set_random_seed(0)
    model = build_model(spec, features, num_classes=2, compile=False)
    history = fit(model, spec, ds(slice(0, 300)), ds(slice(300, None)), class_weight=weights)[-1]
    weighted = model.evaluate(weighted_by_class(ds(slice(300, None)), weights), verbose=0, return_dict=True)
    plain = model.evaluate(ds(slice(300, None)), verbose=0, return_dict=True)
    assert history.history["val_loss"][-1] == pytest.approx(weighted["loss"], rel=1e-4)
    assert abs(weighted["loss"] - plain["loss"]) > 0.01  # the weights change the loss ...
    assert history.history["val_accuracy"][-1] == pytest.approx(plain["accuracy"])  # ... and not the metrics


def test_a_positive_class_the_train_split_lacks_is_refused_with_the_values_it_has():
    """Transform reserves index 0 of the label vocabulary for `evaluation.positive_class`, so it is a class even
    when no train row has it: then the run stops, naming the values the split has."""
    spec = Spec.from_dict({"data": {"path": "x.csv", "label": "species"}, "evaluation": {"positive_class": "Gentoo"}})
    check_positive_class(spec, ["Gentoo", "Adelie", "Chinstrap"], [4, 5, 3])  # present: nothing to say
    with pytest.raises(ValueError) as e:
        check_positive_class(spec, ["Gentoo", "Adelie", "Chinstrap"], [0, 5, 3])
    assert str(e.value) == ("evaluation.positive_class: 'Gentoo' is not a value of the label 'species' in the train "
                            "split; its values are 'Adelie', 'Chinstrap'.")
    check_positive_class(Spec.from_dict({"data": {"path": "x.csv", "label": "species"}}), ["a", "b"], [0, 5])
