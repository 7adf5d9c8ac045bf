"""Sweeps: failure isolation, resumable sweeps, W&B groups, Optuna searches, the sweep summary (Ray: test_launchers.py)."""

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

import pytest
import torch
import yaml

from conftest import ROOT, tiny_overrides, wandb_records
from test_train import read_metrics, run_cli
from glue_finetune.extras import installed


def tiny(sst2_dir: Path, epochs: int = 1) -> list[str]:
    return tiny_overrides(f"trainer.max_epochs={epochs}", f"data.local_dir={sst2_dir}", "predict_test=false")


def needs_extra(module: str):
    """Launchers and the Optuna sweeper come with `pip install -e ".[sweeps]"` (the dev install has them)."""
    return pytest.mark.skipif(not installed(module), reason=f'{module} is not installed: pip install -e ".[sweeps]"')


def done(job_dir: Path) -> dict:
    return json.loads((job_dir / "job_done.json").read_text())


def test_a_failed_job_does_not_stop_the_others_and_is_reported(sst2_dir, tmp_path):
    sweep = tmp_path / "sweep"
    # a value only Lightning's Trainer refuses, once the job builds it: the sweep's check before any job starts
    # does not build one
    result = run_cli(["-m", "+trainer.strategy=nonesuch,auto", f"hydra.sweep.dir={sweep}", *tiny(sst2_dir)])
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (sweep / "0" / "job_failed.json").exists() and not (sweep / "0" / "job_done.json").exists()
    assert (sweep / "1" / "checkpoints" / "last.ckpt").exists() and read_metrics(sweep / "1" / "metrics.csv")
    assert "1 job(s) of the sweep" in output and "job 0: +trainer.strategy=nonesuch" in output
    assert "Lightning refused the trainer's settings (trainer.*): You selected an invalid strategy name" in output
    assert f"log: {sweep / '0' / 'train.log'}" in output
    assert f"resume=true hydra.sweep.dir={sweep}" in output


def test_a_malformed_row_or_another_tasks_file_in_any_job_stops_the_sweep_before_the_first_job(sst2_dir, tmp_path):
    # each job's files were read only when that job started: job 0 trained, then job 1 failed on its data
    sweep, broken = tmp_path / "sweep", tmp_path / "broken"
    shutil.copytree(sst2_dir, broken)
    (broken / "train.tsv").write_text((sst2_dir / "train.tsv").read_text() + "no label here\n")
    result = run_cli(["-m", f"data.local_dir={sst2_dir},{broken}", "seed=1,2", "data=sst2,mrpc",
                      f"hydra.sweep.dir={sweep}", *(o for o in tiny(sst2_dir) if not o.startswith("data.local_dir="))])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and not sweep.exists(), output[-3000:]
    assert "Invalid config in 6 of 8 job(s) of the sweep; no job was started:" in output
    assert f"{broken / 'train.tsv'}:322: expected 2 tab-separated fields, found 1" in output
    assert "this is SST-2's train.tsv" in output and "the run is MRPC's" in output


def test_a_validation_interval_past_a_jobs_epoch_stops_the_sweep_before_the_first_job(sst2_dir, tmp_path):
    # Counted within each epoch (experiment=glue's check_val_every_n_epoch=1), 4 batches pass the epoch of the job
    # on 64 examples (2 batches of 32): that job failed when it started, after the others had trained.
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "experiment=glue", "data.max_train_samples=64,320", "trainer.val_check_interval=4",
                      f"hydra.sweep.dir={sweep}",
                      *(o for o in tiny(sst2_dir) if not o.startswith(("trainer.val_check_interval=", "trainer.max_e")))])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and not sweep.exists(), output[-3000:]
    assert "Invalid config in 1 of 2 job(s) of the sweep; no job was started:" in output
    assert "trainer.val_check_interval=4 training batches, but an epoch has 2 (trainer.check_val_every_n_epoch=1 " \
           "counts validation within each epoch). Fix: trainer.val_check_interval=2 or less" in output
    assert "[job 0: data.max_train_samples=64" in output


