"""SpecTuner: TFX's Tuner component, with an executor that also writes every trial to trials.json.

The search itself is TFX's (`tfx.components.tuner.executor.search` calls `tuner_fn`, then the
tuner's `search`), and so is the `best_hyperparameters` artifact the Trainer consumes. The
executor adds `trials.json` to the `tuner_results` artifact: each trial's values, its metric
after every epoch, whether it was pruned, and the best trial (models.tuning.SpecTuner.summary);
and `tensorboard/`, the same trials for TensorBoard's HParams dashboard (models.tensorboard).
"""

import os

from tfx.components.tuner import executor as tuner_executor
from tfx.components.tuner.component import Tuner
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs

from lamina import storage
from lamina.models.tensorboard import HPARAMS_DIR, write_hparams
from lamina.models.tuning import TRIALS_FILE


class Executor(tuner_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        tuner = tuner_executor.search(input_dict, exec_properties, self._get_tmp_dir())
        tuner_executor.write_best_hyperparameters(tuner, output_dict)
        if hasattr(tuner, "summary"):
            folder = artifact_utils.get_single_uri(output_dict[standard_component_specs.TUNER_RESULTS_KEY])
            summary = tuner.summary()
            storage.write_json(os.path.join(folder, TRIALS_FILE), summary)
            write_hparams(os.path.join(folder, HPARAMS_DIR), summary)


class SpecTunerComponent(Tuner):
    """TFX's Tuner; its executor also records every trial (see the module docstring)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
