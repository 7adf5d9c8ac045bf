"""``checkpoints/last.ckpt``: the latest training state, to resume from.

Lightning's ``ModelCheckpoint(save_last=True)`` rewrites last.ckpt only when it saves a new best checkpoint, so a
resumed run would go back to the best step and repeat the steps after it. ``LatestCheckpoint`` writes last.ckpt
after every validation, at the end of training, and when the run is asked to stop. ``AtomicCheckpointIO`` writes
each checkpoint to a temporary file beside it, then renames it, so an interrupted save leaves the previous file
intact.

Signals, one story for a plain run and a SLURM job alike: the run finishes the current optimizer step (with its
accumulated micro-batches, its logging and its validation when one is due), saves last.ckpt, writes
``job_preempted.json``, prints the command that continues it and exits with code 75; running the same command
again (same run dir) continues from that step as if it had never stopped. Under DDP the processes agree on the
step to stop at, whichever of them got the signal.

- SIGTERM (``kill``, ``scancel``, preemption, ``scontrol requeue``): stop. SLURM itself requeues a preempted or
  ``scontrol requeue``-d job.
- SIGINT (Ctrl-C): stop the same way; a second Ctrl-C stops at once, without saving.
- SIGUSR2, and SIGUSR1: the warning SLURM sends before a time limit (``--signal``; the slurm launcher preset asks
  for SIGUSR2 through submitit's ``signal_delay_s``; SIGUSR1 is Lightning's convention in one's own sbatch
  scripts). Inside a SLURM job the run then also requeues the job, through submitit when submitit launched it
  (its handler counts the requeues against ``max_num_timeout``), else with ``scontrol requeue``.

This callback replaces the handlers Lightning installs for these signals, and Lightning's own SLURM
auto-requeue is turned off (``trainer_plugins`` in training.py), so exactly one thing saves and requeues.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import Future, wait
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.plugins.io import AsyncCheckpointIO, TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning_utilities.core.apply_func import apply_to_collection

from glue_finetune.errors import Preempted, sigint_from_a_ray_sweep
from glue_finetune.files import write_atomically

log = logging.getLogger(__name__)


def link_atomically(source: Path, target: Path) -> bool:
    """Make ``target`` a hard link to ``source``: a link beside it, renamed over it (False where the file system
    cannot link; nothing is left behind then)."""
    tmp = target.with_name(f".{target.name}.link")
    try:
        tmp.unlink(missing_ok=True)
        os.link(source, tmp)
        os.replace(tmp, target)
        return True
    except OSError:
        tmp.unlink(missing_ok=True)
        return False


class BestCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint``, also for a run whose dir was moved or copied before it continued. Lightning
    reloads which checkpoint is best, and its score, only from a checkpoint saved in the same ``dirpath``: from a
    moved run's it would keep neither, so its next validation would replace the best checkpoint whatever its score.
    The run's own checkpoints, found moved with it under the new dir, are tracked there. (A ``ckpt_path`` of another
    run, whose checkpoints are not in this run's dir, is left to Lightning: this run selects among its own.)"""

    @property
    def state_key(self) -> str:  # ModelCheckpoint's: checkpoints stay interchangeable with Lightning's callback
        key = super().state_key
        return ModelCheckpoint.__qualname__ + key[len(type(self).__qualname__):]

    def load_state_dict(self, state_dict: dict) -> None:
        before = state_dict.get("dirpath")
        best = state_dict.get("best_model_path")
        if before and self.dirpath and best and Path(before) != Path(self.dirpath) \
                and Path(best).parent == Path(before) and (Path(self.dirpath) / Path(best).name).is_file():
            def moved(path):
                return str(Path(self.dirpath) / Path(path).name) if path and Path(path).parent == Path(before) else path

            state_dict = {**state_dict, "dirpath": self.dirpath, "best_model_path": moved(best),
                          "kth_best_model_path": moved(state_dict.get("kth_best_model_path")),
                          "last_model_path": moved(state_dict.get("last_model_path")),
                          "best_k_models": {moved(path): score
                                            for path, score in (state_dict.get("best_k_models") or {}).items()}}
        super().load_state_dict(state_dict)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with each checkpoint written to a temporary file in its own directory and
    renamed over the old one. Lightning's own atomic save writes the temporary file to $TMPDIR and moves it: where
    $TMPDIR is another file system (a tmpfs /tmp, a run dir on NFS or Lustre), the move is a copy into the existing
    file, so a crash or a full disk leaves it cut short, and a checkpoint hard-linked to it (last.ckpt and the
    selected checkpoint of the same step) is overwritten with it."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if "://" in str(path):  # object storage (s3://, gs://): Lightning's upload
            return super().save_checkpoint(checkpoint, path, storage_options)
        write_atomically(Path(path), lambda f: torch.save(checkpoint, f))


