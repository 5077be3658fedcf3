"""The `lamina` command: the parser, and the verbs that build and run pipelines (validate, init, run,
compile, submit, runs, report, demo). The serving verbs are in `lamina.pipeline.cli.serve`.

Every verb that takes a spec validates it before anything runs. Exit codes: 0 success,
1 the run stopped (anomalies, a model below its thresholds, a failed component or request),
2 a bad spec or bad arguments.
"""

import argparse
import logging
import os
import sys
import time
from typing import List, Optional

from lamina.pipeline.cli.serve import print_error, flag_bool, cmd_deploy_files, cmd_explain, cmd_predict, cmd_serve
from lamina.constants import (DEFAULT_GRPC_TARGET, DEFAULT_MAX_AUDIO_SECONDS, DEFAULT_MAX_IMAGE_PIXELS, DEFAULT_REST_URL, GRPC_PORT,
                              METADATA_FILE, REST_PORT, TENSORBOARD_PORT)
from lamina.spec import SpecError, load_spec


def cmd_validate(args) -> int:
    from lamina.cells import CsvInputError
    from lamina.pipeline.local_runner import prepare_spec

    spec = load_spec(args.spec)
    declared = len(spec.data.features or [])
    try:
        resolved = prepare_spec(spec, sys.stdout)
    except CsvInputError as e:
        print_error(f"{args.spec}: the spec is valid, but its data is not: {e}")
        return 1
    if spec.task == "forecast":
        fc = spec.forecast
        print(f"{args.spec}: valid. Pipeline {spec.name!r}, a forecast of {spec.data.label!r}: {fc.horizon} steps "
              f"ahead from {fc.lookback} back, {len(fc.covariates)} covariate(s).")
        return 0
    inferred = "" if spec.data.features is not None else f" ({len(resolved.data.features or [])} inferred)"
    print(f"{args.spec}: valid. Pipeline {spec.name!r}, label {spec.data.label!r}, "
          f"{declared} declared feature(s){inferred}, {resolved.task} head.")
    return 0


def cmd_init(args) -> int:
    """A commented starter spec for a CSV, an image folder or an audio folder."""
    from lamina.cells import CsvInputError
    from lamina.pipeline.cli.starter import InitError, write_starter_spec

    try:
        text_model = None if args.text_model == "none" else args.text_model
        text = write_starter_spec(args.data, args.output, label=args.label, name=args.name, force=args.force,
                                  text_model=text_model, stream=sys.stdout)
    except (InitError, CsvInputError) as e:
        print_error(str(e))
        return 2 if isinstance(e, InitError) else 1
    del text
    print(f"Wrote {args.output}. Check the roles in it, then: lamina run {args.output}")
    return 0


def cmd_run(args) -> int:
    spec = load_spec(args.spec)
    return _run(spec)


def _stopped_by_data(error: Exception) -> bool:
    """Whether `error` is an anomaly or bad-files stop. Their modules import TFX (seconds), so they
    are looked up only if the run got as far as importing them: a spec or data error found before
    is reported without that wait."""
    kinds = []
    for module, name in (("lamina.components.anomaly_gate", "DataAnomaliesError"),
                         ("lamina.components.image_example_gen", "BadInputFilesError")):
        if module in sys.modules:
            kinds.append(getattr(sys.modules[module], name))
    return bool(kinds) and isinstance(error, tuple(kinds))


def _run(spec) -> int:
    from lamina.cells import CsvInputError
    from lamina.pipeline.local_runner import run_pipeline
    from lamina.pipeline.runs.summary import ModelNotBlessedError, format_result

    try:
        result = run_pipeline(spec)
    except CsvInputError as e:
        print_error(f"The run stopped before it started: {e}")
        return 1
    except ModelNotBlessedError as e:
        print_error(str(e) + (f"\nRun report: {e.result.report}" if e.result.report else ""))
        return 1
    except Exception as e:  # noqa: BLE001 - anything else goes on up
        if not _stopped_by_data(e):
            raise
        print_error(str(e) + (f"\nRun report: {e.report}" if e.report else ""))
        return 1
    print(format_result(result), flush=True)
    return 0


