"""Pseudo-Label: the network labels its own unlabelled images; the minimal semi-supervised method
of the suite and the worked example of ``docs/adding_a_method.md``.

Papers: D.-H. Lee, "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep
Neural Networks", ICML 2013 Workshop on Challenges in Representation Learning; K. Sohn et al.,
"FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence", NeurIPS 2020.
Both are image classification methods.

Known (from the papers): Lee trains one network on labelled and unlabelled data at once; the
target of an unlabelled example is the class of maximum predicted probability, recomputed with the
current weights at every update; the unlabelled loss is weighted by a deterministic annealing
``alpha(t)``: 0 before an epoch T1, rising linearly to ``alpha_f`` at T2, then constant (the paper:
``alpha_f = 3``, T1 = 100, T2 = 600 epochs). FixMatch keeps the model's prediction on a weakly
augmented view only where its confidence reaches a threshold (0.95) and trains the same model on a
strongly augmented view of the image towards that hard label.

Reconstructed for detection (our choices, not the papers'): the shared teacher-student loop
(``baselines.teacher_student``) with an EMA keep rate of 0 (``ema_time_constant = 0``), so the
"teacher" is the student as it was after the previous step: the network labels its own images, as
in both papers. Pseudo-labels are the detections whose class probability reaches ``threshold`` on
the weak view (FixMatch's thresholding; 0.5, the shared default, since a focal-loss sigmoid
classifier rarely reaches 0.95), with the shared ignore band and classification-only targets, and
the student learns them on the strong view. The burn-in stands for Lee's T1 and ``ramp_end`` (a
fraction of the post-burn-in iterations) for T2; ``alpha_f = unsup_weight = 3``. Everything else is
the shared defaults (``TeacherStudentMethod.hparams``; ``rampup`` is unused, the ramp is Lee's).

Hyper-parameters (besides the shared ones):
    ema_time_constant = 0.0   keep rate 0: the teacher is the student after the last step
    unsup_weight = 3.0        Lee's alpha_f
    ramp_end = 0.6            alpha(t) reaches alpha_f at this fraction of the post-burn-in iterations
"""

from __future__ import annotations

from baselines.base import register_method
from baselines.teacher_student import TeacherStudentMethod
from domains.base import SpecError


@register_method("pseudo_label")
class PseudoLabel(TeacherStudentMethod):
    """Pseudo-Label with FixMatch's weak-to-strong thresholding (see the module docstring)."""

    benchmarked = False  # the docs' example: contract-tested, in no shipped matrix
    hparams = {
        **TeacherStudentMethod.hparams,
        "ema_time_constant": 0.0,
        "unsup_weight": 3.0,
        "ramp_end": 0.6,
    }

    def check_hparams(self) -> None:
        if not 0.0 <= self.hp["ramp_end"] <= 1.0:
            raise SpecError(f"pseudo_label: ramp_end must lie in [0, 1], got {self.hp['ramp_end']!r}")
        super().check_hparams()

    def loss_weights(self, it: int) -> tuple[float, float]:
        """Lee's annealing: 0 during burn-in, then linear up to ``unsup_weight`` at ``ramp_end``."""
        T = self.schedule.iterations
        start = self.cfg.burn_in_iters(T)
        if it < start:
            return 1.0, 0.0
        t = (it - start + 1) / max(1.0, self.hp["ramp_end"] * (T - start))
        return 1.0, self.cfg.unsup_weight * min(1.0, t)
