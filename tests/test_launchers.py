"""Sweeps on Ray (hydra/launcher=parallel, ray_cluster) and the SLURM preset: jobs at the same time, shares of a
GPU and its MPS daemon, a job whose process dies, Ctrl-C and SIGTERM; the presets' settings.

These tests start Ray: pytest-xdist runs them on one process, one after another, with test_clusters.py's
(tests/conftest.py, ONE_AFTER_ANOTHER)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from conftest import ROOT
from test_sweeps import done, needs_extra, tiny
from test_train import read_metrics, run_cli


@needs_extra("hydra_plugins.hydra_ray_launcher")
def test_parallel_launcher_runs_jobs_at_the_same_time(sst2_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "seed=1,2", "hydra/launcher=parallel", *tiny(sst2_dir, epochs=2),
                      f"hydra.sweep.dir={sweep}"], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = [done(sweep / "0"), done(sweep / "1")]
    # Both were alive at once: each started before the other finished.
    assert max(j["started_at"] for j in jobs) < min(j["finished_at"] for j in jobs), jobs
    for job in ("0", "1"):
        assert read_metrics(sweep / job / "metrics.csv"), f"job {job} has no metrics of its own"
        assert (sweep / job / "checkpoints" / "last.ckpt").exists()
    assert [j["overrides"][0] for j in jobs] == ["seed=1", "seed=2"]


def hydra_cfg(*overrides: str) -> dict:
    result = run_cli([*overrides, "--cfg", "all", "--resolve"])  # all: the launcher reads trainer.devices
    assert result.returncode == 0, result.stderr[-3000:]
    return yaml.safe_load(result.stdout)["hydra"]


@needs_extra("hydra_plugins.hydra_submitit_launcher")
def test_slurm_preset_asks_for_the_trainers_gpus_and_requeues():
    launcher = hydra_cfg("hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4")["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher["gpus_per_node"] == 4 and launcher["tasks_per_node"] == 4
    assert launcher["max_num_timeout"] == 3 and launcher["timeout_min"] == 240
    assert "partition" in launcher and launcher["submitit_folder"].endswith(".submitit/%j")
    cpu = hydra_cfg("hydra/launcher=slurm", "trainer=cpu")["launcher"]
    assert cpu["gpus_per_node"] is None and cpu["tasks_per_node"] == 1  # no GPU line at all for a CPU trainer
    cpu_ddp = hydra_cfg("hydra/launcher=slurm", "trainer=ddp", "trainer.accelerator=cpu")["launcher"]
    assert cpu_ddp["gpus_per_node"] is None and cpu_ddp["tasks_per_node"] == 2  # DDP's 2 ranks (gloo)
    assert hydra_cfg("hydra/launcher=slurm")["launcher"]["gpus_per_node"] == 1  # the default trainer, on a GPU node


@needs_extra("hydra_plugins.hydra_ray_launcher")
def test_ray_cluster_preset_connects_without_an_object_store_size_and_sizes_shares_at_launch():
    launcher = hydra_cfg("hydra/launcher=ray_cluster")["launcher"]
    assert launcher["_target_"] == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher["ray"]["init"]["address"] == "auto"
    assert "object_store_memory" in launcher["ray"]["init"] and launcher["ray"]["init"]["object_store_memory"] is None
    assert launcher["ray"]["remote"]["num_gpus"] == launcher["ray"]["remote"]["num_cpus"] == "auto"


def ray_nodes(*shapes: tuple[float, float]):
    from glue_finetune.launchers import Node

    return [Node(f"node{i}", cpus, gpus) for i, (cpus, gpus) in enumerate(shapes)]


def trainer(accelerator: str, devices=1):
    from omegaconf import OmegaConf

    return OmegaConf.create({"accelerator": accelerator, "devices": devices})


@needs_extra("hydra_plugins.hydra_ray_launcher")
def test_parallel_preset_shares_are_sized_at_launch_and_dead_jobs_are_not_retried():
    remote = hydra_cfg("hydra/launcher=parallel")["launcher"]["ray"]["remote"]
    assert remote["num_gpus"] == remote["num_cpus"] == "auto" and remote["jobs_per_gpu"] == 1
    assert remote["max_retries"] == 0 and remote["max_calls"] == 1


@needs_extra("hydra_plugins.hydra_ray_launcher")
def test_a_job_whose_process_dies_is_a_failed_job_and_the_others_finish(sst2_dir, tmp_path):
    # Job 0 instantiates os.abort as a callback: its process dies outright (as one killed for memory would).
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "hydra/launcher=parallel", "+callbacks.die._target_=os.abort,lightning.pytorch.Callback",
                      *tiny(sst2_dir), f"hydra.sweep.dir={sweep}"], timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert (sweep / "1" / "job_done.json").exists() and (sweep / "0" / "job_failed.json").exists()
    assert "1 job(s) finished, 1 failed" in output and "job 0: +callbacks.die._target_=os.abort" in output
    assert "the job's process died (WorkerCrashedError" in output
    assert "the machine's memory (fewer jobs at once" in output and "jobs_per_gpu" not in output  # a CPU sweep



@needs_extra("hydra_plugins.hydra_ray_launcher")
def test_a_ray_job_stopped_by_sigterm_is_a_stopped_job_not_a_dead_one(sst2_dir, tmp_path):
    # A signal makes the job save and exit 75, which Ray reports as a crashed worker: the sweep must still count
    # it as stopped (exit 75, resume=true continues it), not as a failed job.
    sweep = tmp_path / "sweep"
    sweep_run = subprocess.Popen(
        [sys.executable, "src/train.py", "-m", "seed=1", "hydra/launcher=parallel",
         *tiny(sst2_dir, epochs=500), f"hydra.sweep.dir={sweep}"], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "WANDB_MODE": "disabled"})
    try:
        deadline = time.monotonic() + 240
        while not ((sweep / "0" / "metrics.csv").exists() and "train/loss" in (sweep / "0" / "metrics.csv").read_text()):
            assert time.monotonic() < deadline and sweep_run.poll() is None, "the job did not start training"
            time.sleep(0.5)
        subprocess.run(["pkill", "-TERM", "-f", "ray::_run_job"], check=True)
        output, _ = sweep_run.communicate(timeout=120)
    finally:
        sweep_run.kill()
    assert sweep_run.returncode == 75, output[-3000:]
    assert (sweep / "0" / "job_preempted.json").exists() and not (sweep / "0" / "job_failed.json").exists()
    assert "0 job(s) finished, 0 failed, 1 stopped before the end" in output and "process died" not in output
    assert "A worker died" not in output  # the stopped job returned to the sweep: Ray saw no crash
    # the worker's own hint is the sweep's command (its multirun.yaml's), not the Ray worker's command line
    assert "python src/train.py -m hydra/launcher=parallel seed=1 model=tiny " in output
    assert f" hydra.sweep.dir={sweep} resume=true" in output
    assert "--node-ip-address" not in output


@needs_extra("hydra_plugins.hydra_ray_launcher")
def test_ctrl_c_on_a_ray_sweep_stops_its_running_jobs_at_a_checkpoint_and_drops_the_queued_one(sst2_dir, tmp_path):
    # 3 jobs, 2 at a time on 2 cores: Ctrl-C on the sweep's command while 2 train and the third waits. Sent as
    # SIGTERM (kill, timeout, a scheduler stopping the command), which the launcher turns into the KeyboardInterrupt
    # that Ctrl-C's SIGINT raises by itself: one path after that, so one signal for the two.
    sweep = tmp_path / "sweep"
    sweep_run = subprocess.Popen(
        [sys.executable, "src/train.py", "-m", "seed=1,2,3", "hydra/launcher=parallel",
         "+hydra.launcher.ray.init.num_cpus=2", *tiny(sst2_dir, epochs=500), f"hydra.sweep.dir={sweep}"], cwd=ROOT,
        text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "WANDB_MODE": "disabled", "PYTHONFAULTHANDLER": "1"},
        # SIGINT as in a terminal: Ray stops a job with it (ray.cancel), and a test run started in the background by
        # a non-interactive shell (`pytest &`) ignores it, which the sweep's command and its Ray processes inherit.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        training = lambda job: (sweep / job / "metrics.csv").exists() and "train/loss" in (
            sweep / job / "metrics.csv").read_text()
        while not (training("0") and training("1")):
            assert time.monotonic() < deadline and sweep_run.poll() is None, "the jobs did not start training"
            time.sleep(0.5)
        sweep_run.send_signal(signal.SIGTERM)
        try:
            output, _ = sweep_run.communicate(timeout=60)  # it stops in ~3 s
        except subprocess.TimeoutExpired:
            # Which jobs went on, and where the sweep's command was (SIGABRT: Python's fault handler prints every
            # thread's stack).
            sweep_run.send_signal(signal.SIGABRT)
            try:
                output, _ = sweep_run.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                sweep_run.kill()
                output, _ = sweep_run.communicate()
            still = [job for job in ("0", "1", "2") if (sweep / job).is_dir() and not any(
                (sweep / job / record).exists() for record in ("job_preempted.json", "job_done.json"))]
            pytest.fail(f"the sweep had not stopped 60 s after Ctrl-C; jobs without a stop record: {still}; "
                        f"its output ended: {output[-4000:]!r}")
    finally:
        sweep_run.kill()
        # Its jobs train for 500 epochs: none may outlive a failed test and slow the rest of the suite.
        subprocess.run(["pkill", "-KILL", "-f", "ray::_run_job"], capture_output=True)
    assert sweep_run.returncode == 75, output[-3000:]
    assert "SIGTERM: each running job saves a checkpoint" in output
    assert "Stopped by the sweep's stop (Ctrl-C or SIGTERM on its command): saving a checkpoint" in output
    assert "Ctrl-C again: stop at once" not in output  # said to a job that no Ctrl-C reaches
    assert "A worker died" not in output  # the stopped jobs returned to the sweep: Ray saw no crash
    for job in ("0", "1"):  # each saved after its current step, past its last validation
        assert (sweep / job / "job_preempted.json").exists() and not (sweep / job / "job_failed.json").exists()
        # the cause the sweep's command got, not the SIGINT with which ray.cancel interrupts each job
        assert "stopped by the sweep's stop (Ctrl-C or SIGTERM on its command) at step" in json.loads(
            (sweep / job / "job_preempted.json").read_text())["reason"]
    assert not (sweep / "2" / "job_failed.json").exists()  # never started: nothing to fail
    # The dropped job is counted and named, with the stopped ones, as a job the same command continues.
    assert "0 job(s) finished, 0 failed, 2 stopped before the end, 1 stopped before their first checkpoint or " \
           "not started." in output
    assert "each saved where it stopped: 0, 1; to start from the beginning: 2. To continue them" in output
    assert f"rerun the same command with resume=true hydra.sweep.dir={sweep}" in output
    # Each job's own lines as it wrote them, before the summary: Ray merged lines of different jobs that differ only
    # in their numbers, as "[repeated 2x across cluster]", and printed the held ones seconds later.
    summary = output.index("0 job(s) finished, 0 failed")
    for job in ("0", "1"):
        assert f"checkpoint: {sweep / job / 'checkpoints' / 'last.ckpt'}. To continue from it" in output[:summary], \
            output[-3000:]
    assert "repeated" not in output


@needs_extra("hydra_plugins.hydra_optuna_sweeper")
@needs_extra("hydra_plugins.hydra_ray_launcher")
def test_an_optuna_trial_whose_process_dies_is_a_failed_trial(sst2_dir, tmp_path):
    optuna = pytest.importorskip("optuna")
    sweep = tmp_path / "search"
    fixed = [o for o in tiny(sst2_dir) if not o.startswith("optimizer.lr")]
    result = run_cli(["-m", "hparams_search=lr_optuna", "hydra/launcher=parallel", "hydra.sweeper.n_trials=2",
                      "hydra.sweeper.n_jobs=2", "+callbacks.die._target_=os.abort", *fixed,
                      f"hydra.sweep.dir={sweep}"], timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    study = optuna.load_study(study_name="lr_search", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "0 job(s) finished, 2 failed" in output and "the job's process died (WorkerCrashedError" in output

def test_ray_shares_follow_the_trainer_and_the_clusters_nodes():
    from glue_finetune.launchers import ray_shares

    gpu_cluster = ray_nodes((64, 8), (32, 8))  # the node with fewer cores per GPU sets the share: 4 per GPU
    assert ray_shares(trainer("auto"), gpu_cluster, "auto", "auto") == (1, 4)
    assert ray_shares(trainer("gpu", 2), gpu_cluster, "auto", "auto") == (2, 8)
    assert ray_shares(trainer("cpu"), gpu_cluster, "auto", "auto") == (0, 1)  # a CPU trainer asks no GPU
    assert ray_shares(trainer("auto"), ray_nodes((2, 0)), "auto", "auto") == (0, 1)  # auto on a CPU-only cluster
    assert ray_shares(trainer("auto"), gpu_cluster, 0.25, 2) == (0.25, 2)  # numbers are kept
    assert ray_shares(trainer("auto"), gpu_cluster, "auto", "auto", jobs_per_gpu=4) == (0.25, 1)  # 4 jobs a GPU
    assert ray_shares(trainer("auto"), ray_nodes((64, 8)), "auto", "auto", jobs_per_gpu=2) == (0.5, 4)


def test_mps_counts_as_running_when_its_control_pipe_exists(tmp_path, monkeypatch):
    # jobs_per_gpu > 1 without MPS: the launcher says that the jobs will take turns on the GPU, and how to start it
    import os

    from glue_finetune.launchers import mps_running

    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path))
    assert not mps_running()
    os.mkfifo(tmp_path / "control")
    assert mps_running()


STAND_IN_MPS = """#!/bin/sh
# Stands in for nvidia-cuda-mps-control: -d makes the control pipe, "quit" on standard input removes it.
echo "$* pipe=$CUDA_MPS_PIPE_DIRECTORY" >> "$MPS_CALLS"
if [ "$1" = "-d" ]; then
    echo "${CUDA_VISIBLE_DEVICES-unset}" > "$MPS_CALLS.gpus"
    [ -n "$MPS_FAIL_TO_START" ] && { echo "$MPS_FAIL_TO_START"; exit 1; }
    touch "$CUDA_MPS_PIPE_DIRECTORY/control"; exit 0