def cmd_worker(args) -> int:
    """`lamina worker start|stop|status` (pipeline/cli/worker.py)."""
    import lamina.pipeline.cli.worker as worker

    if args.action == "serve":
        return worker.serve(main, args.idle_minutes, args.ready_fd)
    try:
        if args.action == "start":
            began = time.monotonic()
            state = worker.start(args.idle_minutes)
            if state["already"]:
                print(f"A Lamina worker already runs for this code and environment (pid {state['pid']}, "
                      f"{state['runs']} runs so far).")
            else:
                print(f"Lamina worker ready in {time.monotonic() - began:.1f} s (pid {state['pid']}): `lamina run` "
                      f"in this environment now starts without importing TensorFlow, TFX and Beam. It stops after "
                      f"{args.idle_minutes:g} idle minutes, or with `lamina worker stop`.")
            return 0
        state = worker.status() if args.action == "status" else worker.stop()
    except worker.WorkerError as e:
        print_error(str(e))
        return 1
    if state is None:
        print("No Lamina worker runs for this code and environment: `lamina run` imports its own modules "
              "(`lamina worker start` starts one).")
        return 0 if args.action == "stop" else 1
    if args.action == "stop":
        print(f"Stopped the Lamina worker (pid {state['pid']}) after {state['runs']} runs.")
    else:
        idle = state["idle_seconds"] / 60.0
        print(f"A Lamina worker runs (pid {state['pid']}, socket {state['socket']}): {state['runs']} runs so far, "
              f"{state['running']} running now; it stops after {idle:g} idle minutes.")
    return 0


def cmd_compile(args) -> int:
    """The spec's pipeline as a KFP v2 pipeline spec, for Kubeflow Pipelines 2.x or Vertex AI."""
    from lamina.pipeline.kubeflow_runner import compile_pipeline

    spec = load_spec(args.spec)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = compile_pipeline(spec, args.output)
    kf = spec.kubeflow
    print(f"{out}: KFP v2 pipeline spec for {spec.name!r}; image {kf.image}, pipeline root {kf.pipeline_root}, "
          f"Beam {kf.beam.runner}" + (f", schedule {kf.schedule!r}" if kf.schedule else "") + ".")
    return 0


def cmd_submit(args) -> int:
    """Uploads a compiled pipeline to Kubeflow Pipelines and runs it, or schedules it."""
    from lamina.pipeline.kubeflow_submit import SubmitError, submit, wait_for_run

    schedule, service_account = args.schedule, args.service_account
    if args.spec:
        spec = load_spec(args.spec)
        if spec.kubeflow:
            schedule = schedule if schedule is not None else spec.kubeflow.schedule
            service_account = service_account or spec.kubeflow.service_account
    if not os.path.isfile(args.package):
        print_error(f"{args.package}: no such file; write it with `lamina compile SPEC -o {args.package}`.")
        return 2
    params = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print_error(f"--param expects KEY=VALUE. Received: {item!r}")
            return 2
        params[key] = value
    if args.wait and schedule:
        print_error("--wait follows one run; a recurring run (--schedule) has none to wait for.")
        return 2
    try:
        result = submit(args.package, args.host, schedule=schedule, experiment=args.experiment,
                        run_name=args.run_name, params=params, service_account=service_account)
    except SubmitError as e:
        print_error(str(e))
        return 1
    what = "new pipeline" if result.new_pipeline else f"new version {result.version_id}"
    if result.recurring_run_id:
        print(f"Uploaded {args.package} ({what} of pipeline {result.pipeline_id}); recurring run "
              f"{result.recurring_run_id} on {schedule!r}: {result.url}")
    else:
        print(f"Uploaded {args.package} ({what} of pipeline {result.pipeline_id}); run {result.run_id}: {result.url}",
              flush=True)
    if args.wait:
        try:
            state = wait_for_run(args.host, result.run_id, poll_seconds=args.poll_seconds,
                                 on_state=lambda s, t: print(f"  [{t:6.0f}s] run {result.run_id}: {s}", flush=True))
        except SubmitError as e:
            print_error(str(e))
            return 1
        if state != "SUCCEEDED":
            print_error(f"run {result.run_id} ended {state}: {result.url}")
            return 1
    return 0


def _tensorboard(args) -> int:
    from lamina.pipeline.cli.board import cmd_tensorboard

    return cmd_tensorboard(args)