def test_a_bad_value_in_any_job_stops_the_sweep_before_the_first_job_starts(sst2_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *tiny(sst2_dir), "optimizer.lr=1e-4,-1", "data.max_length=64,1000",
                      f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 2 and not sweep.exists(), result.stdout[-3000:] + result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    start = next(i for i, line in enumerate(lines) if "Invalid config in 3 of 4 job(s) of the sweep; no job was" in line)
    assert lines[start + 1 : start + 3] == [
        "  - data.max_length=1000 must be an integer between 1 and 512 (BERT's positions)  [job 1: optimizer.lr=0.0001,"
        "data.max_length=1000; job 3: optimizer.lr=-1,data.max_length=1000]",
        "  - optimizer.lr=-1 must be > 0  [job 2: optimizer.lr=-1,data.max_length=64; job 3: optimizer.lr=-1,"
        "data.max_length=1000]"]


def test_a_job_hydra_cannot_compose_stops_the_sweep_before_the_first_job_starts(sst2_dir, tmp_path):
    # Hydra's sweeper checks a batch's jobs before launching the batch: launched one job at a time, job 0 trained
    # before job 1's option was found missing.
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *tiny(sst2_dir), "data=sst2,SST-2", "hydra.sweeper.max_batch_size=1",
                      f"hydra.sweep.dir={sweep}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and not sweep.exists(), output[-3000:]
    assert output.strip() == ("error: data=SST-2 is not an option of data; did you mean data=sst2? (data has ax, cola, "
                              "mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli)")


def test_what_hydra_cannot_check_is_checked_before_any_job_or_trial_starts(sst2_dir, tmp_path):
    # A key added with a typo is no error of Hydra's: each job would fail on it once started (on SLURM, once queued).
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", *tiny(sst2_dir), "+data.max_lenght=64,128", f"hydra.sweep.dir={sweep}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and not sweep.exists(), output[-3000:]
    assert ("data.max_lenght: glue_finetune.data.GlueDataModule takes no argument 'max_lenght'; did you mean "
            "data.max_length?  [every job]") in output
    # A search's fixed values: every trial would fail alike, and stay failed in its study for good.
    if installed("hydra_plugins.hydra_optuna_sweeper"):
        search = tmp_path / "search"
        fixed = [o for o in tiny(sst2_dir) if not o.startswith("optimizer.lr")]
        result = run_cli(["-m", "hparams_search=lr_optuna", *fixed, "optimizer.weight_decay=-1",
                          "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={search}"])
        output = result.stdout + result.stderr
        assert result.returncode == 2 and not (search / "optuna.db").exists(), output[-3000:]
        assert "Invalid config shared by every trial of the search; no trial was started:" in output
        assert "  - optimizer.weight_decay=-1 must be >= 0" in output
    # A key Hydra refuses is Hydra's one message, not a warning from the check and the message twice.
    result = run_cli(["-m", *tiny(sst2_dir), "optimizer.lrr=1e-4,2e-4", f"hydra.sweep.dir={sweep}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and output.count("did you mean optimizer.lr?") == 1, output[-3000:]
    assert "UserWarning" not in output and "Could not override" not in output


@needs_extra("hydra_plugins.hydra_optuna_sweeper")
def test_a_search_without_multirun_is_refused_not_run_once_at_its_defaults(sst2_dir, tmp_path):
    result = run_cli(["hparams_search=lr_optuna", *tiny(sst2_dir), f"hydra.run.dir={tmp_path / 'run'}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "hparams_search=lr_optuna is a search of many trials: run it with -m" in output
    assert not (tmp_path / "run" / "checkpoints").exists()
    # as any config error, the run dir says it
    assert "is a search of many trials" in json.loads((tmp_path / "run" / "job_failed.json").read_text())["error"]
    # A trial's own command, as its model card gives it (the searched values set), trains that trial again.
    trial = run_cli(["optimizer.lr=3e-3", "scheduler.warmup_ratio=0.1", "hparams_search=lr_optuna", *tiny(sst2_dir),
                     f"hydra.run.dir={tmp_path / 'trial'}"])
    assert trial.returncode == 0, trial.stdout[-3000:] + trial.stderr[-3000:]


def test_the_summary_speaks_for_this_invocations_jobs_not_failures_left_by_an_earlier_one(tmp_path, monkeypatch,
                                                                                          caplog):
    from omegaconf import OmegaConf

    from glue_finetune.sweep import SWEEP_INVOCATION, SweepSummary

    (tmp_path / "0").mkdir()  # another sweep in the same dir, or a study's earlier trial, failed
    (tmp_path / "0" / "job_failed.json").write_text(json.dumps(
        {"overrides": ["+trainer.max_step=20"], "dir": str(tmp_path / "0"), "error": "ConfigError: ...",
         "log": str(tmp_path / "0" / "train.log"), "invocation": "earlier"}))
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "job_done.json").write_text(json.dumps({"result": 0.5, "invocation": "now"}))
    monkeypatch.setenv(SWEEP_INVOCATION, "now")
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": {"_target_": "basic"}}})
    with caplog.at_level(logging.INFO, logger="glue_finetune.sweep"):
        SweepSummary().on_multirun_end(config)  # no exit: none of this invocation's jobs failed
    assert "1 job(s) finished, 0 failed" in caplog.text
    monkeypatch.setenv(SWEEP_INVOCATION, "earlier")  # as that invocation's own summary saw it
    with pytest.raises(SystemExit) as stopped:
        SweepSummary().on_multirun_end(config)
    assert stopped.value.code == 1 and "job 0: +trainer.max_step=20" in caplog.text


def test_a_local_sweep_stopped_by_a_signal_ends_with_its_summary_the_jobs_not_started_included(sst2_dir, tmp_path):
    # Hydra's basic launcher runs the jobs in the sweep's process: the stopped job's exit ended the sweep before its
    # summary, and nothing said job 2 never started
    sweep = tmp_path / "sweep"
    args = ["-m", "seed=1,2,3", *tiny(sst2_dir, epochs=4), f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "src/train.py", *args], cwd=ROOT, start_new_session=True,
                            env={**os.environ, "WANDB_MODE": "disabled"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not ((sweep / "0" / "job_done.json").exists() and (sweep / "1" / "checkpoints" / "last.ckpt").exists()):
            assert proc.poll() is None and time.monotonic() < deadline, "sweep ended before it could be stopped"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 75, output[-3000:]
    assert (f"Sweep {sweep}: 1 job(s) finished, 0 failed, 1 stopped before the end, 1 stopped before their first "
            f"checkpoint or not started.") in output
    assert (f"Stopped job(s), each saved where it stopped: 1; to start from the beginning: 2. To continue them "
            f"(finished jobs are skipped): rerun the same command with resume=true hydra.sweep.dir={sweep}") in output


def test_a_slurm_sweeps_jobs_still_queued_are_found_by_their_submitit_folders(tmp_path, monkeypatch):
    # jobs requeued (preempted, warned of their time limit) wait in the queue holding no lock on their dir: the same
    # command with resume=true submitted them again beside the waiting ones
    from glue_finetune.sweep import queued_slurm_jobs

    sweep = tmp_path / "sweep"
    for name in ("3", "3_0", "3_1"):  # submitit's folders: the array's, then each task's
        (sweep / ".submitit" / name).mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    squeue = bin_dir / "squeue"  # another sweep's 4_0, this one's 3_1 (requeued) and 3_0 (running: it holds its
    # dir's lock, said as such), an unrelated 33_0
    squeue.write_text("#!/bin/sh\n[ \"$*\" = \"-h -r -o %i %T\" ] || exit 1\n"
                      "printf '4_0 PENDING\\n3_1 PENDING\\n3_0 RUNNING\\n33_0 PENDING\\n'\n")
    squeue.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert queued_slurm_jobs(sweep) == ["3_1"]
    assert queued_slurm_jobs(tmp_path / "elsewhere") == []  # no submitit folder: no SLURM sweep there
    squeue.write_text("#!/bin/sh\nexit 1\n")  # squeue failing (no controller): nothing is claimed
    assert queued_slurm_jobs(sweep) == []


def test_resumed_sweep_skips_finished_jobs_and_continues_the_interrupted_one(sst2_dir, tmp_path):
    sweep, epochs = tmp_path / "sweep", 4  # 80 steps a job: seconds between job 1's first checkpoint and its end
    args = ["-m", "seed=1,2,3", *tiny(sst2_dir, epochs=epochs), f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "src/train.py", *args], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill the sweep once job 0 is done and job 1 has saved a checkpoint mid-run
        deadline = time.monotonic() + 240
        while not ((sweep / "0" / "job_done.json").exists() and (sweep / "1" / "checkpoints" / "last.ckpt").exists()):
            assert proc.poll() is None and time.monotonic() < deadline, "sweep ended before it could be interrupted"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (sweep / "1" / "job_done.json").exists() and not (sweep / "2").exists()
    job0_files = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (sweep / "0").rglob("*")
                  if p.is_file() and ".hydra" not in p.parts and p.name != "train.log"}
    before = read_metrics(sweep / "1" / "metrics.csv") if (sweep / "1" / "metrics.csv").exists() else []
    ckpt_step = int(torch.load(sweep / "1" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"])

    refused = run_cli(args)  # the same command without resume=true: would overwrite job 0's results
    refused_output = refused.stdout + refused.stderr
    assert refused.returncode == 2 and not (sweep / "2").exists(), refused_output[-3000:]
    assert "2 job(s) would overwrite an earlier run; no job was started:" in refused_output
    assert f"  - {sweep / '0'}: a finished run (result " in refused_output
    assert f"  - {sweep / '1'}: an unfinished run (" in refused_output
    assert f"add resume=true (same command, hydra.sweep.dir={sweep})" in refused_output
    # A job stopped by a signal (its job_preempted.json written) is continued by the same command, as a single run
    # is: not one that would be overwritten.
    (sweep / "1" / "job_preempted.json").write_text(json.dumps({"reason": "Run stopped by SIGTERM"}))
    refused = run_cli(args)
    refused_output = refused.stdout + refused.stderr
    assert refused.returncode == 2, refused_output[-3000:]
    assert "1 job(s) would overwrite an earlier run; no job was started:" in refused_output
    assert f"  - {sweep / '1'}:" not in refused_output

    result = run_cli([*args, "resume=true"])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Job 0 was not rerun (nor by the refused command): its checkpoints, metrics and marker are the same files.
    assert job0_files == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in job0_files}
    assert "Already finished" in (sweep / "0" / "train.log").read_text()
    # Job 1 continued from its checkpoint and its metrics.csv holds the whole run, once.
    log = (sweep / "1" / "train.log").read_text()
    assert f"Resuming from {sweep / '1' / 'checkpoints' / 'last.ckpt'}" in log
    assert ckpt_step > 0
    after = read_metrics(sweep / "1" / "metrics.csv")
    steps = [int(float(r["step"])) for r in after if r.get("val/acc")]
    assert steps == list(range(10, epochs * 20 + 1, 10)), steps
    kept = [r for r in before if float(r["step"]) <= ckpt_step]
    assert [{k: v for k, v in r.items() if v} for r in after[: len(kept)]] == [
        {k: v for k, v in r.items() if v} for r in kept], "rows logged before the interruption were lost"
    assert done(sweep / "1") and done(sweep / "2")


def test_the_summary_shows_a_sweep_dir_under_the_working_dir_as_given_whichever_launcher_ran_it(tmp_path, caplog,
                                                                                                 monkeypatch):
    # Ray's launcher makes the sweep dir absolute for its workers: its summary, paths and rerun command read as
    # those of the other launchers, relative to where the sweep was started.
    from omegaconf import OmegaConf

    from glue_finetune.sweep import SweepSummary

    monkeypatch.chdir(tmp_path)
    job = tmp_path / "multirun" / "seeds" / "0"
    job.mkdir(parents=True)
    (job / "job_failed.json").write_text(json.dumps({"overrides": ["seed=1"], "dir": str(job), "error": "OSError: x",
                                                     "log": str(job / "train.log")}))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "multirun" / "seeds")}}})
    with caplog.at_level(logging.INFO, logger="glue_finetune.sweep"), pytest.raises(SystemExit):
        SweepSummary().on_multirun_end(config)
    assert "Sweep multirun/seeds: 0 job(s) finished, 1 failed." in caplog.text
    assert "1 job(s) of the sweep in multirun/seeds failed:" in caplog.text
    assert "      log: multirun/seeds/0/train.log" in caplog.text
    assert "resume=true hydra.sweep.dir=multirun/seeds " in caplog.text and str(tmp_path) not in caplog.text


