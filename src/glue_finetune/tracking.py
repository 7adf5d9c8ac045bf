"""What a run reports as it goes: W&B that goes offline by itself when the user is not logged in, metrics.csv,
the console's progress bar, and where the run's time went."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import netrc
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse


import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.trainer.states import TrainerFn

from glue_finetune.config import job_overrides, override_tags
from glue_finetune.errors import PREEMPTED_EXIT_CODE, Preempted, UserError
from glue_finetune.files import write_text_atomically
from glue_finetune.hub import reachable
from glue_finetune.timing import earlier_attempts_s, run_started_at

log = logging.getLogger(__name__)


def wandb_base_url() -> str:
    """The W&B server a run would log to: ``WANDB_BASE_URL``, else the installed wandb's default (its default host
    changed between versions)."""
    if os.environ.get("WANDB_BASE_URL"):
        return os.environ["WANDB_BASE_URL"]
    import wandb

    return str(wandb.Settings().base_url)


def wandb_credentials_present(base_url: str) -> bool:
    """An API key in ``WANDB_API_KEY``, or in ~/.netrc (where ``wandb login`` stores it) for the server's host or
    the host wandb falls back to for it (older versions' logins: api.wandb.ai)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    hosts = [base_url]
    with contextlib.suppress(Exception):  # wandb's own mapping; not in every version
        from wandb.sdk.lib import urls

        hosts.append(urls.forge_upstream_url(base_url))
    try:
        credentials = netrc.netrc(os.environ.get("NETRC"))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any(credentials.authenticators(urlparse(url).hostname or "") is not None for url in hosts)


def wandb_offline_reason() -> str | None:
    """Why a run logs offline when ``WANDB_MODE`` does not say: not logged in, or logged in but the server
    unreachable (a compute node without network: wandb would retry for minutes, then fail the run); None: online."""
    base_url = wandb_base_url()
    if not wandb_credentials_present(base_url):
        return "not logged in"
    if not reachable(base_url):
        return f"{urlparse(base_url).hostname} is unreachable"
    return None


TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "train.py"


class JobWandbLogger(WandbLogger):
    """Lightning's WandbLogger whose W&B run records the job's own command: ``src/train.py <the job's overrides>``.

    W&B takes the command from the process's ``sys.argv``, which for a job of a sweep is the sweep's
    (``-m seed=1,2,3``), and under Ray or SLURM the worker's own; a run's page should say how to run that job
    again. wandb's settings accept a program but no arguments, so ``sys.argv`` is the job's while W&B starts.
    """

    def __init__(self, *args, job_args: list[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._job_args = job_args
        self._lost: str | None = None  # why W&B stopped taking this run's logs, once it did

    # W&B is a copy of what metrics.csv holds: a W&B that stops taking logs (its service stopped, as SLURM's SIGTERM
    # stops every process of a job; its connection lost) is told once, and the run goes on without it, to its
    # checkpoint and its Preempted where a signal stopped it, instead of ending as failed by the logging call.
    def _unless_lost(self, what: str, call, *args, **kwargs) -> None:
        if self._lost is not None:
            return
        if self._experiment is None:  # W&B starts in this call: a W&B that cannot start says so, before training
            return call(*args, **kwargs)
        try:
            call(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - whatever W&B raises, its records are not the run's
            self._lost = f"{type(err).__name__}: {err}"
            log.warning("W&B stopped taking this run's logs (%s, at %s); the run goes on without it, and metrics.csv in "
                        "the run dir holds every row.", self._lost, what)

    def log_metrics(self, metrics, step=None) -> None:
        self._unless_lost("logging metrics", super().log_metrics, metrics, step)

    def log_hyperparams(self, params) -> None:
        self._unless_lost("logging the config", super().log_hyperparams, params)

    def after_save_checkpoint(self, checkpoint_callback) -> None:
        self._unless_lost("logging a checkpoint", super().after_save_checkpoint, checkpoint_callback)

    def finalize(self, status: str) -> None:
        self._unless_lost("the end of training", super().finalize, status)

    @property
    def experiment(self):
        if self._experiment is not None or self._job_args is None:
            return super().experiment
        process_argv = sys.argv
        sys.argv = [str(TRAIN_SCRIPT) if TRAIN_SCRIPT.exists() else sys.argv[0], *self._job_args]
        try:
            return super().experiment
        finally:
            sys.argv = process_argv


def wandb_logger(
    save_dir: str, offline: bool | None = None, id: str | None = None, tags: list[str] | None = None,
    continues_from: str | None = None, **kwargs
) -> JobWandbLogger:
    """Lightning's WandbLogger, online when logged in and offline otherwise, so a run never waits on a login.

    ``offline`` forces the mode; ``WANDB_MODE`` (online/offline/disabled) is respected as wandb defines it.
    The run id is kept in ``<save_dir>/wandb/run_id``: a run that continues from a checkpoint (``continues_from``,
    the run's ckpt_path) in the same dir continues the same W&B run; one started anew there (a failed job with
    no checkpoint, run again) gets a W&B run of its own, not the failed attempt's history with its own on top.
    The run is tagged with its command-line overrides, so a dashboard can filter and group by them, and with
    ``tags`` (one's own) besides.
    """
    from glue_finetune.sweep import first_process_of_the_run

    tags = list(dict.fromkeys([*(tags or []), *override_tags()]))
    if id is None:
        id_file = Path(save_dir) / "wandb" / "run_id"
        # DDP's other processes start after their rank 0 and log nothing: they read its id, never replace it.
        if id_file.exists() and (continues_from or not first_process_of_the_run()):
            id = id_file.read_text().strip()
        else:
            id = uuid.uuid4().hex[:8]  # W&B's own run-id format: 8 lowercase alphanumerics
            id_file.parent.mkdir(parents=True, exist_ok=True)
            id_file.write_text(id)
    if offline is None and "WANDB_MODE" not in os.environ:
        why = wandb_offline_reason()
        offline = why is not None
        if offline:
            log.warning("W&B: %s, so this run is logged offline under %s. Watch it in the terminal: wandb leet %s; "
                        "upload it later: wandb sync %s", why, Path(save_dir) / "wandb", Path(save_dir) / "wandb",
                        Path(save_dir) / "wandb" / "offline-run-*")
    import wandb

    job_args = job_overrides()
    # The script's paths, for a Ray or SLURM worker whose own main module W&B would record (relative to the repo).
    program = {"program": str(TRAIN_SCRIPT), "program_abspath": str(TRAIN_SCRIPT),
               "program_relpath": str(TRAIN_SCRIPT.relative_to(TRAIN_SCRIPT.parents[1]))}
    # quiet: W&B's start lines that say where the run is stay; its end-of-run history block goes.
    settings = kwargs.pop("settings", None) or wandb.Settings(
        quiet=True, **(program if job_args is not None and TRAIN_SCRIPT.exists() else {}))
    logger = JobWandbLogger(save_dir=save_dir, offline=offline, id=id, tags=tags, resume="allow", settings=settings,
                            job_args=job_args, **kwargs)
    # Lightning passes anonymous=None, which W&B answers with a deprecation warning on every run.
    if logger._wandb_init.get("anonymous") is None:
        logger._wandb_init.pop("anonymous", None)
    return logger


def as_written(row: dict) -> dict[str, str]:
    """A metrics row as metrics.csv holds it (values as text, no empty cells): rows read back from the file compare
    equal to the rows they were written from."""
    return {key: str(value) for key, value in row.items() if value not in ("", None)}


class AtomicExperimentWriter(ExperimentWriter):
    """Writes metrics.csv whole, to a temporary file then renamed over the old one, so a crash during a save
    leaves the previous file intact (Lightning's writer appends in place and deletes an existing file at start)."""

    def __init__(self, log_dir: str, kept_rows: list[dict]):
        super().__init__(log_dir)
        self.rows = list(kept_rows)

    def _check_log_dir_exists(self) -> None:
        pass  # the file is replaced whole on the first save: nothing to delete up front

    def save(self) -> None:
        if not self.metrics:
            return
        for row in self.metrics:
            # Lightning can log a step's metrics a second time as a run stops mid-epoch (seen when a resumed run
            # reached its trainer.max_time): the same values at the same step, which would read as a step trained
            # twice. A row identical to the one before it says nothing new.
            if not self.rows or as_written(row) != as_written(self.rows[-1]):
                self.rows.append(row)
        self.metrics = []
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=sorted(set().union(*self.rows)))
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomically(Path(self.metrics_file_path), buffer.getvalue())


class CSVLogger(LightningCSVLogger):
    """Lightning's CSVLogger (``metrics.csv``), written atomically, keeping the rows of the run it resumes.

    A run resumed from a checkpoint at step N (``resume_step=N``) starts with the earlier rows up to step N, so
    the file tells the whole run once.
    """

    def __init__(self, *args, resume_step: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.resume_step = resume_step

    @property
    @rank_zero_experiment
    def experiment(self) -> AtomicExperimentWriter:
        if self._experiment is None:
            path = Path(self.log_dir) / "metrics.csv"
            rows = []
            if self.resume_step is not None and path.exists():
                with open(path, newline="") as f:
                    rows = [r for r in csv.DictReader(f) if r.get("step") and float(r["step"]) <= self.resume_step]
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AtomicExperimentWriter(self.log_dir, rows)
        return self._experiment


EMPTY_WANDB_FILE_BYTES = 64  # a run-<id>.wandb file with its header and no record


def finish_wandb(failure: BaseException | None = None) -> None:
    """Close the current W&B run (if any), so the next job of a sweep in this process starts its own. A run that
    ``failure`` ended is closed with the exit code the process ends with (2 bad input, 75 stopped to be continued,
    1 otherwise), which W&B shows as failed: a dashboard filtered to finished runs holds only runs that finished."""
    wandb = sys.modules.get("wandb")
    if wandb is None:  # never imported, so no run to finish (importing it only to check costs a second)
        return
    run_dir = getattr(wandb.run, "dir", None)
    exit_code = (0 if failure is None else PREEMPTED_EXIT_CODE if isinstance(failure, Preempted)
                 else 2 if isinstance(failure, UserError) else 1)
    # Never raises: this runs in a `finally`, where an error would replace the run's own outcome. SLURM's SIGTERM
    # (preemption, scontrol requeue) reaches every process of the job, W&B's service too: finishing then fails
    # with "Connection lost", and the Preempted that says "requeue me" must still reach the entry point.
    try:
        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)
    except Exception as err:
        where = Path(run_dir).parent if run_dir else None
        records = sum(f.stat().st_size for f in where.glob("run-*.wandb")) if where and where.is_dir() else None
        if records is not None and records < EMPTY_WANDB_FILE_BYTES and where.name.startswith("offline-run-"):
            # Offline, W&B's service writes the run's records out late: stopped with the job, it wrote none.
            log.warning("W&B could not close its run (%s: %s): its service was stopped before it wrote this "
                        "attempt's records (SLURM signals every process of a job it stops, W&B's too), so this "
                        "attempt is missing from %s; metrics.csv in the run dir holds all its rows.",
                        type(err).__name__, err, where)
        else:
            log.warning("W&B could not close its run (%s: %s). What it logged stays in %s: `wandb sync` uploads it.",
                        type(err).__name__, err, where or "the run's wandb/ dir")
        # The run that could not close stays W&B's current one, which Lightning's WandbLogger would take up for the
        # next run of this process (a sweep's next job): W&B's own finish would have let go of it.
        try:
            from wandb.sdk.lib.module import unset_globals

            unset_globals()
        except (ImportError, AttributeError):  # another wandb version's layout
            wandb.run = None
    try:  # stop wandb's service process now, not at interpreter exit, where a Ray worker's exit cuts it off mid-way
        wandb.teardown()
    except Exception:  # the service is already gone
        pass


def log_report_to_wandb(summary: dict, plots: list[Path], project: str, group: str, directory: Path) -> None:
    """A sweep report as a W&B run of its own (job_type "report") in the sweep's group: tables and plots."""
    import wandb

    why = None if os.environ.get("WANDB_MODE") else wandb_offline_reason()
    mode = os.environ.get("WANDB_MODE") or ("offline" if why else "online")
    if why:
        log.warning("W&B: %s, so the report is logged offline under %s. Upload it later: wandb sync %s", why,
                    directory / "wandb", directory / "wandb" / "offline-run-*")
    run = wandb.init(project=project, group=group, job_type="report", name=f"report {group}", mode=mode,
                     dir=str(directory), settings=wandb.Settings(quiet=True))
    columns = ["setting", "metric", "n", "best_mean", "best_std", "final_mean", "final_std"]
    job_columns = ["name", "dir", "task", "status", "metric", "best", "best_step", "final"]
    tables = {
        "report/settings": wandb.Table(columns=columns, data=[[g[c] for c in columns] for g in summary["groups"]]),
        "report/jobs": wandb.Table(columns=[*job_columns, "overrides"],
                                   data=[[j[c] for c in job_columns] + [" ".join(j["overrides"])]
                                         for j in summary["jobs"]]),
    }
    if summary.get("glue"):
        tables["report/glue"] = wandb.Table(columns=["task", "n", "score"], data=[
            [r["glue_name"], r["n"], r["score"]] for r in summary["glue"]["tasks"]])
        tables["report/glue_score"] = summary["glue"]["glue_score"]
    run.log({**tables, **{f"report/{p.stem}": wandb.Image(str(p)) for p in plots}})
    run.finish()


class ThrottledProgressBar(TQDMProgressBar):
    """Lightning's TQDM progress bar, redrawn at most every ``refresh_s`` seconds (and at the end of each bar), and
    only on a terminal.

    Lightning's default bar (Rich's, where rich is installed, else TQDM's) is redrawn after every batch: host time
    at every training step, which a graphed GPU step cannot hide (bench/loop_overhead.py, on a terminal: the loop
    around a replayed step took 0.70 ms per step with Rich's, 0.58 with this one, 0.48 with none); a count of
    batches instead (``refresh_rate``) is too rare on a CPU (a bert-base step takes a second) or too often on a GPU
    (a hundred steps a second). By time suits both. Where stderr is not a terminal (a SLURM job's log, a pipe)
    there is no bar, as with Rich's: the log keeps the run's own lines.
    """

    def __init__(self, refresh_s: float = 0.5):
        super().__init__(refresh_rate=1)
        self.refresh_s = refresh_s
        self._drawn_at = float("-inf")
        if not sys.stderr.isatty():
            self.disable()

    def _should_update(self, current: int, total: int) -> bool:  # Lightning's hook for "redraw after this batch?"
        if not super()._should_update(current, total):
            return False
        now = time.monotonic()
        if current == total or now - self._drawn_at >= self.refresh_s:
            self._drawn_at = now
            return True
        return False


def _sync(module: LightningModule) -> None:
    if module.device.type == "cuda":  # the training's stream only: not the background writer's checkpoint copies
        torch.cuda.current_stream(module.device).synchronize()


class RunTimes(Callback):
    """Where a run's time goes: start-up, training steps, validations, and what ``train()`` does after training
    (``phase(name)``). At the end of a run one line says it, e.g. (the README's offline quick start, 2 CPU cores)

        Time: 54 s all-in: start-up 11.0 s, 125 training steps 16.8 s (134.07 ms/step), 5 validations 18.8 s
        (3.76 s each, with their checkpoints), the last checkpoint written 0.0 s, scoring the selected checkpoint
        2.8 s, export and predictions 4.5 s

    and ``train()`` logs the same figures as ``time/*`` on the run's last row (W&B's run summary, metrics.csv).

    Phases are read off the host's clock at their boundaries. With the training step replayed as CUDA graphs the
    host runs hundreds of steps ahead of the GPU, so the GPU is synchronised at those boundaries (each
    validation's start and end, training's start and end): two syncs per validation, never one per step.
    Lightning's ``Timer`` callback keeps only the latest validation's time and does not synchronise, hence this.
    """

    def __init__(self, started_at: float | None = None):
        self.started_at = run_started_at() if started_at is None else started_at
        self.train_started = self.train_ended = self.fit_ended = None
        self.first_step = self.last_step = 0
        self.validation_started: float | None = None
        self.validation_times: list[float] = []
        self.phases: dict[str, float] = {}
        self.checkpoint_io = None  # a background writer counts the time training waited for it (waited_s)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        _sync(pl_module)
        self.train_started = time.time()
        self.checkpoint_io = trainer.strategy.checkpoint_io
        self.first_step = trainer.global_step  # a resumed run counts the steps it takes, not the checkpoint's

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking and self.train_started:
            _sync(pl_module)  # the training steps queued before it are training's time
            self.validation_started = time.time()

    def _end_validation(self, pl_module: LightningModule) -> None:
        # At the next training batch (or training's end): the checkpoints saved after a validation are its time.
        if self.validation_started is not None:
            _sync(pl_module)
            self.validation_times.append(time.time() - self.validation_started)
            self.validation_started = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._end_validation(pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end_validation(pl_module)
        _sync(pl_module)
        self.train_ended = time.time()
        self.last_step = trainer.global_step

    def end_fit(self) -> None:
        """Called when ``trainer.fit`` returns: after training's end, Lightning's teardown has written the last
        checkpoint (a GPU run's background writer finishes the writes still queued)."""
        self.fit_ended = time.time()

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a block of ``train()`` after fitting (``scoring``, ``artefacts``)."""
        began = time.time()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.time() - began

    def summary(self) -> dict[str, float]:
        """The ``time/*`` values (seconds; ``ms_per_step`` over every step taken, graph captures included)."""
        now = time.time()
        times = {"time/total_s": now - self.started_at}
        if earlier := earlier_attempts_s():  # the run continued from its checkpoint: what came before this attempt
            times["time/earlier_attempts_s"] = earlier
        if self.train_started is None:
            return times
        validation = sum(self.validation_times)
        train_end = self.train_ended or now
        steps = self.last_step - self.first_step
        train = train_end - self.train_started - validation
        times.update({"time/startup_s": self.train_started - self.started_at, "time/train_s": train,
                      "time/steps": float(steps), "time/validation_s": validation,
                      "time/validations": float(len(self.validation_times))})
        if steps:
            times["time/ms_per_step"] = 1000 * train / steps
        if self.fit_ended is not None and self.train_ended is not None:
            times["time/last_checkpoint_s"] = self.fit_ended - self.train_ended
        times.update({f"time/{name}_s": seconds for name, seconds in self.phases.items()})
        waited = getattr(self.checkpoint_io, "waited_s", None)
        if waited is not None:  # part of the validations' and the last checkpoint's time, not more of it
            times["time/checkpoint_wait_s"] = waited
        return times

    def describe(self, times: dict[str, float]) -> str:
        parts = []
        if "time/startup_s" in times:
            parts.append(f"start-up {times['time/startup_s']:.1f} s")
            steps = int(times["time/steps"])
            step = f" ({times['time/ms_per_step']:.2f} ms/step)" if steps else ""
            parts.append(f"{steps:,} training steps {times['time/train_s']:.1f} s{step}")
            if count := int(times["time/validations"]):
                parts.append(f"{count} validation{'s' if count > 1 else ''} {times['time/validation_s']:.1f} s "
                             f"({times['time/validation_s'] / count:.2f} s each, with their checkpoints)")
        if "time/last_checkpoint_s" in times:
            parts.append(f"the last checkpoint written {times['time/last_checkpoint_s']:.1f} s")
        if times.get("time/checkpoint_wait_s", 0.0) >= 0.05:
            parts.append(f"training kept waiting for checkpoint writes {times['time/checkpoint_wait_s']:.1f} s "
                         "(counted above)")
        names = {"scoring": "scoring the selected checkpoint", "artefacts": "export and predictions"}
        parts += [f"{names.get(name, name)} {seconds:.1f} s" for name, seconds in self.phases.items()]
        earlier = times.get("time/earlier_attempts_s")
        attempt = (f" this attempt (the earlier ones: {earlier:.0f} s; {times['time/total_s'] + earlier:.0f} s in all)"
                   if earlier else "")
        return f"Time: {times['time/total_s']:.0f} s all-in{attempt}: " + ", ".join(parts)