def snapshot(checkpoint: dict) -> tuple[dict, bool]:
    """The checkpoint with each tensor cloned where it lives, and whether any lives on a GPU."""
    on_gpu = False

    def clone(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal on_gpu
        on_gpu |= tensor.is_cuda
        return tensor.detach().clone()

    return apply_to_collection(checkpoint, torch.Tensor, clone), on_gpu


class BackgroundCheckpointIO(AsyncCheckpointIO):
    """Lightning's ``AsyncCheckpointIO`` (the checkpoint cloned where it lives, then written by one background
    thread, in the order saves were asked for), with three changes for GPU runs:

    - the thread copies the clones to the host on a CUDA stream of its own. Lightning's thread copies on the
      default stream, where the copies (1.3 GB for bert-base with its Adam state) queue between the training
      step's kernels and hold them up; on a side stream they overlap training.
    - ``link(source, target)``: once the writes asked for before it are done, ``target`` becomes a hard link to
      ``source``. LatestCheckpoint uses it for last.ckpt when the best checkpoint was saved at the same step: one
      file, two names, as without a background writer (falls back to a copy where the file system cannot link).
    - one checkpoint in flight at most: a save first waits for the previous one to be written. Lightning's queue
      has no bound, and each queued save holds its clone in GPU memory; on a disk slower than checkpoints come
      (1.3 GB every 500 steps is every ~3 s on an H200, and several jobs per GPU write as many), the clones pile
      up until the run is out of GPU memory. Waiting costs time only where the disk is that slow, and says so.
    """

    SLOW_WAIT_S = 1.0  # a wait longer than this is worth telling the user about (once)

    def __init__(self, checkpoint_io=None) -> None:
        super().__init__(checkpoint_io or AtomicCheckpointIO())
        self._copy_stream: torch.cuda.Stream | None = None
        self._in_flight: Future | None = None
        self.waited_s = 0.0
        self._told = False
        self._told_no_room = False

    @property
    def busy(self) -> bool:
        """Whether a save (or link) handed over earlier is still being written."""
        return self._in_flight is not None and not self._in_flight.done()

    def _wait_for_the_previous_save(self, path) -> None:
        if not self.busy:
            return
        began = time.perf_counter()
        wait([self._in_flight])
        waited = time.perf_counter() - began
        self.waited_s += waited
        if waited > self.SLOW_WAIT_S and not self._told:
            self._told = True
            log.warning("Training waited %.1f s for the previous checkpoint to be written to %s: checkpoints come "
                        "faster than that disk takes them. Fix: write the run dir to faster local storage "
                        "(hydra.run.dir=/local/disk/...), or validate, and so checkpoint, less often "
                        "(trainer.val_check_interval=2000).", waited, Path(path).parent)

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        self._wait_for_the_previous_save(path)
        try:  # a point-in-time copy, taken in the training's stream order (as Lightning's), before training goes on
            checkpoint, on_gpu = snapshot(checkpoint)
        except torch.OutOfMemoryError:
            # No room on the GPU for the copy (a large model, jobs sharing the GPU): written in line from the
            # training's own tensors, training waiting for it, instead of the run failing as out of memory.
            if not self._told_no_room:
                self._told_no_room = True
                log.warning("No GPU memory left to copy the checkpoint for the background writer: checkpoints are "
                            "written while training waits.")
            self.checkpoint_io.save_checkpoint(checkpoint, path, storage_options)
            return
        cloned = None
        if on_gpu:
            cloned = torch.cuda.Event()
            cloned.record()  # the clones are queued on the current stream; the copies wait for them
            if self._copy_stream is None:
                self._copy_stream = torch.cuda.Stream()

        def write() -> None:
            if cloned is None:
                self.checkpoint_io.save_checkpoint(checkpoint, path, storage_options)
                return
            with torch.cuda.stream(self._copy_stream):
                self._copy_stream.wait_event(cloned)
                self.checkpoint_io.save_checkpoint(checkpoint, path, storage_options)

        self._submit(write)

    def link(self, source: str | Path, target: str | Path) -> None:
        def make_link() -> None:
            if not link_atomically(Path(source), Path(target)):  # a copy, as atomic
                tmp = Path(target).with_name(f".{Path(target).name}.copy")
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)

        self._submit(make_link)

    def _submit(self, work) -> None:
        """Queue ``work`` for the background thread; an error it raised is raised by the next call here or at
        teardown, as Lightning's does."""
        self._ensure_setup()

        def run() -> None:
            try:
                work()
            except BaseException as ex:
                self._error = ex

        self._in_flight = self._executor.submit(run)
        if self._error:
            raise self._error


