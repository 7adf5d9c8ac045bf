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
import os
import signal
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from glue_finetune.errors import Preempted

log = logging.getLogger(__name__)


class LatestCheckpoint(Checkpoint):
    """Saves ``<dirpath>/last.ckpt`` after each validation during training, at the end of training, and after the
    step during which a stop signal arrived (then raises Preempted).

    Replaces Lightning's own SIGTERM handling (which stops without saving). A handler that was installed before
    (submitit's, which requeues the SLURM job) still runs, after the checkpoint is on disk.

    A ``Checkpoint`` callback, so Lightning runs it after ``ModelCheckpoint`` (it moves checkpoint callbacks to the
    end, in their order): last.ckpt then records the best checkpoint that validation just chose, and when that
    best checkpoint was saved at this very step, last.ckpt is a hard link to it instead of a second copy of the
    same bytes (a bert-base checkpoint with its optimizer state is 1.3 GB). Nothing is saved twice for one step.
    """

    def __init__(self, dirpath: str, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")):
        self.dirpath = Path(dirpath)
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self.received: int | None = None
        self.previous: dict[int, object] = {}
        self.saved_step: int | None = None

    def _note(self, signum, frame) -> None:
        log.warning("Received %s: saving a checkpoint after this step.", signal.Signals(signum).name)
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for signum in self.signals:
            self.previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note)

    def save(self, trainer: L.Trainer) -> Path:
        path = self.dirpath / "last.ckpt"
        if self.saved_step == trainer.global_step and path.exists():
            return path  # saved at this step already (the last validation, then the end of training)
        # Never overwrite a good last.ckpt with diverged weights (the module raises if the loss went NaN/inf).
        if hasattr(trainer.lightning_module, "check_finite"):
            trainer.lightning_module.check_finite()
        if not self.link_to_best(trainer, path):
            trainer.save_checkpoint(path, weights_only=False)  # the whole state: weights, optimizer, loops
        self.saved_step = trainer.global_step
        return path

    def link_to_best(self, trainer: L.Trainer, path: Path) -> bool:
        """Make ``path`` a hard link to the full checkpoint a ModelCheckpoint saved at this step, if there is one
        (and the file system links; written synchronously). Atomic: a link beside it, renamed over it."""
        if not trainer.is_global_zero or isinstance(trainer.strategy.checkpoint_io, AsyncCheckpointIO):
            return False
        for callback in trainer.checkpoint_callbacks:
            if (isinstance(callback, ModelCheckpoint) and not callback.save_weights_only
                    and callback._last_global_step_saved == trainer.global_step
                    and callback._last_checkpoint_saved and Path(callback._last_checkpoint_saved).is_file()):
                tmp = path.with_name(f".{path.name}.link")
                try:
                    tmp.unlink(missing_ok=True)
                    os.link(callback._last_checkpoint_saved, tmp)
                    os.replace(tmp, path)
                    return True
                except OSError:
                    tmp.unlink(missing_ok=True)
        return False

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