fi
read command; echo "stdin=$command" >> "$MPS_CALLS"
[ "$command" = quit ] && rm -f "$CUDA_MPS_PIPE_DIRECTORY/control"
exit 0
"""


@pytest.fixture
def stand_in_mps(tmp_path, monkeypatch):
    """nvidia-cuda-mps-control on PATH as a stand-in; a probe that checks what a job sees instead of a CUDA kernel.
    Returns the file where the stand-in records its calls."""
    from glue_finetune.launchers import PrivateMPS

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    control = bin_dir / "nvidia-cuda-mps-control"
    control.write_text(STAND_IN_MPS)
    control.chmod(0o755)
    calls = tmp_path / "mps-calls.txt"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MPS_CALLS", str(calls))
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(tmp_path / "no-machine-wide-mps"))  # as if none ran here
    monkeypatch.setattr(PrivateMPS, "PROBE", "import os, pathlib; "
                        "assert (pathlib.Path(os.environ['CUDA_MPS_PIPE_DIRECTORY']) / 'control').exists()")
    return calls


def test_a_private_mps_daemon_serves_the_processes_given_its_pipe_and_stops(stand_in_mps, monkeypatch):
    from glue_finetune.launchers import PrivateMPS, mps_running

    # The daemon sees every GPU by its machine-wide number; the probe (as the jobs) keeps the sweep's GPUs.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setattr(PrivateMPS, "PROBE", PrivateMPS.PROBE + "; assert os.environ['CUDA_VISIBLE_DEVICES'] == '1'")
    mps = PrivateMPS.start()
    assert Path(f"{stand_in_mps}.gpus").read_text().strip() == "unset"
    pipe = Path(mps.env["CUDA_MPS_PIPE_DIRECTORY"])
    assert len(str(pipe / "control")) < 100  # a Unix socket's path
    assert (pipe / "control").exists() and stand_in_mps.read_text().splitlines() == [f"-d pipe={pipe}"]
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(pipe))
    assert mps_running()  # what a job given mps.env sees
    # Ray's workers, the daemon's clients, are shut down before it (Ray's own exit handler would come after)
    def shutdown():
        with stand_in_mps.open("a") as calls:
            calls.write("ray.shutdown\n")

    monkeypatch.setitem(sys.modules, "ray", SimpleNamespace(is_initialized=lambda: True, shutdown=shutdown))
    mps.stop()
    assert stand_in_mps.read_text().splitlines()[1:] == ["ray.shutdown", f" pipe={pipe}", "stdin=quit"]
    assert not mps.root.exists()
    mps.stop()  # once only (also registered to run at exit)
    assert len(stand_in_mps.read_text().splitlines()) == 4


def test_an_mps_daemon_that_cannot_serve_is_one_message_before_any_job(stand_in_mps, monkeypatch):
    from glue_finetune.errors import UserError
    from glue_finetune.launchers import PrivateMPS

    monkeypatch.setattr(PrivateMPS, "PROBE", "raise SystemExit('RuntimeError: all CUDA-capable devices are busy')")
    with pytest.raises(UserError, match=r"started, but a CUDA process could not run through it \(RuntimeError: all "
                                        r"CUDA-capable devices are busy; MPS's log: .*\)\. Fix: hydra.launcher.ray."
                                        r"remote.mps=false"):
        PrivateMPS.start()
    assert stand_in_mps.read_text().splitlines()[-1] == "stdin=quit"  # stopped again, its log kept for the user

    monkeypatch.setattr(PrivateMPS, "PROBE", "import time; time.sleep(30)")  # a server that never answers
    with pytest.raises(UserError, match="could not run through it \\(no answer within 1 s;"):
        PrivateMPS.start(probe_timeout_s=1)
    assert stand_in_mps.read_text().splitlines()[-1] == "stdin=quit"

    monkeypatch.setenv("MPS_FAIL_TO_START", "An MPS control daemon is already running")
    with pytest.raises(UserError, match="did not start \\(An MPS control daemon is already running\\)"):
        PrivateMPS.start()

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError, match="needs NVIDIA's nvidia-cuda-mps-control .* not on PATH. Fix: .*mps=false"):
        PrivateMPS.start()


def resolved_sweep_config(*overrides: str):
    """The sweep's whole config as the launcher gets it before its first job."""
    from omegaconf import OmegaConf

    result = run_cli(["hydra/launcher=parallel", "+hydra.launcher.ray.init.num_gpus=1", *overrides, "--cfg", "all",
                      "--resolve"])
    assert result.returncode == 0, result.stderr[-3000:]
    return OmegaConf.create(yaml.safe_load(result.stdout))


