"""What a job of a sweep needs beyond ``train(cfg)``: skip or resume on ``resume=true``, keep one failure from
stopping the others, mark completion, and summarise the sweep at the end.

Each job leaves a marker in its own dir: ``job_done.json`` (written last and atomically, so its presence means the
job finished) or ``job_failed.json``. ``SweepSummary``, a Hydra callback, reads them once the launcher returns.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from glue_finetune.config import job_overrides, name_sweep_group
from glue_finetune.files import as_seen_from_here, unwritable, write_text_atomically
from glue_finetune.errors import (PREEMPTED_EXIT_CODE, ConfigError, Preempted, UserError, in_a_ray_job,
                                  sigint_from_a_ray_sweep)
from glue_finetune.logs import keep_run_log, release_stderr
from glue_finetune.timing import mark_earlier_attempts, mark_run_start

log = logging.getLogger(__name__)

DONE = "job_done.json"
FAILED = "job_failed.json"
# Which invocation of a sweep a job's marker was written by: set by the sweep's command, passed to its jobs (their
# environment, on Ray and SLURM too). A sweep's summary speaks for its own jobs, not for failures left in its dir
# by an earlier invocation (another sweep in the same dir, a study's earlier trials).
SWEEP_INVOCATION = "GLUE_FINETUNE_SWEEP_INVOCATION"
PREEMPTED = "job_preempted.json"
OPTUNA_SWEEPER = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"


def write_json_atomically(path: Path, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=2))


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


class JobFailed(Exception):
    """A sweep job's failure, recorded in its dir and logged: how a job fails for the Optuna sweeper."""


def optuna_sweep(config: DictConfig | None = None) -> bool:
    """Whether Optuna's sweeper runs this sweep: from ``config`` (a sweep's whole config), else from the job's own."""
    if config is not None:
        return OmegaConf.select(config, "hydra.sweeper._target_", default=None) == OPTUNA_SWEEPER
    return HydraConfig.initialized() and OmegaConf.select(HydraConfig.get(), "sweeper._target_") == OPTUNA_SWEEPER


def failed_job_result(error: str, config: DictConfig | None = None) -> float:
    """What a failed sweep job returns to its sweeper: NaN for Hydra's basic sweeper, which raises the exception of
    any job that raises one, ending the sweep; for Optuna's, a ``JobFailed`` raised, which it records as a failed
    trial (up to ``hydra.sweeper.max_failure_rate``, 1.0 in hparams_search/lr_optuna.yaml). Optuna 2's ``tell``
    given NaN marks the trial failed and raises, and the Hydra sweeper's handler then tells it again and crashes."""
    if optuna_sweep(config):
        raise JobFailed(error)
    return float("nan")


def stop_or_requeue(err: Preempted) -> float:
    """How a run stopped by a signal ends: it says how to continue it and exits 75 (a Ray sweep's job returns to the
    sweep instead, which counts it as stopped); inside a SLURM job warned of its time limit, the job is requeued
    first (submitit's handler then exits the process itself). A job submitit will
    not requeue again (past ``hydra.launcher.max_num_timeout``) ends as a stopped job of its sweep, saved where it
    stopped: the sweep goes on, and its summary says how to continue it (submitit's error would end the sweep
    with a traceback)."""
    resume_with = getattr(err, "resume_with", "the same command")
    if getattr(err, "nothing_saved", False) and err.requeue is None:
        log.warning("Run %s, before it saved a checkpoint: nothing to continue. To start it again: %s", err,
                    resume_with)
        summarize_a_local_sweep_stopped_in_a_job(nothing_saved=True)
        sys.exit(PREEMPTED_EXIT_CODE)
    if err.requeue is None:
        log.warning("Run %s. To continue from it: %s", err, resume_with)
        if in_a_ray_job():
            # Its result, not an exit: Ray reads a worker's exit as a crash ("A worker died or was killed ... by an
            # unexpected system error"). The sweep counts the job as stopped by its record (job_preempted.json).
            return failed_job_result(f"stopped ({err})")
        summarize_a_local_sweep_stopped_in_a_job()
        sys.exit(PREEMPTED_EXIT_CODE)
    log.warning("Preempted: %s. Requeueing the SLURM job, which continues from it.", err)
    try:
        err.requeue()  # last: everything is written
    except Exception as refused:  # submitit's UncompletedJobError: "timed-out too many times"
        log.warning("The SLURM job was not requeued (%s). It is saved where it stopped; to continue it: %s",
                    str(refused).rstrip("."), resume_with)
        return failed_job_result(f"stopped ({err}); not requeued: {refused}")
    sys.exit(PREEMPTED_EXIT_CODE)


def summarize_a_local_sweep_stopped_in_a_job(nothing_saved: bool = False) -> None:
    """Hydra's basic launcher runs a sweep's jobs one after another in this process: a job stopped by a signal
    ends the sweep, and Hydra's end of the sweep (``SweepSummary``) never comes. Its summary, then, with the jobs
    not started yet (they ran under the other launchers' own end of the sweep)."""
    if not in_multirun():
        return
    hydra_cfg = HydraConfig.get()
    if not str(OmegaConf.select(hydra_cfg, "launcher._target_", default="")).endswith("BasicLauncher"):
        return
    this_job = Path(str(hydra_cfg.runtime.output_dir)).name
    unsaved = [d.name for d in JOB_DIRS if not (d / ".hydra").exists() or (nothing_saved and d.name == this_job)]
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(hydra_cfg.sweep.dir)},
                                         "sweeper": {"_target_": OmegaConf.select(hydra_cfg, "sweeper._target_")}}})
    SweepSummary().on_multirun_end(config, unsaved=unsaved)


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def one_device(devices) -> bool:
    """Whether Lightning's ``devices`` is a single device: 1, "1", [3] or "3," (GPU 3); not -1 or "auto" (all)."""
    if OmegaConf.is_config(devices):
        devices = OmegaConf.to_container(devices)
    if isinstance(devices, (list, tuple)):
        return len(devices) == 1
    text = str(devices).strip()
    if "," in text:
        return len([part for part in text.split(",") if part.strip()]) == 1
    return text == "1"


def multirun_problem(cfg: DictConfig, launcher: str) -> str | None:
    """DDP re-launches the script once per GPU, which a sweep job run by Hydra's local or Ray launcher cannot
    survive (Lightning dropped multirun support for it, PR #15737; Hydra #2070). SLURM starts the processes itself.
    ``launcher``: the sweep's ``hydra.launcher._target_``."""
    strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="auto"))
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    # Lightning's "auto" strategy is DDP on more than one device (trainer=gpu trainer.devices=2)
    if ("ddp" in strategy or strategy in ("auto", "None")) and not one_device(devices) and "submitit" not in launcher:
        return (f"trainer.strategy={strategy} with trainer.devices={devices} cannot run inside a sweep on this "
                "launcher. Sweep with one GPU per job instead (`-m ... hydra/launcher=parallel trainer=gpu`), run each "
                "setting as its own `python src/train.py trainer=ddp ...`, or sweep DDP jobs on SLURM "
                "(`hydra/launcher=slurm`).")
    return None


def check_multirun_compatible(cfg: DictConfig) -> None:
    """A job's own check (an Optuna trial's, whose values SweepCheck does not see in advance)."""
    launcher = str(OmegaConf.select(HydraConfig.get(), "launcher._target_", default=""))
    if problem := multirun_problem(cfg, launcher):
        raise ConfigError([problem])


def run_where_the_sweep_started() -> None:
    """A job runs in the directory its sweep was started from (hydra.job.chdir=false), so relative paths in its
    config (data.local_dir=..., model paths) mean what they meant on the command line. A Ray cluster's worker
    starts in the directory its node's `ray start` ran in; SLURM's in the submission directory, or elsewhere."""
    start_dir = str(OmegaConf.select(HydraConfig.get(), "runtime.cwd", default="") or "")
    if start_dir and os.path.isdir(start_dir) and os.path.realpath(start_dir) != os.path.realpath(os.getcwd()):
        os.chdir(start_dir)


