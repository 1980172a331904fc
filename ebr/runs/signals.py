"""SIGTERM and SIGINT end a job as failed: `InterruptGuard` turns them into `JobInterrupted`.

A cluster preempts a job with SIGTERM; Ctrl-C sends SIGINT. Without a guard, Lightning's own
SIGTERM handler stops the fit at the next batch with `SIGTERMException`, a `SystemExit` whose code
is None: the process exited 0, with no outcome, and a sweep's remaining jobs never ran. The guard
installs handlers for the duration of a job (the wrapper, ebr.runs.wrapper), so the wrapper records
the job as failed, naming the signal, and the process exits ``128 + signal number`` (the shell's
convention: 143 for SIGTERM, 130 for SIGINT).

Lightning's trainer composes its SIGTERM handler with the one it finds installed (ours): while it
fits, our handler only records the signal, and Lightning stops at the next batch boundary, where
`ebr.training.checkpoint.StepCheckpoint` saves a final checkpoint; a second signal, or a signal
outside a fit, interrupts at once.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

GUARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class JobInterrupted(BaseException):
    """A job ended by a signal. A BaseException, as KeyboardInterrupt is: a job's own
    ``except Exception`` must not swallow it.

    Args:
        signum: the signal's number.
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {signal_name(self.signum)} (signal {self.signum})")

    @property
    def exit_code(self) -> int:
        """``128 + signal number``: what a shell reports for a process a signal ended."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, ``signal 64`` for a number without a name."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class InterruptGuard:
    """While entered (in the main thread), SIGTERM and SIGINT raise `JobInterrupted`.

    `received` holds the first signal that arrived; `interruption` maps what ended a job back to
    the signal: once a signal came, whatever the job raised (our exception may have been replaced
    by one raised in a library's cleanup), else Lightning's `SIGTERMException` or a KeyboardInterrupt.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> InterruptGuard:
        return self.install()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.restore()

    def install(self) -> InterruptGuard:
        """Install the handlers (in the main thread only; elsewhere nothing changes)."""
        # signal handlers can be set from the main thread only (a joblib worker's job runs there too)
        if threading.current_thread() is threading.main_thread():
            for signum in GUARDED_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def restore(self) -> None:
        """Put back the handlers `install` replaced."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        pending = self.received is not None
        if self.received is None:
            self.received = signum
        # installed as is: nobody stops the job at a safe point, so stop here; composed into
        # Lightning's handler: its fit loop stops at the next batch boundary (unless asked twice)
        if pending or signal.getsignal(signum) == self._handle:
            raise JobInterrupted(signum)

    def check(self) -> None:
        """Raise `JobInterrupted` when a signal arrived (a deferred one, after the fit ended)."""
        if self.received is not None:
            raise JobInterrupted(self.received)

    def interruption(self, exc: BaseException) -> JobInterrupted | None:
        """The interruption `exc` stands for, or None when it is not one.

        Args:
            exc: what the job raised.
        """
        if isinstance(exc, JobInterrupted):
            return exc
        if self.received is not None:
            # whatever ended the job after the signal came: raised at an arbitrary point, our
            # exception can be replaced by one a library's cleanup raises (a half-built config)
            return JobInterrupted(self.received)
        # no handler of ours saw it (a thread other than the main one installs none)
        if isinstance(exc, KeyboardInterrupt):
            return JobInterrupted(signal.SIGINT)
        # Lightning's SIGTERMException (a SystemExit) after its own handler saw the signal
        if isinstance(exc, SystemExit) and type(exc).__name__ == "SIGTERMException":
            return JobInterrupted(signal.SIGTERM)
        return None
