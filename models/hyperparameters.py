"""Tuned values onto the spec: what each tunable parameter (lamina.spec.tuning.TUNABLE) sets.

The Tuner's trials and the Trainer (from the Tuner's best_hyperparameters artifact) both apply
them here, so a trial trains exactly the model the Trainer will.
"""

from typing import Any, Dict, List

from lamina.spec import Spec


def combiner_units(width: int, depth: int) -> List[int]:
    """`depth` layers, the first `width` wide, each further one half the one before (at least 4)."""
    return [max(int(width) // 2 ** i, min(4, int(width))) for i in range(int(depth))]


def apply_hyperparameters(spec: Spec, values: Dict[str, Any]) -> Spec:
    """A copy of `spec` with the tuned `values` in place of its own (see lamina.spec.tuning.TUNABLE).

    Only trainer-side settings change, so the Transform output stays valid for every trial.
    """
    values = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    if not values:
        return spec
    d = spec.model_dump(mode="json")
    training, combiner = d["training"], d["model"]["combiner"]
    if "learning_rate" in values:
        training["learning_rate"] = float(values["learning_rate"])
    if "batch_size" in values:
        training["batch_size"] = int(values["batch_size"])
    if "dropout" in values:
        combiner["dropout"] = float(values["dropout"])
    if "width" in values or "depth" in values:
        units = combiner["hidden_units"] or [32]
        combiner["hidden_units"] = combiner_units(values.get("width", units[0]), values.get("depth", len(units)))
    if "embedding_dim" in values:
        encoders = d["model"]["encoders"]
        named = [k for k, e in encoders.items() if e.get("type") == "embedding"]
        for k in named:
            encoders[k]["dim"] = int(values["embedding_dim"])
        if "categorical" not in encoders:  # the default categorical encoder is an embedding
            encoders["categorical"] = {"type": "embedding", "dim": int(values["embedding_dim"])}
    if "unfreeze_blocks" in values or "fine_tune_learning_rate" in values:
        ft = training.get("fine_tune") or {}
        if "unfreeze_blocks" in values:
            ft["unfreeze_blocks"] = int(values["unfreeze_blocks"])
        if "fine_tune_learning_rate" in values:
            ft["learning_rate"] = float(values["fine_tune_learning_rate"])
        training["fine_tune"] = ft
    return Spec.from_dict(d, base_dir=spec.base_dir)
