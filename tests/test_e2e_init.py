"""`lamina init` then `lamina run`, unchanged, on the digits images, the text example and the messy
spreadsheet export (the penguins in three formats: tests/test_e2e_formats.py)."""

import os
import shutil

import pytest
import yaml

from lamina.pipeline.cli.commands import main
from lamina.spec import load_spec
from tests.helpers import TOPICS_CSV
from tests.messy import LABEL, write_messy_csv

pytestmark = pytest.mark.e2e


def _init_and_run(capsys, *init_args):
    spec_path = init_args[init_args.index("-o") + 1]
    assert main(["init", *init_args]) == 0
    capsys.readouterr()
    code = main(["run", spec_path])
    out, err = capsys.readouterr()
    assert code == 0, err
    return load_spec(spec_path), out


def _pushed(out: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("  pushed model:"))


def test_digits_folder(tmp_path, capsys):
    from lamina.pipeline.cli.datasets import write_digits_folder

    write_digits_folder(str(tmp_path / "digits"), size=16, per_class=60)
    # A file whose name is not UTF-8 (as a Latin-1 system writes 'é'): TFX's own listing of the input
    # raises UnicodeDecodeError on it; the run lists it as a bad file and goes on without it.
    folder = os.fsencode(tmp_path / "digits" / "3")
    shutil.copy(os.path.join(folder, sorted(os.listdir(folder))[0]), os.path.join(folder, b"caf\xe9.png"))
    spec, out = _init_and_run(capsys, str(tmp_path / "digits"), "-o", str(tmp_path / "project" / "spec.yaml"))
    encoder = spec.image_encoder("image")
    assert (spec.data.format, encoder.architecture, encoder.weights, encoder.image_size) == (
        "image_folder", "resnet_small", "random", [16, 16])
    assert spec.evaluation.thresholds["accuracy"].lower_bound == 0.55  # halfway from one class in ten to all
    assert "  images:         600 examples from 601 files in 10 classes; 1 bad file(s) skipped (listed in the report)" in out
    report = (tmp_path / "project" / "lamina_runs" / "digits" / "report.html").read_text(encoding="utf-8")
    assert ("<tr><td><code>3/caf\\xe9.png</code><td>bad_name<td>the file name is not valid UTF-8; rename the file"
            "</tr>") in report
    assert _pushed(out).startswith(str(tmp_path / "project" / "serving_models" / "digits"))


def test_text_example_with_the_cached_pretrained_encoder(tmp_path, capsys, minilm_dir):
    shutil.copy(TOPICS_CSV, tmp_path / "topics.csv")
    spec, out = _init_and_run(capsys, str(tmp_path / "topics.csv"), "--label", "topic", "--text-model", minilm_dir,
                              "-o", str(tmp_path / "spec.yaml"))
    text = spec.text_encoder("text")
    assert (text.type, text.path, spec.training.optimizer) == ("bert", minilm_dir, "adamw")
    metrics = next(line for line in out.splitlines() if line.startswith("  metrics (eval split):"))
    accuracy = float(metrics.split("sparse_categorical_accuracy=")[1].split(",")[0])
    # The gate is relative (no bound guessed from the class shares): the last push, and the linear baseline
    # of the tabular columns beside the text.
    assert spec.evaluation.thresholds["accuracy"].lower_bound is None
    assert spec.evaluation.thresholds["accuracy"].max_regression == 0.05
    assert accuracy >= 0.9


def test_the_messy_export(tmp_path, capsys):
    write_messy_csv(str(tmp_path / "exports" / "churn.csv"), n=600)
    spec, out = _init_and_run(capsys, str(tmp_path / "exports" / "churn.csv"), "--label", LABEL,
                              "--text-model", "none", "-o", str(tmp_path / "spec.yaml"))
    written = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert written["data"]["exclude"] == ["customer_id", "country"]
    assert spec.data.feature_types["Signup Date"] == "date" and spec.text_encoder("notes").type == "transformer"
    assert "  rows:           585 examples from 600 rows (15 without a label left out)" in out
    assert "    class weights (training.class_weights: auto): 'yes' " in out  # the positive class first
    assert _pushed(out).startswith(str(tmp_path / "serving_models" / "churn"))
    # The threshold the weights imply: the weighted model's 0.5 is w_no / (w_no + w_yes) unweighted, shown in
    # the run's summary and at the top of its report.
    import re

    w_yes, w_no = map(float, re.search(r"'yes' \d+% -> ([\d.]+), 'no' \d+% -> ([\d.]+)", out).groups())
    line = next(l for l in out.splitlines() if l.startswith("  threshold:"))
    assert line == (f"  threshold:      the class weights make the model answer 'yes' where its unweighted probability "
                    f"passes {w_no / (w_no + w_yes):.2f}, not 0.5")
    report = open(spec.report_path, encoding="utf-8").read()
    from markupsafe import escape

    assert f'<p class="note notice">{escape(" ".join(line.split()))}</p>' in report
