"""``checkpoints/last.ckpt``: the latest training state, to resume from.

Lightning's ``ModelCheckpoint(save_last=True)`` rewrites last.ckpt only when it saves a new best checkpoint, so a
resumed run would go back to the best step and repeat the steps after it. ``LatestCheckpoint`` writes last.ckpt
after every validation, at the end of training, and when the run is asked to stop: on SIGTERM (or SLURM's
SIGUSR1) it finishes the current step, saves, and stops with exit code 75. Running the same command again (same
run dir) continues from it; the run dir holds ``job_preempted.json`` until the run finishes. Lightning writes
checkpoints atomically (temporary file, then rename), so an interrupted save leaves the previous file intact.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: a temporary failure, retrying is expected to work


class Preempted(Exception):
    """The run was asked to stop by a signal and saved a checkpoint to continue from."""


class LatestCheckpoint(L.Callback):
    """Saves ``<dirpath>/last.ckpt`` after each validation during training, at the end of training, and after the
    step during which a stop signal arrived (then raises Preempted).

    Replaces Lightning's own SIGTERM handling (which stops without saving). A handler that was installed before
    (submitit's, which requeues the SLURM job) still runs, after the checkpoint is on disk.
    """

    def __init__(self, dirpath: str, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")):
        self.dirpath = Path(dirpath)
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self.received: int | None = None
        self.previous: dict[int, object] = {}

    def _note(self, signum, frame) -> None:
        log.warning("Received %s: saving a checkpoint after this step.", signal.Signals(signum).name)
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for signum in self.signals:
            self.previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note)

    def save(self, trainer: L.Trainer) -> Path:
        # Never overwrite a good last.ckpt with diverged weights (the module raises if the loss went NaN/inf).
        if hasattr(trainer.lightning_module, "check_finite"):
            trainer.lightning_module.check_finite()
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        return path

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:  # not trainer.validate()/test()
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if self.received is None:
            return
        path = self.save(trainer)
        log.warning("Checkpoint saved at step %d: %s", trainer.global_step, path)
        signum, self.received = self.received, None
        previous = self.previous.get(signum)
        if callable(previous) and getattr(previous, "__module__", "").startswith("submitit"):
            previous(signum, None)  # submitit requeues the job and exits
        raise Preempted(f"stopped by {signal.Signals(signum).name} at step {trainer.global_step}; "
                        f"checkpoint: {path}")
