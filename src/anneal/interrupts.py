"""Ctrl-C and SIGTERM stop a run in any phase, stop every DDP rank at the same point, and stop training only
where a checkpoint can be exact.

Inside Lightning's loops (fit, validate, test) a signal only marks the stop: `StopAtBatchEnd` ends the loop
on every rank at once (the ranks agree through one all-reduce) after the next training step in the middle of
an epoch, where `SaveOnInterrupt` writes a checkpoint that resumes exactly, or once the epoch's validation
and checkpoint are done, or after the next batch of the final evaluation. Outside the loops (set-up, the
snapshot and averaged-model evaluations, writing results) it stops the run at once with `Interrupted`.

Lightning's own SIGTERM handler is kept out of it: under DDP it broadcasts from inside the handler and each
rank raises where it noticed the signal, so ranks stop in different collectives and wait for each other for
ever (Lightning issue #20806). train.py blocks SIGTERM in every thread before any exists; a thread of ours
takes it (`sigwait`) and hands it to the main thread as the Ctrl-C handler would, so Lightning's handler never
runs. A DDP rank passes a signal on to the others (rank 0 to the ranks it launched, they to rank 0): a signal
to any rank, or to all, stops the run the same way."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any, ClassVar

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
EXIT_CODES: dict[int, int] = {
    signal.SIGINT: 130,
    signal.SIGTERM: 143,
}  # 128 + the signal's number, as shells report them
LAUNCHER_PID = "ANNEAL_RUN_PID"  # set for the processes a run launches (DDP's other ranks): the run's process id


class Interrupted(Exception):
    """The run was stopped by a signal during `phase`."""

    def __init__(self, signum: int, phase: str):
        super().__init__(f"stopped by {NAMES.get(signum, signum)} during {phase}")
        self.signum, self.phase = signum, phase

    def __reduce__(self) -> tuple[type[Interrupted], tuple[int, str]]:  # a launcher pickles a job's error
        return Interrupted, (self.signum, self.phase)


def rank() -> int:
    return getattr(rank_zero_only, "rank", 0)  # Lightning sets it from the launcher's environment


class StopSignals:
    """The run's handlers for SIGINT and SIGTERM; `received` is the first signal (what the exit code reports).
    DDP's other ranks never stop on their own: they stop with rank 0, in a loop or when rank 0 ends."""

    active: ClassVar[StopSignals | None] = None  # the run the SIGTERM thread hands signals to
    sigterm_thread: ClassVar[threading.Thread | None] = None

    def __init__(self) -> None:
        self.received: int | None = None
        self.phase = "set-up"
        self.in_lightning = False
        self.trainer: L.Trainer | None = None
        self.stops_at_once = rank() == 0  # outside the loops; other ranks follow rank 0
        self.launcher_pid: int | None = None  # the run that launched this rank, told of every signal
        self.main_thread = threading.get_ident()

    def handle(self, signum: int, frame: FrameType | None) -> None:
        self.receive(signum)
        if not self.in_lightning and self.stops_at_once:
            raise Interrupted(self.received or signum, self.phase)

    def receive(self, signum: int) -> None:
        if self.received is not None:
            return
        self.received = signum
        launcher = self.trainer.strategy.launcher if self.trainer is not None else None
        if launcher is not None:
            launcher.kill(signum)  # the ranks this process launched (none without DDP)
        if self.launcher_pid is not None:
            with suppress(ProcessLookupError):  # rank 0 has ended
                os.kill(self.launcher_pid, signum)

    def receive_sigterm(self) -> None:
        """From the SIGTERM thread: handled as a Ctrl-C in the main thread would be, except for its name."""
        self.receive(signal.SIGTERM)
        if not self.in_lightning and self.stops_at_once:
            signal.pthread_kill(self.main_thread, signal.SIGINT)  # interrupts a wait in the main thread, too

    @contextmanager
    def installed(self) -> Iterator[StopSignals]:
        previous = {s: signal.signal(s, self.handle) for s in NAMES}
        launched_by = os.environ.get(LAUNCHER_PID)
        if rank() > 0 and launched_by == str(os.getppid()):
            self.launcher_pid = os.getppid()
        os.environ[LAUNCHER_PID] = str(os.getpid())
        StopSignals.active = self
        mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # train.py blocked it until now
        if signal.SIGTERM in mask:
            take_sigterm_in_a_thread()
        try:
            yield self
            if self.received is not None:  # a rank other than 0, or a stop noticed as the run ended
                raise Interrupted(self.received, self.phase)
        except Exception as error:
            if self.launcher_pid is not None and (isinstance(error, Interrupted) or self.received is not None):
                if not isinstance(error, Interrupted):  # a collective that rank 0 left by stopping
                    error = Interrupted(self.received or signal.SIGTERM, self.phase)
                self.outlive_launcher()
                raise error from None
            raise
        finally:
            StopSignals.active = None
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            for s, handler in previous.items():
                signal.signal(s, handler)
            if launched_by is None:
                os.environ.pop(LAUNCHER_PID, None)
            else:
                os.environ[LAUNCHER_PID] = launched_by

    def outlive_launcher(self, timeout: float = 60.0) -> None:
        """A rank that exits with an error code before rank 0 has Lightning kill rank 0 (its watch over the
        ranks it launched), before rank 0 could say what it saved: wait for rank 0 to end first."""
        deadline = time.monotonic() + timeout
        while os.getppid() == self.launcher_pid and time.monotonic() < deadline:
            time.sleep(0.05)

    @contextmanager
    def lightning(self, phase: str, trainer: L.Trainer) -> Iterator[None]:
        """Lightning's loops run inside: a signal stops them at the next batch end, on every rank."""
        self.phase, self.trainer, self.in_lightning = phase, trainer, True
        stop = StopAtBatchEnd(self)
        trainer.callbacks.append(stop)  # type: ignore[attr-defined]  # Trainer.callbacks, set in its __init__
        # DDP's other ranks are launched from here: they start with Ctrl-C held back until their handlers are in
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        except SIGTERMException:
            raise Interrupted(self.received or signal.SIGTERM, phase) from None
        finally:
            trainer.callbacks.remove(stop)  # type: ignore[attr-defined]
            self.in_lightning = False
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if agreed_to_stop(trainer, self.received is not None):  # noticed after the loops' last batch
            raise Interrupted(self.received or signal.SIGTERM, phase)


