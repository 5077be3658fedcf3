"""ImageExampleGen: listing rules, the bad-file policy, and real runs on Beam through TFX."""

import json
import os

import pytest
import tensorflow as tf

from lamina.components.image_example_gen import (BadFile, BadInputFilesError, ImageExampleGen, check_image_bytes,
                                                 enforce_policy, list_image_csv, list_image_folder, read_report)
from lamina.pipeline.cli.datasets import write_digits_folder

EXT = [".png", ".jpg", ".jpeg"]


def png_bytes(root):
    return open(os.path.join(root, "0", sorted(os.listdir(os.path.join(root, "0")))[0]), "rb").read()


@pytest.fixture
def folder(tmp_path):
    """Digits 0-2, 8 PNGs each, 16x16."""
    return str(write_digits_folder(str(tmp_path / "images"), digits=range(3), size=16, per_class=8))


def run_ingestion(root, tmp_path, **kwargs):
    """ImageExampleGen alone in a real TFX pipeline (LocalDagRunner, Beam, SQLite metadata).
    Returns (report, {split: examples})."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner
    from tfx.orchestration.pipeline import Pipeline

    from lamina.pipeline.runs.summary import latest_run_outputs
    from lamina.pipeline.pipeline import sqlite_metadata_config
    from lamina.constants import SOURCE_PATH_KEY
    from tests.helpers import digits_spec

    spec = digits_spec(tmp_path)
    kwargs.setdefault("format", "image_folder")
    gen = ImageExampleGen(root=root, image_key="image", label_key="label",
                          output_config=__import__("lamina.pipeline.pipeline", fromlist=["x"]).split_config(spec, SOURCE_PATH_KEY),
                          **kwargs)
    pipeline = Pipeline(pipeline_name=spec.name, pipeline_root=spec.pipeline_root, components=[gen],
                        enable_cache=False, metadata_connection_config=sqlite_metadata_config(spec.metadata_path),
                        beam_pipeline_args=["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    os.makedirs(spec.run_dir, exist_ok=True)
    LocalDagRunner().run(pipeline)
    examples = latest_run_outputs(spec)[("ImageExampleGen", "examples")]
    splits = {}
    for split in ("train", "eval"):
        files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
        splits[split] = [tf.train.Example.FromString(r.numpy())
                         for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    return read_report(examples.uri), splits


def test_folder_listing_reports_every_problem(folder, tmp_path):
    open(os.path.join(folder, "1", "notes.txt"), "w").write("hello")
    open(os.path.join(folder, "README.md"), "w").write("about")
    os.makedirs(os.path.join(folder, "3"))
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(folder))
    os.symlink(outside, os.path.join(folder, "2", "link.png"))
    os.makedirs(os.path.join(folder, ".cache"))
    files, bad = list_image_folder(folder, EXT)
    assert len(files) == 24 and {f.label for f in files} == {"0", "1", "2"}
    assert all(f.relpath == f"{f.label}/{os.path.basename(f.path)}" for f in files)
    assert bad == [
        BadFile("1/notes.txt", "unsupported", "unsupported file extension '.txt'; expected one of: .png, .jpg, .jpeg"),
        BadFile("2/link.png", "outside_root", f"links to {outside}, outside the data root {folder}"),
        BadFile("3/", "empty_class", "class folder '3' has no images; add images or remove it"),
        BadFile("README.md", "unsupported", "a file directly in the data root; images go in one folder per class"),
    ]


def test_csv_listing_names_rows_and_rejects_escapes(folder, tmp_path):
    csv_path = os.path.join(folder, "labels.csv")
    first = sorted(os.listdir(os.path.join(folder, "0")))[0]
    (tmp_path / "secret.png").write_bytes(png_bytes(folder))
    with open(csv_path, "w") as f:
        f.write(f"image,label\n0/{first},zero\n../secret.png,one\n/etc/passwd,two\n0/missing.png,zero\n0/{first},\n")
    files, bad = list_image_csv(csv_path, "image", "label", EXT)
    assert [(f.relpath, f.label) for f in files] == [(f"0/{first}", "zero")]
    assert bad == [
        BadFile("../secret.png", "outside_root",
                f"labels.csv row 3: resolves to {tmp_path / 'secret.png'}, outside the data root {folder}"),
        BadFile("/etc/passwd", "outside_root", f"labels.csv row 4: resolves to /etc/passwd, outside the data root {folder}"),
        BadFile("0/missing.png", "missing", "labels.csv row 5: no such file"),
        BadFile("labels.csv row 6", "missing", f"0/{first}: empty 'label' column"),
    ]
    with open(csv_path, "w") as f:
        f.write("file,class\n")
    assert list_image_csv(csv_path, "image", "label", EXT) == ([], [BadFile(
        "labels.csv", "bad_csv", "missing column(s) 'image', 'label'; the header has 'file', 'class'")])


def test_image_bytes_are_checked_with_the_models_decoder(folder):
    good = png_bytes(folder)
    assert check_image_bytes(good) == ((16, 16), None)
    assert check_image_bytes(b"") == (None, ("empty", "the file is empty (0 bytes)"))
    assert check_image_bytes(b"hello, I am text") == (
        None, ("unsupported", "not a JPEG, PNG, GIF or BMP image (starts with b'hello, I')"))
    size, (problem, detail) = check_image_bytes(good[: len(good) - 20])
    assert size is None and problem == "corrupt"
    assert detail == f"PNG data cannot be decoded: Invalid PNG data, size {len(good) - 20}"


def test_an_image_bomb_is_a_bad_file_read_from_its_header(folder):
    """A PNG header declaring 20000x20000 pixels (the IDAT is a few bytes): 'too_large', never decoded."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    assert check_image_bytes(bomb) == (None, ("too_large", "the file is a 20000x20000 PNG (400,000,000 pixels); the "
                                                           "limit is 16,777,216 pixels (data.images.max_pixels)."))
    assert check_image_bytes(png_bytes(folder), max_pixels=255) == (
        None, ("too_large", "the file is a 16x16 PNG (256 pixels); the limit is 255 pixels (data.images.max_pixels)."))


