"""Sweeps on real clusters: a Ray head and a single-node SLURM, started by the tests on this machine.

Each engine is skipped with the reason when it cannot start here (not installed, not root, already running).
Marked `cluster` (minutes): `pytest -m "not cluster"` leaves them out.

    ray start --head --num-cpus=2             what the Ray fixture starts (in a directory of its own)
    slurmctld -f slurm.conf; slurmd -f ...    what the SLURM fixture starts (as root; no accounting database)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import yaml

from conftest import ROOT, tiny_overrides
from glue_finetune.extras import installed
from test_train import column, read_metrics

pytestmark = pytest.mark.cluster

RAY = Path(sys.executable).parent / "ray"


def tiny(data_dir: Path | str, epochs: int, validate_every: int = 20) -> list[str]:
    """The tiny model on the fixture data (20 steps an epoch), validating every `validate_every` steps."""
    return tiny_overrides(f"trainer.max_epochs={epochs}", f"trainer.val_check_interval={validate_every}",
                          f"data.local_dir={data_dir}", "predict_test=false", "selection.metric=last")


def sweep_command(*args: str) -> list[str]:
    return [sys.executable, "src/train.py", "-m", *args]


def run(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env={**env, "WANDB_MODE": "disabled"}, capture_output=True, text=True,
                          timeout=timeout)


def job_record(job_dir: Path, marker: str = "job_done.json") -> dict:
    return json.loads((job_dir / marker).read_text())


def final_step(job_dir: Path) -> int:
    return torch.load(job_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["global_step"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------- Ray cluster


def ray_cluster_running() -> bool:
    return Path("/tmp/ray/ray_current_cluster").exists() or bool(os.environ.get("RAY_ADDRESS"))


def test_ray_cluster_without_a_cluster_says_how_to_start_one(sst2_dir, tmp_path):  # before ray_head starts one
    if not installed("hydra_plugins.hydra_ray_launcher"):
        pytest.skip('Ray is not installed: pip install -e ".[sweeps]"')
    if ray_cluster_running():
        pytest.skip("a Ray cluster is running on this machine")
    result = run(sweep_command("seed=1,2", "hydra/launcher=ray_cluster", *tiny(sst2_dir, epochs=1),
                               f"hydra.sweep.dir={tmp_path / 'sweep'}"), dict(os.environ), timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "connects to a running Ray cluster" in output and "ray start --head" in output
    assert "hydra/launcher=parallel" in output and "Traceback" not in output


def test_ray_cluster_that_refuses_this_process_names_its_token(sst2_dir, tmp_path):  # before ray_head starts one
    # Ray's token authentication: a cluster started with a token refuses a process with another one, which Ray
    # reports only as "Failed to connect ... most likely due to a previous Ray instance that has since crashed".
    import uuid

    if not installed("hydra_plugins.hydra_ray_launcher") or not RAY.exists():
        pytest.skip('Ray is not installed: pip install -e ".[sweeps]"')
    if ray_cluster_running():
        pytest.skip("a Ray cluster is running on this machine (the test would stop it)")
    env = {**os.environ, "RAY_enable_metrics_collection": "0", "RAY_AUTH_MODE": "token"}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    started = subprocess.run([str(RAY), "start", "--head", f"--port={free_port()}", "--num-cpus=1", "--num-gpus=0",
                              "--include-dashboard=false", "--disable-usage-stats"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120,
                             env={**env, "RAY_AUTH_TOKEN": uuid.uuid4().hex})
    try:
        if started.returncode != 0:
            pytest.skip(f"ray start --head failed here: {started.stderr[-500:]}")
        result = run(sweep_command("seed=1", "hydra/launcher=ray_cluster", *tiny(sst2_dir, epochs=1),
                                   f"hydra.sweep.dir={tmp_path / 'sweep'}"),
                     {**env, "RAY_AUTH_TOKEN": uuid.uuid4().hex}, timeout=180)
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert re.search(r"A Ray cluster answers at [\w.\-]+:\d+, but did not take this process. The usual cause is its "
                     r"token \(Ray's token authentication\): this process's \(RAY_AUTH_TOKEN\) is not the cluster's. "
                     r"Give it the token of the cluster's head", output), output[-3000:]
    assert "Traceback" not in output and "start one first" not in output


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray head with 2 CPUs and no GPU, started in a directory of its own (where its workers run)."""
    if not installed("ray") or not RAY.exists():
        pytest.skip('Ray is not installed: pip install -e ".[sweeps]"')
    if ray_cluster_running():
        pytest.skip("a Ray cluster is already running on this machine (the fixture would stop it)")
    start_dir = tmp_path_factory.mktemp("ray_head")
    started = subprocess.run([str(RAY), "start", "--head", f"--port={free_port()}", "--num-cpus=2", "--num-gpus=0",
                              "--include-dashboard=false", "--disable-usage-stats"],
                             cwd=start_dir, capture_output=True, text=True, timeout=120,
                             # as the README says for Ray 2.60: its metrics collection can crash the raylet
                             env={**os.environ, "RAY_enable_metrics_collection": "0"})
    if started.returncode != 0:
        pytest.skip(f"ray start --head failed here: {started.stderr[-500:]}")
    try:
        yield start_dir
    finally:
        subprocess.run([str(RAY), "stop", "--force"], capture_output=True, timeout=120)


