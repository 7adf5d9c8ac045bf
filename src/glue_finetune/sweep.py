"""What a job of a sweep needs beyond ``train(cfg)``: skip or resume on ``resume=true``, keep one failure from
stopping the others, mark completion, and summarise the sweep at the end.

Each job leaves a marker in its own dir: ``job_done.json`` (written last and atomically, so its presence means the
job finished) or ``job_failed.json``. ``SweepSummary``, a Hydra callback, reads them once the launcher returns.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from glue_finetune.files import write_text_atomically
from glue_finetune.errors import ConfigError, Preempted, UserError
from glue_finetune.timing import mark_run_start

log = logging.getLogger(__name__)

DONE = "job_done.json"
FAILED = "job_failed.json"
PREEMPTED = "job_preempted.json"


def write_json_atomically(path: Path, data: dict) -> None:
    write_text_atomically(path, json.dumps(data, indent=2))


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def job_overrides() -> list[str]:
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def check_multirun_compatible(cfg: DictConfig) -> None:
    """DDP re-launches the script once per GPU, which a sweep job run by Hydra's local or Ray launcher cannot
    survive (Lightning dropped multirun support for it, PR #15737; Hydra #2070). SLURM starts the processes itself."""
    strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="auto"))
    devices = OmegaConf.select(cfg, "trainer.devices", default=1)
    launcher = str(OmegaConf.select(HydraConfig.get(), "launcher._target_", default=""))
    if "ddp" in strategy and devices != 1 and "submitit" not in launcher:
        raise ConfigError([
            f"trainer.strategy={strategy} with trainer.devices={devices} cannot run inside a sweep on this launcher. "
            "Sweep with one GPU per job instead (`-m ... hydra/launcher=parallel trainer=gpu`), run each setting as "
            "its own `python src/train.py trainer=ddp ...`, or sweep DDP jobs on SLURM (`hydra/launcher=slurm`)."
        ])


def run_where_the_sweep_started() -> None:
    """A job runs in the directory its sweep was started from (hydra.job.chdir=false), so relative paths in its
    config (data.local_dir=..., model paths) mean what they meant on the command line. A Ray cluster's worker
    starts in the directory its node's `ray start` ran in; SLURM's in the submission directory, or elsewhere."""
    start_dir = str(OmegaConf.select(HydraConfig.get(), "runtime.cwd", default="") or "")
    if start_dir and os.path.isdir(start_dir) and os.path.realpath(start_dir) != os.path.realpath(os.getcwd()):
        os.chdir(start_dir)


def run_job(cfg: DictConfig, train_fn: Callable[[DictConfig], float]) -> float:
    """Run ``train_fn(cfg)`` as a (sweep) job: resume-aware, failure-isolated in sweeps, with a completion marker.

    Every failure that reaches the job, a config error included, leaves ``job_failed.json`` in the run dir: a
    run dir holds ``job_done.json``, ``job_failed.json`` or ``job_preempted.json``, or the job is still running.
    """
    mark_run_start()  # the run's time counts from here (from the process's start for its first run)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    multirun = in_multirun()
    if multirun:
        run_where_the_sweep_started()
    record = {"overrides": job_overrides(), "dir": str(out), "log": str(out / "train.log"), "started_at": time.time()}
    if multirun:
        try:
            check_multirun_compatible(cfg)
        except ConfigError as err:  # every job would fail alike: stop the sweep before it starts any training
            write_json_atomically(out / FAILED, {**record, "error": f"{type(err).__name__}: {err}",
                                                 "failed_at": time.time()})
            raise
    try:
        requeued = int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0  # SLURM re-ran this job (preemption)
        if cfg.get("resume") or requeued or (out / PREEMPTED).exists():
            if (done := read_json(out / DONE)) is not None:
                log.info("Already finished (resume=true): %s, result %.4f. Skipping.", out, done["result"])
                return done["result"]
            last = out / "checkpoints" / "last.ckpt"
            if last.exists() and not cfg.get("ckpt_path"):
                log.info("Resuming from %s", last)
                with open_dict(cfg):
                    cfg.ckpt_path = str(last)
        (out / FAILED).unlink(missing_ok=True)
        result = train_fn(cfg)
    except Preempted as err:
        # Not a failure: the checkpoint is saved; the same command continues from it.
        write_json_atomically(out / PREEMPTED, {**record, "reason": str(err), "preempted_at": time.time()})
        raise
    except Exception as err:
        write_json_atomically(out / FAILED, {**record, "error": f"{type(err).__name__}: {err}", "failed_at": time.time()})
        if not multirun:
            raise  # the entry point prints it (a UserError as one message) and exits non-zero
        # One job's failure (bad lr, out of memory) must not stop the sweep: record it, go on, report at the end.
        if isinstance(err, UserError):
            log.error("Job failed: %s", err)
        else:
            log.exception("Job failed: %s", err)
        return float("nan")  # a sweeper (Optuna) records the trial as failed
    write_json_atomically(out / DONE, {**record, "result": result, "finished_at": time.time()})
    (out / PREEMPTED).unlink(missing_ok=True)
    return result


class SweepSummary(Callback):
    """After a sweep: one line per failed job (overrides, error, log), and a non-zero exit if any failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # Before the sweeper starts: Optuna opens its SQLite study inside the sweep dir.
        Path(config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        done = sorted(sweep_dir.glob(f"*/{DONE}"))
        failed = [read_json(p) for p in sorted(sweep_dir.glob(f"*/{FAILED}"))]
        log.info("Sweep %s: %d job(s) finished, %d failed.", sweep_dir, len(done), len(failed))
        if not failed:
            return
        lines = [f"{len(failed)} job(s) of the sweep in {sweep_dir} failed:"]
        for job in failed:
            lines.append(f"  job {Path(job['dir']).name}: {' '.join(job['overrides']) or '(no overrides)'}")
            lines.append(f"      {job['error']}")
            lines.append(f"      log: {job['log']}")
        lines.append(
            f"Fix the cause, then rerun the same command with: resume=true hydra.sweep.dir={sweep_dir}  "
            "(finished jobs are skipped, interrupted ones resume from their last.ckpt)"
        )
        log.error("\n".join(lines))
        sys.exit(1)