def prepared_for_ray(config, monkeypatch):
    """``prepare_ray`` on a local Ray told it has one GPU; the jobs' remote settings as Ray gets them."""
    import ray
    from hydra_plugins.hydra_ray_launcher import _core

    from glue_finetune import launchers

    monkeypatch.setattr(_core, "launch", _core.launch)  # prepare_ray replaces it: restored after the test
    try:
        launchers.prepare_ray(config)
    finally:
        ray.shutdown()
    remote = config.hydra.launcher.ray.remote
    assert "mps" not in remote and "jobs_per_gpu" not in remote  # Ray refuses unknown keys
    return remote


@needs_extra("hydra_plugins.hydra_ray_launcher")
def test_the_local_ray_of_a_parallel_sweep_collects_no_metrics(monkeypatch):
    # Its raylet's metrics collection can crash it, and the sweep's process with it (launchers.prepare_ray).
    prepared_for_ray(resolved_sweep_config(), monkeypatch)
    logs = Path("/tmp/ray/session_latest/logs")  # the session just started and shut down
    for process in ("raylet.out", "gcs_server.out"):
        assert "Disabled stats" in (logs / process).read_text(), process


@needs_extra("hydra_plugins.hydra_ray_launcher")
def test_ray_jobs_get_the_sweep_commands_wandb_and_hub_settings(monkeypatch):
    # On a cluster the jobs run in the environment of the node's `ray start`: WANDB_MODE=disabled given to the
    # sweep's command must reach them.
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    from glue_finetune.sweep import SWEEP_INVOCATION, RunDirCheck

    config = resolved_sweep_config()
    # The sweep's invocation id, which its jobs' markers carry, is set by the first callback: before LauncherCheck
    # starts Ray and takes the environment the jobs get (set later, no job had it).
    monkeypatch.delenv(SWEEP_INVOCATION, raising=False)
    callbacks = list(config.hydra.callbacks)
    assert callbacks.index("run_dir_check") == 0 and callbacks.index("launcher_check") > 0
    RunDirCheck().on_multirun_start(config)
    env = prepared_for_ray(config, monkeypatch).runtime_env.env_vars
    assert env.WANDB_MODE == "disabled" and env.HF_HUB_OFFLINE == "1" and "UNRELATED_SETTING" not in env
    assert env[SWEEP_INVOCATION] == os.environ[SWEEP_INVOCATION]


