"""End to end on a spreadsheet export (tests/messy.py): BOM, `;`, ugly headers, `$1,234.50`, dates,
free text, blank labels. A spec that uses every column trains; the served model answers to the
columns' own names over gRPC, REST and `lamina predict`, as the model does in process."""

import contextlib
import csv
import io
import json
import math

import grpc
import numpy as np
import pytest
import tensorflow as tf

from lamina.components.table_example_gen import record_to_example
from lamina.cells import parse_number
from lamina.pipeline.local_runner import run_pipeline
from lamina.pipeline.runs.summary import format_result
from lamina.spec import Spec
from lamina.rows import rows_to_tensors
from lamina.serving.client import PredictionClient, RestClient
from lamina.constants import RAW_SIGNATURE
from lamina.serving.server import LaminaServer
from tests.messy import COLUMNS, LABEL, write_messy_csv

pytestmark = pytest.mark.e2e

N_ROWS = 600
BROKEN = 123  # this row gets a field too many: skipped (data.bad_rows: skip) and counted
# Every column of the file is a feature (the ID and the constant too), as a user's first spec would have it.
EVERY_COLUMN = {
    "customer_id": "categorical", "Signup Date": {"type": "date", "format": "%d/%m/%Y"},
    "monthly spend": {"type": "numeric", "missing_indicator": True}, "monthly_spend": "numeric",
    "Preis (€)": "numeric", "Größe": "numeric", "2nd_choice": "categorical", "column_8": "numeric",
    "plan": "categorical", "country": "categorical", "notes": "text", "auto_renew": "categorical",
    "discount": "numeric",
}
# The raw signature's dtypes: numbers are float32 on the wire; the declared-categorical integer ID stays int64.
RAW_DTYPES = {"customer_id": tf.int64, "Signup Date": tf.string, "monthly spend": tf.float32,
              "monthly_spend": tf.float32, "Preis (€)": tf.float32, "Größe": tf.float32, "2nd_choice": tf.string,
              "column_8": tf.float32, "plan": tf.string, "country": tf.string, "notes": tf.string,
              "auto_renew": tf.string, "discount": tf.float32}
WIRE = {"customer_id": "int", "Signup Date": "bytes", "monthly spend": "float", "monthly_spend": "float",
        "Preis (€)": "float", "Größe": "float", "2nd_choice": "bytes", "column_8": "float", "plan": "bytes",
        "country": "bytes", "notes": "bytes", "auto_renew": "bytes", "discount": "float", LABEL: "bytes"}


@pytest.fixture(scope="module")
def messy_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy_e2e")
    rows = write_messy_csv(str(root / "data" / "churn.csv"), n=N_ROWS, broken=(BROKEN,))
    spec = Spec.from_dict({
        "name": "churn",
        "data": {"path": "data/churn.csv", "label": LABEL, "features": EVERY_COLUMN, "bad_rows": "skip"},
        "model": {"encoders": {"notes": {"type": "transformer", "num_layers": 1, "num_heads": 2, "hidden_dim": 16,
                                         "intermediate_dim": 32, "max_length": 32, "vocabulary_size": 500}},
                  "combiner": {"hidden_units": [32, 16]}},
        "training": {"epochs": 40, "learning_rate": 0.003, "batch_size": 32,
                     "early_stopping": {"monitor": "val_loss", "patience": 8}},
        "evaluation": {"metrics": ["accuracy", "crossentropy"], "slices": [["plan"], ["auto_renew"]]},
        "serving": {"model_name": "churn"},
    }, base_dir=str(root))
    out = io.StringIO()
    result = run_pipeline(spec, stream=out)
    return spec, result, rows, out.getvalue()


@pytest.fixture(scope="module")
def served(messy_run):
    spec, result, _, _ = messy_run
    server = LaminaServer(spec.push_dir, port=0, rest_port=0).start()
    yield server, tf.saved_model.load(result.pushed_model_dir)
    server.stop()


def _as_read(rows):
    """Rows keyed as ingestion reads the header (the blank 8th header is column_8), label dropped."""
    return [{("column_8" if k == "" else k): v for k, v in r.items() if k != LABEL} for r in rows]


def _in_process(model, rows):
    """The model's answers in process, on the examples ingestion makes of the rows."""
    examples = [record_to_example(r, WIRE).SerializeToString() for r in _as_read(rows)]
    return model.signatures["serving_default"](inputs=tf.constant(examples))["scores"].numpy()


