"""`lamina tensorboard SPEC`: TensorBoard on the latest run's logs, on loopback, with its URL printed.

The Trainer's run folder holds the curves, the network's histograms and the projector; the Tuner's
`tensorboard/` folder, when the spec tunes, holds the HParams dashboard's trials
(`lamina.models.tensorboard`). Both are served as two named runs, `trainer` and `tuner`.
"""

import os
import threading
from typing import Dict, Optional, Tuple

from lamina import storage
from lamina.constants import LOOPBACK, TENSORBOARD_PORT, TRAINER, TUNER
from lamina.spec import Spec


def log_dirs(spec: Spec) -> Dict[str, str]:
    """{'trainer': the Trainer's run folder, 'tuner': the trials' folder} of the spec's latest run."""
    from lamina.pipeline.runs.summary import latest_run_outputs

    outputs = latest_run_outputs(spec)
    trainer, tuner = outputs.get((TRAINER, "model_run")), outputs.get((TUNER, "tuner_results"))
    return run_log_dirs(trainer.uri if trainer else None, tuner.uri if tuner else None)


def run_log_dirs(trainer_run: Optional[str], tuner_results: Optional[str]) -> Dict[str, str]:
    """The named log folders of one run, from its Trainer's `model_run` and its Tuner's `tuner_results`."""
    from lamina.models.tensorboard import HPARAMS_DIR

    dirs = {}
    if trainer_run:
        dirs["trainer"] = trainer_run
    if tuner_results and storage.isdir(os.path.join(tuner_results, HPARAMS_DIR)):
        dirs["tuner"] = os.path.join(tuner_results, HPARAMS_DIR)
    return dirs


def start_tensorboard(dirs: Dict[str, str], host: str = LOOPBACK, port: int = TENSORBOARD_PORT,
                      load_once: bool = False) -> Tuple[str, object]:
    """(its URL, the running TensorBoard) serving `dirs` ({run name: folder}) in this process's threads.

    With `load_once`, every folder is read before this returns and never again (for finished runs);
    otherwise TensorBoard reads them in a thread of its own, again and again. Local folders are linked into one temporary log folder, because TensorBoard's projector reads only a
    single local `--logdir`; remote ones (gs://) are served as a `--logdir_spec`, without the projector.
    """
    import tempfile

    from tensorboard import program

    if all(not storage.is_uri(d) for d in dirs.values()):
        root = tempfile.mkdtemp(prefix="lamina_tensorboard_")
        for name, folder in dirs.items():
            os.symlink(os.path.abspath(folder), os.path.join(root, name))
        where = ["--logdir", root]
    else:
        where = ["--logdir_spec", ",".join(f"{k}:{v}" for k, v in sorted(dirs.items()))]
    board = program.TensorBoard()
    once = ["--reload_task", "blocking", "--reload_interval", "0"] if load_once else []
    board.configure(argv=[None, *where, "--host", host, "--port", str(port), "--load_fast", "false", *once])
    return board.launch(), board


def cmd_tensorboard(args) -> int:
    from lamina.pipeline.cli.serve import print_error
    from lamina.spec import load_spec

    spec = load_spec(args.spec)
    dirs = log_dirs(spec)
    if not dirs:
        print_error(f"{args.spec}: no finished Trainer run under {spec.resolve(spec.runner.root)}; lamina run it first.")
        return 1
    url, _ = start_tensorboard(dirs, args.host, args.port)
    print(f"TensorBoard on {url} for {', '.join(f'{k}: {v}' for k, v in sorted(dirs.items()))}\n"
          f"(Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()  # the server runs in TensorBoard's own threads until the user stops it
    except KeyboardInterrupt:
        pass
    return 0
