"""One training worker: `python -m lamina.models.worker JOB_FILE`, as a process or a pod starts it.

The strategy is created first, before any other TensorFlow op ("collective ops must be
configured at program startup"), from TF_CONFIG, or from what a Kubernetes Indexed Job gives
each pod: JOB_COMPLETION_INDEX and the launcher's LAMINA_WORKER_HOSTS. Then the worker reads
the job the launcher wrote (the spec and the Trainer's inputs and outputs) and trains; the chief
exports.
"""

import json
import os
import sys

from lamina.models.cluster import tf_config

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m lamina.models.worker JOB_FILE", file=sys.stderr)
        return 2
    config = tf_config(dict(os.environ))
    if config:
        os.environ["TF_CONFIG"] = json.dumps(config)
    import tensorflow as tf

    with tf.io.gfile.GFile(argv[0]) as f:
        job = json.load(f)
    from lamina.spec import Spec

    spec = Spec.from_json(job["spec"])
    from lamina.models.device import configure_devices

    strategy = configure_devices(spec.training, cluster=True)  # first: before any other op
    import tensorflow_transform as tft

    from lamina.models.trainer import train

    task = config.get("task", {})
    print(f"    worker {task.get('index', 0)} of {len(config.get('cluster', {}).get('worker', [])) or 1}: "
          f"{strategy.num_replicas_in_sync} replica(s) in sync", flush=True)
    train(spec, tft.TFTransformOutput(job["transform_output"]), job["train_files"], job["eval_files"],
          job["serving_model_dir"], log_dir=job.get("log_dir"), strategy=strategy,
          checkpoint_dir=job.get("checkpoint_dir"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
