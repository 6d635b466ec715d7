"""benchmarks.accelerator: it refuses a CPU without --quick, and its flop model is the formula."""

from __future__ import annotations

import pytest

from benchmarks import accelerator


def test_refuses_to_time_on_cpu_without_quick(capsys):
    # The suite runs on CPU: a full run there would time the interpreter, so it must refuse.
    assert accelerator.main([]) == 2
    assert "--quick" in capsys.readouterr().err


def test_model_flops_by_hand():
    # Astro / linear: 4·T·m·d per head (a write and a read of T rank-1 terms), causal or not;
    # softmax: 4·T²·d per head (scores and weighted sum), half of it when causal.
    assert accelerator.model_flops("astro pallas", True, 1024, 8, 128) == 8 * 4 * 1024 * 128**2
    assert accelerator.model_flops("linear", False, 10, 2, 3) == 2 * 4 * 10 * 9
    assert accelerator.model_flops("softmax", False, 10, 2, 3) == 2 * 4 * 100 * 3
    assert accelerator.model_flops("softmax", True, 10, 2, 3) == 2 * 4 * 100 * 3 / 2


@pytest.mark.parametrize("override", [None, 50.0])
def test_device_peak_is_unknown_for_a_cpu_unless_given(override):
    peak = accelerator.device_peak(override)
    assert peak == (None if override is None else {"fp32": 50.0, "bf16": 50.0})
