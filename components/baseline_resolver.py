"""The Evaluator's baseline: the latest blessed model other than the candidate itself.

TFX's `LatestBlessedModelStrategy` returns the latest blessed model, whatever it is. When a run is repeated
with the same spec and data, the Trainer's output comes from the cache: the candidate is the model the last
run trained and blessed, so TFX's resolver makes it its own baseline. The Evaluator's inputs then differ from
the last run's (a baseline where there was none, or another one), and it, the gates, the explanations, the
TFLite files and the Pusher all run again, to compare a model with itself.

`PreviousBlessedModelStrategy` takes the candidate as a third input and leaves it out: the baseline is the
latest blessed model that is not the candidate, which is what it was when the candidate was first evaluated.
So an unchanged re-run gets the same inputs everywhere and every component is a cache hit; a retrained model
is still compared with the last one blessed.

A blessed model exported before the `transform_label` signature (which the Evaluator's config calls on the
baseline as on the candidate) cannot be a baseline: TFMA would stop on it. The run then has none, and says so;
its own model is the next run's baseline.

Kubeflow Pipelines' compiler knows only TFX's own strategies (`KubeflowV2DagRunner` refuses others), so the
pipeline compiled for Kubeflow keeps `LatestBlessedModelStrategy`; KFP caches by its own rules there.
"""

import logging
from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.utils import path_utils

from lamina.models.export import TRANSFORM_LABEL
from lamina.serving.saved_model import read_signature_defs

MODEL, BLESSING, CANDIDATE = "model", "model_blessing", "candidate"


def previous_blessed(models: List[types.Artifact], blessings: List[types.Artifact],
                     candidates: List[types.Artifact]) -> Dict[str, List[types.Artifact]]:
    """{model: [the newest blessed model whose id is not a candidate's], model_blessing: [its blessing]}, both
    empty when there is none: TFX's own choice among the models that are not candidates."""
    excluded = {c.id for c in candidates}
    others = [m for m in models if m.id not in excluded]
    return LatestBlessedModelStrategy()._resolve(  # pylint: disable=protected-access
        {MODEL: others, BLESSING: list(blessings)}, MODEL, BLESSING)


def lacks_transform_label(model: types.Artifact) -> bool:
    """Whether a model's SavedModel reads, and has no `transform_label` signature (an older Lamina's export)."""
    try:
        signatures = read_signature_defs(path_utils.serving_model_path(model.uri))
    except Exception:  # pylint: disable=broad-except  (unreadable: the Evaluator says what is wrong)
        return False
    return bool(signatures) and TRANSFORM_LABEL not in signatures


class PreviousBlessedModelStrategy(LatestBlessedModelStrategy):
    """Resolver strategy over three channels: `model` (every model the Trainer made), `model_blessing` (the
    blessings) and `candidate` (this run's Trainer output). Outputs the same three keys: the baseline model
    and its blessing, and the candidate as given."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        missing = {MODEL, BLESSING, CANDIDATE} - set(input_dict)
        if missing:
            raise ValueError(f"PreviousBlessedModelStrategy: expected the inputs {MODEL!r}, {BLESSING!r} and "
                             f"{CANDIDATE!r}; missing {', '.join(sorted(missing))}")
        candidates = list(input_dict[CANDIDATE])
        baseline = previous_blessed(list(input_dict[MODEL]), list(input_dict[BLESSING]), candidates)
        if baseline[MODEL] and lacks_transform_label(baseline[MODEL][0]):
            logging.getLogger(__name__).warning(
                "The last blessed model (%s) was exported by an older Lamina, without the %r signature the "
                "Evaluator calls: this run has no baseline model.", baseline[MODEL][0].uri, TRANSFORM_LABEL)
            baseline = {MODEL: [], BLESSING: []}
        return {**baseline, CANDIDATE: candidates}
