"""What a round gives a method and a strategy: ``TrainContext`` (a trainer's inputs for one round)
and ``QueryContext`` (a strategy's: the trained model and the unlabelled pool, with its predictions and
embeddings computed once). The protocol (``benchmark.protocol``) builds them; the methods and
strategies of ``baselines`` receive them (re-exported by ``baselines.base``). Unlabelled samples are
label-free views (``domains.base.LabelFreeSample``): reading their labels raises ``HiddenLabelError``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from benchmark.data import ImageStore
from benchmark.detectors.base import make_batch
from benchmark.training import ProgressFn, Schedule, predict_all, sample_targets
from domains.base import LabelFreeSample, Sample


@dataclass
class TrainContext:
    """What a trainer gets for one round."""

    labelled: list[Sample]
    unlabelled: list[LabelFreeSample]  # label-free views: reading their labels raises HiddenLabelError
    images: ImageStore
    classes: tuple[str, ...]
    new_detector: Callable[[], torch.nn.Module]  # a fresh detector with the run's initial weights
    schedule: Schedule
    gen: torch.Generator
    rng: np.random.Generator
    device: str = "cpu"
    progress: ProgressFn | None = None
    round: int = 0
    initial_state: dict[str, torch.Tensor] | None = None  # previous round's weights under warm_start

    def start(
        self, unlabelled: bool = True
    ) -> tuple[torch.nn.Module, list[torch.Tensor], list[dict], list[torch.Tensor]]:
        """What every trainer begins with: a fresh detector (with ``initial_state`` loaded under
        warm start), the labelled images and their targets, and (unless ``unlabelled=False``) the
        unlabelled images."""
        model = self.new_detector()
        if self.initial_state is not None:
            model.load_state_dict(self.initial_state)
        images = self.images.many([s.id for s in self.labelled])
        targets = [sample_targets(s) for s in self.labelled]
        rest = self.images.many([s.id for s in self.unlabelled]) if unlabelled else []
        return model, images, targets, rest


@dataclass
class QueryContext:
    """What an acquisition strategy gets: the trained model and the unlabelled pool."""

    model: torch.nn.Module
    labelled: list[Sample]
    unlabelled: list[LabelFreeSample]  # label-free views: reading their labels raises HiddenLabelError
    images: ImageStore
    classes: tuple[str, ...]
    gen: torch.Generator
    rng: np.random.Generator
    device: str = "cpu"
    round: int = 0
    budget_unit: str = "images"
    _preds: dict[str, Any] = field(default_factory=dict)

    def predictions(self, samples: list[Sample] | None = None, dense: bool = False):
        """Model predictions on (by default all) unlabelled samples, computed once and cached."""
        samples = self.unlabelled if samples is None else samples
        missing = [s.id for s in samples if (s.id, dense) not in self._preds]
        if missing:
            preds = predict_all(self.model, self.images.many(missing), device=self.device, dense=dense)
            for sid, p in zip(missing, preds, strict=True):
                self._preds[(sid, dense)] = p
        return [self._preds[(s.id, dense)] for s in samples]

    def embeddings(self, samples: list[Sample] | None = None, batch_size: int = 64) -> np.ndarray:
        """``model.embed`` features (N, D) float32 of (by default all) unlabelled samples, cached."""
        samples = self.unlabelled if samples is None else samples
        missing = [s.id for s in samples if (s.id, "embed") not in self._preds]
        if missing:
            self.model.eval()
            with torch.no_grad():
                for k in range(0, len(missing), batch_size):
                    chunk = missing[k : k + batch_size]
                    feats = self.model.embed(make_batch(self.images.many(chunk)).to(self.device))
                    for sid, f in zip(chunk, feats.float().cpu().numpy(), strict=True):
                        self._preds[(sid, "embed")] = f
        if not samples:
            return np.zeros((0, 0), np.float32)
        return np.stack([self._preds[(s.id, "embed")] for s in samples]).astype(np.float32)


def predicted_box_counts(ctx: QueryContext, min_score: float = 0.3) -> np.ndarray:
    """Predicted boxes per unlabelled sample (detections scoring >= ``min_score``): what a strategy
    can know of an image's annotation cost before the oracle reveals it (box budgets)."""
    return np.array([int((p.scores >= min_score).sum()) for p in ctx.predictions()], dtype=np.int64)
