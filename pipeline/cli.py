"""The `lamina` command: validate, run, compile, submit, serve, predict, demo.

Every verb that takes a spec validates it before anything runs. Exit codes: 0 success,
1 the run stopped (anomalies, a model below its thresholds, a failed component or request),
2 a bad spec or bad arguments.
"""

import argparse
import json
import os
import sys
from typing import List, Optional

from lamina.pipeline.spec import DEFAULT_MAX_IMAGE_PIXELS, SpecError, load_spec


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_validate(args) -> int:
    from lamina.components.table_cells import CsvInputError
    from lamina.pipeline.local_runner import prepare_spec

    spec = load_spec(args.spec)
    declared = len(spec.data.features or [])
    try:
        resolved = prepare_spec(spec, sys.stdout)
    except CsvInputError as e:
        _err(f"{args.spec}: the spec is valid, but its data is not: {e}")
        return 1
    inferred = "" if spec.data.features is not None else f" ({len(resolved.data.features or [])} inferred)"
    print(f"{args.spec}: valid. Pipeline {spec.name!r}, label {spec.data.label!r}, "
          f"{declared} declared feature(s){inferred}, {resolved.task} head.")
    return 0


def cmd_init(args) -> int:
    """A commented starter spec for a CSV or an image folder."""
    from lamina.components.table_cells import CsvInputError
    from lamina.pipeline.starter import InitError, write_starter_spec

    try:
        text_model = None if args.text_model == "none" else args.text_model
        text = write_starter_spec(args.data, args.output, label=args.label, name=args.name, force=args.force,
                                  text_model=text_model)
    except (InitError, CsvInputError) as e:
        _err(str(e))
        return 2 if isinstance(e, InitError) else 1
    del text
    print(f"Wrote {args.output}. Check the roles in it, then: lamina run {args.output}")
    return 0


def cmd_run(args) -> int:
    spec = load_spec(args.spec)
    return _run(spec, args.verbose)


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


def _run(spec, verbose: bool) -> int:
    from lamina.components.table_cells import CsvInputError
    from lamina.pipeline.local_runner import run_pipeline
    from lamina.pipeline.results import ModelNotBlessedError, format_result

    try:
        result = run_pipeline(spec, verbose=verbose)
    except CsvInputError as e:
        _err(f"The run stopped before it started: {e}")
        return 1
    except ModelNotBlessedError as e:
        _err(str(e) + (f"\nRun report: {e.result.report}" if e.result.report else ""))
        return 1
    except Exception as e:  # noqa: BLE001 - anything else goes on up
        if not _stopped_by_data(e):
            raise
        _err(str(e) + (f"\nRun report: {e.report}" if e.report else ""))
        return 1
    print(format_result(result), flush=True)
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
        _err(f"{args.package}: no such file; write it with `lamina compile SPEC -o {args.package}`.")
        return 2
    params = {}
    for item in args.param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _err(f"--param expects KEY=VALUE. Received: {item!r}")
            return 2
        params[key] = value
    if args.wait and schedule:
        _err("--wait follows one run; a recurring run (--schedule) has none to wait for.")
        return 2
    try:
        result = submit(args.package, args.host, schedule=schedule, experiment=args.experiment,
                        run_name=args.run_name, params=params, service_account=service_account)
    except SubmitError as e:
        _err(str(e))
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
            _err(str(e))
            return 1
        if state != "SUCCEEDED":
            _err(f"run {result.run_id} ended {state}: {result.url}")
            return 1
    return 0


def cmd_deploy_files(args) -> int:
    """TF Serving's deployment files (models.config, batching, monitoring, compose, Kubernetes)."""
    from lamina.serving.deploy import DeploySettings, write_deploy_files

    settings = DeploySettings(serving_version=args.serving_version, gpu=args.gpu, max_batch_size=args.max_batch_size,
                              batch_timeout_micros=args.batch_timeout_micros,
                              num_batch_threads=args.num_batch_threads)
    try:
        written = write_deploy_files(args.model_dir, args.output, settings)
    except (OSError, ValueError) as e:
        _err(str(e))
        return 2
    for path in written:
        print(path)
    return 0