def test_the_run_trains_on_every_column_and_counts_the_rows_it_left_out(messy_run):
    spec, result, rows, out = messy_run
    unlabelled = sum(1 for r in rows if not r[LABEL])
    assert result.pushed and unlabelled == 15 and rows[BROKEN][LABEL]
    assert (result.rows["rows"], result.rows["examples"], result.rows["missing_label"], result.rows["bad_rows"]) == (
        N_ROWS, N_ROWS - unlabelled - 1, unlabelled, 1)
    assert result.rows["bad_row_lines"][0]["line"] == BROKEN + 2 + sum(r["notes"].count("\n") for r in rows[:BROKEN])
    assert ("  rows:           584 examples from 600 rows (1 with the wrong number of fields skipped; 15 without a "
            "label left out)") in format_result(result)
    assert result.rows["columns"] == WIRE
    assert "  monthly spend  declared     numeric      data.features" in out
    # 'yes' is 11% of the rows, and class weights trade some accuracy for finding them (below).
    assert result.metrics["sparse_categorical_accuracy"] >= 0.85
    with open(result.report, encoding="utf-8") as f:
        report = f.read()
    assert "<p>584 examples from 600 rows (csv, delimiter <code>;</code>, utf-8); 16 left out: 1 unreadable, 15 " \
           "without a label.</p>" in report
    assert "<tr><td><code>monthly spend</code><td>numeric feature<td>float32</tr>" in report
    assert "<tr><td><code>Preis (€)</code><td>numeric feature<td>float32</tr>" in report
    assert "<tr><td><code>churned</code><td>label<td>string</tr>" in report
    with open(f"{spec.run_dir}/resolved_spec.yaml", encoding="utf-8") as f:
        text = f.read()
    assert "#   'monthly spend' -> monthly_spend_40f087" in text and "#   'Größe' -> Grosse_d9130a" in text


def test_the_model_learned_the_rule_behind_the_label(served, messy_run):
    """'yes' means no auto-renewal and under $90 a month (2% of labels flipped): the weighted model
    finds most churners, which always answering 'no' (89% accurate) never does."""
    _, model = served
    _, _, rows, _ = messy_run
    labelled = [r for i, r in enumerate(rows) if r[LABEL] and i != BROKEN]
    scores = _in_process(model, labelled)
    classes = [c.decode() for c in model.signatures["serving_default"](inputs=tf.constant(
        [record_to_example(_as_read(labelled[:1])[0], WIRE).SerializeToString()]))["classes"][0].numpy()]
    predicted = [classes[i] for i in np.argmax(scores, axis=1)]
    truth = [r[LABEL] for r in labelled]
    churners = [p for p, t in zip(predicted, truth) if t == "yes"]
    assert len(churners) >= 50
    assert churners.count("yes") / len(churners) >= 0.7  # recall of 'yes'
    assert np.mean([p == t for p, t in zip(predicted, truth)]) >= 0.85


def test_the_served_raw_signature_is_keyed_by_the_columns_own_names(served):
    server, model = served
    with PredictionClient(server.target) as client:
        inputs = client.raw_inputs("churn")
    assert {k: tf.dtypes.as_dtype(v) for k, v in inputs.items()} == RAW_DTYPES


def test_grpc_answers_equal_in_process_answers_by_original_names(served, messy_run):
    server, model = served
    _, _, rows, _ = messy_run
    sample = rows[:40]
    expected = _in_process(model, sample)
    read = _as_read(sample)
    with PredictionClient(server.target) as client:
        raw = client.predict_raw("churn", read)["scores"]
        examples = client.predict("churn", read)["scores"]
        classified = client.classify("churn", read)
    np.testing.assert_allclose(raw, expected, atol=1e-5)
    np.testing.assert_allclose(examples, expected, atol=1e-5)
    np.testing.assert_allclose([[s for _, s in r] for r in classified], expected, atol=1e-5)