def cmd_runs(args) -> int:
    """Lists the runs under a run root from ML Metadata, or shows one run's lineage (`runs show`)."""
    from lamina.pipeline.runs.history import find_run, find_version, format_lineage, format_runs, list_runs, run_lineage

    words = list(args.words)
    if words[:1] == ["show"]:
        try:
            if args.version is not None:
                if len(words) != 1:
                    print_error("usage: lamina runs show --version N MODEL_DIR [--root ROOT]")
                    return 2
                version, model_dir = args.version
                path, run_id = find_version(args.root, model_dir, version)
            else:
                if len(words) != 2:
                    print_error("usage: lamina runs show RUN [--root ROOT]  (RUN: the run column of `lamina runs`)")
                    return 2
                run_id = words[1]
                path = find_run(args.root, run_id)
            print(format_lineage(run_lineage(path, run_id)))
        except KeyError as e:
            print_error(str(e).strip("'\""))
            return 1
        return 0
    if len(words) > 1:
        print_error(f"expected one run root, or `show RUN`. Received: {' '.join(words)}")
        return 2
    args.root = words[0] if words else args.root
    runs = list_runs(args.root)
    if not runs:
        print_error(f"{args.root}: no runs found (expected <root>/<pipeline>/{METADATA_FILE}, as `lamina run` writes).")
        return 1
    print(format_runs(runs))
    return 0


def cmd_report(args) -> int:
    """Writes a run's report again from ML Metadata: `lamina report RUN_DIR`."""
    from lamina.pipeline.runs.summary import rewrite_report

    try:
        path = rewrite_report(args.run_dir)
    except FileNotFoundError as e:
        print_error(str(e))
        return 1
    print(path)
    return 0