def test_ray_cluster_sweep_runs_both_jobs_at_once_where_the_sweep_started(ray_head, sst2_dir, tmp_path):
    # Relative paths, as users type them: they mean the directory the sweep started in, not the head's.
    sweep = Path(os.path.relpath(tmp_path / "sweep", ROOT))
    data = os.path.relpath(sst2_dir, ROOT)
    started = time.monotonic()
    result = run(sweep_command("seed=1,2", "hydra/launcher=ray_cluster", *tiny(data, epochs=2),
                               f"hydra.sweep.dir={sweep}"), dict(os.environ), timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    print(f"ray_cluster, 2 jobs: {time.monotonic() - started:.1f} s")
    assert "each job gets 0 GPU(s) and 1 CPU(s), up to 2 at once" in output  # a CPU cluster: no GPU asked
    jobs = [job_record(tmp_path / "sweep" / str(i)) for i in (0, 1)]
    assert max(j["started_at"] for j in jobs) < min(j["finished_at"] for j in jobs), jobs  # side by side
    assert final_step(tmp_path / "sweep" / "0") == final_step(tmp_path / "sweep" / "1") == 40
    assert not (ray_head / sweep).exists() and not any(ray_head.rglob("job_done.json"))
    assert "2 job(s) finished, 0 failed" in output


def test_a_parallel_sweep_runs_on_a_ray_of_its_own_beside_a_running_cluster(ray_head, sst2_dir, tmp_path):
    # Ray joins a running `ray start` cluster by default, which refuses the settings of a Ray of one's own.
    result = run(sweep_command("seed=1", "hydra/launcher=parallel", "+hydra.launcher.ray.init.num_cpus=1",
                               *tiny(sst2_dir, epochs=1), f"hydra.sweep.dir={tmp_path / 'sweep'}"),
                 dict(os.environ), timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Ray: 1 node(s), 1 CPU(s)" in output  # its own (the cluster's head has 2)
    assert "1 job(s) finished, 0 failed" in output and "UserWarning: Callback" not in output


def test_ray_cluster_refuses_a_share_no_node_has_before_any_job(ray_head, sst2_dir, tmp_path):
    result = run(sweep_command("seed=1,2", "hydra/launcher=ray_cluster", *[o for o in tiny(sst2_dir, epochs=1) if o != "trainer=cpu"], "trainer=gpu",
                               f"hydra.sweep.dir={tmp_path / 'sweep'}"), dict(os.environ), timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "No node of the Ray cluster can run a job that needs 1 GPU(s)" in output
    assert "train on CPU (trainer=cpu)" in output and "Traceback" not in output
    assert not (tmp_path / "sweep").exists()


# ------------------------------------------------------------------------------------------- single-node SLURM

SLURM_BINARIES = ("slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scontrol", "scancel")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A one-node SLURM cluster of this machine (its CPUs and memory, no GPU), on ports of its own: the
    environment to submit to it (SLURM_CONF). No accounting database, as on many small clusters."""
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): as root, "
                    "apt-get install slurmctld slurmd slurm-client")
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld and slurmd needs root")
    if not installed("hydra_plugins.hydra_submitit_launcher"):
        pytest.skip('submitit is not installed: pip install -e ".[sweeps]"')
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir()
    node = subprocess.run(["slurmd", "-C"], capture_output=True, text=True).stdout.splitlines()[0]  # NodeName=...
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=test", f"SlurmctldHost={socket.gethostname().split('.')[0]}",
        f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
        "AuthType=auth/none", "CredType=cred/none", "SlurmUser=root", "SlurmdUser=root",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/log/slurmctld.log", f"SlurmdLogFile={root}/log/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core_Memory", "ReturnToService=2", "JobRequeue=1",
        # A cancelled job still starting (its handlers set, its Python importing) is killed after 10 s, not 30.
        "KillWait=10",
        f"{node} State=UNKNOWN", "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""]))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([daemon, "-f", str(conf)], env=env, check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                           text=True).stdout:
            if time.monotonic() > deadline:
                pytest.skip("slurmd did not register: " + (root / "log" / "slurmctld.log").read_text()[-1000:])
            time.sleep(0.5)
        yield env
    finally:
        subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)
        time.sleep(1)
        for daemon in ("slurmd", "slurmctld"):
            pid_file = root / f"{daemon}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass


SLURM_FITS_THIS_NODE = ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2"]


def slurm_jobs(env: dict) -> list[tuple[str, str, str]]:
    """(job id, state, reason) of every job in the queue."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%T|%r"], env=env, capture_output=True, text=True).stdout
    return [tuple(line.split("|")) for line in out.split()]


def slurm_state(env: dict) -> str:
    """The queue with each job's state and reason, the node's state, and the end of SLURM's own logs."""
    def out(*command: str) -> str:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        return (result.stdout + result.stderr).strip()

    logs = Path(env["SLURM_CONF"]).parent / "log"
    tails = [f"{log.name}: ...{log.read_text()[-1500:]}" for log in sorted(logs.glob("*.log"))]
    return "\n".join([f"squeue: {out('squeue', '-h', '-o', '%i %T %r %M')}",
                      f"sinfo: {out('sinfo', '-h', '-N', '-o', '%N %T %E')}", *tails])


def wait_for_sweep(proc: subprocess.Popen, env: dict, timeout: float, act=None, until=None) -> str:
    """Wait for the sweep to end. SLURM holds a requeued job ~2 minutes before it may start again (reason
    BeginTime); the wait starts it sooner, as a busy cluster's queue would, whenever. Not at once: slurmd revokes
    the stopped job's credential with a resolution of one second, and refuses the restart of a job whose new
    credential dates from that same second ("Job credential revoked"), so a job is held 2 s first. ``act()`` runs
    each poll; once ``until()`` is true the wait ends with the sweep still running (its output is then "")."""
    deadline = time.monotonic() + timeout
    held_since: dict[str, float] = {}
    while proc.poll() is None:
        if time.monotonic() > deadline:
            queue = slurm_state(env)  # before the kill: what SLURM held the jobs in
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"the sweep did not finish in {timeout:.0f} s.\n{queue}\nsweep's output: "
                                 + proc.communicate()[0][-3000:])
        held = {job_id for job_id, state, reason in slurm_jobs(env) if state == "PENDING" and reason == "BeginTime"}
        held_since = {job_id: held_since.get(job_id, time.monotonic()) for job_id in held}
        for job_id, since in list(held_since.items()):
            if time.monotonic() - since >= 2:
                subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], env=env, capture_output=True)
                del held_since[job_id]
        if act is not None:
            act()
        if until is not None and until():
            return ""
        time.sleep(0.5)
    return proc.communicate()[0]


