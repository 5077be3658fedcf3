"""TFX 1.16's own penguin example pipeline, run as shipped, for comparison with `lamina run`.

It imports `create_pipeline` from the installed `tfx.examples.penguin.penguin_pipeline_local`
and its Keras module file `penguin_utils_keras.py`, and runs them with the example's own
DirectRunner arguments (multi-processing, one worker per CPU). Tuner and BulkInferrer are off, as
in the comparison issue 19 asks for; everything else is the example's (Trainer: 100 steps).

The example reads `<data_root>/labelled/*.csv` with the columns of its `penguins_processed.csv`:
the four measurements (named culmen_* as in the original data) and the species as 0, 1, 2.
`write_data` writes that file from the palmerpenguins package: the same 344 penguins, less the
rows where a measurement is missing (the example's model reads the four as dense features).

Usage (one whole process, from an empty --root):
    .venv/bin/python benchmarks/tfx_penguin_pipeline.py --root /tmp/tfx-penguin
"""

import argparse
import csv
import os
import shutil
import sys
import time

COLUMNS = {"bill_length_mm": "culmen_length_mm", "bill_depth_mm": "culmen_depth_mm",
           "flipper_length_mm": "flipper_length_mm", "body_mass_g": "body_mass_g"}
SPECIES = ["Adelie", "Chinstrap", "Gentoo"]


def write_data(path: str) -> int:
    from palmerpenguins import load_penguins

    df = load_penguins()
    df = df.dropna(subset=list(COLUMNS))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["species"] + list(COLUMNS.values()))
        for row in df.itertuples(index=False):
            writer.writerow([SPECIES.index(row.species)] + [getattr(row, c) for c in COLUMNS])
    return len(df)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="an empty folder for the data, module file and pipeline")
    args = parser.parse_args()
    t0 = time.perf_counter()
    from absl import flags
    from tfx.examples.penguin import penguin_pipeline_local as example
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    flags.FLAGS(sys.argv[:1])  # the example's flags at their defaults: DirectRunner, keras
    root = os.path.abspath(args.root)
    data_root = os.path.join(root, "data")
    rows = write_data(os.path.join(data_root, "labelled", "penguins_processed.csv"))
    module_file = os.path.join(root, "penguin_utils_keras.py")
    shutil.copy(os.path.join(os.path.dirname(example.__file__), "penguin_utils_keras.py"), module_file)
    pipeline = example.create_pipeline(
        pipeline_name="penguin_local_keras", pipeline_root=os.path.join(root, "pipelines"), data_root=data_root,
        module_file=module_file, accuracy_threshold=0.6, serving_model_dir=os.path.join(root, "serving_model"),
        metadata_path=os.path.join(root, "metadata", "metadata.db"), user_provided_schema_path=None,
        enable_tuning=False, enable_bulk_inferrer=False, enable_example_diff=False,
        examplegen_input_config=None, examplegen_range_config_date=None, resolver_range_config=None,
        beam_pipeline_args=example._beam_pipeline_args_by_runner["DirectRunner"],  # pylint: disable=protected-access
        enable_transform_input_cache=True)
    LocalDagRunner().run(pipeline)
    pushed = os.listdir(os.path.join(root, "serving_model"))
    print(f"TFX penguin example: {rows} rows, pushed {pushed}, {time.perf_counter() - t0:.1f}s in the process")


if __name__ == "__main__":
    main()
