"""Before a sweep's first job: fit the launcher's requests to where the jobs will run, or refuse with a message.

Hydra's Ray and submitit launchers take their resource requests as written. A request that fits nowhere is not an
error to them: Ray queues the job forever, sbatch fails with a message about the cluster's internals. ``LauncherCheck``
(a Hydra callback, run before the sweeper starts) looks at the cluster the jobs go to and

- Ray (``parallel``: a Ray instance on this machine; ``ray_cluster``: a running cluster): connects, resolves the
  ``auto`` shares of ``hydra.launcher.ray.remote`` from the trainer and the cluster's resources (``num_gpus``: 0
  for a CPU trainer, ``trainer.devices`` for a GPU one, GPUs if the cluster has any for ``accelerator: auto``;
  ``num_cpus``: each GPU's share of its node's cores, 1 for a CPU job) and checks that one job fits on a node;
  makes the sweep dir absolute (a cluster's workers run in the directory their node was started in) and leaves
  out the local object store size that Ray refuses when connecting to a cluster;
- SLURM: checks the partition and that a node of it has the CPUs, memory and GPUs one job asks for.

On Ray it also keeps one job's dead process from ending the sweep (``launch_keeping_the_sweep``), and runs the jobs
that share a GPU under an NVIDIA MPS daemon of the sweep's own (``PrivateMPS``; ``hydra.launcher.ray.remote.mps``:
``auto``, where this machine can run one, ``true`` or ``false``).
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from glue_finetune.errors import PREEMPTED_EXIT_CODE, ConfigError, UserError

log = logging.getLogger(__name__)

RAY_LAUNCHER = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


@dataclass
class Node:
    """What one node (or one kind of node) offers a job."""

    name: str
    cpus: float
    gpus: float
    memory_gb: float | None = None
    count: int = 1  # nodes of this kind


def trainer_gpus(trainer: DictConfig, cluster_has_gpus: bool) -> int:
    """GPUs one job's trainer uses: none on CPU, ``devices`` on GPU, and for ``accelerator: auto`` GPUs only where
    there are any (as Lightning decides at run time)."""
    accelerator = str(trainer.get("accelerator", "auto"))
    devices = trainer.get("devices", 1)
    count = len(devices) if OmegaConf.is_list(devices) or isinstance(devices, list) else devices
    if accelerator == "cpu" or (accelerator == "auto" and not cluster_has_gpus):
        return 0
    if not isinstance(count, int) or count < 1:  # "auto" / -1: all of a node's GPUs
        raise ConfigError([f"trainer.devices={devices} inside a sweep: give each job a number of GPUs "
                           "(trainer.devices=1)"])
    return count


SLURM_SWEEP: list[Path] = []  # the dir of the SLURM sweep this process launches, for a Ctrl-C while it waits


class SigtermAsCtrlC:
    """While a sweep's command waits for its jobs, SIGTERM to it (``kill``, ``timeout``, a scheduler ending the job
    that runs it) takes Ctrl-C's path: a KeyboardInterrupt, whose handler says what became of the jobs. Without it
    the command ended there without a word (Ray's own handler also took the jobs with it, unsaved). ``received``
    names the signal once it came (ray.get raises a KeyboardInterrupt of its own, without the handler's), and
    ``came`` (of the class) tells the command's exit code that one came."""

    came = False

    def __init__(self):
        self.received = ""
        self.installed = False
        self.previous = None

    def __enter__(self) -> SigtermAsCtrlC:
        if threading.current_thread() is threading.main_thread():  # only there can a handler be set
            self.previous = signal.signal(signal.SIGTERM, self._interrupt)
            self.installed = True
        return self

    def _interrupt(self, signum, frame):
        self.received = signal.Signals(signum).name
        SigtermAsCtrlC.came = True
        raise KeyboardInterrupt(self.received)

    def __exit__(self, *exc) -> None:
        if self.installed:  # None: a handler set outside Python, which cannot be put back: the default
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self.previous is None else self.previous)
            self.installed = False


def explain_an_interrupted_slurm_sweep() -> None:
    """Ctrl-C on a SLURM sweep's command stops its waiting, not its jobs: say so, and how to collect them."""
    from glue_finetune.sweep import sweep_continue_command

    if not SLURM_SWEEP:
        return
    sweep_dir = SLURM_SWEEP[0]
    arrays = sorted({p.name.split("_")[0] for p in (sweep_dir / ".submitit").glob("*") if p.is_dir()})
    log.warning("Stopped waiting for the sweep's SLURM jobs; they go on running on the cluster (squeue --me). To stop "
                "them: scancel %s. Once they have ended, this collects them (finished jobs are kept, stopped ones "
                "continue): %s", " ".join(arrays) or "<job id>", sweep_continue_command(sweep_dir))


class LauncherCheck(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        target = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if target == SLURM_LAUNCHER:
            SLURM_SWEEP[:] = [Path(str(config.hydra.sweep.dir))]
        try:
            if target == RAY_LAUNCHER:
                prepare_ray(config)
            elif target == SLURM_LAUNCHER:
                check_slurm(config)
                from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

                BaseSubmititLauncher.launch = submitit_launch_skipping_finished_jobs
                print_submitits_warnings_once()
        except UserError as err:
            log.error("%s", err)
            sys.exit(2)
        except Exception as err:  # Hydra would make it a warning and launch jobs on shares nobody checked
            log.exception("Could not set up %s for the sweep (%s: %s); no job was started.", target.rsplit(".", 1)[-1],
                          type(err).__name__, err)
            sys.exit(2)


def why_a_running_cluster_refused(error: str) -> str | None:
    """Why a Ray cluster that answers at the address in Ray's ``error`` ("Failed to connect to Ray cluster at
    host:port") did not take this process, or None where nothing answers there. With Ray's token authentication
    (Ray 2.60: `ray start` turns it on where its user has a token), a process without the cluster's token is
    refused, which Ray reports only as a failure to connect after retrying, its "InvalidAuthToken" lines aside."""
    import socket

    found = re.search(r"at ([\w.\-]+):(\d+)", error)
    if not found:
        return None
    host, port = found.group(1), int(found.group(2))
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return None  # nothing listens there
    said = f"A Ray cluster answers at {host}:{port}, but did not take this process. The usual cause is its token"
    head = ("the token of the cluster's head: the file ~/.ray/auth_token of the user that ran `ray start --head`, "
            "copied to this user's ~/.ray/auth_token, or given as RAY_AUTH_TOKEN_PATH=<that file> or "
            "RAY_AUTH_TOKEN=<its text>")
    # where Ray looks for this process's token, in its order
    sources = [("RAY_AUTH_TOKEN", bool(os.environ.get("RAY_AUTH_TOKEN"))),
               (f"RAY_AUTH_TOKEN_PATH={os.environ.get('RAY_AUTH_TOKEN_PATH')}",
                bool(os.environ.get("RAY_AUTH_TOKEN_PATH"))),
               ("~/.ray/auth_token", (Path.home() / ".ray" / "auth_token").is_file())]
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        why = (f"{said}: this command has RAY_AUTH_MODE=disabled, and the cluster asks for one (Ray's token "
               f"authentication). Unset RAY_AUTH_MODE, with {head}.")
    elif own := next((source for source, present in sources if present), None):
        why = f"{said} (Ray's token authentication): this process's ({own}) is not the cluster's. Give it {head}."
    else:
        why = (f"{said} (Ray's token authentication): this process has none (no RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
               f"or ~/.ray/auth_token). Give it {head}.")
    return why + " Otherwise: a Ray of another version than the cluster's (`ray --version` here and on its head)."


def absolute_sweep_dir(config: DictConfig) -> None:
    """Each job's dir is made by the Ray worker that runs it, relative to the worker's working directory: on a
    cluster, where that node's ``ray start`` ran. Jobs compose their config from ``hydra.overrides.hydra``."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    if sweep_dir.is_absolute():
        return
    absolute = Path.cwd() / sweep_dir
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweep.dir = str(absolute)
        config.hydra.overrides.hydra.append(f"hydra.sweep.dir={absolute}")


def prepare_ray(config: DictConfig) -> None:
    # Ray merges lines of different workers that differ only in their numbers: it prints the first, and holds the
    # others for 5 s to print the latest as "... [repeated 3x across cluster]". The jobs' own lines ("Run stopped at
    # step 48; checkpoint: .../1/...", their results) were lost but one, or came after the sweep's summary. Each
    # job's lines as written, unless the environment asks otherwise (read as Ray is imported).
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray
    from hydra_plugins.hydra_ray_launcher import _core

    ray_cfg = config.hydra.launcher.ray
    init = OmegaConf.to_container(ray_cfg.init, resolve=True)
    address = init.get("address")
    if address:
        # hydra-ray-launcher sets a 75 MB object store for the Ray instance it would start; Ray refuses any size
        # when it connects to a running cluster ("object_store_memory must not be provided").
        init["object_store_memory"] = None
    else:
        # A Ray of this sweep's own (hydra/launcher=parallel), even where a cluster of `ray start` runs on this
        # machine, which address null (and RAY_ADDRESS) would join with settings it refuses.
        init["address"] = "local"
        # The Ray this starts serves this sweep alone, and nobody reads its metrics (Ray's dashboard). Collecting
        # them can crash its raylet a few seconds in (Ray 2.60: SIGSEGV in OpenTelemetry's MetricCollector), and
        # the sweep's own process then exits with it, summary and all: off, unless the config sets it.
        init["_system_config"] = {"enable_metrics_collection": False, **(init.get("_system_config") or {})}
    # The project's keys, not Ray's: read, then removed.
    jobs_per_gpu = ray_cfg.remote.get("jobs_per_gpu", 1)
    mps = ray_cfg.remote.get("mps", "auto")
    problems = []
    if not isinstance(jobs_per_gpu, int) or isinstance(jobs_per_gpu, bool) or jobs_per_gpu < 1:
        problems.append(f"hydra.launcher.ray.remote.jobs_per_gpu={jobs_per_gpu}: a whole number of jobs, 1 or more")
    if mps not in (True, False, "auto"):
        problems.append(f"hydra.launcher.ray.remote.mps={mps}: auto, true or false")
    if problems:
        raise ConfigError(problems)
    try:
        ray.init(**init)
    except ConnectionError as err:
        connecting = (f"hydra/launcher=ray_cluster connects to a running Ray cluster "
                      f"(hydra.launcher.ray.init.address={address}), and could not connect to one: "
                      f"{str(err).rstrip('.')}.")
        if refused := why_a_running_cluster_refused(str(err)):
            raise UserError(f"{connecting} {refused}") from None
        raise UserError(
            f"{connecting} Where none runs, start one first (`ray start --head` on the head node, `ray start "
            "--address=<head>:6379` on the others) and run the sweep on one of its nodes, or give its address "
            "(hydra.launcher.ray.init.address=<head>:6379); where one runs, `ray status` on this machine says why it "
            "cannot be reached. Or run on this machine alone with hydra/launcher=parallel."
        ) from None
    nodes = [Node(n["NodeManagerAddress"], n["Resources"].get("CPU", 0), n["Resources"].get("GPU", 0),
                  n["Resources"].get("memory", 0) / 2**30) for n in ray.nodes() if n.get("Alive")]
    remote = ray_cfg.remote
    gpus, cpus = ray_shares(config.trainer, nodes, remote.get("num_gpus", "auto"), remote.get("num_cpus", "auto"),
                            jobs_per_gpu)
    # The sweep command's W&B and Hub settings (WANDB_MODE=offline, HF_HUB_OFFLINE=1, ...): on a cluster the jobs
    # run in the environment of the node's `ray start`, not of this command.
    job_env = forwarded_environment(os.environ)
    if jobs_per_gpu > 1:  # so that a job out of GPU memory can say it shares its GPU
        job_env["GLUE_FINETUNE_JOBS_PER_GPU"] = str(jobs_per_gpu)
    sharing_gpus = jobs_per_gpu > 1 and bool(gpus)
    under_mps = sharing_gpus and mps is not False and job_mps(mps, address, job_env)
    if mps is True and not sharing_gpus:
        log.warning("hydra.launcher.ray.remote.mps=true has no effect: %s.",
                    "the jobs train on CPU" if not gpus else "each job has a GPU of its own (jobs_per_gpu=1)")
    with read_write(ray_cfg), open_dict(ray_cfg):
        ray_cfg.init.object_store_memory = init.get("object_store_memory")
        ray_cfg.init.address = init.get("address")
        remote.num_gpus, remote.num_cpus = gpus, cpus
        remote.pop("jobs_per_gpu", None)
        remote.pop("mps", None)
        if job_env:
            runtime_env = OmegaConf.to_container(remote.get("runtime_env") or OmegaConf.create({}))
            runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **job_env}
            remote.runtime_env = runtime_env
    absolute_sweep_dir(config)
    _core.launch = launch_keeping_the_sweep
    # Ray counts shares in ten-thousandths: 1 // 0.1 is 9.0 in floats, and Ray fits 10 jobs of 0.1 on one GPU
    at_once = sum(min(n.cpus // cpus, int(n.gpus * 10_000) // int(gpus * 10_000) if gpus else n.cpus) for n in nodes)
    log.info("Ray: %d node(s), %g CPU(s), %g GPU(s); each job gets %g GPU(s) and %g CPU(s), up to %d at once.",
             len(nodes), sum(n.cpus for n in nodes), sum(n.gpus for n in nodes), gpus, cpus, at_once)
    if jobs_per_gpu > 1 and not gpus:
        log.warning("hydra.launcher.ray.remote.jobs_per_gpu=%d has no effect: the jobs train on CPU.", jobs_per_gpu)
    elif sharing_gpus and under_mps is False:
        log.info("hydra.launcher.ray.remote.jobs_per_gpu=%d without NVIDIA's MPS: the jobs sharing a GPU take turns "
                 "on it (under MPS their kernels run side by side: 4 jobs 1.7x as fast on an H200, "
                 "docs/benchmarks.md).", jobs_per_gpu)


FORWARDED_PREFIXES = ("WANDB_", "HF_")  # W&B's settings and key; the Hugging Face Hub's (offline, token, cache)
FORWARDED_NAMES = ("TRANSFORMERS_OFFLINE", "GLUE_FINETUNE_SWEEP_INVOCATION")  # sweep.SWEEP_INVOCATION


def forwarded_environment(environ) -> dict[str, str]:
    """The variables of the sweep's command that its jobs on Ray get too."""
    return {k: v for k, v in environ.items() if k.startswith(FORWARDED_PREFIXES) or k in FORWARDED_NAMES}


def job_mps(mps: bool | str, address: str | None, job_env: dict) -> bool | None:
    """Whether the jobs sharing a GPU will run under MPS (None: up to a Ray cluster's nodes), starting the sweep's
    own daemon (its pipe into ``job_env``) where none runs. ``auto`` uses MPS where it can and says why not where
    it cannot; ``true`` refuses to go on without it."""
    if address:
        if mps is True:
            raise UserError("hydra.launcher.ray.remote.mps=true starts NVIDIA's MPS on this machine, and the jobs run "
                            f"on the Ray cluster at {address}. Fix: start MPS on each GPU node (`nvidia-cuda-mps-control "
                            "-d` before `ray start`) and leave mps=auto, or run here with hydra/launcher=parallel.")
        log.info("On a Ray cluster, the jobs sharing a GPU run under NVIDIA's MPS where its node runs it "
                 "(`nvidia-cuda-mps-control -d` before `ray start`).")
        return None  # up to the cluster's nodes: nothing to start from here
    if mps_running():
        log.info("NVIDIA's MPS already runs on this machine: the jobs sharing a GPU use it.")
        return True
    if mps == "auto" and shutil.which(PrivateMPS.CONTROL) is None:
        log.info("NVIDIA's %s is not on PATH: the jobs sharing a GPU run without MPS.", PrivateMPS.CONTROL)
        return False
    try:
        job_env.update(PrivateMPS.start(probe_timeout_s=300 if mps is True else 120).env)
    except UserError as err:
        if mps is True:
            raise
        log.warning("The jobs sharing a GPU run without MPS, taking turns on it: %s", err)
        return False
    return True


def mps_running() -> bool:
    """Whether NVIDIA's Multi-Process Service runs here (its control pipe exists): with it, CUDA processes sharing a
    GPU run their kernels at the same time; without it the GPU time-slices between them."""
    return (Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")) / "control").exists()


class PrivateMPS:
    """An NVIDIA Multi-Process Service daemon of this process's own: its control pipe and logs in a directory of its
    own, so only the processes given ``env`` use it (a machine-wide MPS daemon would take in every CUDA process of
    the user). Stopped by ``stop()`` and, at the latest, when this process exits.

    ``start()`` checks that a CUDA process can run through it before any job does: a daemon that starts but whose
    server cannot (a GPU mode MPS refuses, a container without the IPC it needs) would fail every job at its first
    CUDA call. What goes wrong is one UserError naming it and the way back (mps=false).
    """

    CONTROL = "nvidia-cuda-mps-control"
    # The check: a CUDA context through the daemon (which starts its server) and one kernel.
    PROBE = "import torch; torch.ones(1, device='cuda').add_(1); torch.cuda.synchronize()"

    def __init__(self, control: str, root: Path):
        self.control, self.root = control, root
        # Short paths under the temporary directory: the control pipe is a Unix socket (paths up to ~100 bytes).
        self.env = {"CUDA_MPS_PIPE_DIRECTORY": str(root / "pipe"), "CUDA_MPS_LOG_DIRECTORY": str(root / "log")}
        self.running = False

    @classmethod
    def start(cls, probe_timeout_s: float = 300) -> PrivateMPS:
        control = shutil.which(cls.CONTROL)
        fix = "Fix: hydra.launcher.ray.remote.mps=false (the jobs sharing a GPU then take turns on it)"
        if control is None:
            raise UserError(f"hydra.launcher.ray.remote.mps=true needs NVIDIA's {cls.CONTROL} (installed with the "
                            f"NVIDIA driver's utilities), which is not on PATH. {fix}.")
        mps = cls(control, Path(tempfile.mkdtemp(prefix="mps-")))
        for folder in mps.env.values():
            Path(folder).mkdir()
        # Its output to a file, not a pipe: the daemon it forks could hold a pipe open, and run() would wait on it.
        said = mps.root / "log" / "start.txt"
        # Without the sweep's CUDA_VISIBLE_DEVICES: a daemon started with it numbers the GPUs it shows from 0, and a
        # job that Ray gives GPU 1 by its machine-wide number (CUDA_VISIBLE_DEVICES=1) would then be refused.
        daemon_env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
        with said.open("w") as out:
            started = subprocess.run([control, "-d"], env={**daemon_env, **mps.env}, stdout=out,
                                     stderr=subprocess.STDOUT, timeout=60)
        if started.returncode != 0:
            raise UserError(f"NVIDIA's MPS daemon did not start ({said.read_text().strip()[:300] or 'no output'}). "
                            f"{fix}.")
        mps.running = True
        atexit.register(mps.stop)
        try:
            probe = subprocess.run([sys.executable, "-c", cls.PROBE], env={**os.environ, **mps.env},
                                   capture_output=True, text=True, timeout=probe_timeout_s)
            failure = ((probe.stderr or probe.stdout).strip().splitlines()[-1:] or ["no output"])[0]
        except subprocess.TimeoutExpired:
            probe, failure = None, f"no answer within {probe_timeout_s:g} s"
        if probe is None or probe.returncode != 0:
            mps.stop(keep_logs=True)
            raise UserError(f"NVIDIA's MPS daemon started, but a CUDA process could not run through it ({failure[:300]}; "
                            f"MPS's log: {mps.env['CUDA_MPS_LOG_DIRECTORY']}). {fix}.")
        log.info("NVIDIA's MPS runs for this sweep (control pipe %s): the jobs sharing a GPU run their kernels side by "
                 "side.", mps.env["CUDA_MPS_PIPE_DIRECTORY"])
        return mps

    def stop(self, keep_logs: bool = False) -> None:
        if not self.running:
            return
        self.running = False
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():  # its workers, the daemon's clients, go first (at exit, Ray's
            ray.shutdown()  # own handler, registered when ray was imported, would run after this one)
        try:
            subprocess.run([self.control], input="quit\n", env={**os.environ, **self.env}, text=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("Could not stop the sweep's MPS daemon (%s): `echo quit | CUDA_MPS_PIPE_DIRECTORY=%s %s` "
                        "stops it.", err, self.env["CUDA_MPS_PIPE_DIRECTORY"], self.CONTROL)
            return
        if not keep_logs:
            shutil.rmtree(self.root, ignore_errors=True)


def launch_keeping_the_sweep(launcher, job_overrides, initial_job_idx):
    """hydra-ray-launcher 1.2.2's ``_core.launch``, except for how results are collected. It returns
    ``[ray.get(run) for run in runs]``, so a job whose process died (killed by the OS for memory, a segfault) raises
    out of the sweep before the other results are read and before the sweep summary runs. Here each job is read on
    its own, and a dead one leaves ``job_failed.json`` and counts as a failed job (as run_job fails one),
    so the others finish and the summary lists it; a job stopped by a signal counts as stopped, by its record (it
    returns to the sweep; one stopped before its first checkpoint exits 75, which also reads to Ray as a dead
    worker). Ctrl-C stops the jobs at a checkpoint (``stop_jobs``) and collects them
    as usual. Set up the same way as the original (it cannot be subclassed: Hydra loads launchers only from the
    hydra_plugins package)."""
    import ray
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
    from hydra_plugins.hydra_ray_launcher._launcher_util import launch_job_on_ray, start_ray

    from glue_finetune.sweep import (FAILED, PREEMPTED, SWEEP_INVOCATION, JobFailed, failed_job_result, read_json,
                                     sweep_continue_command, write_json_atomically)

    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"Ray Launcher is launching {len(job_overrides)} jobs, sweep output dir: {sweep_dir}")
    launcher.ray_cfg.init.setdefault("object_store_memory", 78643200)
    if not ray.is_initialized():  # LauncherCheck started it (else Hydra's start_ray says "Ray is already running")
        start_ray(launcher.ray_cfg.init)

    runs = []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = f"job_id_for_{idx}"
            sweep_config.hydra.job.num = idx
            job_dir = Path(str(sweep_config.hydra.sweep.dir)) / str(sweep_config.hydra.sweep.subdir)
            # A stop record written during this launch tells a stopped job from a dead one (the record, not the
            # clocks: a worker node's may differ from this one's).
            earlier = read_json(job_dir / PREEMPTED)
            runs.append((list(overrides), job_dir, earlier, launch_job_on_ray(
                launcher.hydra_context, launcher.ray_cfg.remote, sweep_config, launcher.task_function,
                Singleton.get_state())))
    launched = time.time()
    on_gpus = float(OmegaConf.select(launcher.ray_cfg, "remote.num_gpus", default=0) or 0) > 0
    returns = []
    interrupted = ""  # what stopped the sweep: Ctrl-C, SIGTERM
    unsaved = []  # jobs Ctrl-C stopped before their first checkpoint, or before they started

    def return_of_a_lost_job(overrides, job_dir, earlier, err):  # a job whose ray.get raised
        error = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        record = read_json(job_dir / PREEMPTED)
        stopped_now = record is not None and record != earlier
        if interrupted and isinstance(err, ray.exceptions.TaskCancelledError) and not stopped_now:
            # dropped before it started, or stopped before its first checkpoint
            log.warning("Job %s: stopped before it saved a checkpoint, or before it started; resume=true starts "
                        "it.", job_dir.name)
            result = f"stopped by {interrupted} before its first checkpoint"
            unsaved.append(job_dir.name)
        elif stopped_now:
            # Stopped by a signal, its checkpoint saved (run_job's record): its exit code 75 reads to Ray as a
            # crashed worker. The summary lists it as stopped, and resume=true continues it.
            log.warning("Job %s: stopped (%s); resume=true continues it.", job_dir.name, record.get("reason"))
            result = f"stopped ({record.get('reason')})"
        else:
            result = f"the job's process died ({error})"
            log.error("Job %s: its process died (%s: %s).", job_dir.name, type(err).__name__, error)
            if not (job_dir / FAILED).exists():
                job_dir.mkdir(parents=True, exist_ok=True)
                # When the job started, not when it was queued: its config is written as its process starts.
                config_file = job_dir / ".hydra" / "config.yaml"
                started = config_file.stat().st_mtime if config_file.exists() else launched
                write_json_atomically(job_dir / FAILED, {
                    "overrides": overrides, "dir": str(job_dir), "log": str(job_dir / "train.log"),
                    "invocation": os.environ.get(SWEEP_INVOCATION),
                    "started_at": max(started, launched), "failed_at": time.time(),
                    "error": f"the job's process died ({type(err).__name__}: {error}). Running out of memory is "
                             "the usual cause: " + ("host memory, or GPU memory with several jobs per GPU (lower "
                                                    "hydra.launcher.ray.remote.jobs_per_gpu)" if on_gpus else
                                                    "the machine's memory (fewer jobs at once: "
                                                    "hydra.launcher.ray.remote.num_cpus=2 gives each job 2 cores)")})
        try:
            return JobReturn(overrides=overrides, working_dir=str(job_dir), status=JobStatus.COMPLETED,
                             _return_value=failed_job_result(result, launcher.config))
        except JobFailed as failure:  # Optuna's sweeper: a failed trial
            return JobReturn(overrides=overrides, working_dir=str(job_dir), status=JobStatus.FAILED,
                             _return_value=failure)

    # SIGTERM to the sweep's command stops the jobs as Ctrl-C does, each saved, until they have ended and printed
    # their last lines: then the summary and Ray's shutdown as before.
    with SigtermAsCtrlC() as sigterm:
        for overrides, job_dir, earlier, run in runs:
            while True:  # a job's result; once more after a first Ctrl-C, as the job stops
                try:
                    returns.append(ray.get(run))
                except KeyboardInterrupt:  # Ctrl-C on the sweep's command: the jobs run in Ray's workers, not here
                    if interrupted:  # a second one: stop waiting
                        log.warning("Stopped waiting for the jobs. To continue the sweep: %s",
                                    sweep_continue_command(sweep_dir))
                        raise
                    interrupted = sigterm.received or "Ctrl-C"
                    stop_jobs([r[-1] for r in runs], interrupted)
                    continue
                except ray.exceptions.RayError as err:
                    returns.append(return_of_a_lost_job(overrides, job_dir, earlier, err))
                break
        wait_for_the_jobs_last_lines()  # before the summary
    if interrupted:
        # The summary now, and exit: a sweeper that launches in batches (Optuna's trials, max_batch_size) would
        # otherwise start its next one, and a sweep whose jobs saved nothing would end as if all went well.
        from glue_finetune.sweep import SweepSummary

        log.warning("%s: the sweep stops here; resume=true continues it (finished jobs are kept).", interrupted)
        # exits 1 with failed jobs, 75 with stopped ones
        SweepSummary().on_multirun_end(config=launcher.config, unsaved=unsaved)
        sys.exit(PREEMPTED_EXIT_CODE)
    return returns


def wait_for_the_jobs_last_lines(quiet_s: float = 0.5, at_most_s: float = 3.0) -> None:
    """Ray prints a job's output here a moment after the job wrote it (its log monitor tails the workers' files
    and publishes what they add), so a job's last lines (a stopped one's "Run stopped at step ...") came after the
    sweep's summary. Wait until none has come for ``quiet_s``, ``at_most_s`` in all (Ray itself sleeps 0.5 s at
    exit for the same reason). Lines come through Ray's dispatcher of the workers' output, which has no public
    hook; with another Ray, the lines keep the order they had."""
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return
    last = [time.monotonic()]
    dispatcher.add_handler("glue_finetune_last_lines", lambda data: last.__setitem__(0, time.monotonic()))
    try:
        deadline = time.monotonic() + at_most_s
        while time.monotonic() < min(deadline, last[0] + quiet_s):
            time.sleep(0.05)
    except KeyboardInterrupt:  # the jobs have ended already: Ctrl-C (or SIGTERM) now only ends the wait
        pass
    finally:
        dispatcher.remove_handler("glue_finetune_last_lines")


def stop_jobs(runs: list, by: str = "Ctrl-C") -> None:  # Ray's object refs of the jobs
    """Ctrl-C on a Ray sweep: each running job is interrupted as Ctrl-C interrupts a run (it saves a checkpoint
    after its current step and stops), and jobs not started yet are dropped; their results are then collected as
    usual, so the summary lists the stopped jobs and how to continue them."""
    import ray

    log.warning("%s: each running job saves a checkpoint after its current step and stops; jobs not started yet are "
                "not started. Waiting for them (Ctrl-C again: stop waiting, the jobs are then killed).", by)
    # Last launched first: the queued jobs are dropped before any running one stops and frees its share for them.
    for run in reversed(runs):
        try:
            ray.cancel(run, force=False)  # a KeyboardInterrupt in the job's process, where it runs
        except Exception as err:  # finished already
            log.debug("ray.cancel: %s", err)


def ray_shares(trainer: DictConfig, nodes: list[Node], num_gpus, num_cpus,
               jobs_per_gpu: int = 1) -> tuple[float, float]:
    """(num_gpus, num_cpus) for one job: ``auto`` resolved as the module says (``jobs_per_gpu`` jobs sharing each
    GPU and its cores), and checked to fit on a node."""
    gpu_nodes = [n for n in nodes if n.gpus > 0]
    gpus = trainer_gpus(trainer, bool(gpu_nodes)) if num_gpus in ("auto", None) else float(num_gpus)
    if num_gpus in ("auto", None) and gpus:
        gpus = gpus / jobs_per_gpu  # Ray's fractional GPUs: that many jobs run on one GPU at once
    if num_cpus in ("auto", None):
        # A GPU job gets its GPUs' share of the cores of the GPU node with the fewest cores per GPU (so it fits on
        # every GPU node); a CPU job one core: N jobs at once on N cores beats N threads for one job at a time.
        per_gpu = min(int(n.cpus // n.gpus) for n in gpu_nodes) if gpu_nodes else 1
        cpus = max(1, int(per_gpu * gpus)) if gpus and gpu_nodes else 1
    else:
        cpus = float(num_cpus)
    if not any(n.gpus >= gpus and n.cpus >= cpus for n in nodes):
        offered = "; ".join(f"{n.name}: {n.cpus:g} CPU(s), {n.gpus:g} GPU(s)" for n in nodes) or "no nodes"
        fixes = []
        if gpus and not gpu_nodes and num_gpus not in ("auto", None):  # asked for by hand, whatever the trainer
            fixes.append("hydra.launcher.ray.remote.num_gpus=auto (or 0), or add GPU nodes")
        elif gpus and not gpu_nodes:
            fixes.append("train on CPU (trainer=cpu) or add GPU nodes")
        elif gpus:
            fixes.append(f"ask for fewer GPUs (trainer.devices / hydra.launcher.ray.remote.num_gpus={gpus:g})")
        if not any(n.cpus >= cpus for n in nodes):
            fixes.append(f"ask for fewer CPUs (hydra.launcher.ray.remote.num_cpus={cpus:g} now)")
        raise UserError(f"No node of the Ray cluster can run a job that needs {gpus:g} GPU(s) and {cpus:g} CPU(s) "
                        f"(the job would wait forever). The cluster has {offered}. Fix: {', or '.join(fixes)}.")
    return gpus, cpus


def slurm_nodes(partition: str | None) -> tuple[str, list[Node]]:
    """(partition, its node kinds) as sinfo lists them; the default partition when ``partition`` is None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        raise UserError("hydra/launcher=slurm submits jobs with sbatch, which is not on this machine's PATH: run the "
                        "sweep on a node of the SLURM cluster (a login node), or use hydra/launcher=parallel here.")
    result = subprocess.run(["sinfo", "--noheader", "--format=%P|%c|%m|%G|%N|%D"], capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0:
        raise UserError(f"sinfo could not reach SLURM ({(result.stderr or result.stdout).strip()}): is slurmctld "
                        "running and SLURM_CONF (or /etc/slurm/slurm.conf) pointing at it?")
    partitions: dict[str, list[Node]] = {}
    default = None
    for line in result.stdout.splitlines():
        name, cpus, memory_mb, gres, nodelist, count = line.strip().split("|")
        if name.endswith("*"):
            name = default = name[:-1]
        gpus = sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))
        memory = float(re.sub(r"\D", "", memory_mb) or 0) / 1024
        partitions.setdefault(name, []).append(Node(nodelist, float(re.sub(r"\D", "", cpus) or 0), gpus, memory,
                                                    int(re.sub(r"\D", "", count) or 1)))
    if partition is None:
        if default is None:
            raise UserError("SLURM has no default partition: set hydra.launcher.partition to one of "
                            f"{', '.join(partitions) or '(sinfo lists none)'}.")
        partition = default
    if partition not in partitions:
        raise UserError(f"hydra.launcher.partition={partition} is not a SLURM partition here; sinfo lists: "
                        f"{', '.join(partitions) or '(none)'}.")
    return partition, partitions[partition]


def print_submitits_warnings_once() -> None:
    """submitit's logger prints a warning (e.g. at each poll of a cluster without accounting) on stderr, again on
    stdout (its handler for every level), and a third time through Hydra's console: stderr only."""
    import submitit  # noqa: F401  (configures its logger)

    logger = logging.getLogger("submitit")
    logger.propagate = False
    for handler in logger.handlers:
        if getattr(handler, "stream", None) is sys.stdout:
            handler.addFilter(lambda record: record.levelno < logging.WARNING)


def submitit_launch_skipping_finished_jobs(self, job_overrides, initial_job_idx: int) -> list:
    """hydra-submitit-launcher 1.2's ``BaseSubmititLauncher.launch``, except that under ``resume=true`` a job whose
    dir holds a finished run (``job_done.json``; ``SweepCheck`` has checked it is of the same settings) is not
    submitted: it would wait in SLURM's queue for a whole allocation only to skip itself. Its result is read from
    its dir; the other jobs keep their numbers, so their dirs."""
    import submitit
    from hydra.core.singleton import Singleton
    from hydra.core.utils import JobReturn, JobStatus, filter_overrides
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    from glue_finetune.sweep import DONE, read_json

    params = self.params
    init_params = {"folder": params["submitit_folder"]}
    specific_init_keys = {"max_num_timeout"}
    init_params.update(**{f"{self._EXECUTOR}_{x}": y for x, y in params.items() if x in specific_init_keys})
    init_keys = specific_init_keys | {"submitit_folder"}
    executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init_params)
    baseparams = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{x if x in baseparams else f"{self._EXECUTOR}_{x}": y
                                  for x, y in params.items() if x not in init_keys})
    log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {self.config.hydra.sweep.dir}")
    sweep_dir = Path(str(self.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in self.config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))

    returns: dict[int, JobReturn] = {}
    submitted = []  # (position, the job's arguments)
    for position, overrides in enumerate(job_overrides):
        idx = initial_job_idx + position
        described = " ".join(filter_overrides(overrides))
        if self.config.get("resume"):
            job_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(job_config.hydra.job):
                job_config.hydra.job.num = idx
            job_dir = Path(str(job_config.hydra.sweep.dir)) / str(job_config.hydra.sweep.subdir)
            if (done := read_json(job_dir / DONE)) is not None:
                result = done.get("result")
                result = f"{result:.4f}" if isinstance(result, float) else result  # as the run's own line says it
                log.info(f"\t#{idx} : {described}  (finished, result {result}: not submitted)")
                returns[position] = JobReturn(overrides=list(overrides), working_dir=str(job_dir),
                                              status=JobStatus.COMPLETED, _return_value=done.get("result"))
                continue
        log.info(f"\t#{idx} : {described}")
        submitted.append((position, (list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}",
                                     Singleton.get_state())))
    if submitted:
        with SigtermAsCtrlC():  # stops the waiting, not the jobs, as Ctrl-C does: train.py says how to collect them
            jobs = executor.map_array(self, *zip(*(arguments for _, arguments in submitted)))
            for (position, _), job in zip(submitted, jobs):
                returns[position] = job.results()[0]
    return [returns[position] for position in range(len(job_overrides))]


def slurm_time_limit_min(partition: str) -> float | None:
    """The partition's time limit in minutes (scontrol's MaxTime), None where it has none or it cannot be read."""
    try:
        result = subprocess.run(["scontrol", "show", "partition", partition, "--oneliner"], capture_output=True,
                                text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):  # no scontrol here, or no answer
        return None
    match = re.search(r"\bMaxTime=(\S+)", result.stdout) if result.returncode == 0 else None
    if not match or match.group(1) in ("UNLIMITED", "INFINITE", "NONE"):
        return None
    days, _, clock = match.group(1).rpartition("-")  # [days-]hours:minutes:seconds, or minutes
    parts = [float(x) for x in clock.split(":")] if clock else []
    if len(parts) == 1:
        parts = [0.0, parts[0], 0.0]
    parts = [0.0] * (3 - len(parts)) + parts
    return float(days or 0) * 1440 + parts[0] * 60 + parts[1] + parts[2] / 60


def check_slurm(config: DictConfig) -> None:
    launcher = config.hydra.launcher
    partition, nodes = slurm_nodes(launcher.get("partition"))
    # Requests SLURM accepts and then never schedules: the job would wait in the queue for good.
    problems = []
    asked_nodes = launcher.get("nodes") or 1
    if asked_nodes > sum(n.count for n in nodes):
        problems.append(f"hydra.launcher.nodes={asked_nodes}: partition {partition} has "
                        f"{sum(n.count for n in nodes)} node(s)")
    elif asked_nodes > 1 and OmegaConf.select(config, "trainer.num_nodes", default=1) != asked_nodes:
        problems.append(f"hydra.launcher.nodes={asked_nodes} gives each job {asked_nodes} nodes, but the trainer runs "
                        f"on trainer.num_nodes={OmegaConf.select(config, 'trainer.num_nodes', default=1)}: add "
                        f"+trainer.num_nodes={asked_nodes} (jobs of several nodes are untried here)")
    limit = slurm_time_limit_min(partition)
    timeout = launcher.get("timeout_min")
    if limit is not None and timeout is not None and timeout > limit:
        problems.append(f"hydra.launcher.timeout_min={timeout} is over partition {partition}'s time limit "
                        f"({limit:g} min): hydra.launcher.timeout_min={int(limit)} (a job stopped by its time limit is "
                        "requeued and continues from where it stopped)")
    message = ["SLURM would queue these jobs and never start them:", *(f"  - {p}" for p in problems)] if problems else []
    delay = launcher.get("signal_delay_s")
    if delay is not None and timeout is not None and delay > timeout * 60 / 2:
        # The time-limit warning, signal_delay_s before the limit: each attempt would train for the rest, then save
        # and requeue (and wait in the queue again), with no time to go on in.
        message.append(f"hydra.launcher.signal_delay_s={delay:g} warns of the time limit {delay:g} s before it, and "
                       f"hydra.launcher.timeout_min={timeout:g} gives each attempt {timeout * 60:g} s: each would "
                       f"requeue itself {'before training at all' if delay >= timeout * 60 else 'having trained little'}."
                       f" Fix: hydra.launcher.timeout_min={math.ceil(delay * 2 / 60)} or more, or "
                       f"hydra.launcher.signal_delay_s={int(timeout * 60 / 4)}")
    if message:
        raise UserError("\n".join(message))
    tasks = launcher.get("tasks_per_node") or 1
    cpus = (launcher.get("cpus_per_task") or 1) * tasks
    gpus = launcher.get("gpus_per_node") or 0
    memory = launcher.get("mem_gb")
    fits = [n for n in nodes if n.cpus >= cpus and n.gpus >= gpus and (memory is None or n.memory_gb >= memory)]
    if fits:
        log.info("SLURM partition %s: each job asks for %d CPU(s), %s GB and %d GPU(s) on one node.",
                 partition, cpus, memory if memory is not None else "the default", gpus)
        return
    offered = "; ".join(f"{n.name}: {n.cpus:g} CPUs, {n.memory_gb:.0f} GB, {n.gpus:g} GPUs" for n in nodes)
    fixes = []
    if gpus and not any(n.gpus >= gpus for n in nodes):
        fixes.append("a GPU partition (hydra.launcher.partition=...) or trainer=cpu for CPU nodes"
                     if not any(n.gpus for n in nodes) else f"fewer GPUs per job (trainer.devices={gpus} now)")
    if not any(n.cpus >= cpus for n in nodes):
        most = int(max(n.cpus for n in nodes) // tasks)
        fixes.append(f"hydra.launcher.cpus_per_task={max(1, most)} (now {cpus // tasks}, × {tasks} task(s) per job)")
    if memory is not None and not any(n.memory_gb >= memory for n in nodes):
        fixes.append(f"hydra.launcher.mem_gb={max(1, int(max(n.memory_gb for n in nodes)))} (now {memory})")
    raise UserError(f"No node of SLURM partition {partition} can run a job that asks for {cpus} CPU(s), {memory} GB "
                    f"and {gpus} GPU(s) (sbatch would refuse it). The partition has {offered}. "
                    f"Fix: {'; '.join(fixes) or 'smaller requests'}.")
