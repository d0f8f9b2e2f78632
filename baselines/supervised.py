"""Supervised-only baseline: the detector trained on the labelled images alone.

Paper: none (the lower bound every AL+SSL method must beat). What it does: FCOS (the matrix's
detector) trained with the matrix's fixed schedule on the labelled set, with random horizontal and
vertical flips; unlabelled images are not used.

Hyper-parameters (defaults):
    vertical_flip = True   also flip vertically (top-down imagery has no "up"; set False for
                           street scenes in a later domain table if wanted)
    labelled_view = "flip" "flip": random flips only; "weak": the teacher-student methods' weak view
                           (flips + zoom jitter 0.8-1.25, ``benchmark.augment.WEAK_SCALE``), their
                           labelled augmentation, so that an SSL method's gain over it is what the
                           unlabelled images add
"""

from __future__ import annotations

import torch

from baselines.base import Method, TrainContext, register_method
from benchmark.augment import WEAK_SCALE
from benchmark.training import train_supervised
from domains.base import SpecError


@register_method("supervised")
class Supervised(Method):
    """Train on the labelled images only (see the module docstring)."""

    paradigm = "supervised"
    default_strategy = "random"
    hparams = {"vertical_flip": True, "labelled_view": "flip"}

    def __init__(self, **hparams) -> None:
        super().__init__(**hparams)
        if self.hp["labelled_view"] not in ("flip", "weak"):
            raise SpecError(
                f"supervised: labelled_view must be 'flip' or 'weak', got {self.hp['labelled_view']!r}"
            )

    def train(self, ctx: TrainContext) -> torch.nn.Module:
        model, images, targets, _ = ctx.start(unlabelled=False)
        return train_supervised(
            model,
            images,
            targets,
            ctx.schedule,
            ctx.gen,
            ctx.device,
            ctx.progress,
            self.hp["vertical_flip"],
            WEAK_SCALE if self.hp["labelled_view"] == "weak" else (1.0, 1.0),
        )
