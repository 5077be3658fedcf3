"""`training.class_weights`: Keras' class_weight from the spec and the train split's class counts."""

import pytest

from lamina.models.trainer import class_weights
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