def start_sweep(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(sweep_command(*args), cwd=ROOT, env={**env, "WANDB_MODE": "disabled"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def continuations(log: str) -> list[tuple[int, int]]:
    """(step saved at a signal, step the next attempt continued from), for every signal the run saved at."""
    events = re.findall(r"Checkpoint saved at step (\d+)|Continuing from step (\d+)", log)
    pairs = []
    for (saved, _), (_, continued) in zip(events, events[1:]):
        if saved and continued:
            pairs.append((int(saved), int(continued)))
    return pairs


def saved_steps(log: str) -> list[int]:
    return [int(step) for step in re.findall(r"Checkpoint saved at step (\d+)", log)]


def test_slurm_refuses_requests_no_node_has_and_names_the_keys(slurm, sst2_dir, tmp_path):
    def refused(*args: str) -> str:  # the output of a sweep command that was refused before any job
        result = run(sweep_command(*args), slurm, timeout=120)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output[-3000:]
        return output

    # Each command is a process of its own, mostly start-up: two at a time take half the time.
    empty = tmp_path / "empty"
    empty.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        defaults, wrong, no_data, rushed = pool.map(lambda args: refused(*args), [
            ("seed=1,2", "hydra/launcher=slurm", *tiny(sst2_dir, epochs=1), f"hydra.sweep.dir={tmp_path / 'sweep'}"),
            ("seed=1", *SLURM_FITS_THIS_NODE, "hydra.launcher.partition=gpu", *tiny(sst2_dir, epochs=1)),
            # A data folder this machine sees (a shared file system): checked before any job is submitted.
            ("seed=1,2", *SLURM_FITS_THIS_NODE, *tiny(empty, epochs=1)),
            # A time-limit warning (signal_delay_s, 120 s by default) that comes before a one-minute job could train
            ("seed=1", *SLURM_FITS_THIS_NODE, "hydra.launcher.timeout_min=1", *tiny(sst2_dir, epochs=1))])
    # The defaults (8 CPUs, 64 GB per job) fit a GPU node, not this one; a CPU trainer asks for no GPU.
    assert "No node of SLURM partition debug can run a job that asks for 8 CPU(s), 64 GB and 0 GPU(s)" in defaults
    assert "hydra.launcher.cpus_per_task=" in defaults and "sbatch: error" not in defaults
    assert "hydra.launcher.partition=gpu is not a SLURM partition here; sinfo lists: debug" in wrong
    assert f"data.local_dir={empty}: missing train.tsv, dev.tsv" in no_data
    assert ("hydra.launcher.signal_delay_s=120 warns of the time limit 120 s before it, and "
            "hydra.launcher.timeout_min=1 gives each attempt 60 s: each would requeue itself "
            "before training at all. Fix: hydra.launcher.timeout_min=4 or more, or "
            "hydra.launcher.signal_delay_s=15") in rushed
    # Requests sbatch accepts and SLURM never schedules (the job would pend for good): more nodes than the
    # partition has, a time limit over the partition's (the default 240 min, against a 60-minute partition).
    created = subprocess.run(["scontrol", "create", "PartitionName=short", "Nodes=ALL", "MaxTime=60"], env=slurm,
                             capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    try:
        pending = refused("seed=1", *SLURM_FITS_THIS_NODE, "hydra.launcher.partition=short", "hydra.launcher.nodes=2",
                          *tiny(sst2_dir, epochs=1))
    finally:
        subprocess.run(["scontrol", "delete", "PartitionName=short"], env=slurm, capture_output=True)
    assert ("SLURM would queue these jobs and never start them:\n  - hydra.launcher.nodes=2: partition short has 1 "
            "node(s)\n  - hydra.launcher.timeout_min=240 is over partition short's time limit (60 min): "
            "hydra.launcher.timeout_min=60") in pending
    assert not slurm_jobs(slurm)


@pytest.mark.parametrize("stop,exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_on_a_slurm_sweeps_command_says_its_jobs_go_on_and_how_to_collect_them(
        slurm, sst2_dir, tmp_path, stop, exit_code):
    # Ctrl-C, or SIGTERM (kill, timeout, the limits of a login node) to the command that waits for the jobs
    sweep = tmp_path / "sweep"
    args = ["seed=1", *SLURM_FITS_THIS_NODE, *tiny(sst2_dir, epochs=500), f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(sweep_command(*args), cwd=ROOT,
                            env={**slurm, "WANDB_MODE": "disabled"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    collect = None
    try:
        deadline = time.monotonic() + 120
        while not any(state == "RUNNING" for _, state, _ in slurm_jobs(slurm)):
            assert proc.poll() is None and time.monotonic() < deadline, slurm_state(slurm)
            time.sleep(0.5)
        proc.send_signal(stop)
        output = proc.communicate(timeout=60)[0]
        if stop == signal.SIGTERM:  # the job requeued (as a preemption does) and waiting: the collect command
            # then is refused, rather than submitting the same job again beside it
            [(job, _, _)] = slurm_jobs(slurm)
            subprocess.run(["scontrol", "requeue", job], env=slurm, check=True, capture_output=True)
            deadline = time.monotonic() + 90
            while not any(state == "PENDING" for _, state, _ in slurm_jobs(slurm)):
                assert time.monotonic() < deadline, slurm_state(slurm)
                time.sleep(0.5)
            collect = run(sweep_command(*args, "resume=true"), slurm, timeout=120)
    finally:
        proc.kill()
        jobs = slurm_jobs(slurm)
        subprocess.run(["scancel", *(job for job, _, _ in jobs)], env=slurm, capture_output=True)
        deadline = time.monotonic() + 30
        while slurm_jobs(slurm) and time.monotonic() < deadline:  # ended (KillWait at most) before the next test
            time.sleep(0.5)
    assert proc.returncode == exit_code, output[-3000:]
    [array] = {job.split("_")[0] for job, _, _ in jobs}  # still running when the command had ended
    assert (f"Stopped waiting for the sweep's SLURM jobs; they go on running on the cluster (squeue --me). To stop "
            f"them: scancel {array}. Once they have ended, this collects them") in output
    assert f"hydra.sweep.dir={sweep} resume=true" in output
    if collect is not None:
        assert collect.returncode == 2, collect.stdout[-3000:] + collect.stderr[-3000:]
        assert (f"1 SLURM job(s) of an earlier invocation of this sweep are still in the queue (squeue: {job}); no "
                f"job was started.") in collect.stdout + collect.stderr, collect.stdout + collect.stderr


def test_slurm_sweep_finishes_and_stopped_jobs_are_requeued_and_continue_from_their_step(slurm, sst2_dir, tmp_path):
    # Two jobs side by side (1 CPU each), each stopped mid-training once: job 0 by `scontrol requeue` (SIGTERM, as
    # a preemption with PreemptMode=REQUEUE: SLURM requeues it), job 1 by `scancel --signal=USR1` (the time-limit
    # warning of one's own sbatch scripts: the run requeues it). Each saves at its step, starts again, continues.
    sweep, epochs = tmp_path / "sweep", 30  # 600 steps a job, ~8 s on one CPU
    started = time.monotonic()
    proc = start_sweep(["seed=1,2", *SLURM_FITS_THIS_NODE, *tiny(sst2_dir, epochs=epochs),
                        "trainer.check_val_every_n_epoch=1000", f"hydra.sweep.dir={sweep}"], slurm)
    stop = {"0": ["scontrol", "requeue"], "1": ["scancel", "--signal=USR1"]}
    stopped = {}

    def stop_each_job_once_training():
        for job, command in stop.items():
            log = sweep / job / "train.log"
            if job in stopped or not log.exists() or "Fine-tuning" not in log.read_text():
                continue
            time.sleep(1)  # some steps in
            job_id = str(yaml.safe_load((sweep / job / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"])
            subprocess.run([*command, job_id], env=slurm, check=True)
            stopped[job] = job_id

    output = wait_for_sweep(proc, slurm, timeout=300, act=stop_each_job_once_training)
    print(f"slurm, 2 jobs, each stopped and requeued once: {time.monotonic() - started:.1f} s")
    assert proc.returncode == 0, output[-4000:]
    assert set(stopped) == {"0", "1"} and "2 job(s) finished, 0 failed" in output
    assert output.count("Call #1 - Bypassing sacct error") <= 1, "submitit's warnings printed more than once"
    for job, signal_name in (("0", "SIGTERM"), ("1", "SIGUSR1")):
        log = (sweep / job / "train.log").read_text()
        assert f"Received {signal_name}" in log, log[-3000:]
        pairs = continuations(log)
        assert pairs and all(saved == continued for saved, continued in pairs), (job, pairs)
        assert 0 < pairs[0][0] < epochs * 20
        assert final_step(sweep / job) == epochs * 20 and job_record(sweep / job)["result"] > 0
        steps = [step for step, _ in column(read_metrics(sweep / job / "metrics.csv"), "train/loss")]
        assert steps == sorted(set(steps)), "a step was logged twice"
    assert "Requeued SLURM job" in (sweep / "1" / "train.log").read_text()  # the run requeued it itself
    # The same command with resume=true submits no finished job (each would wait in the queue to skip itself).
    submissions = sorted(p.name for p in (sweep / ".submitit").iterdir())
    again = run(sweep_command("seed=1,2", *SLURM_FITS_THIS_NODE, *tiny(sst2_dir, epochs=epochs),
                              "trainer.check_val_every_n_epoch=1000", f"hydra.sweep.dir={sweep}", "resume=true"),
                slurm, timeout=120)
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-3000:]
    assert output.count("(finished, result ") == 2 and "2 job(s) finished, 0 failed" in output
    assert sorted(p.name for p in (sweep / ".submitit").iterdir()) == submissions


def test_slurm_time_limit_saves_at_the_warning_and_the_requeued_job_continues(slurm, sst2_dir, tmp_path):
    # The time-limit warning (SIGUSR2, signal_delay_s=45 s before the limit): the job saves where it is, submitit
    # requeues it, and the next attempt continues from that step. SLURM checks its time limits every ~30 s and may
    # signal up to a minute early (sbatch --signal), so a warning may come in an attempt's first seconds, before
    # the job's Python has its handler. So the attempts get two minutes, and once the first one trains, its limit is
    # cut to one (scontrol, as an admin may): the warning comes at SLURM's next check, 15-45 s in, rather than
    # 15-105 s. Once warned, the limit is two minutes again, for the next attempt. The run itself would train for
    # days: once the second attempt has continued, a USR1 (as in the test above) makes it save again, which shows it
    # trained on from that step, and the test ends there. How a requeued run goes on to finish, the test above shows.
    sweep = tmp_path / "sweep"
    log = sweep / "0" / "train.log"
    started = time.monotonic()
    proc = start_sweep(["seed=1", *SLURM_FITS_THIS_NODE, "hydra.launcher.timeout_min=2",
                        "hydra.launcher.signal_delay_s=45", *tiny(sst2_dir, epochs=100_000),
                        "trainer.check_val_every_n_epoch=1000", f"hydra.sweep.dir={sweep}"], slurm)
    shortened, probed = [], []

    def text() -> str:
        return log.read_text() if log.exists() else ""

    def job_id() -> str:
        return str(yaml.safe_load((sweep / "0" / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"])

    def time_limit(minutes: int) -> None:
        subprocess.run(["scontrol", "update", f"JobId={job_id()}", f"TimeLimit={minutes}"], env=slurm, check=True)

    def act():
        if not shortened and "Fine-tuning" in text():  # attempt 1 is training, its handler set
            time_limit(1)
            shortened.append(1)
        elif len(shortened) == 1 and "Received SIGUSR2" in text():  # warned: the next attempt gets two minutes
            time_limit(2)
            shortened.append(2)
        elif not probed and continuations(text()) and text().count("Fine-tuning") >= 2:  # attempt 2 is training
            time.sleep(2)
            subprocess.run(["scancel", "--signal=USR1", job_id()], env=slurm, check=True)
            probed.append(job_id())

    def saved_again() -> bool:
        return bool(probed) and len(saved_steps(text())) > len(continuations(text()))

    try:
        output = wait_for_sweep(proc, slurm, timeout=300, act=act, until=saved_again)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        subprocess.run(["scancel", "--user=root"], env=slurm, capture_output=True)
    print(f"slurm, a time-limit requeue: {time.monotonic() - started:.1f} s")
    assert output == "", output[-4000:]  # the sweep did not end by itself
    assert "Received SIGUSR2" in text() and "Requeued job" in text(), text()[-3000:]
    (saved, continued), = continuations(text())
    assert 0 < saved == continued, text()[-3000:]
    assert saved_steps(text())[-1] > continued  # the continued attempt trained on from the saved step
    deadline = time.monotonic() + 30
    while jobs := slurm_jobs(slurm):  # the next test gets an empty queue
        assert time.monotonic() < deadline, slurm_state(slurm)
        # the USR1 probe's own requeue can land just after the scancel above: the job is back, waiting; cancel it
        if any(state == "PENDING" for _, state, _ in jobs):
            subprocess.run(["scancel", "--user=root"], env=slurm, capture_output=True)
        time.sleep(0.5)


def test_a_ddp_job_on_slurm_trains_on_its_tasks_as_ranks_and_continues_from_its_step_when_requeued(slurm, sst2_dir,
                                                                                                   tmp_path):
    # `-m ... hydra/launcher=slurm trainer=ddp`: one SLURM job of trainer.devices tasks, which Lightning takes as the
    # ranks of one DDP run (here 2 CPU processes, gloo, 1 CPU each): one job dir, one result, each rank's log.
    # Requeued once training (`scontrol requeue`: SIGTERM to both tasks, as a preemption), every rank saves at the
    # same step and the job's next start continues from it.
    sweep, epochs = tmp_path / "sweep", 40  # 10 steps an epoch: global batches of 2 x 16 of 320 examples
    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
    proc = start_sweep(["seed=1", *SLURM_FITS_THIS_NODE, *ddp, f"hydra.sweep.dir={sweep}", "trainer.val_check_interval=10",
                        *(o for o in tiny(sst2_dir, epochs=epochs) if not o.startswith(("trainer=", "trainer.val_")))],
                       slurm)
    job, requeued = sweep / "0", []

    def requeue_once_training():
        # once training is under way on both ranks: its first validation's checkpoint is saved
        if not requeued and (job / "checkpoints" / "last.ckpt").exists():
            job_id = str(yaml.safe_load((job / ".hydra" / "hydra.yaml").read_text())["hydra"]["job"]["id"])
            subprocess.run(["scontrol", "requeue", job_id], env=slurm, check=True)
            requeued.append(job_id)

    output = wait_for_sweep(proc, slurm, timeout=300, act=requeue_once_training)
    assert proc.returncode == 0, output[-4000:]
    assert requeued and "1 job(s) finished, 0 failed" in output
    log = (job / "train.log").read_text()
    pairs = continuations(log)
    assert pairs and all(saved == continued for saved, continued in pairs), (pairs, log[-3000:])
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in (job / "train_ddp_process_1.log").read_text()
    assert "GLOBAL_RANK: 1" not in log  # rank 1 writes to its own log only
    assert final_step(job) == epochs * 10 and job_record(job)["result"] > 0
    steps = [step for step, _ in column(read_metrics(job / "metrics.csv"), "val/loss")]
    assert steps == list(range(10, epochs * 10 + 1, 10)), steps  # each validation once, across both attempts
