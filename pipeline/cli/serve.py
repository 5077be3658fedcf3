"""The `lamina` verbs about a pushed model: serve, predict, explain, deploy-files.

`lamina.pipeline.cli.commands` builds the parser and dispatches; the verbs that build and run pipelines
stay there, these (the serving side: a model folder in, answers or files out) live here.
Exit codes as in cli: 0 success, 1 a failed request or check, 2 bad arguments.
"""

import argparse
import json
import os
import sys


def print_error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_deploy_files(args) -> int:
    """TF Serving's deployment files (models.config, batching, monitoring, compose, Kubernetes)."""
    from lamina.serving.deploy import DeploySettings, write_deploy_files

    settings = DeploySettings(serving_version=args.serving_version, gpu=args.gpu, max_batch_size=args.max_batch_size,
                              batch_timeout_micros=args.batch_timeout_micros,
                              num_batch_threads=args.num_batch_threads)
    try:
        written = write_deploy_files(args.model_dir, args.output, settings)
    except (OSError, ValueError) as e:
        print_error(str(e))
        return 2
    for path in written:
        print(path)
    return 0


def flag_bool(value: str) -> bool:
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
        print_error("give one of --model-dir (a folder of pushed models), --model-config-file (TF Serving's "
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
                              input_limits=InputLimits(args.max_request_elements, args.max_image_pixels,
                                                         args.max_audio_seconds),
                              rest_limits=rest_limits, allow_config_reload=args.allow_config_reload,
                              admin_token=admin_token).start()
    except (ConfigError, ValueError, OSError) as e:
        print_error(str(e))
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


def cmd_explain(args) -> int:
    """Explains inputs against a pushed model: image files (Grad-CAM), JSON/CSV rows or --text (Integrated Gradients;
    Shapley values for trees and the linear model)."""
    import tensorflow as tf

    from lamina.models.explain import EXPLANATIONS_FILE, TEXT_FILE, explain_pushed, top_attributions
    from lamina.rows import RowError, is_image_path, read_rows

    images = [p for p in args.input if is_image_path(p)]
    saved_model = os.path.join(args.model, "saved_model.pb")
    if not tf.io.gfile.exists(saved_model):
        print_error(f"{args.model}: no saved_model.pb; --model takes a pushed version folder (<push dir>/<name>/<version>)")
        return 2
    try:
        if args.text is not None:
            from lamina.models.artifacts import read_features

            text = next((f.name for f in read_features(args.model) if f.kind == "text"), None)
            if text is None:
                print_error(f"{args.model}: the model has no text feature; send rows or image files")
                return 2
            rows, names = [{args.feature or text: t} for t in args.text], list(args.text)
        elif images and len(images) == len(args.input):
            from lamina.models.artifacts import read_features

            image = args.feature or next((f.name for f in read_features(args.model) if f.kind == "image"), None)
            if image is None:
                print_error(f"{args.model}: the model has no image feature; send rows or --text")
                return 2
            rows, names = [], images
            for path in images:
                with open(path, "rb") as f:
                    rows.append({image: f.read()})
        elif len(args.input) == 1:
            rows = read_rows(args.input[0], sys.stdin.read() if args.input[0] == "-" else None)
            names = [f"row {i}" for i in range(1, len(rows) + 1)]
        else:
            print_error("expected image files, one CSV/JSON/JSONL file (or -), or --text STRING.")
            return 2
        if not rows:
            print_error("no inputs to explain")
            return 2
        record = explain_pushed(args.model, rows, args.out, steps=args.steps, baseline=args.baseline, names=names)
    except (OSError, RowError, json.JSONDecodeError) as e:
        print_error(f"cannot explain: {e}")
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
    from lamina.rows import RowError, is_image_path, read_rows

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
            print_error("expected one CSV/JSON/JSONL file (or -), image files, or --text STRING.")
            return 2
        out = predict_rows(args.tflite, rows)
    except StopIteration:
        print_error(f"{args.tflite}: the model has no input of that kind (see input_spec.json beside it)")
        return 2
    except (OSError, RowError, InputError, json.JSONDecodeError) as e:
        print_error(f"{args.tflite}: {e}")
        return 2
    for i, row in enumerate(out):
        extra = {"file": images[i]} if images else {"text": args.text[i]} if args.text is not None else {}
        print(json.dumps({**extra, **row}, ensure_ascii=False))
    return 0


