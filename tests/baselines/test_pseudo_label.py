"""pseudo_label: the worked example of docs/adding_a_method.md is the registered file, at most 40
lines besides its card, and its one hook (Lee's annealing of the unlabelled weight) does what the
card says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from contexts import loop_context

from baselines.base import METHODS
from baselines.pseudo_label import PseudoLabel
from baselines.teacher_student import TeacherStudentMethod
from benchmark.training import Schedule
from domains.base import SpecError

ROOT = Path(__file__).resolve().parents[2]


def _code_without_card() -> str:
    text = (ROOT / "baselines" / "pseudo_label.py").read_text()
    return text[text.index('"""', 3) + 3 :].strip()


def test_docs_example_is_the_registered_file_and_short():
    doc = (ROOT / "docs" / "adding_a_method.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, re.S)
    assert _code_without_card() in [b.strip() for b in blocks], "docs example and file differ"
    assert len(_code_without_card().splitlines()) <= 40
    cls = METHODS.get("pseudo_label")
    assert cls is PseudoLabel and issubclass(cls, TeacherStudentMethod) and not cls.benchmarked
    card = (ROOT / "baselines" / "pseudo_label.py").read_text()
    assert "Known (from the papers)" in card and "Reconstructed" in card


def test_only_what_differs_from_the_shared_settings():
    base = TeacherStudentMethod.hparams
    own = {k: v for k, v in PseudoLabel.hparams.items() if base.get(k, object()) != v}
    assert own == {"ema_time_constant": 0.0, "unsup_weight": 3.0, "ramp_end": 0.6}
    assert PseudoLabel().config().keep_rate(100) == 0.0  # the teacher is the last student
    with pytest.raises(SpecError):
        PseudoLabel(ramp_end=1.5)


def test_lee_annealing_is_linear_after_burn_in():
    run = PseudoLabel(burn_in=0.5, ramp_end=0.5).loop(loop_context(Schedule(iterations=100)))
    assert run.loss_weights(49) == (1.0, 0.0)  # burn-in: 50 iterations
    w = [run.loss_weights(it)[1] for it in range(50, 100)]
    assert w[0] == pytest.approx(3.0 / 25) and w[12] == pytest.approx(3.0 * 13 / 25)
    assert w[24:] == [3.0] * 26  # alpha_f from ramp_end on