def previous_run(out: Path) -> str | None:
    """What a run dir already holds of an earlier run that a new run there would overwrite, or None."""
    if (done := read_json(out / DONE)) is not None:
        return f"a finished run (result {done.get('result', float('nan')):.4f})"
    checkpoints = sorted((out / "checkpoints").glob("*.ckpt"))
    if checkpoints:
        return "an unfinished run (" + ", ".join(p.name for p in checkpoints[:3]) + ")"
    if (out / "model" / "config.json").is_file():
        return "a run's exported model"
    return None


def refuse_to_overwrite(out: Path, multirun: bool) -> None:
    """A new run in a dir that holds an earlier one would overwrite its checkpoints, model and metrics: refuse
    before any work. (A failed run with no checkpoint holds nothing to lose: its dir is reused.)"""
    if (found := previous_run(out)) is None:
        return
    if multirun:
        sweep_dir = OmegaConf.select(HydraConfig.get(), "sweep.dir", default="<sweep dir>")
        raise UserError(f"{out} already holds {found}. To skip the sweep's finished jobs and continue the others, "
                        f"add resume=true (same command, hydra.sweep.dir={sweep_dir}); to start the sweep anew, "
                        "give it another hydra.sweep.dir.")
    keep = "keep it (and skip the run)" if found.startswith("a finished") else "continue it"
    try:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # train() called without Hydra's entry point
        run_dir = out
    if run_dir.resolve() != out.resolve():  # paths.output_dir set apart from Hydra's run dir
        raise UserError(f"{out} (paths.output_dir) already holds {found}. To {keep}, add resume=true; to start a "
                        "new run, give another paths.output_dir, or leave it out (it follows hydra.run.dir).")
    raise UserError(f"{out} already holds {found}. To {keep}, add resume=true; to start a new run, give it "
                    "another hydra.run.dir (or none: a new dated dir).")


@contextlib.contextmanager
def stop_on_sigterm():
    """SIGTERM outside the training steps (start-up, scoring, export), where last.ckpt's callback does not catch
    it: stop as a preempted run (marker, the command that continues it, exit 75) rather than die unannounced.
    During training the callback's own handler takes over and saves the step first. SIGUSR1 and SIGUSR2 (SLURM's
    warning before a time limit) too, where nothing else handles them (submitit's handler requeues its jobs):
    their default action kills the process without a word."""
    def stop(signum, frame):
        from glue_finetune.checkpointing import slurm_requeue

        # SLURM's time-limit warning inside a SLURM job: requeued, as during training (the checkpoint it continues
        # from is the last one saved)
        raise Preempted(f"stopped by {signal.Signals(signum).name} outside the training steps",
                        requeue=slurm_requeue(signum, previous.get(signum)))

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = [signal.SIGTERM] + [s for s in (signal.SIGUSR1, signal.SIGUSR2) if signal.getsignal(s) == signal.SIG_DFL]
    previous = {signum: signal.signal(signum, stop) for signum in caught}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# What may differ when a run continues: where things are, how fast it runs, how it is logged, how long it may take,
# and the precision the machine it continues on computes in (trainer=cpu: bf16 where the CPU has it natively).
# Anything else (the model, the data, the optimisation, the length of the schedule) is what the run trains.
MAY_CHANGE_ON_RESUME = ("resume", "ckpt_path", "run_name", "paths.", "logger.", "callbacks.progress_bar.",
                        "trainer.enable_progress_bar", "trainer.max_time", "trainer.precision", "data.local_dir",
                        "data.glue_dir", "data.num_workers", "model.compile", "model.whole_step", "matmul_precision")


# Constructors a run may have recorded under another name: the same thing built (a run of an earlier version).
SAME_CONSTRUCTOR = {("callbacks.model_checkpoint._target_.", "lightning.pytorch.callbacks.ModelCheckpoint"):
                    "glue_finetune.checkpointing.BestCheckpoint"}


