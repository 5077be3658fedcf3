"""The names and numbers more than one room uses: one home for each, the standard library only.

The spec, ingestion, the export, the Pusher, the server, the clients and the CLI all read these; none
of them writes its own copy. `tests/test_import_structure.py` keeps this module free of Lamina's
other modules.
"""

import os

# -- Serving: TF Serving's ports, signatures, methods and files ---------------------------------

# TF Serving's default ports; `lamina serve` listens on loopback unless told otherwise.
GRPC_PORT = 8500
REST_PORT = 8501
LOOPBACK = "127.0.0.1"
DEFAULT_GRPC_TARGET = f"{LOOPBACK}:{GRPC_PORT}"
DEFAULT_REST_URL = f"http://{LOOPBACK}:{REST_PORT}"
# TensorBoard's default port; `lamina tensorboard` serves a run's logs there, on loopback.
TENSORBOARD_PORT = 6006

# Signature keys. `serving_default` is TF Serving's default; `serving_raw` is Lamina's
# one-tensor-per-feature signature (lamina.models.export).
DEFAULT_SIGNATURE = "serving_default"
RAW_SIGNATURE = "serving_raw"

# SignatureDef method names TF Serving dispatches Predict, Classify and Regress by.
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
API_OF_METHOD = {CLASSIFY_METHOD: "Classify", REGRESS_METHOD: "Regress"}

# Warmup requests inside a SavedModel version, and TF Serving's cap on how many are replayed.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000

# TF Serving's default Prometheus path (monitoring.config), on the REST port.
METRICS_PATH = "/monitoring/prometheus/metrics"

# -- Request and connection bounds (lamina serve's defaults; each has a flag) -------------------

DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
# Elements the input tensors of one request may declare, together (64 MB as float32).
DEFAULT_MAX_REQUEST_ELEMENTS = 16 * 1024 * 1024
DEFAULT_MAX_CONNECTIONS = 512  # open REST connections; past it, 503 and close
DEFAULT_MAX_HEAD_BYTES = 64 * 1024  # an HTTP request line and its headers
# Pixels an encoded image may declare in its header, at ingest and in `lamina serve`: far above what
# the image encoders resize to, far below a decompression bomb.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
# Seconds a WAV file may declare in its header, at ingest and in `lamina serve`: checked before any
# sample is read, so a small file claiming hours is refused without allocating them.
DEFAULT_MAX_AUDIO_SECONDS = 600.0

# -- Files and formats ---------------------------------------------------------------------------

# A run's ML Metadata store, under <runner.root>/<name>/.
METADATA_FILE = "metadata.sqlite"

TABLE_FORMATS = ("csv", "jsonl", "parquet", "tfrecord")
IMAGE_FORMATS = ("image_folder", "image_csv")
AUDIO_FORMATS = ("audio_folder",)
# File endings that say a table's format when the spec (or `lamina predict`) does not; anything else
# is read as CSV. The one table every reader of a user's file looks the format up in.
FORMAT_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet", ".tfrecord": "tfrecord",
                     ".tfrecords": "tfrecord", ".tfrecord.gz": "tfrecord", ".tfrecords.gz": "tfrecord"}
IMAGE_EXTENSIONS = [".png", ".jpg", ".jpeg", ".gif", ".bmp"]
# Audio files ingestion and `lamina predict` take; all but .wav are turned into WAV by soundfile.
AUDIO_EXTENSIONS = [".wav", ".flac", ".ogg", ".oga", ".opus"]


def table_format_of(path: str, default: str = "csv") -> str:
    """The table format a file's ending names (the longest ending that matches), else `default`.

    >>> table_format_of("history.parquet"), table_format_of("x.tfrecords.gz"), table_format_of("a.csv")
    ('parquet', 'tfrecord', 'csv')
    """
    lower = path.lower()
    for ending in sorted(FORMAT_EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ending):
            return FORMAT_EXTENSIONS[ending]
    return default


# -- Pipeline: component ids and the keys custom components write -------------------------------

# The table ExampleGen's component id per format (the names TFX's own ExampleGens go by).
EXAMPLE_GEN_IDS = {"csv": "CsvExampleGen", "jsonl": "JsonExampleGen", "parquet": "ParquetExampleGen",
                   "tfrecord": "TFRecordExampleGen"}
# The column ImageExampleGen adds to every example: the image's path relative to the data root.
SOURCE_PATH_KEY = "source_path"
# The keys ForecastExampleGen writes beside a window's features: the horizon's targets, the rolling
# origin a window belongs to, and its fold.
HORIZON_KEY = "horizon_target"
ORIGIN_KEY = "forecast_origin"
FOLD_KEY = "forecast_fold"
# The other components' ids (TFX's default: the class name), as the pipeline sets them and the run
# readers, the report, the spec's resource keys and the checks look them up.
STATISTICS_GEN = "StatisticsGen"
SCHEMA_GEN = "SchemaGen"
EXAMPLE_VALIDATOR = "ExampleValidator"
ANOMALY_GATE = "AnomalyGate"
TRANSFORM = "Transform"
TUNER = "Tuner"
TRAINER = "Trainer"
BASELINES = "Baselines"
EVALUATION_SCHEMA = "EvaluationSchema"
EVALUATOR = "Evaluator"
PUSH_GATE = "PushGate"
EXPLAINER = "Explainer"
TFLITE_EXPORTER = "TFLiteExporter"
PUSHER = "Pusher"
BULK_INFERRER = "BulkInferrer"
IMAGE_EXAMPLE_GEN = "ImageExampleGen"
FORECAST_EXAMPLE_GEN = "ForecastExampleGen"
FORECAST_EVALUATOR = "ForecastEvaluator"

# The DirectRunner's pickler, locally and on Kubeflow, unless the Beam arguments name one: Beam pickles every
# DoFn when it turns a pipeline into its runner API proto. dill (Beam's default) resets its logger's level on
# every call, which clears the cache of every logger in the process; cloudpickle gives the same DoFns back,
# faster (docs/benchmarks.md, "Beam's pickler and DoFn introspection").
BEAM_PICKLER_FLAG = "--pickle_library=cloudpickle"
