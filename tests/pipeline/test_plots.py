"""The report's plots: SVG elements whose words are text a reader can find, drawn without touching the
caller's matplotlib settings."""

import xml.etree.ElementTree as ET

import matplotlib

from lamina.pipeline.runs import plots

SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: str):
    return [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_category_bars_label_each_value_with_text():
    before = matplotlib.rcParams["svg.fonttype"]
    svg = plots.category_bars([("Biscoe", 168), ("Dream", 124), ("Torgersen", 52)], "island")
    texts = _texts(svg)
    assert svg.startswith("<svg")
    assert {"Biscoe", "Dream", "Torgersen", "island", "examples"} <= set(texts)
    assert matplotlib.rcParams["svg.fonttype"] == before


def test_confusion_matrix_writes_class_names_and_counts_as_text():
    svg = plots.confusion_matrix([[50, 2, 0], [1, 20, 0], [0, 0, 40]], ["Adelie", "Chinstrap", "Gentoo"])
    texts = _texts(svg)
    assert {"Adelie", "Chinstrap", "Gentoo"} <= set(texts)
    assert {"50", "20", "40"} <= set(texts)