class LatestCheckpoint(Checkpoint):
    """Saves ``<dirpath>/last.ckpt`` after each validation during training, at the end of training, and after the
    step during which a stop signal arrived (then raises Preempted, which says how to requeue a SLURM job when
    the signal was a time-limit warning).

    A ``Checkpoint`` callback, so Lightning runs it after ``ModelCheckpoint`` (it moves checkpoint callbacks to the
    end, in their order): last.ckpt then records the best checkpoint that validation just chose, and when that
    best checkpoint was saved at this very step, last.ckpt is a hard link to it instead of a second copy of the
    same bytes (a bert-base checkpoint with its optimizer state is 1.3 GB). Nothing is saved twice for one step.

    With a background writer (GPU runs), a validation's last.ckpt is skipped when the writer is still busy with
    an earlier checkpoint: waiting for it would stop training until the disk catches up (1.3 GB every ~3 s on an
    H200, several times that when jobs share a GPU), and the next validation's last.ckpt comes soon after. So
    last.ckpt is as recent as the disk allows, and training waits only for a new best checkpoint (which scoring
    needs) and for the saves at the end and on a stop signal (which a resume needs).
    """

    def __init__(self, dirpath: str, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")):
        self.dirpath = Path(dirpath)
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self.received: int | None = None
        self.previous: dict[int, object] = {}
        self.saved_step: int | None = None
        self.skipped: list[int] = []  # steps whose last.ckpt was skipped while the disk was busy
        self.step_at_last_batch: int | None = None
        self.stopped_at_once = False  # by a second Ctrl-C

    def _note(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            if self.received is not None:  # Ctrl-C twice: stop now, as Python would, without saving
                self.restore_signal_handlers()
                self.stopped_at_once = True
                raise KeyboardInterrupt
            if sweep_stop := sigint_from_a_ray_sweep():
                log.warning("Stopped by %s: saving a checkpoint after this step.", sweep_stop)
            else:
                log.warning("Ctrl-C: saving a checkpoint after this step, then stopping (Ctrl-C again: stop at once, "
                            "without saving).")
        else:
            log.warning("Received %s: saving a checkpoint after this step.", signal.Signals(signum).name)
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Not earlier (setup): Lightning installs its own SIGTERM handler after setup, keeping the one it found, and
        # puts that one back when fit ends; installed here, ours replaces Lightning's for the training steps.
        for signum in self.signals:
            self.previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._note)

    def restore_signal_handlers(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def save(self, trainer: L.Trainer, unless_busy: bool = False) -> Path:
        """Save last.ckpt for this step (once). ``unless_busy``: not if a background writer is still writing an
        earlier checkpoint (a validation's save; the next one will be written)."""
        path = self.dirpath / "last.ckpt"
        checkpoint_io = trainer.strategy.checkpoint_io
        written_later = isinstance(checkpoint_io, AsyncCheckpointIO)  # queued, maybe not on disk yet
        # Rank 0's answer on every rank (under DDP): what follows is collective, and another node may not see its file
        if trainer.strategy.broadcast(self.saved_step == trainer.global_step and (written_later or path.exists())):
            return path  # saved at this step already (the last validation, then the end of training)
        # Never overwrite a good last.ckpt with diverged weights (the module raises if the loss went NaN/inf).
        if hasattr(trainer.lightning_module, "check_finite"):
            trainer.lightning_module.check_finite()
        # Saving is collective under DDP (every rank enters save_checkpoint's barrier): rank 0 decides, all follow.
        action, failure = "save", None
        if trainer.is_global_zero:
            try:
                if self.link_to_best(trainer, path):
                    action = "linked"
                elif unless_busy and getattr(checkpoint_io, "busy", False):
                    action = "skipped"
            except Exception as err:  # noqa: BLE001 - e.g. the background writer's error of an earlier save
                action, failure = "failed", err  # said to every rank first: the others would wait for this one
        action = trainer.strategy.broadcast(action)
        if action == "failed":
            if failure is not None:
                raise failure
            raise RuntimeError("Rank 0 could not save last.ckpt; its error, in its log, ends the run.")
        if action == "skipped":
            self._note_skipped(trainer.global_step)
            return path
        if action == "save":
            trainer.save_checkpoint(path, weights_only=False)  # the whole state: weights, optimizer, loops
        self.saved_step = trainer.global_step
        return path

    def _note_skipped(self, step: int) -> None:
        if not self.skipped:
            log.warning("last.ckpt not saved at step %d: the disk was still writing the previous checkpoint. "
                        "Training goes on without waiting; last.ckpt keeps its earlier step until a validation "
                        "finds the disk free, and is saved at the end. To keep it at every validation: write the run "
                        "dir to faster local storage (hydra.run.dir=/local/disk/...), or validate less often "
                        "(trainer.val_check_interval=2000).", step)
        self.skipped.append(step)

    def link_to_best(self, trainer: L.Trainer, path: Path) -> bool:
        """Make ``path`` a hard link to the full checkpoint a ModelCheckpoint saved at this step, if there is one:
        at once when it is on disk (and the file system links), or, with BackgroundCheckpointIO, once its
        background write is done. Lightning's own AsyncCheckpointIO cannot say when that is: saved again."""
        checkpoint_io = trainer.strategy.checkpoint_io
        for callback in trainer.checkpoint_callbacks:
            if (isinstance(callback, ModelCheckpoint) and not callback.save_weights_only
                    and callback._last_global_step_saved == trainer.global_step and callback._last_checkpoint_saved):
                best = Path(callback._last_checkpoint_saved)
                if isinstance(checkpoint_io, BackgroundCheckpointIO):
                    checkpoint_io.link(best, path)
                    return True
                if not isinstance(checkpoint_io, AsyncCheckpointIO) and best.is_file():
                    return link_atomically(best, path)
        return False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:  # not trainer.validate()/test()
            self.save(trainer, unless_busy=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer)
        self.restore_signal_handlers()
        if self.agreed_signal(trainer) is not None:  # arrived during the last step: stop here, as after any step
            self.stop(trainer)
        if self.skipped and trainer.is_global_zero:
            log.info("last.ckpt was skipped at %d validation(s) while the disk was busy (steps %s); it holds the "
                     "final step.", len(self.skipped), ", ".join(map(str, self.skipped[:10]))
                     + (", ..." if len(self.skipped) > 10 else ""))

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.restore_signal_handlers()

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        record_where_training_ended(trainer, checkpoint)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # Runs before Lightning restores its loops from ``checkpoint``, and after the data module read its place
        # in the epoch: told it again, as mended.
        if mend_where_an_earlier_version_ended(trainer, checkpoint) and (state := data_state_in(trainer, checkpoint)):
            trainer.datamodule.load_state_dict(state)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        # Stop here, before the next batch, rather than at the end of the batch during which the signal came: by now
        # the last step has done all it does (the module's logging, the validation due at it, with its checkpoint),
        # so the resumed run repeats none of it and misses none of it. And only where an optimizer step just ended:
        # the gradients of a half-accumulated window are not in checkpoints.
        window_start = trainer.global_step != self.step_at_last_batch
        self.step_at_last_batch = trainer.global_step
        epoch_loop = trainer.fit_loop.epoch_loop
        if epoch_loop._batches_that_stepped != trainer.global_step:
            # Resumed from a stop at an epoch's first batch in an epoch that validates, with
            # trainer.check_val_every_n_epoch set: Lightning reads batch -1 of the epoch as a validation's and skips
            # it, counting it as a step for its loggers, which then wrote the train/loss of every later epoch's
            # last step too late (at an epoch's end: never). Its logging step is the optimizer step count. (Here,
            # beside the stop that saves such a checkpoint: a run without this callback saves no last.ckpt.)
            epoch_loop._batches_that_stepped = trainer.global_step
        if window_start and self.agreed_signal(trainer) is not None:
            # Lightning has counted this batch as ready (and read whether it ends the epoch); it never starts. The
            # checkpoint records the loop as the last batch left it, a state Lightning resumes from as from a
            # save after a validation: ready counts back to completed, and the epoch goes on past this batch.
            progress = trainer.fit_loop.epoch_loop.batch_progress
            if progress.total.ready == progress.total.completed + 1:
                progress.total.ready -= 1
                progress.current.ready -= 1
                progress.is_last_batch = False
            self.stop(trainer)

    def agreed_signal(self, trainer: L.Trainer) -> int | None:
        """The signal received, by this process or, under DDP, by any (the largest number if several): every
        process stops at the same step, as saving is collective. A kill of the launching process reaches only
        rank 0, and even a signal sent to all ranks arrives between their steps at slightly different times.
        One small all-reduce per step, as Lightning's own SIGTERM check does under DDP."""
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            received = torch.tensor([self.received or 0], device=trainer.strategy.root_device)
            torch.distributed.all_reduce(received, op=torch.distributed.ReduceOp.MAX)
            agreed = int(received.item())
            if not agreed:
                # A signal that came during the all-reduce (where a rank waits for the others, so most come then)
                # is not in it: the other ranks have not heard of it yet. It stays noted for the next step's.
                return None
            self.received = agreed
        return self.received

    def stop(self, trainer: L.Trainer) -> None:
        path = self.save(trainer)
        log.warning("Checkpoint saved at step %d: %s", trainer.global_step, path)
        signum, self.received = self.received, None
        # One requeue per job: under DDP every rank stops, rank 0 requeues.
        requeue = slurm_requeue(signum, self.previous.get(signum)) if trainer.is_global_zero else None
        cause = (signum == signal.SIGINT and sigint_from_a_ray_sweep()) or signal.Signals(signum).name
        raise Preempted(f"stopped by {cause} at step {trainer.global_step}; checkpoint: {path}", requeue=requeue)


def record_where_training_ended(trainer: L.Trainer, checkpoint: dict) -> None:
    """The checkpoint saved as training ends, made to continue where it ended (``ckpt_path``, with a longer
    ``trainer.max_steps`` or ``max_time``). Lightning closes the epoch training ended in, and records two states a
    continued run misreads:

    - ended in the middle of the epoch (``max_steps``, ``max_time``, early stopping): the epoch counts as
      completed, so the continued run started the next epoch as if that many of its batches were done, skipping
      the rest of the cut epoch and the start of the next. Recorded as the epoch in progress it is, as a save
      during the epoch records it, the continued run trains the rest of that epoch.
    - ended at the epoch's last batch: with ``max_steps`` set Lightning carries the epoch's batch count into the
      next epoch, which then ends after its first batch. Recorded with none of the next epoch's batches done."""
    epoch, batches = trainer.fit_loop.epoch_progress.current, trainer.fit_loop.epoch_loop.batch_progress
    if trainer.state.fn != TrainerFn.FITTING or not epoch.completed or epoch.completed != epoch.ready:
        return  # during an epoch, or before the first: recorded as it is
    ran_to_its_end = batches.is_last_batch or batches.current.ready >= trainer.num_training_batches
    continue_where_training_ended(checkpoint, data_state_in(trainer, checkpoint), ran_to_its_end)


def mend_where_an_earlier_version_ended(trainer: L.Trainer, checkpoint: dict) -> bool:
    """A last.ckpt that versions before ``record_where_training_ended`` saved as training ended, as Lightning left
    it (the epoch closed, its batch count kept), mended as it loads to what that function records. Told apart
    from every other checkpoint by that state: a save during an epoch leaves the epoch open, and this version
    reopens it or counts none of the next epoch's batches."""
    loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
    epoch, batches = (loop.get("epoch_progress") or {}).get("current"), loop.get("epoch_loop.batch_progress")
    if not epoch or not batches or not epoch["completed"] or epoch["completed"] != epoch["ready"] \
            or not batches["current"]["ready"]:
        return False
    # Lightning marks the epoch's last batch (also the last of trainer.limit_train_batches); were an epoch's end
    # not marked, reopening it with all its batches done ends it at once, as it ended.
    ran_to_its_end = batches["is_last_batch"]
    log.info("%s was saved as training ended by an earlier version of this project: read as ending %s, so that "
             "training goes on where it ended.", trainer.ckpt_path, f"at epoch {epoch['completed'] - 1}'s end"
             if ran_to_its_end else f"{batches['current']['ready']} batches into epoch {epoch['completed'] - 1}")
    continue_where_training_ended(checkpoint, data_state_in(trainer, checkpoint), ran_to_its_end)
    return True


def data_state_in(trainer: L.Trainer, checkpoint: dict) -> dict:
    """The data module's place in the epoch (data.GlueDataModule.state_dict), under Lightning's key for it; {}
    where there is none."""
    state = checkpoint.get(type(trainer.datamodule).__qualname__) if trainer.datamodule is not None else None
    return state if isinstance(state, dict) and "epoch" in state else {}


def continue_where_training_ended(checkpoint: dict, data_state: dict, ran_to_its_end: bool) -> None:
    """``checkpoint``'s loops (and ``data_state``, within it) made to continue after the epoch training ended at
    its end (``ran_to_its_end``: none of the next epoch's batches done), else in that epoch, still in progress."""
    if ran_to_its_end:
        progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]
        progress["current"] = {count: 0 for count in progress["current"]}
        progress["is_last_batch"] = False
        if data_state:
            data_state["batches_done"] = 0
        return
    progress = checkpoint["loops"]["fit_loop"]["epoch_progress"]
    for counts in (progress["total"], progress["current"]):
        counts["processed"] -= 1
        counts["completed"] -= 1
    checkpoint["epoch"] -= 1
    if data_state:
        data_state["epoch"] -= 1


def slurm_requeue(signum: int, previous_handler):
    """How to requeue this SLURM job after the time-limit warning ``signum``, or None (not a warning, not in a
    SLURM batch job). Submitit's own handler when submitit launched the job: it requeues within the job's
    ``max_num_timeout`` and exits. Otherwise ``scontrol requeue`` (the job must be requeueable, as SLURM's
    default JobRequeue=1 makes batch jobs)."""
    # Only the time-limit warnings: SLURM requeues a preempted job (SIGTERM) itself, and Ctrl-C (srun, salloc) stops.
    if signum not in (getattr(signal, "SIGUSR1", None), getattr(signal, "SIGUSR2", None)) \
            or not os.environ.get("SLURM_JOB_ID"):
        return None
    if callable(previous_handler) and getattr(previous_handler, "__module__", "").startswith("submitit"):
        return functools.partial(previous_handler, signum, None)
    return functools.partial(scontrol_requeue, slurm_job_id())


def slurm_job_id() -> str:
    """This job's id for scontrol: ``<array>_<task>`` in a job array (submitit submits sweeps as arrays). The bare
    SLURM_JOB_ID of an array task can be the array's own id, which means every task of it to scontrol."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]


def scontrol_requeue(job_id: str) -> None:
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if result.returncode == 0:
        log.warning("Requeued SLURM job %s: it continues from last.ckpt when it starts again.", job_id)
    else:
        log.error("Could not requeue SLURM job %s (%s); resubmit the same command to continue from last.ckpt.",
                  job_id, (result.stderr or result.stdout).strip())
