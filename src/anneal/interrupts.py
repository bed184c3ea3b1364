"""Ctrl-C and SIGTERM stop a run in any phase, and stop training only where a checkpoint can be exact.

While Lightning runs (fit, validate, test) it handles SIGTERM itself: it notes the signal and stops at the
next batch boundary, where `SaveOnInterrupt` writes a checkpoint that resumes exactly. Ctrl-C is turned into
the same SIGTERM there, rather than a KeyboardInterrupt that can land between the loader handing out a batch
and the step that trains on it. Outside Lightning's loops (set-up, the snapshot and averaged-model
evaluations) either signal stops the run at once with `Interrupted`."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
EXIT_CODES: dict[int, int] = {
    signal.SIGINT: 130,
    signal.SIGTERM: 143,
}  # 128 + the signal's number, as shells report them


class Interrupted(Exception):
    """The run was stopped by a signal outside Lightning's loops, during `phase`."""

    def __init__(self, signum: int, phase: str):
        super().__init__(f"stopped by {NAMES.get(signum, signum)} during {phase}")
        self.signum, self.phase = signum, phase

    def __reduce__(self) -> tuple[type[Interrupted], tuple[int, str]]:  # a launcher pickles a job's error
        return Interrupted, (self.signum, self.phase)


class StopSignals:
    """Installs the handlers for a run; `received` is the first signal (what the exit code reports)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self.phase = "set-up"
        self.in_lightning = False
        self._previous: dict[int, object] = {}

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        if not self.in_lightning:
            raise Interrupted(signum, self.phase)
        if signum == signal.SIGINT:  # Lightning's own SIGTERM path: a stop at the next batch boundary
            os.kill(os.getpid(), signal.SIGTERM)

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        self._previous = {s: signal.signal(s, self.handle) for s in NAMES}
        try:
            yield self
        finally:
            for s, handler in self._previous.items():
                signal.signal(s, handler)  # type: ignore[arg-type]

    @contextmanager
    def lightning(self, phase: str) -> Iterator[None]:
        """Lightning's loop runs inside: it stops at a batch boundary (Lightning chains this handler after its
        own, so a SIGTERM only marks the stop here)."""
        self.phase, self.in_lightning = phase, True
        try:
            yield
        finally:
            self.in_lightning = False

    def exit_code(self) -> int:
        return EXIT_CODES.get(self.received or signal.SIGTERM, 143)
