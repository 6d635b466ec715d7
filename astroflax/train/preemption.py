"""Stopping a run cleanly: SIGTERM or Ctrl-C set a flag, the loop saves a checkpoint and returns.

The run then reports ``status == "preempted"`` and ``experiments.run`` exits with
:data:`EXIT_PREEMPTED`; rerunning the same command resumes it. A second Ctrl-C interrupts at
once (to stop a save that hangs).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from absl import logging

#: Exit status of ``experiments.run`` when a run stopped on SIGTERM or Ctrl-C after saving a
#: checkpoint: rerunning the same command resumes it. (75 is ``EX_TEMPFAIL`` of BSD's
#: sysexits.h, "temporary failure, the user is invited to retry".) A completed run exits 0.
EXIT_PREEMPTED = 75


class StopFlag:
    """Set by SIGTERM (preemption, ``kill``) or Ctrl-C: the loop saves, then stops cleanly.

    A context manager: its handlers are installed on entry (from the main thread only, where
    Python delivers signals) and the previous ones put back on exit. A second Ctrl-C raises
    ``KeyboardInterrupt`` as usual (to stop a save that hangs).
    """

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self._SIGNALS}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logging.warning("%s received: saving a checkpoint after this step, then stopping "
                        "(rerun the same command to resume)", signal.Signals(signum).name)
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
