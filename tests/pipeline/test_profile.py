"""Column roles inferred from a user's CSV, the spec they resolve to, and `lamina init`."""

import pytest

from lamina.pipeline.profile import format_roles, profile_data, resolve_spec
from lamina.spec import Spec, load_spec
from lamina.pipeline.cli.starter import InitError, write_starter_spec
from tests.messy import write_messy_csv


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    write_messy_csv(str(root / "data" / "churn.csv"), n=400)
    spec = Spec.from_dict({"name": "churn", "data": {"path": "data/churn.csv", "label": "churned"}},
                          base_dir=str(root))
    return root, spec, profile_data(spec)


def test_roles_column_by_column(messy):
    _, _, profile = messy
    got = {r.name: (r.role, r.type) for r in profile.roles}
    assert got == {
        "customer_id": ("id", None),
        "Signup Date": ("date", "date"),
        "monthly spend": ("numeric", "numeric"),
        "monthly_spend": ("numeric", "numeric"),
        "Preis (€)": ("numeric", "numeric"),
        "Größe": ("numeric", "numeric"),
        "2nd_choice": ("categorical", "categorical"),
        "column_8": ("numeric", "numeric"),
        "plan": ("categorical", "categorical"),
        "country": ("constant", None),
        "notes": ("text", "text"),
        "auto_renew": ("boolean", "categorical"),
        "discount": ("numeric", "numeric"),
        "churned": ("label", None),
    }
    by_name = {r.name: r for r in profile.roles}
    assert by_name["Signup Date"].format == "%d/%m/%Y"
    # 1 row in 23 blank and 1 in 29 'n/a' among the 400: imputed, with an indicator.
    assert by_name["monthly spend"].missing == 31 and by_name["monthly spend"].missing_indicator
    assert not by_name["monthly_spend"].missing_indicator
    assert by_name["country"].reason == "one value ('DE') in every row"
    assert by_name["customer_id"].reason == "its name says it is an identifier"
    assert by_name["Preis (€)"].reason == "numbers (400 written with $, %, or thousands separators, parsed)"
    assert profile.task == "classification" and profile.imbalanced
    assert list(profile.classes) == ["no", "yes"] and sum(profile.classes.values()) == 390


def test_roles_table_reads_as_a_table(messy):
    _, _, profile = messy
    lines = format_roles(profile).splitlines()
    assert lines[0].split() == ["column", "role", "feature", "reason"]
    assert lines[1].split()[:3] == ["customer_id", "id", "-"]
    assert "  10 row(s) without a label left out of training and evaluation" in lines
    assert lines[-1] == "  classes: 'no' 88.7%, 'yes' 11.3%; imbalanced: class weights set (training.class_weights: auto)"


def test_the_resolved_spec_holds_the_roles(messy):
    _, spec, profile = messy
    resolved = resolve_spec(spec, profile)
    assert resolved.data.exclude == ["country", "customer_id"]
    assert resolved.data.feature_types["notes"] == "text" and resolved.data.feature_types["Signup Date"] == "date"
    assert resolved.text_encoder("notes").num_layers == 1  # the small Transformer of a tabular model
    assert resolved.task == "classification"
    assert Spec.from_json(resolved.to_json()).data.features == resolved.data.features


def test_unique_integers_are_ids_and_a_numeric_label_with_many_values_is_regression(tmp_path):
    rows = "".join(f"{1000 + i},{i % 3},{i * 1.7:.2f}\n" for i in range(50))
    (tmp_path / "d.csv").write_text("ref,group,price\n" + rows)
    spec = Spec.from_dict({"data": {"path": "d.csv", "label": "price"}}, base_dir=str(tmp_path))
    profile = profile_data(spec)
    assert {r.name: r.role for r in profile.roles} == {"ref": "id", "group": "numeric", "price": "label"}
    assert profile.task == "regression"
    resolved = resolve_spec(spec, profile)
    assert resolved.task == "regression" and resolved.evaluation.metrics == ["mae", "rmse"]
    # The spec's own head wins.
    declared = Spec.from_dict({"data": {"path": "d.csv", "label": "price"}, "model": {"head": {"type": "classification"}}},
                              base_dir=str(tmp_path))
    assert profile_data(declared).task == "classification"


