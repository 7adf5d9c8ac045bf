"""What reaches the console: this project's own lines (what runs, where results are) and every warning or error.
Libraries' INFO lines and progress bars for sub-second work go to ``train.log`` only, or nowhere."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

PROJECT_LOGGERS = ("glue_finetune", "train", "__main__")


class ConsoleFilter(logging.Filter):
    """Hydra's console handler (conf/hydra/default.yaml) passes this project's INFO lines and everyone's warnings;
    the file handler (``train.log``) keeps every INFO line, Lightning's included. Under DDP every process runs the
    same code: the processes other than rank 0 print their errors only, not a second copy of every line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if process_rank() != 0:
            return record.levelno >= logging.ERROR
        if record.name == "asyncio" and record.msg == "socket.send() raised exception.":
            return False  # once per W&B call after W&B's service stopped, which the run says once (tracking.py)
        return record.levelno >= logging.WARNING or record.name.split(".")[0] in PROJECT_LOGGERS


class RunLog(logging.FileHandler):
    """Hydra's file handler, ``train.log`` in the run dir (conf/hydra/default.yaml). In a dir that already holds a
    run (Hydra's record of it), this command's lines wait in memory until it goes on there (``keep_run_log``): a
    command refused there (the dir in use by a running job, a finished run, other settings than the run's) leaves
    that run's log as it was and says why on the console. Only rank 0 holds: DDP's other processes join a run
    that rank 0 has already taken on."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None, delay: bool = False) -> None:
        rank = process_rank()
        if rank and not Path(filename).stem.startswith("train_ddp_process_"):
            # Lightning names the log of each process it starts so (hydra.job.name); SLURM's tasks each run the
            # whole command as it was given, and would all write to rank 0's.
            filename = str(Path(filename).with_name(f"train_ddp_process_{rank}.log"))
        earlier_run = (Path(filename).parent / ".hydra" / "config.yaml").exists()  # config.HYDRA_RECORD
        self.held: list[logging.LogRecord] | None = [] if earlier_run and rank == 0 else None
        super().__init__(filename, mode, encoding, delay=delay or self.held is not None)

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is None:
            super().emit(record)
        else:
            self.held.append(record)

    def keep(self) -> None:
        with self.lock:  # emit's own lock (Handler.handle): no other thread's line between the held ones
            held, self.held = self.held or [], None
            for record in held:
                super().emit(record)


def keep_run_log() -> None:
    """This command goes on in its run dir (trains there, anew or continuing, or skips the finished run it holds):
    its lines so far, and from now on, go to the dir's train.log."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RunLog):
            handler.keep()


class HeldStderr:
    """``sys.stderr`` until Hydra has composed the config (``hold_stderr``): when Hydra refuses an override, its
    message ("Could not override 'optimizre.lr'. To append to your config use +optimizre.lr=...") waits here, so
    that this project's (cli.explain_unknown_keys: the key or option meant) can take its place. Everything else
    comes out in order when released, and passes straight through after: a handler made meanwhile writes here."""

    def __init__(self, stream) -> None:
        self.stream, self.held = stream, []

    def write(self, text: str) -> int:
        if self.held is None:
            return self.stream.write(text)
        self.held.append(text)
        return len(text)

    def __getattr__(self, name: str):  # fileno, isatty, encoding, flush: the real stream's
        return getattr(self.stream, name)

    def release(self, keep: bool = True) -> str:
        held, self.held = "".join(self.held or []), None
        if keep and held:
            self.stream.write(held)
            self.stream.flush()
        return held


def hold_stderr() -> None:
    if not isinstance(sys.stderr, HeldStderr):
        sys.stderr = HeldStderr(sys.stderr)


def release_stderr(keep: bool = True) -> str:
    """The real stderr back, and what was held written to it (or, keep=False, only returned: a refused override's
    message that this project's replaces). Hydra composed the config, or the command ends."""
    if not isinstance(sys.stderr, HeldStderr):
        return ""
    held = sys.stderr
    sys.stderr = held.stream
    return held.release(keep)


def process_rank() -> int:
    """This process's global rank: Lightning's, once Lightning is imported (its strategy sets it); before, the one
    the launcher gave it (Lightning's DDP launcher sets LOCAL_RANK and NODE_RANK, torchrun RANK, SLURM's tasks
    SLURM_PROCID)."""
    rank_zero = sys.modules.get("lightning.fabric.utilities.rank_zero")
    rank = getattr(getattr(rank_zero, "rank_zero_only", None), "rank", None)
    if isinstance(rank, int):
        return rank
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK"):
        if (value := os.environ.get(name, "0")).isdigit() and int(value) != 0:
            return int(value)
    return 0


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """No "Loading weights" bar or load report while a model loads: the report's only entry for a fine-tune is the
    new classifier head, which is expected (the caller checks for anything else)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def no_datasets_progress_bars() -> Iterator[None]:
    """datasets draws a bar per split for loading and tokenizing, a second's work (and nothing once cached)."""
    import datasets

    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def silence_known_library_warnings(resuming: bool = False) -> None:
    """Warnings libraries raise about each other, or about what this project does on purpose: nothing a user of
    this project can act on."""
    import warnings

    # Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # Lightning, wherever SLURM's client is installed, on every run not started by srun: a sweep job on Ray or this
    # machine is not meant to be (and submitit starts SLURM jobs with srun).
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
    # Lightning under DDP, for every value logged per epoch without sync_dist: this module logs torchmetrics results,
    # which torchmetrics has already reduced across processes.
    warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\('.*', \.\.\., sync_dist=True\)`")
    # torch, for the eager steps of the graphed whole step (model.whole_step): the first batch of each shape runs
    # eagerly with the optimizer already set up for capture, on purpose (step_graphs.py).
    warnings.filterwarnings("ignore", message=r"This instance was constructed with capturable=True")
    # Lightning, when an epoch has fewer batches than log_every_n_steps: this project counts that interval across
    # epochs, and train() says itself when a run is too short to log (warn_of_a_run_too_short_to_validate).
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging")
    # Lightning, under debug=overfit: it takes the batches in order, as overfitting asks for (the dev loader's
    # length-sorted order reads to it as shuffled).
    warnings.filterwarnings("ignore", message=r"You requested to overfit but enabled (train|val) dataloader shuffling")
    # Lightning, for a ckpt_path of another run: this run selects among its own checkpoints (training.py).
    warnings.filterwarnings("ignore", message=r"The dirpath has changed from")
    if resuming:  # the run's own checkpoints are there, as they should be (a fresh run still gets the warning)
        warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")


def route_lightning_logs_to_root() -> None:
    """``import lightning`` gives the "lightning" logger a console handler of its own, which would print every
    Lightning INFO line past the console filter. Where the root logger has handlers (Hydra's console and
    train.log), drop it: Lightning's lines still reach train.log, and its warnings the console."""
    import lightning  # noqa: F401  (adds the handler)

    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()