@pytest.mark.gpu
@pytest.mark.skipif(shutil.which("nvidia-cuda-mps-control") is None, reason="needs NVIDIA's nvidia-cuda-mps-control")
def test_a_private_mps_daemon_serves_cuda_processes_on_this_gpu():
    # The real daemon (the tests above use a stand-in): what mps=auto starts for jobs sharing a GPU.
    from glue_finetune.launchers import PrivateMPS

    mps = PrivateMPS.start()
    env = {**os.environ, **mps.env}
    try:
        # A job computes on the GPU and, while its CUDA context lives, asks the sweep's daemon for its servers.
        job = subprocess.run([sys.executable, "-c", (
            "import subprocess, sys, torch\n"
            "print(torch.ones(2, device='cuda').sum().item())\n"
            f"print(subprocess.run([{mps.control!r}], input='get_server_list\\n', capture_output=True, text=True,"
            " timeout=30).stdout.strip() or 'no server')\n")], env=env, capture_output=True, text=True, timeout=120)
        lines = job.stdout.split("\n")
        assert lines[0] == "2.0", job.stderr[-2000:]
        assert lines[1].split()[0].isdigit(), f"the job did not run through the sweep's MPS server: {job.stdout}"
    finally:
        mps.stop()
    assert not mps.root.exists()


