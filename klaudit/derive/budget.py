"""A wall-clock budget for one derivation: sympy can take very long on pathological expressions.

Uses an interval timer where that is possible (the main thread of a POSIX process, which is where
klaudit and its pool workers run); elsewhere the budget is not enforced and the size limit on
expressions is the only guard.
"""
from __future__ import annotations

import signal
import threading


class BudgetExceeded(BaseException):
    """Raised by the timer.  A BaseException, so that the ``except Exception`` blocks inside sympy
    (and anywhere else) cannot swallow it and let the work run on without a budget."""


class Budget:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.active = False
        self.old = None

    def _handler(self, signum, frame):
        raise BudgetExceeded()

    def __enter__(self):
        if (self.seconds and self.seconds > 0 and hasattr(signal, "setitimer")
                and threading.current_thread() is threading.main_thread()):
            try:
                self.old = signal.signal(signal.SIGALRM, self._handler)
                signal.setitimer(signal.ITIMER_REAL, self.seconds)
                self.active = True
            except (ValueError, OSError):
                self.active = False
        return self

    def __exit__(self, *exc):
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old or signal.SIG_DFL)
        return False
