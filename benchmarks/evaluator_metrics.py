"""The Evaluator's own costs, side by side: its metrics, and the columns TFMA reads.

For a finished `lamina run`, TFMA evaluates the Trainer's model on the eval split with the run's own
`eval_config`, in a fresh process per evaluation, alternating the variants:
  - numpy: as the Evaluator runs now: Lamina's numpy metrics (`lamina.models.tfma_metrics`), the label
           from the model's `transform_label` signature, and only the columns of the run's
           EvaluationSchema read into TFMA's features;
  - keras: the same, with accuracy, crossentropy and RMSE as Keras metrics (no module: TFMA's
           `tf_metric_wrapper` runs each as a TensorFlow graph, traced by AutoGraph);
  - every-column: the same metrics as numpy, with every column read and every transformed feature
           (`transform_features`), as the Evaluator ran before the EvaluationSchema;
  - tfma-reads: as numpy, with TFMA's confusion-matrix metrics (AUC, PR-AUC, precision, recall, TPR, FPR,
           the confusion matrix) from TFMA's module, reading each example by TFMA's general function, as
           before Lamina's module read them directly;
  - without-plot, without-auc, without-both: as numpy, less TFMA's MultiClassConfusionMatrixPlot (the report's
           confusion matrix and `class_recall`), its AUC, or both: what each of those costs per eval row.
           Their metrics agree with numpy's on what they still compute.
Change thresholds are left out (there is no baseline model here). Reported: the seconds TFMA's
analysis took (imports and the model's load excluded) and the overall metrics of each, which must agree.

Usage:
    .venv/bin/python benchmarks/evaluator_metrics.py --spec RUN/spec.yaml [--pipeline-dir DIR] [--rounds 3]
                                                     [--variants numpy keras every-column without-plot ...]
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Tuple

VARIANTS = ["numpy", "keras", "tfma-reads", "every-column", "without-plot", "without-auc", "without-both"]
# What the without-* variants leave out of the run's eval_config, by TFMA class name.
LEFT_OUT = {"without-plot": {"LaminaMultiClassConfusionMatrixPlot"}, "without-auc": {"LaminaAUC"},
            "without-both": {"LaminaMultiClassConfusionMatrixPlot", "LaminaAUC"}}


def evaluate(spec_path: str, pipeline_dir: str, variant: str) -> dict:
    import tensorflow_model_analysis as tfma
    import tf_keras

    from lamina.pipeline.pipeline import TFMA_METRICS_MODULE, eval_config
    from lamina.spec import load_spec

    from tfx.utils import io_utils

    from lamina.models.export import TRANSFORM_FEATURES
    from lamina.models.tfma_metrics import DIRECT_TFMA_CLASSES

    config = eval_config(load_spec(spec_path))
    for metrics_spec in config.metrics_specs:
        for metric in metrics_spec.metrics:
            for threshold in metric.per_slice_thresholds:
                threshold.threshold.ClearField("change_threshold")
            # Lamina's numpy metrics that carry a Keras class name: without the module, TFMA runs Keras's.
            if (variant == "keras" and metric.module == TFMA_METRICS_MODULE and metric.class_name not in
                    DIRECT_TFMA_CLASSES and hasattr(tf_keras.metrics, metric.class_name)):
                metric.module = ""
            if variant == "tfma-reads" and metric.class_name in DIRECT_TFMA_CLASSES:
                metric.class_name, metric.module = metric.class_name[len("Lamina"):], ""  # TFMA's own class
    left_out = LEFT_OUT.get(variant, set())
    for metrics_spec in config.metrics_specs:
        kept = [m for m in metrics_spec.metrics if m.class_name not in left_out]
        del metrics_spec.metrics[:]
        metrics_spec.metrics.extend(kept)
    specs = [s for s in config.metrics_specs if len(s.metrics)]  # the binarized spec, without AUC, may be empty
    del config.metrics_specs[:]
    config.metrics_specs.extend(specs)
    model = sorted(glob.glob(os.path.join(pipeline_dir, "Trainer", "model", "*", "Format-Serving")))[-1]
    data = sorted(glob.glob(os.path.join(pipeline_dir, "*ExampleGen", "examples", "*", "Split-eval")))[-1]
    schema = None
    if variant == "every-column":
        config.model_specs[0].preprocessing_function_names[:] = [TRANSFORM_FEATURES]
    else:
        folder = sorted(glob.glob(os.path.join(pipeline_dir, "EvaluationSchema", "evaluation_schema", "*")))[-1]
        schema = io_utils.SchemaReader().read(os.path.join(folder, "schema.pbtxt"))
    start = time.perf_counter()
    result = tfma.run_model_analysis(eval_shared_model=tfma.default_eval_shared_model(model, eval_config=config),
                                     eval_config=config, data_location=os.path.join(data, "*"), schema=schema,
                                     output_path=tempfile.mkdtemp(prefix="lamina-eval-"))
    seconds = time.perf_counter() - start
    overall = next(m for key, m in result.slicing_metrics if key == ())
    values = {name: v.get("doubleValue") for sub in overall[""].values() for name, v in sub.items()
              if "doubleValue" in v}
    return {"variant": variant, "seconds": seconds, "metrics": values}


def finished_run_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of a benchmark on a finished run: --spec, --pipeline-dir, --rounds (and its own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--spec", required=True, help="the spec.yaml a finished `lamina run` used")
    parser.add_argument("--pipeline-dir", help="the run's pipeline folder (default: from the spec's run root)")
    parser.add_argument("--rounds", type=int, default=3)
    return parser


def pipeline_dir_of(args) -> str:
    if args.pipeline_dir is None:
        from lamina.spec import load_spec

        return os.path.join(load_spec(args.spec).run_dir, "pipeline")
    return args.pipeline_dir


def alternate(script: str, args, variants: List[str]) -> Iterator[Tuple[int, str, dict]]:
    """(round, variant, the child's JSON result) of `script --child VARIANT` in a fresh process each, the
    variants' order reversed every other round."""
    for i in range(args.rounds):
        for variant in variants if i % 2 == 0 else variants[::-1]:
            out = subprocess.run([sys.executable, script, "--spec", args.spec, "--pipeline-dir", args.pipeline_dir,
                                  "--child", variant], capture_output=True, text=True, check=True).stdout
            yield i + 1, variant, json.loads(out.strip().splitlines()[-1])


def median_table(header: str, runs: Dict[str, List[float]], digits: int = 1) -> str:
    lines = [f"| {header} | median | rounds |", "|---|---:|---|"]
    for name, seconds in runs.items():
        lines.append(f"| {name} | {statistics.median(seconds):.{digits}f} s | "
                     f"{', '.join(f'{s:.{digits}f}' for s in seconds)} |")
    return "\n".join(lines)


def main():
    parser = finished_run_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["keras", "numpy"], choices=VARIANTS)
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.pipeline_dir = pipeline_dir_of(args)
    if args.child:
        print(json.dumps(evaluate(args.spec, args.pipeline_dir, args.child)))
        return
    runs = {variant: [] for variant in args.variants}
    for i, variant, run in alternate(__file__, args, args.variants):
        runs[variant].append(run["seconds"])
        print(f"round {i}: {variant:5s} {run['seconds']:6.1f} s  {run['metrics']}", flush=True)
    print("\n" + median_table("variant", runs))


if __name__ == "__main__":
    main()
