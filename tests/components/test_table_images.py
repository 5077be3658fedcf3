"""Image columns in a table: paths relative to its folder become the files' bytes; a path that leaves
the folder stops the run; a missing or broken file is a bad row, named by file, line and column."""

import os

import pytest
import tensorflow as tf

from lamina.components.table_example_gen import record_to_example, wire_types
from lamina.components.table_source import CsvInputError, TablePolicy, iter_records, scan_table


def _png(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(tf.zeros([4, 4, 3], tf.uint8)))


def _policy(root, **kw):
    return TablePolicy(label="y", images=("Photo",), image_root=str(root), **kw)


def test_image_paths_become_the_files_bytes(tmp_path):
    _png(str(tmp_path / "img" / "a b.png"))
    _png(str(tmp_path / "img" / "c.png"))
    table = tmp_path / "t.csv"
    table.write_text("\ufeffPhoto,Caption,y\nimg/a b.png,a cat,1\n img/c.png ,a dog,0\n", encoding="utf-8")
    policy = _policy(tmp_path)
    scan = scan_table(str(table), policy)
    types = wire_types([scan], {"Photo": "image", "Caption": "text"}, "y", "classification", [])
    assert types["Photo"] == "image_file"
    examples = [record_to_example(r, types, image_root=str(tmp_path))
                for _, r in iter_records(str(table), scan.names, "y", policy=policy)]
    data = [e.features.feature["Photo"].bytes_list.value[0] for e in examples]
    assert data[0] == open(tmp_path / "img" / "a b.png", "rb").read() and data[1][:4] == b"\x89PNG"


def test_a_path_outside_the_folder_stops_the_run(tmp_path):
    _png(str(tmp_path / "secret.png"))
    (tmp_path / "data").mkdir()
    table = tmp_path / "data" / "t.csv"
    table.write_text("Photo,y\n../secret.png,1\n")
    with pytest.raises(CsvInputError) as info:
        scan_table(str(table), _policy(tmp_path / "data"))
    assert str(info.value) == (f"{table}, line 2, column 'Photo': image path '../secret.png' resolves to "
                               f"{tmp_path / 'secret.png'}, outside the data root {tmp_path / 'data'}; image paths "
                               f"are relative to the table's folder and stay inside it.")


def test_missing_and_broken_images_are_bad_rows(tmp_path):
    _png(str(tmp_path / "ok.png"))
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    table = tmp_path / "t.csv"
    table.write_text("Photo,y\nok.png,1\nnope.png,0\nbroken.png,1\n,0\n")
    with pytest.raises(CsvInputError) as info:
        scan_table(str(table), _policy(tmp_path))
    assert str(info.value) == (
        f"{table}: 3 row(s) cannot be read: line 3: image column 'Photo': nope.png: no such "
        f"file; line 4: image column 'Photo': broken.png: not a JPEG, PNG, GIF or BMP image; line 5: image column "
        f"'Photo': no image path (a blank cell). Fix them, or set data.bad_rows: skip to leave such rows out.")
    policy = _policy(tmp_path, bad_rows="skip", max_bad_rows=0.8)
    scan = scan_table(str(table), policy)
    assert [r["Photo"] for _, r in iter_records(str(table), scan.names, "y", policy=policy)] == ["ok.png"]