@pytest.mark.parametrize("bad, total, policy, fraction, expected", [
    ([], 10, "skip", 0.05, None),
    ([BadFile("a", "corrupt", "")], 100, "skip", 0.05, None),
    ([BadFile("a", "corrupt", "")], 10, "skip", 0.05,
     "1 of 10 files are bad (10.0%), more than data.images.max_bad_fraction 5.0%."),
    ([BadFile("a", "corrupt", "")], 100, "fail", 0.05, "1 of 100 files are bad and data.images.bad_files is 'fail'."),
    ([BadFile("x/", "empty_class", "")], 100, "skip", 1.0, "1 problem(s) that always stop the run (empty_class)."),
    ([], 0, "skip", 0.05, "no image files found."),
])
def test_policy(bad, total, policy, fraction, expected):
    assert enforce_policy(bad, total, policy, fraction) == expected


@pytest.mark.e2e
def test_bad_files_within_the_limit_are_skipped_and_listed(folder, tmp_path):
    good = png_bytes(folder)
    with open(os.path.join(folder, "1", "truncated.png"), "wb") as f:
        f.write(good[:-20])
    with open(os.path.join(folder, "2", "text.jpg"), "w") as f:
        f.write("just some text")
    report, splits = run_ingestion(folder, tmp_path, max_bad_fraction=0.2)
    assert report["files"] == 26 and report["examples"] == 24 and report["bad"] == 2 and not report["stopped"]
    assert report["classes"] == {"0": 8, "1": 8, "2": 8}
    assert [(b["path"], b["problem"]) for b in report["bad_files"]] == [
        ("1/truncated.png", "corrupt"), ("2/text.jpg", "unsupported")]
    examples = splits["train"] + splits["eval"]
    assert len(examples) == 24 and splits["eval"]
    paths = {e.features.feature["source_path"].bytes_list.value[0].decode() for e in examples}
    assert "1/truncated.png" not in paths and len(paths) == 24
    one = next(e for e in examples if e.features.feature["source_path"].bytes_list.value[0] == b"0/" +
               sorted(os.listdir(os.path.join(folder, "0")))[0].encode())
    f = one.features.feature
    assert f["image"].bytes_list.value[0] == good and f["label"].bytes_list.value[0] == b"0"
    assert (f["image_height"].int64_list.value[0], f["image_width"].int64_list.value[0]) == (16, 16)