@needs_extra("hydra_plugins.hydra_ray_launcher")
@pytest.mark.parametrize("mps", ["auto", True, False])
def test_jobs_sharing_a_gpu_get_the_sweeps_mps_daemon_unless_turned_off(stand_in_mps, monkeypatch, mps):
    from glue_finetune import launchers

    config = resolved_sweep_config("hydra.launcher.ray.remote.jobs_per_gpu=4",
                                   *([f"hydra.launcher.ray.remote.mps={mps}"] if mps != "auto" else []))
    assert config.hydra.launcher.ray.remote.mps == mps  # auto is the default
    started = []
    real_start = launchers.PrivateMPS.start
    monkeypatch.setattr(launchers.PrivateMPS, "start", classmethod(
        lambda cls, **kwargs: started.append(real_start(**kwargs)) or started[-1]))
    remote = prepared_for_ray(config, monkeypatch)
    assert remote.num_gpus == 0.25
    env = remote.runtime_env.env_vars
    assert env.GLUE_FINETUNE_JOBS_PER_GPU == "4"
    assert len(started) == int(mps is not False)
    if started:
        assert env.CUDA_MPS_PIPE_DIRECTORY == started[0].env["CUDA_MPS_PIPE_DIRECTORY"]
        started[0].stop()
    else:
        assert "CUDA_MPS_PIPE_DIRECTORY" not in env