def cmd_demo(args) -> int:
    """A bundled demo: its pipeline, then a gRPC server on a free loopback port and a few queries."""
    from lamina.pipeline.cli.demos import prepare_demo, query_demo

    demo = "digits" if args.images else "text" if args.text else "penguins"
    spec = load_spec(prepare_demo(demo, args.dir))
    code = _run(spec)
    if code:
        return code
    query_demo(demo, spec)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lamina", description="A YAML spec to a served TFX model.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a spec and exit")
    p.add_argument("spec")
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("init", help="write a commented starter spec.yaml for a CSV, an image folder or an audio folder")
    p.add_argument("data", help="a CSV file, or a folder with one subfolder of images per class")
    p.add_argument("--label", help="the CSV column to predict")
    p.add_argument("-o", "--output", default="spec.yaml")
    p.add_argument("--name", help="the pipeline and serving name (default: from the file name)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--text-model", default="auto",
                   help="free-text columns: a BERT-family model folder (Hugging Face format) to fine-tune; 'auto' "
                        "(default): the one in Lamina's model cache (`make minilm`), if any; 'none': a small "
                        "Transformer from scratch")
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser("run", help="run the pipeline locally (Beam DirectRunner, SQLite metadata)")
    p.add_argument("spec")
    p.add_argument("-v", "--verbose", action="store_true", help="show TFX and Beam logs")
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("worker", help="start, stop or ask a process that keeps TensorFlow, TFX and Beam imported "
                                      "for the next `lamina run`s")
    p.add_argument("action", choices=["start", "stop", "status", "serve"],
                   help="serve: be the worker, in this process (what start runs, detached)")
    p.add_argument("--idle-minutes", type=float, default=30.0, help="stop after this long without a run (start)")
    p.add_argument("--ready-fd", type=int, help="serve: write a byte to this descriptor once listening")
    p.set_defaults(fn=cmd_worker)

    p = sub.add_parser("compile", help="compile the pipeline for Kubeflow Pipelines 2.x / Vertex AI")
    p.add_argument("spec")
    p.add_argument("--target", choices=["kubeflow"], default="kubeflow")
    p.add_argument("-o", "--output", default="pipeline.json", help="the KFP v2 pipeline spec to write (JSON)")
    p.set_defaults(fn=cmd_compile)

    p = sub.add_parser("submit", help="upload a compiled pipeline to Kubeflow Pipelines and run or schedule it")
    p.add_argument("package", help="the file `lamina compile` wrote")
    p.add_argument("--host", required=True, help="the KFP API, e.g. http://localhost:8080 (port-forwarded)")
    p.add_argument("--spec", help="take the schedule (kubeflow.schedule) from this spec")
    p.add_argument("--schedule", help="a cron expression: create a recurring run instead of one run")
    p.add_argument("--experiment", default="lamina")
    p.add_argument("--run-name", help="the run's (or recurring run's) name (default: <pipeline>-<UTC time>)")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="a runtime parameter (repeat for more)")
    p.add_argument("--service-account", help="the Kubernetes service account the pods run as "
                                             "(default: the spec's kubeflow.service_account)")
    p.add_argument("--wait", action="store_true", help="follow the run until it ends; exit 1 unless it succeeds")
    p.add_argument("--poll-seconds", type=float, default=10.0, help="with --wait: how often to ask")
    p.set_defaults(fn=cmd_submit)

    p = sub.add_parser("runs", help="list the runs under a run root: when, outcome, key metric, pushed version")
    p.add_argument("words", nargs="*", metavar="ROOT | show RUN | show --version N MODEL_DIR",
                   help="a run root (runner.root, default lamina_runs) or one run directory to list; `show RUN` "
                        "for one run's lineage; `show --version N MODEL_DIR` for the run that pushed a version")
    p.add_argument("--root", default="lamina_runs", help="with show: where the runs are")
    p.add_argument("--version", nargs=2, metavar=("N", "MODEL_DIR"),
                   help="with show: the run that pushed MODEL_DIR/N (a served version folder)")
    p.set_defaults(fn=cmd_runs)

    p = sub.add_parser("tensorboard", help="TensorBoard on the latest run's logs (curves, histograms, projector, "
                                           "HParams), on loopback")
    p.add_argument("spec", nargs="?", default="spec.yaml")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=TENSORBOARD_PORT, help="port (0: any free port)")
    p.set_defaults(fn=_tensorboard)

    p = sub.add_parser("explain", help="explain inputs against a pushed model: Grad-CAM for images, Integrated "
                                         "Gradients for rows and texts")
    p.add_argument("input", nargs="*", help="image files, or one CSV/JSON/JSONL file of rows (or -)")
    p.add_argument("--model", required=True, help="a pushed version folder: <push dir>/<name>/<version>")
    p.add_argument("--text", action="append", metavar="STRING", help="a text to explain (repeat for several)")
    p.add_argument("--feature", help="the image or text feature the inputs are for, when the model has several")
    p.add_argument("--out", default="explanations", help="folder for the PNG/HTML/JSON files (default: explanations)")
    p.add_argument("--steps", type=int, default=128, help="Integrated Gradients' integration steps")
    p.add_argument("--baseline", choices=["zeros", "mean"], default="zeros")
    p.set_defaults(fn=cmd_explain)

    p = sub.add_parser("report", help="write a run's HTML report again (report.html in the run directory)")
    p.add_argument("run_dir", help="the run directory: <runner.root>/<name>, holding " + METADATA_FILE)
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser("deploy-files", help="write TF Serving deployment files for a pushed model directory")
    p.add_argument("--model-dir", required=True, help="folder of <model name>/<version>/ SavedModels")
    p.add_argument("-o", "--output", default="deploy", help="folder to write the files to")
    p.add_argument("--gpu", action="store_true", help="tensorflow/serving:<version>-gpu and a GPU request")
    p.add_argument("--serving-version", default="2.16.1")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout-micros", type=int, default=2000)
    p.add_argument("--num-batch-threads", type=int, default=4)
    p.set_defaults(fn=cmd_deploy_files)

    p = sub.add_parser("serve", help="serve pushed models over TF Serving's gRPC and REST protocols",
                       description="TF Serving's own flags are accepted too (--model_config_file, --rest_api_port, "
                                   "--enable_batching, --batching_parameters_file, --model_name, --model_base_path, "
                                   "--model_config_file_poll_wait_seconds), with TF Serving's meanings, so scripts "
                                   "written for tensorflow_model_server run unchanged.")
    p.add_argument("--model-dir", help="folder of <model name>/<version>/ SavedModels (newest version of each)")
    p.add_argument("--model-config-file", "--model_config_file",
                   help="TF Serving's models.config (model_config_list) instead")
    p.add_argument("--model-config-file-poll-wait-seconds", "--model_config_file_poll_wait_seconds", type=float,
                   default=0, help="re-read --model-config-file this often, adding and removing models (0: never)")
    p.add_argument("--model-name", "--model_name", help="with --model-base-path: serve one model by this name")
    p.add_argument("--model-base-path", "--model_base_path",
                   help="one model's folder of <version>/ SavedModels (TF Serving's single-model flags)")
    p.add_argument("--port", type=int, default=GRPC_PORT, help="gRPC port (0: any free port)")
    p.add_argument("--rest-port", type=int, default=REST_PORT, help="REST and metrics port (0: any free; -1: no REST)")
    p.add_argument("--rest_api_port", type=int, help="TF Serving's spelling: the REST port, 0 for no REST")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    p.add_argument("--max-request-bytes", type=int, default=16 * 1024 * 1024,
                   help="largest request body (gRPC message or REST body)")
    p.add_argument("--max-request-elements", type=int, default=16 * 1024 * 1024,
                   help="tensor elements one request's inputs may declare, together")
    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                   help="pixels per encoded image, read from its header before it is decoded")
    p.add_argument("--max-audio-seconds", type=float, default=DEFAULT_MAX_AUDIO_SECONDS,
                   help="seconds per WAV file, read from its header before it is decoded")
    p.add_argument("--rest-max-connections", type=int, default=512,
                   help="open REST connections; past it a new one gets 503")
    p.add_argument("--rest-threads", type=int, default=16, help="threads answering REST requests")
    p.add_argument("--allow-config-reload", action="store_true",
                   help="accept HandleReloadConfigRequest: from loopback, or with --admin-token-file under mTLS")
    p.add_argument("--admin-token-file", help="with --tls-client-ca: the token admin calls must send")
    p.add_argument("--enable-batching", "--enable_batching", type=flag_bool, nargs="?", const=True, default=False,
                   help="merge concurrent requests into one model call (also --enable_batching=true)")
    p.add_argument("--batching-parameters-file", "--batching_parameters_file",
                   help="TF Serving's batching.config (implies batching)")
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--batch-timeout-micros", type=int, default=2000)
    p.add_argument("--num-batch-threads", type=int, default=4)
    p.add_argument("--tls-cert", help="PEM certificate: serve gRPC and REST over TLS")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (mutual TLS, both ports)")
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("predict", help="send rows, image or audio files to a TF Serving-protocol server")
    p.add_argument("input", nargs="*",
                   help="CSV with a header, JSON array, JSON Lines, - for stdin; or image files (.png, .jpg, ...); "
                        "or audio files (.wav, .flac, .ogg: sent as WAV)")
    p.add_argument("--text", action="append", metavar="STRING",
                   help="a raw string for a text model (repeat for a batch); the model tokenizes it")
    p.add_argument("--feature", help="with --text: the text feature's name, when the model has several string inputs")
    p.add_argument("--target", default=DEFAULT_GRPC_TARGET)
    p.add_argument("--model", help="the served model's name (not with --tflite)")
    p.add_argument("--tflite", metavar="FILE",
                   help="answer with this TFLite file through the interpreter, in this process (its "
                        "input_spec.json beside it says how rows become its inputs)")
    p.add_argument("--version", type=int)
    p.add_argument("--classify", action="store_true", help="use the Classify API instead of Predict")
    p.add_argument("--raw", action="store_true", help="Predict on the serving_raw signature (one tensor per feature)")
    p.add_argument("--rest", metavar="URL", help=f"use the REST API at URL ({DEFAULT_REST_URL}) instead of gRPC")
    p.add_argument("--tls-ca", help="PEM CA certificate to trust: talk TLS to a server started with --tls-cert")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (the deadline)")
    p.add_argument("--spec", metavar="SPEC",
                   help="a forecast's spec: the input is a table of recent history (a row per series and step; "
                        "rows after the last target value carry the known-future covariates), and each series' "
                        "next horizon is printed")
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("demo", help="run the bundled penguins demo through to gRPC predictions")
    p.add_argument("--dir", help="work folder (default: ./lamina_demo/penguins, ./lamina_demo/digits with "
                                 "--images, ./lamina_demo/text with --text)")
    p.add_argument("--images", action="store_true", help="the digits image demo instead: PNG folders to a ResNet")
    p.add_argument("--text", action="store_true", help="the text demo instead: MiniLM fine-tuned on topics.csv")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(fn=cmd_demo)
    return parser