@pytest.mark.e2e
def test_too_many_bad_files_stop_the_run_with_the_list(folder, tmp_path):
    with open(os.path.join(folder, "1", "empty.png"), "wb"):
        pass
    with pytest.raises(BadInputFilesError) as info:
        run_ingestion(folder, tmp_path, bad_files="fail")
    e = info.value
    assert str(e).splitlines()[:2] == [
        "Image ingestion stopped the run: 1 of 25 files are bad and data.images.bad_files is 'fail'.",
        "  1/empty.png: empty: the file is empty (0 bytes)"]
    report = json.load(open(e.report_path))
    assert report["stopped"] and report["bad_files"] == [
        {"path": "1/empty.png", "problem": "empty", "detail": "the file is empty (0 bytes)"}]


@pytest.mark.e2e
def test_an_empty_class_or_an_escaping_path_stops_the_whole_run_before_training(folder, tmp_path):
    from lamina.pipeline.local_runner import run_pipeline
    from lamina.pipeline.runs.summary import latest_run_states
    from tests.helpers import digits_spec

    os.makedirs(os.path.join(folder, "7"))
    spec = digits_spec(tmp_path, data={"format": "image_folder", "path": folder, "label": "label",
                                       "images": {"max_bad_fraction": 1.0}})
    with pytest.raises(BadInputFilesError) as info:
        run_pipeline(spec)
    assert str(info.value).splitlines()[:2] == [
        "Image ingestion stopped the run: 1 problem(s) that always stop the run (empty_class).",
        "  7/: empty_class: class folder '7' has no images; add images or remove it"]
    assert latest_run_states(spec) == {"ImageExampleGen": "FAILED"}
    html = open(info.value.report).read()
    assert "Bad input files (1)" in html and "<code>7/</code>" in html


@pytest.mark.e2e
def test_csv_layout_reads_the_listed_files_with_their_labels(folder, tmp_path):
    rows = [(f"{d}/{name}", ["zero", "one", "two"][d]) for d in range(3)
            for name in sorted(os.listdir(os.path.join(folder, str(d))))[:5]]
    with open(os.path.join(folder, "labels.csv"), "w") as f:
        f.write("image,label\n" + "".join(f"{p},{label}\n" for p, label in rows) + "../outside.png,zero\n")
    (tmp_path / "outside.png").write_bytes(png_bytes(folder))
    with pytest.raises(BadInputFilesError, match="1 problem\\(s\\) that always stop the run \\(outside_root\\)"):
        run_ingestion(folder, tmp_path, format="image_csv", csv_file="labels.csv")
    with open(os.path.join(folder, "labels.csv"), "w") as f:
        f.write("image,label\n" + "".join(f"{p},{label}\n" for p, label in rows))
    report, splits = run_ingestion(folder, tmp_path, format="image_csv", csv_file="labels.csv")
    assert report["classes"] == {"one": 5, "two": 5, "zero": 5} and report["bad"] == 0
    got = {(e.features.feature["source_path"].bytes_list.value[0].decode(),
            e.features.feature["label"].bytes_list.value[0].decode()) for e in splits["train"] + splits["eval"]}
    assert got == set(rows)


def test_a_file_name_that_is_not_utf8_is_a_bad_file_shown_escaped(folder):
    with open(os.path.join(folder.encode(), b"1", b"caf\xe9.png"), "wb") as f:
        f.write(png_bytes(folder))
    os.makedirs(os.path.join(folder.encode(), b"\xffclass"))
    files, bad = list_image_folder(folder, EXT)
    assert len(files) == 24
    assert bad == [BadFile("1/caf\\xe9.png", "bad_name", "the file name is not valid UTF-8; rename the file"),
                   BadFile("\\xffclass", "bad_name", "the folder name is not valid UTF-8; rename the folder")]
    json.dumps([b.path for b in bad])  # the report can hold them
    assert enforce_policy(bad, 26, "skip", 0.1) is None