def test_declared_features_are_kept_as_they_are(messy):
    root, _, _ = messy
    spec = Spec.from_dict({"data": {"path": "data/churn.csv", "label": "churned",
                                    "features": {"plan": "categorical", "monthly spend": "numeric"}}},
                          base_dir=str(root))
    profile = profile_data(spec)
    roles = {r.name: (r.role, r.type) for r in profile.roles}
    assert roles["plan"] == ("declared", "categorical") and roles["notes"] == ("unused", None)
    assert resolve_spec(spec, profile) is spec


def test_init_writes_a_commented_spec_that_loads_as_the_roles_say(messy, tmp_path):
    root, _, profile = messy
    out = tmp_path / "proj" / "spec.yaml"
    text = write_starter_spec(str(root / "data" / "churn.csv"), str(out), label="churned")
    assert '    "monthly spend": {type: numeric, missing_indicator: true}    # numeric: numbers (' in text
    assert '    "Signup Date": {type: date, format: "%d/%m/%Y"}' in text
    assert "    - customer_id    # id: its name says it is an identifier" in text
    assert "  class_weights: auto" in text
    # 89% / 11%: the log loss of the class shares alone is 0.352 nats; the gate asks for less.
    assert "    crossentropy: {upper_bound: 0.352, max_regression: 0.05}" in text
    spec = load_spec(out)
    assert spec.data.delimiter == ";" and spec.serving.model_name == "churn"
    assert {f.name: f.type.value for f in spec.data.features} == {r.name: r.type for r in profile.roles if r.type}
    with pytest.raises(InitError, match="spec.yaml exists; pass --force to replace it"):
        write_starter_spec(str(root / "data" / "churn.csv"), str(out), label="churned")


def test_init_needs_the_label_and_names_the_columns(messy, tmp_path):
    root, _, _ = messy
    with pytest.raises(InitError) as e:
        write_starter_spec(str(root / "data" / "churn.csv"), str(tmp_path / "s.yaml"))
    assert str(e.value).startswith(f"name the column to predict: lamina init {root / 'data' / 'churn.csv'} --label "
                                   f"COLUMN; the columns are 'customer_id', 'Signup Date', 'monthly spend',")


def test_init_on_a_balanced_label_gates_on_accuracy(penguins_dir, tmp_path):
    text = write_starter_spec(str(penguins_dir / "data" / "penguins.csv"), str(tmp_path / "spec.yaml"),
                              label="species")
    # Adelie is 44% of the penguins: the bound sits halfway between that and 1.
    assert "    accuracy: {lower_bound: 0.72, max_regression: 0.05}" in text
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.data.feature_types == {"island": "categorical", "bill_length_mm": "numeric",
                                       "bill_depth_mm": "numeric", "flipper_length_mm": "numeric",
                                       "body_mass_g": "numeric", "sex": "categorical"}


@pytest.mark.parametrize("name, is_id", [("customer_id", True), ("Customer ID", True), ("customerId", True),
                                         ("userID", True), ("row_number", True), ("paid", False),
                                         ("valid", False), ("Android", False), ("grid", False)])
def test_id_like_names(tmp_path, name, is_id):
    (tmp_path / "d.csv").write_text(f"{name},y\n" + "".join(f"{i % 4},{'ab'[i % 2]}\n" for i in range(30)))
    spec = Spec.from_dict({"data": {"path": "d.csv", "label": "y"}}, base_dir=str(tmp_path))
    role = profile_data(spec).roles[0]
    assert (role.role == "id") == is_id, role