def quiet_logs(verbose: bool = False) -> None:
    """TFX logs whole protos at INFO; people see our progress lines instead. The CLI's alone: the Python
    API (`lamina.run_pipeline`) leaves the caller's warnings and logging as they are.

    With `verbose`, TFX's, Beam's and TensorFlow's own logs go to stderr as usual.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1" if verbose else "3")
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO if verbose else logging.WARNING)
    absl_logger.propagate = verbose
    if not verbose and not any(isinstance(h, logging.NullHandler) for h in absl_logger.handlers):
        absl_logger.addHandler(logging.NullHandler())  # else Python's last-resort handler prints TFX's warnings
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore")
        for name in ("tensorflow", "apache_beam", "tensorflow_transform", "tensorflow_model_analysis"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            from absl import logging as absl_logging

            absl_logger.removeHandler(absl_logging.get_absl_handler())
        except ImportError:
            pass


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None and args.command == "run" and not args.verbose:  # typed at a shell: a worker may run it
        from lamina.pipeline.cli.worker import run_in_worker

        code = run_in_worker(sys.argv[1:])
        if code is not None:
            return code
    import warnings

    # google-api-core warns on every start that Python 3.10 is old; TFX 1.16 needs 3.10.
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.command in ("run", "demo"):
        quiet_logs(args.verbose)
    elif args.command != "worker":  # the worker's key holds the environment as the shell gave it
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return args.fn(args)
    except SpecError as e:
        print_error(str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