def test_the_summary_of_a_sweep_with_diverged_jobs_does_not_advise_rerunning_them(tmp_path, caplog):
    from omegaconf import OmegaConf

    from glue_finetune.sweep import SweepSummary

    for job, error in (("0", "TrainingDivergedError: The training loss became NaN or infinite at optimizer step 3"),
                       ("1", "DataFormatError: train.tsv:322: expected 2 tab-separated fields, found 1")):
        (tmp_path / job).mkdir()
        (tmp_path / job / "job_failed.json").write_text(json.dumps(
            {"overrides": [f"optimizer.lr={job}"], "dir": str(tmp_path / job), "error": error,
             "log": str(tmp_path / job / "train.log")}))
    config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}, "sweeper": {"_target_": "basic"}}})
    with caplog.at_level(logging.ERROR, logger="glue_finetune.sweep"), pytest.raises(SystemExit):
        SweepSummary().on_multirun_end(config)
    assert f"rerun the same command with: resume=true hydra.sweep.dir={tmp_path}" in caplog.text  # for job 1
    assert "Diverged job(s) 0: their settings diverge" in caplog.text and "another hydra.sweep.dir" in caplog.text
    caplog.clear()
    (tmp_path / "1" / "job_failed.json").unlink()  # only diverged jobs: nothing for resume=true to fix
    with caplog.at_level(logging.ERROR, logger="glue_finetune.sweep"), pytest.raises(SystemExit):
        SweepSummary().on_multirun_end(config)
    assert "Diverged job(s) 0" in caplog.text and "resume=true" not in caplog.text


