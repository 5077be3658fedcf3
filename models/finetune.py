"""Training phases: one for models trained from scratch, two for transfer learning.

As in the Keras transfer-learning guide:
  1. train the new head with the pretrained backbone frozen (training.epochs, training.learning_rate);
  2. unfreeze the backbone's top `fine_tune.unfreeze_blocks` residual blocks and continue at
     the lower `fine_tune.learning_rate`. BatchNorm stays frozen and in inference mode.
For a pretrained text encoder with `freeze_epochs: N`: the head trains alone for N epochs, then
the whole model for the rest of training.epochs, at the same learning rate.
The schedule applies per encoder: one whose spec says `frozen: true` stays frozen in every phase,
while the others fine-tune (several images, texts and numbers in one model).
The model is recompiled at each phase, since Keras fixes the trainable weights at compile time.
"""

import dataclasses
from typing import List, Optional

import keras

from lamina.models.features import safe_name
from lamina.models.images import backbone_feature, image_backbones, set_trainable_blocks
from lamina.models.text import set_encoder_trainable, text_encoders
from lamina.spec import BertEncoder, Spec


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    epochs: int
    learning_rate: float
    unfreeze_blocks: Optional[int]  # None: the whole model trains; 0: backbones frozen; N: their top N blocks


def pretrained_backbones(model: keras.Model, spec: Spec) -> List[keras.Model]:
    """The model's image backbones whose spec loads pretrained weights."""
    return [b for b in image_backbones(model)
            if spec.image_encoder(backbone_feature(b, spec.data.feature_types)).pretrained]


def _text_configs(model: keras.Model, spec: Spec) -> list:
    """(encoder layer, its spec) for each text encoder of the model."""
    # Encoder layers are named after the feature's safe name; map it back to the column.
    columns = {safe_name(f.name): f.name for f in spec.data.features or []}
    return [(e, spec.text_encoder(columns.get(k, k))) for e in text_encoders(model)
            for k in [e.name.rsplit("_", 1)[0]]]


def _text_freeze_epochs(model: keras.Model, spec: Spec) -> int:
    return max([c.freeze_epochs for _, c in _text_configs(model, spec) if isinstance(c, BertEncoder)], default=0)


def training_phases(model: keras.Model, spec: Spec) -> List[Phase]:
    epochs, lr = spec.training.epochs or 1, spec.training.learning_rate
    if not pretrained_backbones(model, spec):
        freeze = _text_freeze_epochs(model, spec)
        if freeze and freeze < epochs:
            return [Phase("head, text encoder frozen", freeze, lr, 0), Phase("all layers", epochs - freeze, lr, None)]
        return [Phase("train", epochs, lr, None)]
    phases = [Phase("head, backbone frozen", epochs, lr, 0)]
    ft = spec.training.fine_tune
    if ft and ft.epochs:
        phases.append(Phase(f"fine-tune, top {ft.unfreeze_blocks} blocks unfrozen", ft.epochs, ft.learning_rate,
                            ft.unfreeze_blocks))
    return phases


def apply_phase(model: keras.Model, spec: Spec, phase: Phase) -> List[str]:
    """Sets what trains in `phase`; returns the unfrozen block names of the pretrained backbones."""
    unfrozen = []
    for encoder, config in _text_configs(model, spec):  # a `frozen` encoder never trains
        set_encoder_trainable(encoder, phase.unfreeze_blocks is None and not getattr(config, "frozen", False))
    if phase.unfreeze_blocks is None:
        return unfrozen
    for backbone in pretrained_backbones(model, spec):
        frozen = spec.image_encoder(backbone_feature(backbone, spec.data.feature_types)).frozen
        unfrozen += [f"{backbone.name}/{b}" for b in set_trainable_blocks(backbone, 0 if frozen else phase.unfreeze_blocks)]
    return unfrozen
