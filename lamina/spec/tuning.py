"""The tuning section: a search space over the trainer's hyperparameters, searched in TFX's Tuner.

A spec without `tuning:` has no Tuner. With it, the Tuner's best hyperparameters are the
artifact the Trainer consumes; they override the spec's own values (models/tuning.py says how).
"""

from typing import Any, Dict, List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from lamina.spec.base import StrictModel
from lamina.spec.errors import one_of

# What can be searched, and the type of its values.
TUNABLE = {
    "learning_rate": float,  # training.learning_rate
    "dropout": float,  # model.combiner.dropout
    "batch_size": int,  # training.batch_size
    "width": int,  # the combiner's first layer; each further layer has half the units of the one before
    "depth": int,  # the number of combiner layers
    "embedding_dim": int,  # every categorical embedding
    "unfreeze_blocks": int,  # training.fine_tune.unfreeze_blocks (transfer models)
    "fine_tune_learning_rate": float,  # training.fine_tune.learning_rate
}
ENGINES = ("optuna", "random", "bayesian", "hyperband")


class ParamSpec(StrictModel):
    """One dimension of the space: a range (`low`, `high`, optionally on a log scale) or a list of `choices`."""

    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    choices: Optional[List[Any]] = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> "ParamSpec":
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("expected either choices or low and high, not both.")
            if not self.choices:
                raise ValueError("expected at least one choice.")
            return self
        if self.low is None or self.high is None:
            raise ValueError("expected low and high (a range) or choices (a list).")
        if self.low > self.high:
            raise ValueError(f"low must not exceed high. Received: low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale range needs low > 0. Received: low={self.low}")
        return self


class TuningSpec(StrictModel):
    """The search: engine, space, budget and objective."""

    engine: Literal["optuna", "random", "bayesian", "hyperband"] = Field(
        default="optuna", description="optuna: TPE with a median pruner; the others are KerasTuner's.")
    space: Dict[str, ParamSpec]
    trials: int = Field(default=20, ge=1, le=10_000)
    time_budget_s: Optional[float] = Field(default=None, gt=0, description="No new trial starts after this.")
    epochs: Optional[int] = Field(default=None, ge=1, le=100_000,
                                  description="Epochs per trial (hyperband: the most). Default: training.epochs.")
    objective: Optional[str] = Field(default=None, description="A metric; default: the first of evaluation.metrics.")
    direction: Optional[Literal["max", "min"]] = Field(default=None, description="Default: the metric's own.")
    seed: Optional[int] = Field(default=None, description="Default: training.seed.")
    pruning: bool = Field(default=True, description="optuna: stop a trial whose curve is below the median's.")
    pruning_warmup_epochs: int = Field(default=2, ge=0, description="Epochs every trial runs before it may be pruned.")
    holdout: float = Field(default=0.2, gt=0.0, lt=1.0,
                           description="Share of the train split that scores the trials; the eval split stays "
                           "unseen until the Evaluator.")

    @field_validator("space")
    @classmethod
    def _known_parameters(cls, v: Dict[str, ParamSpec]) -> Dict[str, ParamSpec]:
        if not v:
            raise ValueError(f"expected at least one parameter; tunable: {', '.join(TUNABLE)}.")
        problems = []
        for name, p in v.items():
            if name not in TUNABLE:
                problems.append(f"{name!r}: {one_of(name, list(TUNABLE))}")
            elif TUNABLE[name] is int and p.choices is None and (p.low != int(p.low) or p.high != int(p.high)):
                problems.append(f"{name!r}: expected whole numbers for low and high. Received: {p.low}, {p.high}")
            elif name == "dropout" and any(not 0 <= x < 1 for x in (p.choices or [p.low, p.high])):
                problems.append(f"'dropout': expected values in [0, 1). Received: {p.choices or [p.low, p.high]}")
        if problems:
            raise ValueError("; ".join(problems))
        return v
