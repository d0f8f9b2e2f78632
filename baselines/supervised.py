"""Supervised-only baseline: the detector trained on the labelled images alone.

Paper: none (the lower bound every AL+SSL method must beat). What it does: FCOS (the matrix's
detector) trained with the matrix's fixed schedule on the labelled set, with random horizontal and
vertical flips; unlabelled images are not used.

Hyper-parameters (defaults):
    vertical_flip = True   also flip vertically (top-down imagery has no "up"; set False for
                           street scenes in a later domain table if wanted)
"""

from __future__ import annotations

import torch

from baselines.base import Method, TrainContext, register_method
from benchmark.training import train_supervised


@register_method("supervised")
class Supervised(Method):
    """Train on the labelled images only (see the module docstring)."""

    paradigm = "supervised"
    default_strategy = "random"
    hparams = {"vertical_flip": True}

    def train(self, ctx: TrainContext) -> torch.nn.Module:
        model, images, targets, _ = ctx.start(unlabelled=False)
        return train_supervised(
            model, images, targets, ctx.schedule, ctx.gen, ctx.device, ctx.progress, self.hp["vertical_flip"]
        )