@needs_extra("hydra_plugins.hydra_ray_launcher")
@pytest.mark.parametrize("machine", ["no MPS binary", "MPS fails to start"])
def test_mps_auto_goes_on_without_mps_where_it_cannot_run_and_says_why(stand_in_mps, monkeypatch, caplog, machine):
    # mps=true refuses to start such a sweep (test above); auto only warns: MPS is a speed-up, not the job
    if machine == "no MPS binary":
        which = shutil.which
        monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: (
            None if name == "nvidia-cuda-mps-control" else which(name, *args, **kwargs)))
    else:
        monkeypatch.setenv("MPS_FAIL_TO_START", "An MPS control daemon is already running")
    config = resolved_sweep_config("hydra.launcher.ray.remote.jobs_per_gpu=2")
    with caplog.at_level(logging.INFO, logger="glue_finetune.launchers"):
        remote = prepared_for_ray(config, monkeypatch)
    assert "CUDA_MPS_PIPE_DIRECTORY" not in remote.runtime_env.env_vars and remote.num_gpus == 0.5
    said = caplog.text
    expected = ("nvidia-cuda-mps-control is not on PATH" if machine == "no MPS binary"
                else "did not start (An MPS control daemon is already running)")
    assert expected in said and "jobs_per_gpu=2 without NVIDIA's MPS: the jobs sharing a GPU take turns" in said