def flatten(tree, prefix: str = "") -> dict:
    """A nested dict as {"a.b.": value}: each key ends with a dot, so "paths." also matches "paths.output_dir."."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    return {k: v for key, value in tree.items() for k, v in flatten(value, f"{prefix}{key}.").items()} \
        if tree else {prefix: {}}


def recorded_config(out: Path) -> dict | None:
    """The resolved config the run in ``out`` recorded when it started (``hparams.yaml``), or None."""
    import yaml

    try:
        recorded = yaml.safe_load((out / "hparams.yaml").read_text())
    except Exception:  # no record (logger-less runs of old versions), or an unreadable one
        return None
    return recorded if isinstance(recorded, dict) else None


def changed_settings(recorded: dict, cfg: DictConfig, swept: tuple[str, ...] = ()) -> list[str]:
    """The settings of ``cfg`` that differ from those a run recorded (``recorded_config``), as "key: before (the
    run) -> now (now)" lines, less those that may change on resume; but a key a sweep varies (``swept``) is what
    tells its jobs apart, whatever it is (a sweep over data.local_dir trains on each folder's data)."""
    try:
        now = flatten(OmegaConf.to_container(cfg, resolve=True))
    except Exception:  # a config that resolves only in a run
        return []
    before = {key: SAME_CONSTRUCTOR.get((key, value), value) if isinstance(value, str) else value
              for key, value in flatten(recorded).items()}
    # A run dir moved or copied: the values under it (checkpoint dirs, Lightning's root dir) move with it.
    old_dir, new_dir = before.get("paths.output_dir."), now.get("paths.output_dir.")
    if isinstance(old_dir, str) and isinstance(new_dir, str) and old_dir != new_dir:
        before = {key: new_dir + value[len(old_dir):] if isinstance(value, str) and (
            value == old_dir or value.startswith(old_dir.rstrip("/") + "/")) else value for key, value in before.items()}

    def shown(settings: dict, key: str) -> str:
        return "(not set)" if key not in settings else "null" if settings[key] is None else str(settings[key])

    return [f"{key[:-1]}: {shown(before, key)} (the run) -> {shown(now, key)} (now)"
            for key in sorted(set(before) | set(now))
            if before.get(key) != now.get(key)
            and (not key.startswith(MAY_CHANGE_ON_RESUME) or key.startswith(tuple(f"{k}." for k in swept)))]


def refuse_changed_settings(out: Path, cfg: DictConfig) -> None:
    """A run continues (or, finished, is kept) as it was started: a setting that changes what it trains (a
    forgotten experiment=..., another model or task) would otherwise mix two runs in one, fail deep in loading the
    checkpoint, or pass off the finished run's result as that of the settings given now."""
    if (recorded := recorded_config(out)) and (changed := changed_settings(recorded, cfg)):
        # Without resume=true: a stopped run's dir, which the same command continues.
        how = "resume=true continues" if cfg.get("resume") else "A command in the dir of a stopped run continues"
        raise UserError(f"{how} the run in {out} as it was started, but these settings differ from "
                        "it:\n" + "\n".join(f"  - {line}" for line in changed) + "\n"
                        f"It was started with {recorded_overrides(out, recorded)}. Give the same ones (a new "
                        "hydra.run.dir or hydra.sweep.dir starts a new run with these).")


def write_hydra_record(out: Path, cfg: DictConfig) -> None:
    """Hydra's record of this command (``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``, as Hydra writes
    them) once it trains in its dir, anew or continuing (a data folder moved since, say): in a dir that held a
    record Hydra left it as it was (``hydra_record_subdir``) in case this command was refused there. Rewritten as
    is where Hydra has just written it."""
    from glue_finetune.config import HYDRA_RECORD, HYDRA_RECORD_SUBDIR

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.instance().cfg
    if OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir", default=None) != str(out.absolute()) or \
            OmegaConf.to_container(hydra_cfg.hydra, resolve=False).get("output_subdir") != HYDRA_RECORD_SUBDIR:
        return  # not this command's dir (a test's), or a record dir set by the command (hydra.output_subdir=null)
    record = out / HYDRA_RECORD
    record.mkdir(exist_ok=True)
    for name, node in (("config.yaml", cfg), ("hydra.yaml", hydra_cfg), ("overrides.yaml", hydra_cfg.hydra.overrides.task)):
        write_text_atomically(record / name, OmegaConf.to_yaml(node))


def recorded_overrides(out: Path, recorded: dict) -> str:
    """The overrides the run in ``out`` was started with, as they would be typed again (Hydra's
    ``.hydra/overrides.yaml``, less where it wrote and resume), or its run name where Hydra left no record."""
    import yaml

    try:
        overrides = yaml.safe_load((out / ".hydra" / "overrides.yaml").read_text())
    except Exception:  # a run dir Hydra did not make
        return f"the overrides: {recorded.get('run_name', '?')}"
    typed = [o for o in overrides or [] if not str(o).startswith(("hydra.run.dir=", "hydra.sweep.dir=", "resume="))]
    return f"the overrides: {shlex.join(typed)}" if typed else "no overrides"


def command_args() -> list[str]:
    """The overrides of the command this process runs, less where it writes, resume and -m."""
    return [a for a in sys.argv[1:] if not a.startswith(("hydra.run.dir=", "hydra.sweep.dir=", "resume=", "-m",
                                                         "--multirun"))]


def entry_point() -> str:
    """train.py as this command named it (src/train.py from the repo's root; another path from elsewhere)."""
    return sys.argv[0] if Path(sys.argv[0]).name == "train.py" else "src/train.py"


def sweep_continue_command(sweep_dir) -> str:
    """The command that continues a sweep: finished jobs are skipped, stopped ones continue from their checkpoint."""
    if Path(sys.argv[0]).name != "train.py":  # a launcher's worker (Ray, submitit), the report: not the command
        return recorded_sweep_command(sweep_dir)
    return shlex.join(["python", entry_point(), "-m", *command_args(), f"hydra.sweep.dir={sweep_dir}", "resume=true"])


def recorded_sweep_command(sweep_dir) -> str:
    """The sweep's command as its ``multirun.yaml`` recorded it (its last invocation), with resume=true; where there
    is none (Optuna's sweeper, a dir not at hand), said in words."""
    from glue_finetune.config import recorded_sweep

    try:
        overrides = recorded_sweep(Path(sweep_dir))["overrides"]
        given = [o for o in overrides["hydra"] if not str(o).startswith(("hydra.sweep.dir=", "hydra.mode="))]
        given += [o for o in overrides["task"] if not str(o).startswith("resume=")]
    except Exception:
        return f"the sweep's command again, with resume=true hydra.sweep.dir={sweep_dir}"
    return shlex.join(["python", "src/train.py", "-m", *map(str, given), f"hydra.sweep.dir={sweep_dir}", "resume=true"])


def continue_command(out: Path, resume: bool = True) -> str:
    """The command that continues this run (or this sweep) where it stopped; ``resume=False``: that starts this run
    again in its dir, where it saved nothing to continue from (a sweep's command does either)."""
    if in_multirun():
        return sweep_continue_command(OmegaConf.select(HydraConfig.get(), "sweep.dir", default=str(out.parent)))
    return shlex.join(["python", entry_point(), *command_args(), f"hydra.run.dir={out}", *(["resume=true"] * resume)])


def earlier_attempts_s(out: Path) -> float:
    """The time this run's earlier attempts took, for an attempt that continues from their checkpoint: the newest
    stop marker's own attempt plus what it counted before it (an attempt whose process was killed left none)."""
    attempts = [record.get("earlier_attempts_s", 0.0) + record[end] - record["started_at"]
                for marker, end in ((PREEMPTED, "preempted_at"), (FAILED, "failed_at"))
                if (record := read_json(out / marker)) and end in record and "started_at" in record]
    return max(attempts, default=0.0)  # each marker counts the ones before it: the newest counts the most


def slurm_requeued() -> bool:
    """Whether SLURM re-ran this job (preempted, or requeued at its time limit): the very command again."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def first_process_of_the_run() -> bool:
    """False in DDP's other processes, which run the same command in their rank 0's run dir (Lightning's relaunch
    sets LOCAL_RANK, torchrun RANK, srun SLURM_PROCID, a multi-node launch NODE_RANK)."""
    return all(os.environ.get(var, "0") == "0" for var in ("LOCAL_RANK", "RANK", "SLURM_PROCID", "NODE_RANK"))


def in_use(directory: Path) -> bool:
    """Whether a process holds the run dir (``exclusive_run_dir``); False where it cannot be told (no such dir, a
    file system without locks)."""
    import fcntl

    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # releases the lock, if it was taken
    return False


@contextlib.contextmanager
def exclusive_run_dir(out: Path, multirun: bool = False):
    """Hold the run dir for this process: two runs writing one dir would mix their checkpoints and metrics. Two
    commands started in the same second get the same dated dir (Hydra's ``outputs/<date>/<time>``), and a command
    may be run twice by mistake. An advisory lock on the dir itself (flock: released by the OS when the process
    ends, however it ends); where the file system offers none (some network mounts), the run goes on unguarded."""
    import fcntl

    fd = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            where = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            raise UserError(f"Another process is running in {out}: a run started in the same second gets the same "
                            f"dated dir, or the same command is running twice. Wait for it to end, or give this "
                            f"run a dir of its own ({where}=<dir>).") from None
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def run_job(cfg: DictConfig, train_fn: Callable[[DictConfig], float]) -> float:
    """Run ``train_fn(cfg)`` as a (sweep) job: resume-aware, failure-isolated in sweeps, with a completion marker.

    Every failure that reaches the job, a config error included, leaves ``job_failed.json`` in the run dir: a
    run dir holds ``job_done.json``, ``job_failed.json`` or ``job_preempted.json``, or the job is still running.
    A refusal to use the dir (another process is running in it; it holds another run; resume=true with settings
    other than the run's) leaves it as it was, and ends a sweep (the basic sweeper's are found by ``SweepCheck``
    before any job starts)."""
    mark_run_start()  # the run's time counts from here (from the process's start for its first run)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    held = exclusive_run_dir(out, in_multirun()) if first_process_of_the_run() else contextlib.nullcontext()
    with held:
        return run_job_in(out, cfg, train_fn)


def disk_full(err: BaseException, out: Path) -> str | None:
    """What to say when ``err`` comes from a full disk (or quota): where, what is intact, how to go on; None
    otherwise. torch's checkpoint writer reports any failed write as "unexpected pos", the OSError its cause."""
    seen, full = err, None
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            full = seen
            break
        # Writers in other languages report it in their own exception, with the OS's words (safetensors:
        # "I/O error: No space left on device (os error 28)")
        for code in (errno.ENOSPC, errno.EDQUOT):
            if os.strerror(code) in str(seen):
                full = OSError(code, os.strerror(code))
                break
        if full is not None:
            break
        seen = seen.__cause__ or seen.__context__
    if full is None:
        return None
    where = Path(full.filename).parent if full.filename else out
    try:
        free = f"{shutil.disk_usage(where).free / 2**20:,.0f} MB free now"
    except OSError:
        free = "its free space unknown"
    last = out / "checkpoints" / "last.ckpt"
    what = "over its quota" if full.errno == errno.EDQUOT else "full"
    return (f"The disk holding {where} is {what} ({free}): {type(err).__name__}: {str(err).splitlines()[0][:200]} "
            f"({full.strerror}). "
            + (f"{last} is intact (every checkpoint is written whole or not at all). Free some space, then continue: "
               f"{continue_command(out)}" if last.exists() else
               f"No checkpoint was saved. Free some space, then start it again: {continue_command(out, resume=False)}"))


def searched_values_given() -> bool:
    """Whether this (single) run's command sets every key its search searches: a trial's own command, as its model
    card gives it, which trains that trial again."""
    searched = set(OmegaConf.select(HydraConfig.get(), "sweeper.params") or {})
    given = {o.split("=", 1)[0].lstrip("+~") for o in HydraConfig.get().overrides.task}
    return bool(searched) and searched <= given


def continues_its_own_progress(out: Path, cfg: DictConfig) -> bool:
    """Whether a run continued in its dir goes on from its own last.ckpt: unless ``ckpt_path`` names another
    checkpoint than the one the run was started from (one of its own, best-step<N>.ckpt where last.ckpt is
    damaged, or another run's, chosen now)."""
    given = cfg.get("ckpt_path")
    if not given:
        return True
    started_from = (recorded_config(out) or {}).get("ckpt_path")
    return bool(started_from) and Path(str(started_from)).expanduser().resolve() == Path(str(given)).expanduser().resolve()


def run_job_in(out: Path, cfg: DictConfig, train_fn: Callable[[DictConfig], float]) -> float:
    multirun = in_multirun()
    if multirun:
        run_where_the_sweep_started()
    record = {"overrides": job_overrides() or [], "dir": str(out), "log": str(out / "train.log"),
              "started_at": time.time()}
    if multirun and (invocation := os.environ.get(SWEEP_INVOCATION)):
        record["invocation"] = invocation
    if multirun:
        try:
            check_multirun_compatible(cfg)
        except ConfigError as err:  # every job would fail alike: stop the sweep before it starts any training
            write_json_atomically(out / FAILED, {**record, "error": f"{type(err).__name__}: {err}",
                                                 "failed_at": time.time()})
            raise
    if not multirun and optuna_sweep() and not searched_values_given():  # without -m: once, at the defaults
        search = OmegaConf.select(HydraConfig.get(), "runtime.choices.hparams_search") or "<search>"
        err = ConfigError([f"hparams_search={search} is a search of many trials: run it with -m (python src/train.py "
                           f"-m hparams_search={search} ...); without -m it would be one run at the default values"])
        if previous_run(out) is None:  # as any config error, said in the run dir (not over an earlier run's)
            write_json_atomically(out / FAILED, {**record, "error": f"{type(err).__name__}: {err}",
                                                 "failed_at": time.time()})
        raise err
    if cfg.get("resume") not in (True, False, None):  # read by its truth below: resume=no would continue
        from glue_finetune.config import text_from_environment_hint

        raise ConfigError([f"resume={cfg.get('resume')!r} must be true or false"
                           + text_from_environment_hint(cfg.get("resume"))])
    requeued = slurm_requeued()
    if (out / PREEMPTED).exists() and not (out / "checkpoints" / "last.ckpt").exists():
        (out / PREEMPTED).unlink()  # stopped before its first checkpoint (an earlier version's marker): nothing to continue
    resuming = bool(cfg.get("resume") or requeued or (out / PREEMPTED).exists())
    # Refusals come before the try below: they leave the run dir as it was (no job_failed.json in it, and Hydra's
    # record of the run it holds untouched: hydra_record_subdir).
    if not resuming:
        refuse_to_overwrite(out, multirun)
    elif (done := read_json(out / DONE)) is not None:
        if not requeued:  # its result stands for the settings given now: they must be the run's
            refuse_changed_settings(out, cfg)
        keep_run_log()
        log.info("Already finished (resume=true): %s, result %.4f. Skipping.", out, done["result"])
        return done["result"]
    elif (last := out / "checkpoints" / "last.ckpt").exists() and continues_its_own_progress(out, cfg):
        # The run's own progress, also when it was started from another run's checkpoint (ckpt_path, which its
        # command, given again, still names): continuing from that one would train its steps again.
        if not requeued:  # SLURM reruns the very command; only a person can change it
            refuse_changed_settings(out, cfg)
        log.info("Resuming from %s", last)
        with open_dict(cfg):
            cfg.ckpt_path = str(last)
        record["earlier_attempts_s"] = earlier_attempts_s(out)
        mark_earlier_attempts(record["earlier_attempts_s"])  # for the run's own time line
    elif not cfg.get("ckpt_path") and not multirun and not requeued:
        raise UserError(nothing_to_resume(out))
    keep_run_log()  # the dir's train.log: held until now in a dir of an earlier run, in case of a refusal above
    if first_process_of_the_run():  # this command trains in the dir (anew, or continuing): it is the dir's record
        write_hydra_record(out, cfg)
        # A checkpoint half-written when its process was killed (files.write_atomically's temporary file, which
        # only a live process removes): up to the checkpoint's size, hidden. The dir's lock says none is being written.
        for partial in (out / "checkpoints").glob(".*.ckpt.*"):
            partial.unlink(missing_ok=True)
        for partial in out.glob(".model.*"):  # an export interrupted the same way (artefacts.export_model)
            shutil.rmtree(partial, ignore_errors=True)
    try:
        for marker in (FAILED, DONE):  # a stale marker must not describe this attempt
            (out / marker).unlink(missing_ok=True)
        with stop_on_sigterm():
            result = train_fn(cfg)
    except Preempted as err:
        if not (out / "checkpoints" / "last.ckpt").exists():  # stopped during start-up: nothing to continue
            (out / PREEMPTED).unlink(missing_ok=True)  # an earlier attempt's stop no longer describes the dir
            err.resume_with, err.nothing_saved = continue_command(out, resume=False), True
            raise
        # Not a failure: the checkpoint is saved; the same command continues from it.
        write_json_atomically(out / PREEMPTED, {**record, "reason": str(err), "preempted_at": time.time()})
        err.resume_with = continue_command(out)
        raise
    except KeyboardInterrupt:  # Ctrl-C outside the training steps (start-up, scoring, export), or twice: what is
        # saved stays
        if (out / "checkpoints" / "last.ckpt").exists():
            write_json_atomically(out / PREEMPTED, {**record, "reason": sigint_from_a_ray_sweep() or "Ctrl-C",
                                                    "preempted_at": time.time()})
            log.warning("Interrupted. To continue: %s", continue_command(out))
        else:  # an earlier attempt's stop no longer describes the dir, and there is nothing to continue
            (out / PREEMPTED).unlink(missing_ok=True)
            log.warning("Interrupted before the run saved a checkpoint: nothing to continue. To start it again: %s",
                        continue_command(out, resume=False))
        raise
    except Exception as err:
        if message := disk_full(err, out):  # one message with what is intact and the command, not a traceback
            err = UserError(message)
        elif getattr(err, "after_training", False) and (out / "checkpoints" / "last.ckpt").exists():
            # Failed while scoring, exporting or predicting: the trained weights are safe, and say how to finish.
            err.add_note(f"Training had finished: {out / 'checkpoints' / 'last.ckpt'} holds its last step. Once "
                         f"this is fixed, scoring and export run again without training: {continue_command(out)}")
        try:
            write_json_atomically(out / FAILED, {**record, "error": f"{type(err).__name__}: {err}",
                                                 "failed_at": time.time()})
        except OSError as unwritten:  # the disk that failed the run fails its marker too: the log still says why
            log.error("Could not write %s (%s).", out / FAILED, unwritten)
        if not multirun:  # the entry point prints it (a UserError as one message) and exits non-zero
            if message:
                raise err from None
            raise
        # One job's failure (bad lr, out of memory) must not stop the sweep: record it, go on, report at the end.
        if isinstance(err, UserError):
            log.error("Job failed: %s", err)
        else:
            log.exception("Job failed: %s", err)
        return failed_job_result(f"{type(err).__name__}: {err}")
    write_json_atomically(out / DONE, {**record, "result": result, "finished_at": time.time()})
    (out / PREEMPTED).unlink(missing_ok=True)
    return result


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def job_settings_changed(recorded: dict, job_config: DictConfig, job_dir: Path,
                         swept: tuple[str, ...]) -> list[str]:
    """``changed_settings`` for a sweep job before it runs: its config resolved as the job will resolve it (its
    ``${hydra:...}`` values from its own hydra config, its output dir its job dir), without the hydra node."""
    previous = HydraConfig.instance().cfg
    with read_write(job_config), open_dict(job_config):
        job_config.hydra.runtime.output_dir = os.path.abspath(job_dir)  # as Hydra sets it
    HydraConfig.instance().set_config(job_config)
    try:
        task = OmegaConf.masked_copy(job_config, [key for key in job_config if key != "hydra"])
        return changed_settings(recorded, task, swept)
    finally:
        HydraConfig.instance().cfg = previous


def nothing_to_resume(out: Path) -> str:
    return (f"resume=true, but {out} holds no run to continue (no checkpoints/last.ckpt). Give the run's own dir: "
            "`python src/train.py hydra.run.dir=<its dir> resume=true` (the same overrides as it was started with); "
            "or leave out resume=true to start a new run.")


COMPOSED = {"run": False}  # whether Hydra composed a single run's config (RunDirCheck, its first callback, ran)


def run_composed() -> bool:
    """Whether Hydra composed this command's config as a single run's: an exit after that is the run's own. (A
    sweep's jobs are composed later, after its callbacks, and on Ray or SLURM in other processes.)"""
    return COMPOSED["run"]


class RunDirCheck(Callback):
    """Before a run or a sweep: its dir can be created and written. Otherwise Hydra fails creating it with a
    traceback; this names the dir, why, and the key that puts it elsewhere."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        COMPOSED["run"] = True
        release_stderr()  # Hydra took the overrides: what it has said goes out (train.py holds it till now)
        self.check(config, "run", "outputs")
        out = Path(str(config.hydra.run.dir))
        if config.get("resume") is True and not config.get("ckpt_path") and not out.exists() \
                and not slurm_requeued():  # a requeued job goes on, as run_job_in lets it
            # before Hydra makes the dir, which would then read as a run's to report.py
            log.error("%s", nothing_to_resume(out))
            sys.exit(2)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if not any(str(cb.get("_target_")).endswith(".SweepCheck") for cb in config.hydra.callbacks.values()):
            release_stderr()  # else SweepCheck does, once it has composed the jobs' configs
        self.check(config, "sweep", "multirun")
        # The first callback: before LauncherCheck starts Ray and takes the environment its jobs get.
        os.environ[SWEEP_INVOCATION] = uuid.uuid4().hex

    @staticmethod
    def check(config: DictConfig, kind: str, default_root: str) -> None:
        directory = Path(str(config.hydra[kind].dir))
        if problem := unwritable(directory):
            log.error("Cannot write the %s dir %s: %s. Fix: hydra.%s.dir=/a/writable/dir, or run from a writable "
                      "directory (by default %ss go under ./%s/).", kind, directory, problem, kind, kind, default_root)
            sys.exit(2)


def searched_keys(config: DictConfig, config_loader=None) -> set[str]:
    """The keys a search draws values for: its config's search space (``hydra.sweeper.params``) and the command
    line's sweeping overrides (``"optimizer.lr=tag(log, interval(1e-5, 1e-4))"``, ``seed=1,2``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(list(config.hydra.overrides.task))
    return set(OmegaConf.select(config, "hydra.sweeper.params") or {}) | {
        o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}


def fixed_overrides(config: DictConfig, config_loader) -> list[str]:
    """The command line's overrides that every job of a search gets: those that sweep (``lr=1e-5,2e-5``,
    ``tag(log, interval(...))``) and the sweeper's own search space (``hydra.sweeper.params``) left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = set(OmegaConf.select(config, "hydra.sweeper.params") or {})
    parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(list(config.hydra.overrides.task))
    return [o.input_line for o in parsed if not o.is_sweep_override() and o.get_key_element().lstrip("+~") not in params]


def job_config_problems(job_config: DictConfig, launcher: str, gpus_here: bool, files_here: bool) -> list[str]:
    """What a job would fail on at its start, as a run checks its own config: its values (``validate_config``),
    then, where they hold, its keys against their constructors (``+data.max_lenght=64``)."""
    from glue_finetune.config import check_constructor_keys, validate_config

    problems = [problem] if (problem := multirun_problem(job_config, launcher)) else []
    try:
        validate_config(job_config, gpus_here=gpus_here, files_here=files_here)
        check_constructor_keys(job_config)
    except ConfigError as err:
        problems += err.problems
    else:
        if files_here and (problem := data_file_problem(job_config) or epoch_problem(job_config)):
            problems.append(problem)
    return problems


# (task, folder) -> (its problem, its training examples): read once per sweep command
_DATA_CHECKED: dict[tuple[str, str], tuple[str | None, int | None]] = {}


def data_file_problem(job_config: DictConfig) -> str | None:
    """The job's GLUE files read and checked row by row, as the job's own preflight will (a malformed row, another
    task's file): a sweep over tasks or folders finds a bad file before its first job trains, not when that job
    starts. Each folder is read once, however many jobs (seeds, learning rates) share it."""
    return checked_data(job_config)[0]


def checked_data(job_config: DictConfig) -> tuple[str | None, int | None]:
    """(the problem of the job's local GLUE files, the number of training examples they hold), each None where
    there is none or the data comes from the Hub."""
    from glue_finetune.config import local_task_folder
    from glue_finetune.tasks import TASKS, forget_read_ahead, read_ahead, training_rows_read_ahead

    spec = TASKS.get(str(OmegaConf.select(job_config, "data.task", default=None)))
    if spec is None or spec.train_with:
        return None, None
    folder = local_task_folder(job_config, spec)
    if folder is None:  # data from the Hub
        return None, None
    key = (spec.name, str(Path(folder).resolve()))
    if key not in _DATA_CHECKED:
        try:
            read_ahead(folder, spec)
            _DATA_CHECKED[key] = (None, training_rows_read_ahead(folder, spec))
        except UserError as err:
            _DATA_CHECKED[key] = (str(err), None)
        finally:
            forget_read_ahead()  # the jobs read their own files: nothing kept in this process meanwhile
    return _DATA_CHECKED[key]


def epoch_problem(job_config: DictConfig) -> str | None:
    """A validation interval past the job's epoch (``config.validation_interval_past_an_epoch``), which its data's
    size decides: a sweep over tasks (WNLI's epoch is 20 batches of 32) finds it before its first job."""
    from glue_finetune.config import epoch_training_batches, validation_interval_past_an_epoch

    trainer, rows = job_config.trainer, checked_data(job_config)[1]
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
    if rows is None or not isinstance(devices, int) or devices < 1 or not isinstance(nodes, int):
        return None  # the Hub's data, or devices Lightning picks itself ("auto", a list)
    if (limit_samples := job_config.data.get("max_train_samples")) is not None:
        rows = min(rows, limit_samples)
    batches = epoch_training_batches(trainer, rows, job_config.data.batch_size, devices * nodes)
    return validation_interval_past_an_epoch(trainer, batches)


def refuse_to_resume_no_sweep(sweep_dir: Path, resume) -> None:
    """resume=true on a sweep dir that holds no sweep (a mistyped or new hydra.sweep.dir) would start every job
    from the beginning, as a single run's resume=true there is refused for. A sweep stopped before any job
    started is there: Hydra's grid writes multirun.yaml first, Optuna's study its optuna.db."""
    if resume is not True or (sweep_dir / "multirun.yaml").exists() or (sweep_dir / "optuna.db").exists() \
            or any(sweep_dir.glob("*/.hydra")):
        return
    log.error(f"resume=true, but {sweep_dir} holds no sweep to continue (no multirun.yaml, no job dirs). Give the "
              "sweep's own dir: the same command as it was first run, with hydra.sweep.dir=<its dir> resume=true; "
              "or leave out resume=true to start a new sweep.")
    sys.exit(2)


JOB_DIRS: list[Path] = []  # this command's jobs' dirs, as SweepCheck found them (a grid's; a study draws its trials)


class SweepCheck(Callback):
    """Before a sweep's first job: every job's config checked as a run checks its own (``validate_config``, and
    its keys against their constructors), and every problem reported at once, so that a bad value in the last job
    of a sweep over GLUE's tasks (a task's folder without its train.tsv, an out-of-range value) stops the sweep
    before the first job trains for hours. Hydra composes each job before launching it, which catches a
    misspelled key or option, not a bad value. Optuna draws its values as it goes: what its trials share (the
    config less the searched keys) is checked once, and each trial checks its own values."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self.jobs_composed = True
        JOB_DIRS.clear()
        _DATA_CHECKED.clear()  # files may have changed since an earlier sweep of this process
        try:
            self.check(config)
        finally:  # a job Hydra cannot compose: its message waits, as a run's would (cli.explain_unknown_keys)
            if self.jobs_composed:
                release_stderr()

    def check(self, config: DictConfig) -> None:
        refuse_to_resume_no_sweep(Path(str(config.hydra.sweep.dir)), config.get("resume"))
        sweeper = OmegaConf.select(config, "hydra.sweeper._target_", default=None)
        if sweeper not in (BASIC_SWEEPER, OPTUNA_SWEEPER):
            return
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.global_hydra import GlobalHydra

        from glue_finetune.config import sweep_overrides

        # Jobs on a Ray cluster or SLURM's nodes use those nodes' GPUs and disks: the launcher checks the GPUs
        # (LauncherCheck), and their files are checked here only where this machine sees them (a shared file
        # system, as usual); a path it does not see is left to the job on its node.
        launcher = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        remote = launcher.endswith("SlurmLauncher") or bool(OmegaConf.select(config, "hydra.launcher.ray.init.address",
                                                                             default=None))
        gpus_here = launcher.endswith("BasicLauncher")
        unseen: set[str] = set()  # paths of a remote sweep's jobs that this machine does not see
        loader = GlobalHydra.instance().config_loader()
        from hydra.errors import ConfigCompositionException, OverrideParseException

        composing = "the search's fixed values"
        try:
            if sweeper == OPTUNA_SWEEPER:
                shared = loader.load_sweep_config(master_config=config, sweep_overrides=fixed_overrides(config, loader))
            else:
                parsed = sweep_overrides(config.hydra, config_loader=loader)
                swept = {o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()}
                jobs = [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
                job_configs = []
                for num, overrides in enumerate(jobs):
                    composing = f"job {num} ({' '.join(overrides)})"
                    job_configs.append(loader.load_sweep_config(master_config=config, sweep_overrides=list(overrides)))
        except (ConfigCompositionException, OverrideParseException) as err:  # optimizer.lrr=..., data=SST-2
            # Hydra's basic sweeper checks a batch's jobs before it launches the batch, but a sweep launched in batches
            # (hydra.sweeper.max_batch_size) would train the batches before the one that holds this job. Refused
            # now with Hydra's message, as Hydra prints it (train.py then names the key or option meant); raised
            # here, Hydra would only warn of it.
            self.jobs_composed = False
            print(f"In {composing}:", err, *[err.__cause__] if err.__cause__ else [], sep="\n", file=sys.stderr)
            sys.exit(1)
        except Exception as err:  # noqa: BLE001 - anything else is the sweeper's to say, as it would without this check
            log.debug("Sweep check skipped: %s", err)
            return
        if sweeper == OPTUNA_SWEEPER:
            self.check_search(shared, launcher, gpus_here, remote)
            return
        failing: dict[str, list[str]] = {}  # problem -> the jobs that have it
        occupied: list[str] = []  # jobs whose dir holds an earlier run, which the job would overwrite
        running: list[str] = []  # jobs whose dir a process holds: a job of an earlier invocation, still running
        mismatched: list[str] = []  # resume=true: jobs whose dir holds a run of other settings
        for num, (overrides, job_config) in enumerate(zip(jobs, job_configs)):
            files_here = True
            if remote and (missing := paths_not_here(job_config)):
                unseen.update(missing)
                files_here = False
            problems = job_config_problems(job_config, launcher, gpus_here, files_here)
            setting = ",".join(o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept)
            for problem in problems:
                failing.setdefault(problem, []).append(f"job {num}" + (f": {setting}" if setting else ""))
            with read_write(job_config), open_dict(job_config):
                job_config.hydra.job.num = num  # the job's dir is named by it (hydra.sweep.subdir)
            job_dir = Path(str(job_config.hydra.sweep.dir)) / str(job_config.hydra.sweep.subdir)
            JOB_DIRS.append(job_dir)
            if in_use(job_dir):
                running.append(f"{job_dir} (job {num}{': ' + setting if setting else ''})")
                continue
            if not (found := previous_run(job_dir)):
                continue
            if not job_config.get("resume") and not (job_dir / PREEMPTED).exists():  # a stopped job continues
                occupied.append(f"{job_dir}: {found}")
            elif (recorded := recorded_config(job_dir)) and (
                    changed := job_settings_changed(recorded, job_config, job_dir, tuple(swept))):
                mismatched.append(f"{job_dir} (job {num}{': ' + setting if setting else ''}), started with "
                                  f"{recorded_overrides(job_dir, recorded)}; now " + "; ".join(changed))
        if unseen:
            log.warning("Not seen from this machine, so left to each job to check on its node: %s.",
                        ", ".join(sorted(unseen)))
        lines = []
        if failing:
            bad_jobs = {job for where in failing.values() for job in where}
            lines.append(f"Invalid config in {len(bad_jobs)} of {len(jobs)} job(s) of the sweep; no job was started:")
            for problem, where in failing.items():
                lines.append(f"  - {problem}  [{'every job' if len(where) == len(jobs) > 1 else '; '.join(where)}]")
        if running:  # each would be refused in its dir (on SLURM, after waiting in the queue)
            lines.append(f"{len(running)} job(s) of this sweep are still running in their dir (a job of an earlier "
                         "invocation of the same sweep, say); no job was started:")
            lines += [f"  - {where}" for where in running[:10]] + (["  - ..."] if len(running) > 10 else [])
            lines.append("Wait for them to end, or stop them (Ctrl-C on their command, scancel, ray stop), then run "
                         "this command again.")
        if launcher.endswith("SlurmLauncher") and (queued := queued_slurm_jobs(Path(str(config.hydra.sweep.dir)))):
            # requeued (preempted, warned of their time limit) and waiting: no process holds their dir yet, and
            # this command would submit the same jobs again beside them
            lines.append(f"{len(queued)} SLURM job(s) of an earlier invocation of this sweep are still in the queue "
                         f"(squeue: {', '.join(queued[:10])}{', ...' if len(queued) > 10 else ''}); no job was "
                         "started. Wait for them to end (they continue from their checkpoints and write their "
                         "results), or scancel them, then run this command again.")
        if occupied:  # found here, before the launcher starts anything, rather than by each job on its own
            lines.append(f"{len(occupied)} job(s) would overwrite an earlier run; no job was started:")
            lines += [f"  - {where}" for where in occupied[:10]] + (["  - ..."] if len(occupied) > 10 else [])
            lines.append(f"To skip the finished jobs and continue the others, add resume=true (same command, "
                         f"hydra.sweep.dir={config.hydra.sweep.dir}); to start the sweep anew, give it another "
                         "hydra.sweep.dir.")
        if mismatched:  # e.g. a sweep's values given in another order: job 0 is now another job
            lines.append(f"resume=true: {len(mismatched)} job(s) would continue or keep a run of other settings in "
                         "their dir; no job was started:")
            lines += [f"  - {where}" for where in mismatched[:10]] + (["  - ..."] if len(mismatched) > 10 else [])
            lines.append("Give the sweep's command as it was first run (the same values, in the same order), or "
                         "another hydra.sweep.dir for a new sweep.")
        if lines:
            log.error("\n".join(lines))
            sys.exit(2)

    @staticmethod
    def check_search(shared: DictConfig, launcher: str, gpus_here: bool, remote: bool) -> None:
        """An Optuna search: the config its trials share, checked once. A bad fixed value would fail every trial,
        and each failure would stay in the study for good."""
        missing = paths_not_here(shared) if remote else []
        if missing:
            log.warning("Not seen from this machine, so left to each trial to check on its node: %s.",
                        ", ".join(sorted(missing)))
        if problems := job_config_problems(shared, launcher, gpus_here, files_here=not missing):
            log.error("\n".join(["Invalid config shared by every trial of the search; no trial was started:",
                                  *(f"  - {problem}" for problem in problems)]))
            sys.exit(2)


def queued_slurm_jobs(sweep_dir: Path) -> list[str]:
    """The SLURM jobs of earlier invocations of the sweep in ``sweep_dir`` still waiting in the queue (requeued
    after a preemption or a time-limit warning, pending), by the job ids submitit named its folders after
    (``.submitit/<array id>``, ``.submitit/<array id>_<task>``); none where squeue is not at hand."""
    folders = sweep_dir / ".submitit"
    arrays = {p.name.split("_", 1)[0] for p in folders.iterdir() if p.is_dir()} if folders.is_dir() else set()
    if not arrays or shutil.which("squeue") is None:
        return []
    try:  # -r: one line per array task, not one per array ("3_[0-1]")
        listed = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    if listed.returncode != 0:
        return []
    # a running job holds its dir's lock, said as such (in_use); the others wait (requeued, pending)
    return [job for job, state in (line.split()[:2] for line in listed.stdout.splitlines() if len(line.split()) >= 2)
            if job.split("_", 1)[0] in arrays and state not in ("RUNNING", "COMPLETING")]


def paths_not_here(job_config: DictConfig) -> list[str]:
    """The local paths a job reads (its data folder, a model dir, ckpt_path) that do not exist on this machine."""
    from glue_finetune.hub import is_local_path

    paths = []
    for key in ("data.local_dir", "data.glue_dir", "ckpt_path", "model.name_or_path"):
        try:
            value = OmegaConf.select(job_config, key, default=None)
        except Exception:  # a resolver that fails here (a package not installed): validation names it
            continue
        if isinstance(value, str) and (key != "model.name_or_path" or is_local_path(value)) \
                and not Path(value).expanduser().exists():
            paths.append(f"{key}={value}")
    return paths


def refuse_a_changed_study(config: DictConfig) -> None:
    """An Optuna study run again (the same sweep dir) goes on as it was started: another task, training-set size or
    model would add trials that its sampler and its best trial weigh against the earlier ones as if alike. The
    settings a trial recorded (``hparams.yaml``) against those the command gives now, less the searched ones."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    trials = sorted(sweep_dir.glob("*/hparams.yaml"), key=lambda p: p.stat().st_mtime)
    if not trials or not (recorded := recorded_config(trials[0].parent)):
        return
    from hydra.core.global_hydra import GlobalHydra

    try:  # the config a trial gets, with the searched keys at their defaults (left out of the comparison)
        loader = GlobalHydra.instance().config_loader()
        job_config = loader.load_sweep_config(master_config=config, sweep_overrides=fixed_overrides(config, loader))
        with read_write(job_config), open_dict(job_config):
            job_config.hydra.job.num = 0
        changed = job_settings_changed(recorded, job_config, trials[0].parent, swept=())
    except Exception as err:  # not to stand in the way of the study: each trial still checks its own config
        log.warning("Could not compare this study's settings with its earlier trials' (%s: %s).", type(err).__name__,
                    err)
        return
    searched = tuple(f"{key}:" for key in searched_keys(config, loader))
    changed = [line for line in changed if not line.startswith(searched)]
    if changed:
        log.error("\n".join([
            f"The Optuna study in {sweep_dir} was started with other settings than these (against its trial "
            f"{trials[0].parent.name}; no trial was started):", *(f"  - {line}" for line in changed),
            "Give the study's command as it was first run to add trials to it, or another hydra.sweep.dir for a new "
            "study."]))
        sys.exit(2)


def continue_stopped_trials(config: DictConfig) -> None:
    """An Optuna study run again: the trials an earlier invocation left stopped (by a signal or Ctrl-C, their
    checkpoint saved) go first, each with its values, so in its own dir, where the job resumes from its checkpoint.

    Left to itself the sweeper draws new values: it records a stopped trial as failed (or, when its process was
    killed, as running for good), and the saved training is never finished. Here each such trial is queued in the
    study (``enqueue_trial``: the sweeper's next ``ask`` returns its values) and a trial left running is marked
    failed. A dir without a stop marker but with a checkpoint (its process was killed) is continued only with
    resume=true, as in any sweep. Run one invocation of a study at a time: another one's running trial looks the same.
    """
    sweeper = config.hydra.sweeper
    sweep_dir = Path(str(config.hydra.sweep.dir))
    unfinished = sorted(p.parent.parent for p in sweep_dir.glob("*/checkpoints/last.ckpt")
                        if not (p.parent.parent / DONE).exists() and not (p.parent.parent / FAILED).exists())
    if not unfinished or not sweeper.get("storage"):
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser
    import optuna
    import yaml

    killed = [d for d in unfinished if not (d / PREEMPTED).exists()]
    if killed and not config.get("resume"):
        log.warning("Trial dir(s) holding an unfinished run, stopped without saying so (a killed process): %s. "
                    "To continue them first, add resume=true (same command).", ", ".join(d.name for d in killed))
        unfinished = [d for d in unfinished if d not in killed]
    searched = searched_keys(config)
    parser = OverridesParser.create()
    queue: list[tuple[Path, dict]] = []
    for trial_dir in unfinished:
        try:
            overrides = parser.parse_overrides(yaml.safe_load((trial_dir / ".hydra" / "overrides.yaml").read_text()))
        except (OSError, yaml.YAMLError, TypeError, ValueError):
            log.warning("Not continuing %s: its .hydra/overrides.yaml is missing or unreadable.", trial_dir)
            continue
        params = {o.get_key_element(): o.value() for o in overrides if o.get_key_element() in searched}
        if set(params) != searched:
            log.warning("Not continuing %s: it searched %s, this study searches %s.", trial_dir,
                        sorted(params), sorted(searched))
            continue
        queue.append((trial_dir, params))
    if not queue:
        return
    storage = optuna.storages.get_storage(str(sweeper.storage))
    try:
        study = optuna.load_study(study_name=str(sweeper.study_name), storage=storage)
    except KeyError:  # no such study in this storage (a renamed study): nothing of it to continue
        return
    set_state = getattr(storage, "set_trial_state_values", None) or storage.set_trial_state  # Optuna 3 / 2
    waiting = [t.params or t.system_attrs.get("fixed_params") for t in study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.WAITING,))]
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial_dir, params in queue:
        for trial in running:
            if trial.params == params:  # its process died mid-trial: it will not report
                set_state(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        if params not in waiting:  # queued by an earlier invocation that stopped before running it
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.enqueue_trial(params)
    log.info("Continuing %d stopped trial(s) first, each from its checkpoint (they count in hydra.sweeper.n_trials): "
             "%s", len(queue), ", ".join(d.name for d, _ in queue))


def survive_a_study_without_a_finished_trial() -> None:
    """hydra-optuna-sweeper 1.2 ends its sweep by saving the study's best trial, and raises (Optuna's "Record does
    not exist") when no trial has finished: a search whose trials all failed ended in a traceback, without the
    summary saying why each failed. With this it says there is no best trial, and the summary follows."""
    from hydra_plugins.hydra_optuna_sweeper import _impl

    sweep = _impl.OptunaSweeperImpl.sweep
    if getattr(sweep, "survives_no_finished_trial", False):
        return

    def sweep_without_a_best_trial(self, arguments):
        import optuna

        try:
            return sweep(self, arguments)
        except ValueError:
            study = optuna.load_study(study_name=self.study_name, storage=self.storage)
            if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                raise  # not the missing best trial
            log.error("No trial of study %s has finished: no best parameters to save.", self.study_name)
            return None

    sweep_without_a_best_trial.survives_no_finished_trial = True
    _impl.OptunaSweeperImpl.sweep = sweep_without_a_best_trial


def log_the_best_trial(config: DictConfig, done: list[Path]) -> None:
    """Where the study's best trial is (Optuna's sweeper names its values only): its dir, model and score, over
    every finished trial of the study; trials that tie at the best result are all named, the earliest first."""
    direction = OmegaConf.select(config, "hydra.sweeper.direction", default="maximize")
    if not isinstance(direction, str):
        return  # several objectives: no single best trial
    results = [(record["result"], marker.parent) for marker in done
               if (record := read_json(marker)) and isinstance(record.get("result"), (int, float))
               and record["result"] == record["result"]]  # NaN is no result
    if not results:
        return
    best = (max if direction == "maximize" else min)(result for result, _ in results)
    dirs = sorted((d for result, d in results if result == best), key=lambda d: d.stat().st_mtime)
    model = dirs[0] / "model"
    log.info("Best trial: %s (result %.4f, of %d finished)%s%s", dirs[0], best, len(results),
             f"; its model: {model}" if model.is_dir() else "",
             f". {len(dirs)} trials tie at it: {', '.join(d.name for d in dirs)}" if len(dirs) > 1 else "")


def this_invocations(record: dict | None) -> bool:
    """Whether a job's marker was written by a job of this invocation of the sweep (``SWEEP_INVOCATION``); one of
    a job started before markers recorded it counts as this invocation's."""
    if record is None:
        return False
    invocation = record.get("invocation")
    return invocation is None or invocation == os.environ.get(SWEEP_INVOCATION)


class SweepSummary(Callback):
    """After a sweep: one line per failed job (overrides, error, log), and a non-zero exit if any failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # Before the sweeper starts: Optuna opens its SQLite study inside the sweep dir.
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        name_sweep_group(Path(config.hydra.sweep.dir), Path.cwd())
        if optuna_sweep(config):
            refuse_a_changed_study(config)
            continue_stopped_trials(config)
            survive_a_study_without_a_finished_trial()

    def on_multirun_end(self, config: DictConfig, unsaved: list[str] = (), **kwargs) -> None:
        """``unsaved``: the jobs a stopped sweep left without a checkpoint (stopped before their first, or never
        started); no file in the sweep dir says so, the launcher that stopped them does."""
        sweep_dir = Path(config.hydra.sweep.dir)
        done = sorted(sweep_dir.glob(f"*/{DONE}"))
        done_now = [p for p in done if this_invocations(read_json(p))]
        failed = [job for p in sorted(sweep_dir.glob(f"*/{FAILED}")) if this_invocations(job := read_json(p))]
        stopped = [p.parent for p in sorted(sweep_dir.glob(f"*/{PREEMPTED}"))
                   if not (p.parent / DONE).exists() and this_invocations(read_json(p))]
        # This command's jobs that started (Hydra wrote their config) and left no record: still running (SLURM
        # requeued one the launcher had seen end), or ended without a word (killed). Not a finished sweep, whatever
        # the rest did. (Other dirs in the sweep dir, of an earlier command's larger grid, are not this one's.)
        silent = [d for d in JOB_DIRS if (d / ".hydra" / "config.yaml").exists() and d.name not in unsaved
                  and not any((d / m).exists() for m in (DONE, FAILED, PREEMPTED))]
        # A study's trials of earlier commands are not this command's jobs; a grid's finished jobs, skipped under
        # resume=true, are.
        shown = as_seen_from_here(sweep_dir)  # in messages
        log.info("Sweep %s: %d job(s) finished, %d failed%s%s%s.", shown,
                 len(done_now if optuna_sweep(config) else done), len(failed),
                 f", {len(stopped)} stopped before the end" if stopped else "",
                 f", {len(unsaved)} stopped before their first checkpoint or not started" if unsaved else "",
                 f", {len(silent)} without a result" if silent else "")
        if optuna_sweep(config) and done:
            log_the_best_trial(config, done)
        if (stopped or unsaved) and not failed and not silent:  # stopped by a signal (preempted), not failures
            which = ([f"each saved where it stopped: {', '.join(p.name for p in stopped)}"] if stopped else []) + (
                [f"to start from the beginning: {', '.join(unsaved)}"] if unsaved else [])
            log.warning("Stopped job(s), %s. To continue them (finished jobs are skipped): rerun the same command "
                        "with resume=true hydra.sweep.dir=%s", "; ".join(which), shown)
            sys.exit(PREEMPTED_EXIT_CODE)
        if not failed and not silent:
            return
        lines = [f"{len(failed)} job(s) of the sweep in {shown} failed:"] if failed else []
        for job in failed:
            lines.append(f"  job {Path(job['dir']).name}: {' '.join(job['overrides']) or '(no overrides)'}")
            lines.append(f"      {job['error']}")
            lines.append(f"      log: {as_seen_from_here(job['log'])}")
        if silent:
            lines.append(f"{len(silent)} job(s) of the sweep in {shown} left no result:")
        for job_dir in silent:
            lines.append(f"  job {job_dir.name}: " + (
                "still running: a process holds its dir (a SLURM job requeued after the sweep saw it end shows in "
                "squeue); it writes its result there when it ends" if in_use(job_dir) else
                "its process ended without a word (killed: out of memory, a kill signal)") + f"; log: "
                f"{as_seen_from_here(job_dir / 'train.log')}")
        if stopped or unsaved:  # the same command continues them, with the failed ones
            lines.append("Stopped, not failed:")
            lines += [f"  job {p.name}: {(read_json(p / PREEMPTED) or {}).get('reason', 'stopped')}; saved where it "
                      "stopped" for p in stopped]
            lines += [f"  job {name}: stopped before its first checkpoint or not started" for name in unsaved]
        if optuna_sweep(config):
            lines.append(  # a study does not rerun a trial: its failure is a result the sampler learns from
                f"They stay failed in the study. Fix the cause, then run the same command again (hydra.sweep.dir="
                f"{shown}): the study goes on with hydra.sweeper.n_trials new trials, stopped ones first.")
        else:
            diverged = [Path(job["dir"]).name for job in failed if job["error"].startswith("TrainingDivergedError")]
            if len(diverged) < len(failed) or silent:
                lines.append(
                    f"Fix the cause, then rerun the same command with: resume=true hydra.sweep.dir={shown}  "
                    "(finished jobs are skipped, interrupted ones resume from their last.ckpt)")
            if diverged:  # resume=true reruns them as they were, and a job's settings may not change in its dir
                lines.append(
                    f"Diverged job(s) {', '.join(diverged)}: their settings diverge (a result for a sweep over learning "
                    "rates), and would again if rerun. Other settings, such as a lower optimizer.lr, go in a sweep of "
                    "their own (another hydra.sweep.dir).")
        log.error("\n".join(lines))
        sys.exit(1)