def _flag_bool(value: str) -> bool:
    """A TF Serving boolean flag's value: --enable_batching=true, =false (also 1/0)."""
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false. Received: {value!r}")


def single_model_config(name: str, base_path: str) -> str:
    """A models.config serving `base_path` as `name` (TF Serving's --model_name/--model_base_path), in a temp file."""
    import atexit
    import tempfile

    from lamina import storage

    base = storage.absolute(base_path)
    fd, path = tempfile.mkstemp(prefix="lamina-models-", suffix=".config")
    atexit.register(lambda: os.path.exists(path) and os.remove(path))
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(f'model_config_list {{\n  config {{\n    name: {json.dumps(name)}\n    base_path: {json.dumps(base)}\n'
                f'    model_platform: "tensorflow"\n  }}\n}}\n')
    return path


def cmd_runs(args) -> int:
    """Lists the runs under a run root from ML Metadata, or shows one run's lineage (`runs show`)."""
    from lamina.pipeline.runs import find_run, find_version, format_lineage, format_runs, list_runs, run_lineage

    words = list(args.words)
    if words[:1] == ["show"]:
        try:
            if args.version is not None:
                if len(words) != 1:
                    _err("usage: lamina runs show --version N MODEL_DIR [--root ROOT]")
                    return 2
                version, model_dir = args.version
                path, run_id = find_version(args.root, model_dir, version)
            else:
                if len(words) != 2:
                    _err("usage: lamina runs show RUN [--root ROOT]  (RUN: the run column of `lamina runs`)")
                    return 2
                run_id = words[1]
                path = find_run(args.root, run_id)
            print(format_lineage(run_lineage(path, run_id)))
        except KeyError as e:
            _err(str(e).strip("'\""))
            return 1
        return 0
    if len(words) > 1:
        _err(f"expected one run root, or `show RUN`. Received: {' '.join(words)}")
        return 2
    args.root = words[0] if words else args.root
    runs = list_runs(args.root)
    if not runs:
        _err(f"{args.root}: no runs found (expected <root>/<pipeline>/metadata.sqlite, as `lamina run` writes).")
        return 1
    print(format_runs(runs))
    return 0


def cmd_serve(args) -> int:
    import logging

    from lamina import storage
    from lamina.serving.batching import BatchingParameters, read_batching_config
    from lamina.serving.http_server import HttpLimits
    from lamina.serving.inference import InputLimits
    from lamina.serving.registry import ConfigError
    from lamina.serving.server import LaminaServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sources = [s for s in (args.model_config_file, args.model_dir, args.model_base_path) if s]
    if len(sources) != 1:
        _err("give one of --model-dir (a folder of pushed models), --model-config-file (TF Serving's "
             "models.config), or --model-base-path with --model-name (one model).")
        return 2
    source = sources[0]
    if args.model_base_path:
        source = single_model_config(args.model_name or "default", args.model_base_path)
    rest_port = args.rest_port if args.rest_api_port is None else (args.rest_api_port or -1)
    try:
        batching = None
        if args.batching_parameters_file:
            batching = read_batching_config(args.batching_parameters_file)
        elif args.enable_batching:
            batching = BatchingParameters(args.max_batch_size, args.batch_timeout_micros, args.num_batch_threads)
        admin_token = None
        if args.admin_token_file:
            with open(args.admin_token_file, encoding="utf-8") as f:
                admin_token = f.read().strip()
            if not admin_token:
                raise ValueError(f"{args.admin_token_file}: the admin token file is empty.")
        rest_limits = HttpLimits(max_connections=args.rest_max_connections, worker_threads=args.rest_threads,
                                 max_body_bytes=args.max_request_bytes)
        server = LaminaServer(source, port=args.port, host=args.host,
                              rest_port=None if rest_port < 0 else rest_port,
                              config_poll_seconds=args.model_config_file_poll_wait_seconds,
                              poll_seconds=args.poll_seconds, max_request_bytes=args.max_request_bytes,
                              batching=batching, tls_cert=args.tls_cert, tls_key=args.tls_key,
                              tls_client_ca=args.tls_client_ca,
                              input_limits=InputLimits(args.max_request_elements, args.max_image_pixels),
                              rest_limits=rest_limits, allow_config_reload=args.allow_config_reload,
                              admin_token=admin_token).start()
    except (ConfigError, ValueError, OSError) as e:
        _err(str(e))
        return 2
    server.catch_signals()  # before the line below: whoever reads it may signal at once
    rest = f", REST on {server.rest_url}" if server.rest else ""
    shown = f"{args.model_base_path} as {args.model_name or 'default'}" if args.model_base_path else source
    print(f"Serving {storage.absolute(shown)}: gRPC on {server.target}{rest} "
          f"(models: {', '.join(server.registry.names()) or 'none yet'}"
          f"{'; batching on' if batching else ''}). Ctrl-C or SIGTERM to stop.", flush=True)
    server.wait()
    print(f"Server stopped after {server.answered} requests; none left in flight.", flush=True)
    return 0


