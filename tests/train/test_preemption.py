"""The stop flag: SIGTERM or a first Ctrl-C only set it; a second Ctrl-C interrupts at once; the
previous signal handlers come back when the run ends."""

import signal

import pytest

from astroflax.train.preemption import EXIT_PREEMPTED, StopFlag


def test_sigterm_and_a_first_ctrl_c_set_the_flag_and_a_second_ctrl_c_interrupts():
    with StopFlag() as stop:
        assert not stop.requested
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested
    with StopFlag() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)


def test_the_previous_handlers_are_restored_on_exit():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with StopFlag():
        assert signal.getsignal(signal.SIGTERM) != before[signal.SIGTERM]
    assert {s: signal.getsignal(s) for s in before} == before


def test_the_preempted_exit_status_is_bsd_ex_tempfail():
    assert EXIT_PREEMPTED == 75                  # sysexits.h: "temporary failure, retry"