def test_rest_rows_with_integers_or_floats_by_original_names(served, messy_run):
    server, model = served
    _, _, rows, _ = messy_run
    row = _as_read(rows[:1])[0]
    expected = _in_process(model, rows[:1])[0]
    # As a JSON client writes it: numbers as JSON numbers (ints where they are whole), strings as strings.
    instance = {"customer_id": int(row["customer_id"]), "Signup Date": row["Signup Date"],
                "monthly spend": parse_number(row["monthly spend"]) or float("nan"),
                "monthly_spend": float(row["monthly_spend"]), "Preis (€)": float(row["Preis (€)"].rstrip(" €")),
                "Größe": int(row["Größe"]), "2nd_choice": row["2nd_choice"], "column_8": int(row["column_8"]),
                "plan": row["plan"], "country": row["country"], "notes": row["notes"].strip(),
                "auto_renew": row["auto_renew"], "discount": float(row["discount"].rstrip("%")) / 100}
    with RestClient(server.rest_url) as client:
        answer = client.predict_instances("churn", [instance], signature=RAW_SIGNATURE)[0]
        as_floats = client.predict_instances("churn", [{k: float(v) if isinstance(v, int) and k != "customer_id"
                                                        else v for k, v in instance.items()}],
                                             signature=RAW_SIGNATURE)[0]
    np.testing.assert_allclose(answer["scores"], expected, atol=1e-5)
    np.testing.assert_allclose(as_floats["scores"], expected, atol=1e-5)


def test_a_cell_means_what_ingestion_read_whatever_its_spaces_markers_or_case(served, messy_run):
    """The file writes ' basic' and '?', ingestion strips them; any client may send ' basic', 'basic ',
    '?', 'NA' or 'Yes': the served graph reads each as the value the model was trained on."""
    server, model = served
    _, _, rows, _ = messy_run
    row = _as_read([r for r in rows if r["2nd_choice"] == "?"][:1])[0]
    assert row["plan"].startswith(" ")  # as the file has it
    expected = _in_process(model, [row])[0]
    canonical = dict(row, plan=row["plan"].strip(), **{"2nd_choice": ""})
    spellings = [canonical, dict(row, plan=row["plan"] + "  ", **{"2nd_choice": " NA "}),
                 dict(canonical, auto_renew=row["auto_renew"].upper(), **{"2nd_choice": "n/a"})]
    with PredictionClient(server.target) as client:
        raw = client.predict_raw("churn", spellings)["scores"]
        examples = client.predict("churn", spellings)["scores"]
    with RestClient(server.rest_url) as client:
        rest = client.predict_raw("churn", spellings)["scores"]
    for answers in (raw, examples, rest):
        np.testing.assert_allclose(answers, [expected] * len(spellings), atol=1e-5)


def test_lamina_predict_reads_the_users_own_export(served, messy_run, tmp_path):
    from lamina.pipeline.cli.commands import main

    server, model = served
    _, _, rows, _ = messy_run
    sample = [r for r in rows[:10] if r[LABEL]]
    path = tmp_path / "new_customers.csv"
    buffer = io.StringIO()  # the same export: BOM, ';', CRLF, quoted notes; the label column left blank
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(COLUMNS)
    writer.writerows([[r[c] if c != LABEL else "" for c in COLUMNS] for r in sample])
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["predict", str(path), "--model", "churn", "--target", server.target]) == 0
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    expected = _in_process(model, sample)
    classes = [c.decode() for c in model.signatures["serving_default"](
        inputs=tf.constant([record_to_example(_as_read(sample[:1])[0], WIRE).SerializeToString()]))["classes"][0].numpy()]
    assert [a["class"] for a in answers] == [classes[int(np.argmax(e))] for e in expected]
    np.testing.assert_allclose([[a["scores"][c] for c in classes] for a in answers], expected, atol=1e-5)


def test_a_missing_number_is_imputed_and_a_string_for_a_number_is_invalid(served, messy_run):
    server, model = served
    _, _, rows, _ = messy_run
    row = _as_read(rows[:1])[0]
    with PredictionClient(server.target) as client:
        inputs = client.raw_inputs("churn")
        without = {k: v for k, v in row.items() if k != "monthly spend"}
        from_example = client.predict("churn", [without], inputs=inputs)["scores"]
        from_nan = client.predict_raw("churn", [dict(row, **{"monthly spend": float("nan")})], inputs=inputs)["scores"]
        np.testing.assert_allclose(from_example, from_nan, atol=1e-6)
        tensors = {k: v.numpy() for k, v in rows_to_tensors([row], inputs).items()}
        tensors["monthly spend"] = np.array([b"lots"], dtype=object)
        with pytest.raises(grpc.RpcError) as e:
            client.predict_tensors("churn", tensors, RAW_SIGNATURE)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "Input 'monthly spend' has dtype DT_STRING; signature 'serving_raw' expects DT_FLOAT."
    assert math.isfinite(float(from_example[0][0]))