def cmd_report(args) -> int:
    """Writes a run's report again from ML Metadata: `lamina report RUN_DIR`."""
    from lamina.pipeline.results import rewrite_report

    try:
        path = rewrite_report(args.run_dir)
    except FileNotFoundError as e:
        _err(str(e))
        return 1
    print(path)
    return 0


def cmd_explain(args) -> int:
    """Explains inputs against a pushed model: image files (Grad-CAM), JSON/CSV rows or --text (Integrated Gradients)."""
    import tensorflow as tf

    from lamina.models.explain import EXPLANATIONS_FILE, TEXT_FILE, explain_pushed, top_attributions
    from lamina.serving.client import RowError, is_image_path, read_rows

    images = [p for p in args.input if is_image_path(p)]
    saved_model = os.path.join(args.model, "saved_model.pb")
    if not tf.io.gfile.exists(saved_model):
        _err(f"{args.model}: no saved_model.pb; --model takes a pushed version folder (<push dir>/<name>/<version>)")
        return 2
    try:
        if args.text is not None:
            from lamina.models.trainer import read_features

            text = next((f.name for f in read_features(args.model) if f.kind == "text"), None)
            if text is None:
                _err(f"{args.model}: the model has no text feature; send rows or image files")
                return 2
            rows, names = [{args.feature or text: t} for t in args.text], list(args.text)
        elif images and len(images) == len(args.input):
            from lamina.models.trainer import read_features

            image = args.feature or next((f.name for f in read_features(args.model) if f.kind == "image"), None)
            if image is None:
                _err(f"{args.model}: the model has no image feature; send rows or --text")
                return 2
            rows, names = [], images
            for path in images:
                with open(path, "rb") as f:
                    rows.append({image: f.read()})
        elif len(args.input) == 1:
            rows = read_rows(args.input[0], sys.stdin.read() if args.input[0] == "-" else None)
            names = [f"row {i}" for i in range(1, len(rows) + 1)]
        else:
            _err("expected image files, one CSV/JSON/JSONL file (or -), or --text STRING.")
            return 2
        if not rows:
            _err("no inputs to explain")
            return 2
        record = explain_pushed(args.model, rows, args.out, steps=args.steps, baseline=args.baseline, names=names)
    except (OSError, RowError, json.JSONDecodeError) as e:
        _err(f"cannot explain: {e}")
        return 2
    for i, example in enumerate(record["examples"]):
        print(f"{example['name']}: {example['predicted']} (score {example['score']:.4f})")
        for name, value in top_attributions(record, i):
            print(f"    {value:+.4f}  {name}")
        for image in record.get("images", []):
            if image["example"] == i:
                print(f"    Grad-CAM: {os.path.join(args.out, image['file'])}")
    if record.get("text"):
        print(f"highlighted texts: {os.path.join(args.out, TEXT_FILE)}")
    print(f"explanations: {os.path.join(args.out, EXPLANATIONS_FILE)}")
    return 0