def test_on_a_ray_cluster_mps_is_left_to_its_nodes_and_mps_true_is_refused(stand_in_mps, caplog):
    # The daemon would start on the machine the sweep is started from, not on the nodes the jobs run on.
    from glue_finetune.errors import UserError
    from glue_finetune.launchers import job_mps

    job_env: dict = {}
    with caplog.at_level(logging.INFO, logger="glue_finetune.launchers"):
        assert job_mps("auto", "10.0.0.1:6379", job_env) is None
    assert job_env == {} and "nvidia-cuda-mps-control -d` before `ray start`" in caplog.text
    assert not stand_in_mps.exists()  # nothing was started here
    with pytest.raises(UserError, match="mps=true starts NVIDIA's MPS on this machine, and the jobs run on the Ray "
                                        "cluster at 10.0.0.1:6379. Fix: start MPS on each GPU node"):
        job_mps(True, "10.0.0.1:6379", job_env)


@pytest.mark.parametrize("accelerator, num_gpus, num_cpus, expected", [
    ("gpu", "auto", "auto", "train on CPU (trainer=cpu) or add GPU nodes"),
    ("cpu", 0.25, "auto", "hydra.launcher.ray.remote.num_gpus=auto (or 0), or add GPU nodes"),  # trainer=cpu is set
    ("cpu", "auto", 4, "ask for fewer CPUs (hydra.launcher.ray.remote.num_cpus=4 now)"),
])
def test_ray_shares_that_fit_no_node_are_refused_with_the_fix(accelerator, num_gpus, num_cpus, expected):
    from glue_finetune.errors import UserError
    from glue_finetune.launchers import ray_shares

    with pytest.raises(UserError, match="No node of the Ray cluster can run a job") as err:
        ray_shares(trainer(accelerator), ray_nodes((2, 0), (2, 0)), num_gpus, num_cpus)
    assert expected in str(err.value) and "node0: 2 CPU(s), 0 GPU(s)" in str(err.value)


@needs_extra("hydra_plugins.hydra_ray_launcher")
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without GPUs")
def test_parallel_refuses_a_gpu_trainer_on_a_machine_without_gpus(sst2_dir, tmp_path):
    result = run_cli(["-m", "seed=1,2", "hydra/launcher=parallel", *[o for o in tiny(sst2_dir) if o != "trainer=cpu"], "trainer=gpu",
                      f"hydra.sweep.dir={tmp_path / 'sweep'}"], timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "needs 1 GPU(s)" in output and "trainer=cpu" in output, output[-3000:]
    assert not (tmp_path / "sweep").exists()
