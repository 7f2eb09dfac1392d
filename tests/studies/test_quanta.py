"""The quanta study's stacked ensemble and its bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest

from learnmech.studies.quanta import QuantaConfig, _marks, _train


def _cfg(**kw):
    return QuantaConfig(**({"n_tasks": 8, "n_bits": 6, "width": 16, "test_per_task": 16} | kw))


def test_each_member_of_the_stack_trains_as_if_alone():
    """Adam is elementwise and each member's loss reaches only its own rows, so a seed's
    curve does not depend on which other seeds share its stack (float32 round-off only)."""
    cfg = _cfg()
    alone = _train(cfg, cfg.width, 60, [3], "cpu")
    stacked = _train(cfg, cfg.width, 60, [1, 3, 5], "cpu")
    assert alone.shape == (len(_marks(60, cfg.records)), 1, 8)
    np.testing.assert_allclose(stacked[:, 1], alone[:, 0], rtol=1e-4, atol=1e-6)
    assert not np.allclose(stacked[:, 0], stacked[:, 1])  # different seeds differ


def test_the_subtask_losses_start_at_chance():
    """At initialization the outputs are near zero, so every subtask's cross-entropy is
    within a few hundredths of log 2 (default-init logits have std ≈ 0.3 here)."""
    cfg = _cfg(records=5)
    lo = _train(cfg, cfg.width, 10, [0], "cpu")
    assert np.all(np.abs(lo[0] - np.log(2)) < 0.15)


def test_the_parameter_arm_needs_three_widths():
    with pytest.raises(ValueError, match="at least 3"):
        QuantaConfig(param_widths=[8, 16])
    assert QuantaConfig(param_widths=[8, 16, 32]).param_widths == [8, 16, 32]