def _predict_tflite(args) -> int:
    from lamina.models.tflite import InputError, predict_rows, read_input_spec
    from lamina.serving.client import RowError, is_image_path, read_rows

    images = [p for p in args.input if is_image_path(p)]
    try:
        if args.text is not None:
            column = args.feature or next(e["column"] for e in read_input_spec(args.tflite)["inputs"]
                                          if "max_length" in e)
            rows = [{column: t} for t in args.text]
        elif images:
            column = args.feature or next(e["column"] for e in read_input_spec(args.tflite)["inputs"]
                                          if len(e["shape"]) == 4)
            rows = [{column: p} for p in images]
        elif len(args.input) == 1:
            rows = read_rows(args.input[0], sys.stdin.read() if args.input[0] == "-" else None)
        else:
            _err("expected one CSV/JSON/JSONL file (or -), image files, or --text STRING.")
            return 2
        out = predict_rows(args.tflite, rows)
    except StopIteration:
        _err(f"{args.tflite}: the model has no input of that kind (see input_spec.json beside it)")
        return 2
    except (OSError, RowError, InputError, json.JSONDecodeError) as e:
        _err(f"{args.tflite}: {e}")
        return 2
    for i, row in enumerate(out):
        extra = {"file": images[i]} if images else {"text": args.text[i]} if args.text is not None else {}
        print(json.dumps({**extra, **row}, ensure_ascii=False))
    return 0


def cmd_predict(args) -> int:
    import grpc

    if args.tflite:
        return _predict_tflite(args)
    if not args.model:
        _err("--model is required (or --tflite FILE to answer with a TFLite file in this process)")
        return 2

    from lamina.serving.client import (PredictionClient, RowError, format_predictions, is_image_path, read_image_rows,
                                read_rows, read_text_rows)

    images = [p for p in args.input if is_image_path(p)]
    if args.text is not None and args.input:
        _err(f"send either --text strings or a rows file or image files, not both. Received: {' '.join(args.input)}")
        return 2
    if args.text is None and not args.input:
        _err("expected a CSV/JSON/JSONL file (or -), image files, or --text STRING.")
        return 2
    if images and len(images) != len(args.input):
        _err(f"send either image files or one rows file, not both. Received: {' '.join(args.input)}")
        return 2
    if args.text is None and not images and len(args.input) != 1:
        _err(f"expected one CSV/JSON/JSONL file (or -), or image files. Received: {' '.join(args.input)}")
        return 2
    source = (f"{len(args.text)} text(s)" if args.text is not None
              else args.input[0] if not images else f"{len(images)} image file(s)")
    if args.rest:
        from lamina.serving.client import RestCallError, RestClient

        client_cm, where, call_errors = RestClient(args.rest, timeout=args.timeout,
                                                   verify=args.tls_ca or True), args.rest, (RestCallError,)
    else:
        client_cm = PredictionClient(args.target, timeout=args.timeout, tls_ca=args.tls_ca)
        where, call_errors = args.target, (grpc.RpcError,)
    with client_cm as client:
        try:
            if args.text is not None:
                # Raw strings: the model tokenizes them in its own graph.
                rows = read_text_rows(args.text, client.raw_inputs(args.model, args.version), args.feature)
            elif images:
                # Image files go to the serving_raw signature as their encoded bytes.
                rows = read_image_rows(images, client.raw_inputs(args.model, args.version))
                args.raw = args.raw or not args.classify
            else:
                rows = read_rows(args.input[0], sys.stdin.read() if args.input[0] == "-" else None)
        except (OSError, RowError, json.JSONDecodeError) as e:
            _err(f"cannot read rows from {source}: {e}")
            return 2
        except call_errors as e:
            _err(_call_error(where, e))
            return 1
        if not rows:
            _err(f"{source}: no rows to send.")
            return 2
        try:
            if args.classify:
                results = client.classify(args.model, rows, version=args.version)
                out = [{"class": max(r, key=lambda c: c[1])[0], "scores": {l: round(s, 6) for l, s in r}}
                       for r in results]
            elif args.raw:
                out = format_predictions(client.predict_raw(args.model, rows, version=args.version))
            else:
                out = format_predictions(client.predict(args.model, rows, version=args.version))
        except RowError as e:
            _err(f"{source}: {e}")
            return 2
        except call_errors as e:
            _err(_call_error(where, e))
            return 1
    for i, row in enumerate(out):
        if images:
            row = {"file": images[i], **row}
        elif args.text is not None:
            row = {"text": args.text[i], **row}
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _call_error(where: str, error: Exception) -> str:
    if hasattr(error, "details"):  # grpc.RpcError
        return f"{where}: {error.code().name}: {error.details()}"
    return f"{where}: {error.code}: {error}"