def cmd_predict(args) -> int:
    if args.tflite:
        return _predict_tflite(args)
    if not args.model:
        print_error("--model is required (or --tflite FILE to answer with a TFLite file in this process)")
        return 2
    if getattr(args, "spec", None):
        return _predict_forecast(args)

    from lamina.rows import (RowError, is_audio_path, is_image_path, read_image_cells, read_image_rows, read_rows,
                             read_text_rows)
    from lamina.serving.client import format_predictions

    images = [p for p in args.input if is_image_path(p) or is_audio_path(p)]
    if args.text is not None and args.input:
        print_error(f"send either --text strings or a rows file or image files, not both. Received: {' '.join(args.input)}")
        return 2
    if args.text is None and not args.input:
        print_error("expected a CSV/JSON/JSONL file (or -), image files, or --text STRING.")
        return 2
    if images and len(images) != len(args.input):
        print_error(f"send either image files or one rows file, not both. Received: {' '.join(args.input)}")
        return 2
    if args.text is None and not images and len(args.input) != 1:
        print_error(f"expected one CSV/JSON/JSONL file (or -), or image files. Received: {' '.join(args.input)}")
        return 2
    source = (f"{len(args.text)} text(s)" if args.text is not None
              else args.input[0] if not images else f"{len(images)} image or audio file(s)")
    client_cm, where, call_errors = _client(args)
    with client_cm as client:
        try:
            if args.text is not None:
                # Raw strings: the model tokenizes them in its own graph.
                rows = read_text_rows(args.text, client.raw_inputs(args.model, args.version), args.feature)
            elif images:
                # Image and audio files go to the serving_raw signature as their encoded bytes.
                rows = read_image_rows(images, client.raw_inputs(args.model, args.version))
                args.raw = args.raw or not args.classify
            else:
                rows = read_rows(args.input[0], sys.stdin.read() if args.input[0] == "-" else None)
                if any(isinstance(v, str) and (is_image_path(v.strip()) or is_audio_path(v.strip()))
                       for r in rows for v in r.values()):
                    # A multimodal model's image and audio columns name files: send their bytes.
                    base = os.path.dirname(os.path.abspath(args.input[0])) if args.input[0] != "-" else os.getcwd()
                    rows = read_image_cells(rows, base, client.raw_inputs(args.model, args.version))
        except (OSError, RowError, json.JSONDecodeError) as e:
            print_error(f"cannot read rows from {source}: {e}")
            return 2
        except call_errors as e:
            print_error(_call_error(where, e))
            return 1
        if not rows:
            print_error(f"{source}: no rows to send.")
            return 2
        def ask():
            if args.classify:
                results = client.classify(args.model, rows, version=args.version)
                return [{"class": max(r, key=lambda c: c[1])[0], "scores": {l: round(s, 6) for l, s in r}}
                        for r in results]
            return format_predictions((client.predict_raw if args.raw else client.predict)(
                args.model, rows, version=args.version))

        out, code = _ask(ask, source, where, call_errors)
        if code:
            return code
    for i, row in enumerate(out):
        if images:
            row = {"file": images[i], **row}
        elif args.text is not None:
            row = {"text": args.text[i], **row}
        print(json.dumps(row, ensure_ascii=False))
    return 0


def _predict_forecast(args) -> int:
    """`lamina predict --spec SPEC recent.csv`: the next horizon of each series in a table of its recent history."""
    from lamina.components.forecast_windows import WindowSettings, read_requests
    from lamina.cells import CsvInputError
    from lamina.spec import Spec, SpecError

    try:
        spec = Spec.from_yaml(args.spec)
    except SpecError as e:
        print_error(str(e))
        return 2
    if spec.task != "forecast":
        print_error(f"--spec {args.spec}: not a forecast (task is {spec.task!r}); --spec is for forecasts, whose rows are "
             f"a table of recent history.")
        return 2
    if len(args.input) != 1 or args.text is not None:
        print_error("a forecast reads one CSV/JSON Lines/Parquet file of recent history (a row per series and step).")
        return 2
    try:
        requests = read_requests(args.input[0], WindowSettings.from_spec(spec), spec.data.encoding)
    except (OSError, CsvInputError) as e:
        print_error(f"cannot read recent history from {args.input[0]}: {e}")
        return 2
    client_cm, where, call_errors = _client(args)
    rows = [r.row for r in requests]
    with client_cm as client:
        outputs, code = _ask(lambda: (client.predict_raw if args.raw else client.predict)(
            args.model, rows, version=args.version), args.input[0], where, call_errors)
    if code:
        return code
    # Over REST, TF Serving names no output when there is only one.
    for request, values in zip(requests, outputs["forecast"] if "forecast" in outputs else outputs["outputs"]):
        print(json.dumps({"series": request.series, "origin": request.origin,
                          "forecast": [{"time": t, spec.data.label: round(float(v), 6)}
                                       for t, v in zip(request.times, values)]}, ensure_ascii=False))
    return 0


def _client(args):
    """(the gRPC or REST client the arguments name, where it talks to, the errors its calls raise)."""
    if args.rest:
        from lamina.serving.client import RestCallError, RestClient

        return RestClient(args.rest, timeout=args.timeout, verify=args.tls_ca or True), args.rest, (RestCallError,)
    import grpc

    from lamina.serving.client import PredictionClient

    return PredictionClient(args.target, timeout=args.timeout, tls_ca=args.tls_ca), args.target, (grpc.RpcError,)


def _ask(call, source: str, where: str, call_errors: tuple):
    """(what `call()` answers, 0), or (None, the exit code) with the error printed: 2 for a row that cannot
    be sent (naming `source`), 1 for a call the server refused or did not answer."""
    from lamina.rows import RowError

    try:
        return call(), 0
    except RowError as e:
        print_error(f"{source}: {e}")
        return None, 2
    except call_errors as e:
        print_error(_call_error(where, e))
        return None, 1


def _call_error(where: str, error: Exception) -> str:
    if hasattr(error, "details"):  # grpc.RpcError
        return f"{where}: {error.code().name}: {error.details()}"
    return f"{where}: {error.code}: {error}"