def test_wandb_offline_sweep_has_one_run_per_job_in_one_group(sst2_dir, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = tiny_overrides("trainer.max_epochs=1", f"data.local_dir={sst2_dir}", "predict_test=false",
                               "logger=wandb")
    result = run_cli(["-m", "seed=1,2", *overrides, f"hydra.sweep.dir={sweep}"], env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_files = [next((sweep / job / "wandb").glob("offline-run-*/run-*.wandb")) for job in ("0", "1")]
    run_ids = {f.stem.removeprefix("run-") for f in run_files}
    assert len(run_ids) == 2, "each job must have its own W&B run"
    assert run_ids == {(sweep / job / "wandb" / "run_id").read_text() for job in ("0", "1")}
    group = (sweep / ".wandb_group").read_text().strip()  # the sweep dir and this sweep's id
    assert group.startswith(f"{sweep}-"), group
    group = group.encode()
    for f, seed in zip(run_files, (b"seed=1", b"seed=2")):
        record = f.read_bytes()
        # RunRecord.run_group (protobuf field 6) holds the sweep dir; RunRecord.tags (field 10) the overrides.
        assert b"\x32" + bytes([len(group)]) + group in record, f"{f} is not in group {sweep}"
        assert b"\x52" + bytes([len(seed)]) + seed in record, f"{f} is not tagged {seed}"
        # Paths say where things are, not what was run: not a tag (nor part of the run name).
        assert b"\x52" + bytes([len("model=tiny")]) + b"model=tiny" in record
        path_tag = f"data.local_dir={sst2_dir}"[:64].encode()  # W&B caps tags at 64 characters
        assert b"\x52" + bytes([len(path_tag)]) + path_tag not in record
        # The run's command is the job's, `src/train.py seed=N ...`, not the sweep's `-m seed=1,2 ...`.
        [environment] = [r.environment for r in wandb_records(f)
                         if r.WhichOneof("record_type") == "environment" and r.environment.program]
        assert environment.program == str(ROOT / "src" / "train.py") and environment.code_path == "src/train.py"
        job_args = yaml.safe_load((f.parents[2] / ".hydra" / "overrides.yaml").read_text())  # as Hydra wrote them
        assert list(environment.args) == job_args
        assert job_args[0] == seed.decode() and len(job_args) == 1 + len(overrides)



def test_a_sweep_whose_job_still_runs_in_its_dir_is_refused_before_any_job(sst2_dir, tmp_path):
    # An earlier invocation's job, still running (on SLURM: each job would wait in the queue, then be refused).
    from glue_finetune.sweep import exclusive_run_dir

    sweep = tmp_path / "sweep"
    (sweep / "1" / ".hydra").mkdir(parents=True)  # the running job's record
    with exclusive_run_dir(sweep / "1", multirun=True):
        result = run_cli(["-m", "seed=1,2", *tiny(sst2_dir), f"hydra.sweep.dir={sweep}", "resume=true"])
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert ("1 job(s) of this sweep are still running in their dir (a job of an earlier invocation of the same "
            f"sweep, say); no job was started:\n  - {sweep / '1'} (job 1: seed=2)") in output
    assert not (sweep / "0").exists()


def test_resume_of_a_sweep_dir_that_holds_no_sweep_is_refused_not_started_anew(sst2_dir, tmp_path):
    # A mistyped or new hydra.sweep.dir with resume=true: every job would train from its first step.
    sweep = tmp_path / "sweeep"
    result = run_cli(["-m", "seed=1,2", *tiny(sst2_dir), f"hydra.sweep.dir={sweep}", "resume=true"])
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert f"resume=true, but {sweep} holds no sweep to continue (no multirun.yaml, no job dirs)" in output
    assert not (sweep / "0").exists() and "Traceback" not in output


def test_resume_refuses_a_sweep_whose_jobs_hold_runs_of_other_settings(sst2_dir, tmp_path):
    # A sweep over data folders (clean vs noisy labels, say). A folder may move between a run and its resume, so
    # data.local_dir is not compared on its own; swept, it is what tells the jobs apart.
    clean, noisy = sst2_dir, shutil.copytree(sst2_dir, tmp_path / "noisy")
    sweep = Path(os.path.relpath(tmp_path / "sweep", ROOT))  # relative, as users give it: jobs record it absolute
    fixed = [o for o in tiny(sst2_dir) if not o.startswith("data.local_dir=")]
    first = run_cli(["-m", f"data.local_dir={clean},{noisy}", *fixed, f"hydra.sweep.dir={sweep}"])
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    sweep_here = ROOT / sweep
    results = [done(sweep_here / job)["result"] for job in ("0", "1")]
    # The values in another order: job 0 is now the noisy folder's, and its dir holds the clean folder's run.
    swapped = run_cli(["-m", f"data.local_dir={noisy},{clean}", *fixed, f"hydra.sweep.dir={sweep}", "resume=true"])
    output = swapped.stdout + swapped.stderr
    assert swapped.returncode == 2, output[-3000:]
    assert "resume=true: 2 job(s) would continue or keep a run of other settings in their dir; no job was" in output
    assert f"  - {sweep / '0'} (job 0: data.local_dir={noisy}), started with the overrides: " \
           f"data.local_dir={clean} " in output
    assert f"data.local_dir: {clean} (the run) -> {noisy} (now)" in output
    assert "Already finished" not in output and [done(sweep_here / job)["result"] for job in ("0", "1")] == results
    assert "dirpath" not in output  # only the data folder differs: the jobs' dirs are the same dirs
    again = run_cli(["-m", f"data.local_dir={clean},{noisy}", *fixed, f"hydra.sweep.dir={sweep}", "resume=true"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert all("Already finished" in (sweep_here / job / "train.log").read_text() for job in ("0", "1"))


@needs_extra("hydra_plugins.hydra_optuna_sweeper")
def test_optuna_study_continues_across_invocations(sst2_dir, tmp_path):
    optuna = pytest.importorskip("optuna")
    sweep = tmp_path / "search"
    # optimizer.lr is left to the search: an override on the command line would pin it. Its search space given on
    # the command line, as Hydra's Optuna sweeper takes it (the study's guard below composed it, and failed).
    fixed = [o for o in tiny(sst2_dir) if not o.startswith("optimizer.lr")]
    base = ["-m", "hparams_search=lr_optuna", *fixed, "optimizer.lr=tag(log, interval(1e-5, 1e-4))",
            f"hydra.sweep.dir={sweep}"]
    for n_trials in (3, 2):
        result = run_cli([*base, f"hydra.sweeper.n_trials={n_trials}"])
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    study = optuna.load_study(study_name="lr_search", storage=f"sqlite:///{sweep / 'optuna.db'}")
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 5
    assert all(1e-5 <= t.params["optimizer.lr"] <= 1e-4 and 0 <= t.params["scheduler.warmup_ratio"] <= 0.2
               for t in trials)
    assert len(list(sweep.glob("*/job_done.json"))) == 5, "every trial has its own job dir"
    # Optuna names the best values; the summary names the trial's dir and model, over both invocations' trials.
    output = result.stdout + result.stderr
    best = max(done(d.parent)["result"] for d in sweep.glob("*/job_done.json"))
    named = Path(output.split("Best trial: ", 1)[1].split(" (result ", 1)[0])
    assert done(named)["result"] == best and f"of 5 finished); its model: {named / 'model'}" in output, output[-3000:]
    # Run again with another setting (a smaller training set): its trials would be ranked against the study's as alike.
    changed = run_cli([*base, "hydra.sweeper.n_trials=1", "data.max_train_samples=32"])
    output = changed.stdout + changed.stderr
    assert changed.returncode == 2, output[-3000:]
    assert f"The Optuna study in {sweep} was started with other settings than these" in output
    assert "  - data.max_train_samples: null (the run) -> 32 (now)" in output and "optimizer.lr" not in output
    assert len(optuna.load_study(study_name="lr_search", storage=f"sqlite:///{sweep / 'optuna.db'}").trials) == 5


@needs_extra("hydra_plugins.hydra_optuna_sweeper")
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGKILL"])
def test_a_stopped_optuna_trial_is_continued_by_the_next_invocation(sst2_dir, tmp_path, signum):
    # SIGTERM: preempted, the trial saves where it is and the study records it failed. SIGKILL: the process dies
    # with the trial running in the study for good, its last validation's checkpoint saved.
    optuna = pytest.importorskip("optuna")
    sweep = tmp_path / "search"
    # 80 steps: seconds past the first checkpoint (step 10) when the signal comes, and a short resume
    fixed = [o for o in tiny(sst2_dir, epochs=4) if not o.startswith("optimizer.lr")]
    args = ["-m", "hparams_search=lr_optuna", *fixed, "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={sweep}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | {"WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "src/train.py", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not list(sweep.glob("*/checkpoints/last.ckpt")):  # the trial is training
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.05)
    proc.send_signal(getattr(signal, signum))
    output = proc.communicate(timeout=60)[0]
    [trial_dir] = [p.parent.parent for p in sweep.glob("*/checkpoints/last.ckpt")]
    stopped_at = torch.load(trial_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    if signum == "SIGTERM":
        assert proc.returncode == 75 and (trial_dir / "job_preempted.json").exists(), output[-3000:]
        assert f"python src/train.py {' '.join(args[:-1])} hydra.sweep.dir={sweep} resume=true" in output

    result = run_cli([*args, "resume=true"])  # the command it printed: the stopped trial comes first
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert [p.parent for p in sweep.glob("*/.hydra")] == [trial_dir], "the trial went on in its own dir"
    assert f"Resuming from {trial_dir / 'checkpoints' / 'last.ckpt'}" in (trial_dir / "train.log").read_text()
    assert done(trial_dir) and not (trial_dir / "job_preempted.json").exists()
    assert 0 < stopped_at < torch.load(trial_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    study = optuna.load_study(study_name="lr_search", storage=f"sqlite:///{sweep / 'optuna.db'}")
    stopped, continued = study.trials
    assert stopped.state == optuna.trial.TrialState.FAIL and continued.state == optuna.trial.TrialState.COMPLETE
    assert continued.params == stopped.params and continued.value == done(trial_dir)["result"]



@needs_extra("hydra_plugins.hydra_optuna_sweeper")
def test_failed_optuna_trials_are_recorded_the_study_goes_on_and_the_summary_says_what_a_rerun_does(sst2_dir,
                                                                                                      tmp_path):
    # Every trial fails at once (a bad value the search does not touch). Optuna 2 given a failed job's NaN crashed
    # the sweep at the first trial, and a study without a finished trial crashed it at the end.
    optuna = pytest.importorskip("optuna")
    sweep = tmp_path / "search"
    fixed = [o for o in tiny(sst2_dir) if not o.startswith("optimizer.lr")]
    # a value only Lightning's Trainer refuses, once each trial builds it (the check before the search builds none)
    result = run_cli(["-m", "hparams_search=lr_optuna", *fixed, "+trainer.strategy=nonesuch", "hydra.sweeper.n_trials=2",
                      f"hydra.sweep.dir={sweep}"])
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    study = optuna.load_study(study_name="lr_search", storage=f"sqlite:///{sweep / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "Traceback" not in output and "No trial of study lr_search has finished" in output
    assert "2 job(s) of the sweep" in output and "Lightning refused the trainer's settings" in output
    # a study does not rerun a failed trial: no "resume=true ... interrupted ones resume" here
    assert "They stay failed in the study. Fix the cause, then run the same command again" in output
    assert "resume=true" not in output


@needs_extra("hydra_plugins.hydra_optuna_sweeper")
def test_a_search_whose_data_has_a_malformed_row_starts_no_trial(sst2_dir, tmp_path):
    # found when each trial read its data: every trial failed, and each failure stayed in the study for good
    sweep, broken = tmp_path / "search", tmp_path / "broken"
    shutil.copytree(sst2_dir, broken)
    (broken / "train.tsv").write_text((sst2_dir / "train.tsv").read_text() + "no label here\n")
    fixed = [o for o in tiny(sst2_dir) if not o.startswith(("optimizer.lr", "data.local_dir"))]
    result = run_cli(["-m", "hparams_search=lr_optuna", *fixed, f"data.local_dir={broken}", "hydra.sweeper.n_trials=2",
                      f"hydra.sweep.dir={sweep}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Invalid config shared by every trial of the search; no trial was started:" in output
    assert f"{broken / 'train.tsv'}:322: expected 2 tab-separated fields, found 1" in output
    assert not (sweep / "optuna.db").exists() and not list(sweep.glob("*/checkpoints"))


def test_ddp_inside_a_local_sweep_is_rejected_up_front(sst2_dir, tmp_path):
    result = run_cli(["-m", "seed=1,2", *tiny(sst2_dir), "trainer=ddp", "trainer.accelerator=cpu",
                      "trainer.devices=2", f"hydra.sweep.dir={tmp_path}"])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "cannot run inside a sweep" in output, output[-3000:]
    assert "Invalid config in 2 of 2 job(s) of the sweep; no job was started" in output and "[every job]" in output
    assert not list(tmp_path.glob("*/")), "no job may start (nor leave a failed job's dir)"
    from omegaconf import OmegaConf

    from glue_finetune.sweep import multirun_problem  # the default strategy, auto: DDP on several devices

    two = OmegaConf.create({"trainer": {"accelerator": "gpu", "devices": 2}})
    assert "cannot run inside a sweep" in multirun_problem(two, "hydra_plugins.hydra_ray_launcher.RayLauncher")
    assert multirun_problem(two, "hydra_plugins.hydra_submitit_launcher.SlurmLauncher") is None
    assert multirun_problem(OmegaConf.create({"trainer": {"devices": 1}}), "RayLauncher") is None
    for one in ([3], "3,", "1"):  # one GPU, named: Lightning runs it on that device alone
        assert multirun_problem(OmegaConf.create({"trainer": {"devices": one}}), "RayLauncher") is None, one
    for several in (-1, "auto", [0, 1], "0,1"):
        assert multirun_problem(OmegaConf.create({"trainer": {"devices": several}}), "RayLauncher"), several


def test_the_sweep_summary_names_stopped_jobs_and_how_to_continue_them(tmp_path, caplog, monkeypatch):
    from omegaconf import OmegaConf

    from glue_finetune import sweep
    from glue_finetune.errors import PREEMPTED_EXIT_CODE
    from glue_finetune.sweep import SweepSummary

    monkeypatch.setattr(sweep, "JOB_DIRS", [])  # no jobs of its own started without a record (SweepCheck's list)
    for job, marker in (("0", "job_done.json"), ("1", "job_preempted.json"), ("2", "job_preempted.json")):
        (tmp_path / job).mkdir()
        (tmp_path / job / marker).write_text("{}")
    (tmp_path / "2" / "job_done.json").write_text('{"result": 0.9}')  # stopped once, then finished
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stop:
        SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    assert stop.value.code == PREEMPTED_EXIT_CODE
    assert f"Sweep {tmp_path}: 2 job(s) finished, 0 failed, 1 stopped before the end." in caplog.text
    assert "Stopped job(s), each saved where it stopped: 1. To continue them" in caplog.text
    assert f"resume=true hydra.sweep.dir={tmp_path}" in caplog.text
    # Jobs a stopped Ray sweep dropped before they saved anything (no file says so: the launcher does).
    caplog.clear()
    (tmp_path / "1" / "job_done.json").write_text('{"result": 0.9}')
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stop:
        SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}), unsaved=["3"])
    assert stop.value.code == PREEMPTED_EXIT_CODE
    assert f"Sweep {tmp_path}: 3 job(s) finished, 0 failed, 1 stopped before their first checkpoint or not " \
           "started." in caplog.text
    assert "Stopped job(s), to start from the beginning: 3. To continue them" in caplog.text
    # With failed jobs too: the stopped ones are listed beside them (the same command continues both).
    caplog.clear()
    (tmp_path / "1" / "job_done.json").unlink()
    (tmp_path / "1" / "job_preempted.json").write_text('{"reason": "stopped by SIGTERM at step 40"}')
    (tmp_path / "4").mkdir()
    (tmp_path / "4" / "job_failed.json").write_text(json.dumps(
        {"dir": str(tmp_path / "4"), "overrides": ["seed=5"], "error": "RuntimeError: out of memory", "log": "x"}))
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stop:
        SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}), unsaved=["3"])
    assert stop.value.code == 1
    assert "  job 4: seed=5\n      RuntimeError: out of memory" in caplog.text
    assert ("Stopped, not failed:\n  job 1: stopped by SIGTERM at step 40; saved where it stopped\n  job 3: stopped "
            "before its first checkpoint or not started") in caplog.text
    # Jobs that started and left no record: one still running (SLURM requeued it after the launcher saw it end),
    # one killed without a word. Not a finished sweep: counted, named, and the exit says so.
    import fcntl

    caplog.clear()
    for job in ("4", "5", "6", "7"):  # 7: a dir of an earlier command's larger grid, not one of this command's jobs
        (tmp_path / job / ".hydra").mkdir(parents=True, exist_ok=True)
        (tmp_path / job / ".hydra" / "config.yaml").write_text("{}")
    (tmp_path / "4" / "job_failed.json").unlink()
    monkeypatch.setattr(sweep, "JOB_DIRS", [tmp_path / str(job) for job in range(7)])  # as SweepCheck found them
    held = os.open(tmp_path / "5", os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running job holds its dir
    try:
        with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as stop:
            SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    finally:
        os.close(held)
    assert stop.value.code == 1
    assert f"Sweep {tmp_path}: 2 job(s) finished, 0 failed, 1 stopped before the end, 3 without a result." in caplog.text
    assert f"3 job(s) of the sweep in {tmp_path} left no result:" in caplog.text
    assert "  job 5: still running: a process holds its dir" in caplog.text
    assert f"  job 6: its process ended without a word (killed: out of memory, a kill signal); log: " \
           f"{tmp_path / '6' / 'train.log'}" in caplog.text
    assert f"resume=true hydra.sweep.dir={tmp_path}" in caplog.text