def cmd_demo(args) -> int:
    """A bundled demo: its pipeline, then a gRPC server on a free loopback port and a few queries."""
    from lamina.pipeline.demos import prepare_demo, query_demo

    demo = "digits" if args.images else "text" if args.text else "penguins"
    spec = load_spec(prepare_demo(demo, args.dir))
    code = _run(spec, args.verbose)
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

    p = sub.add_parser("init", help="write a commented starter spec.yaml for a CSV or an image folder")
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
    p.add_argument("run_dir", help="the run directory: <runner.root>/<name>, holding metadata.sqlite")
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
    p.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free port)")
    p.add_argument("--rest-port", type=int, default=8501, help="REST and metrics port (0: any free; -1: no REST)")
    p.add_argument("--rest_api_port", type=int, help="TF Serving's spelling: the REST port, 0 for no REST")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--poll-seconds", type=float, default=1.0, help="how often to look for new versions")
    p.add_argument("--max-request-bytes", type=int, default=16 * 1024 * 1024,
                   help="largest request body (gRPC message or REST body)")
    p.add_argument("--max-request-elements", type=int, default=16 * 1024 * 1024,
                   help="tensor elements one request's inputs may declare, together")
    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                   help="pixels per encoded image, read from its header before it is decoded")
    p.add_argument("--rest-max-connections", type=int, default=512,
                   help="open REST connections; past it a new one gets 503")
    p.add_argument("--rest-threads", type=int, default=16, help="threads answering REST requests")
    p.add_argument("--allow-config-reload", action="store_true",
                   help="accept HandleReloadConfigRequest: from loopback, or with --admin-token-file under mTLS")
    p.add_argument("--admin-token-file", help="with --tls-client-ca: the token admin calls must send")
    p.add_argument("--enable-batching", "--enable_batching", type=_flag_bool, nargs="?", const=True, default=False,
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

    p = sub.add_parser("predict", help="send rows or image files to a TF Serving-protocol server")
    p.add_argument("input", nargs="*",
                   help="CSV with a header, JSON array, JSON Lines, - for stdin; or image files (.png, .jpg, ...)")
    p.add_argument("--text", action="append", metavar="STRING",
                   help="a raw string for a text model (repeat for a batch); the model tokenizes it")
    p.add_argument("--feature", help="with --text: the text feature's name, when the model has several string inputs")
    p.add_argument("--target", default="127.0.0.1:8500")
    p.add_argument("--model", help="the served model's name (not with --tflite)")
    p.add_argument("--tflite", metavar="FILE",
                   help="answer with this TFLite file through the interpreter, in this process (its "
                        "input_spec.json beside it says how rows become its inputs)")
    p.add_argument("--version", type=int)
    p.add_argument("--classify", action="store_true", help="use the Classify API instead of Predict")
    p.add_argument("--raw", action="store_true", help="Predict on the serving_raw signature (one tensor per feature)")
    p.add_argument("--rest", metavar="URL", help="use the REST API at URL (http://127.0.0.1:8501) instead of gRPC")
    p.add_argument("--tls-ca", help="PEM CA certificate to trust: talk TLS to a server started with --tls-cert")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (the deadline)")
    p.set_defaults(fn=cmd_predict)

    p = sub.add_parser("demo", help="run the bundled penguins demo through to gRPC predictions")
    p.add_argument("--dir", help="work folder (default: ./lamina_demo/penguins, ./lamina_demo/digits with "
                                 "--images, ./lamina_demo/text with --text)")
    p.add_argument("--images", action="store_true", help="the digits image demo instead: PNG folders to a ResNet")
    p.add_argument("--text", action="store_true", help="the text demo instead: MiniLM fine-tuned on topics.csv")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import warnings

    # google-api-core warns on every start that Python 3.10 is old; TFX 1.16 needs 3.10.
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.command in ("run", "demo"):
        from lamina.pipeline.local_runner import quiet_logs

        quiet_logs(args.verbose)
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return args.fn(args)
    except SpecError as e:
        _err(str(e))
        return 2


if __name__ == "__main__":
    sys.exit(main())