def agreed_to_stop(trainer: L.Trainer, received: bool) -> bool:
    """Whether any rank received a signal: every rank calls this at the same point and gets the same answer."""
    return trainer.strategy.reduce_boolean_decision(received, all=False)


class StopAtBatchEnd(L.Callback):
    """Ends Lightning's loops where any rank received a signal, with Lightning's SIGTERMException, on every rank
    at the same point: after a training batch in the middle of an epoch (where SaveOnInterrupt saves), after
    an epoch's validation and checkpoint (at the next epoch's start: stopping in between would lose the epoch),
    and after any batch of a final test or validation. It is the last callback to run at each."""

    def __init__(self, stops: StopSignals):
        self.stops = stops

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # DDP's ranks, if any, have been launched

    def stop_if_received(self, trainer: L.Trainer) -> None:
        if agreed_to_stop(trainer, self.stops.received is not None):
            raise SIGTERMException

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx + 1 < trainer.num_training_batches:
            self.stop_if_received(trainer)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stop_if_received(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.state.fn != TrainerFn.FITTING:
            self.stop_if_received(trainer)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        self.stop_if_received(trainer)


def take_sigterm_in_a_thread() -> None:
    """SIGTERM, blocked in every thread, is taken by one thread of this process and handed to the run."""
    if StopSignals.sigterm_thread is None:
        StopSignals.sigterm_thread = threading.Thread(target=take_sigterm, name="anneal-sigterm", daemon=True)
        StopSignals.sigterm_thread.start()


def take_sigterm() -> None:
    while True:
        signal.sigwait({signal.SIGTERM})
        stops = StopSignals.active
        if stops is not None:
            stops.receive_sigterm()
        else:  # no run is live: SIGTERM does what it would have done unblocked
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
