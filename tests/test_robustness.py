"""Robustness: diverging runs stop cleanly, reruns are reproducible."""

from __future__ import annotations

import csv
import errno
import functools
import json
import logging
import os
import re
import shutil
import signal
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from glue_finetune.checkpointing import AtomicCheckpointIO
from glue_finetune.errors import Preempted, TrainingDivergedError
from glue_finetune.training import train
from test_train import column, read_metrics


class PoisonWeightsAfter(L.Callback):
    """Test helper: makes every weight NaN after optimizer step `step`, so the next loss is NaN."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.parameters():
                    p.fill_(float("nan"))


def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    with open_dict(cfg):
        cfg.callbacks.poison = {"_target_": "test_robustness.PoisonWeightsAfter", "step": 15}
    with pytest.raises(TrainingDivergedError, match="became NaN or infinite at optimizer step 16; training stopped at its next check, step 20") as err:
        train(cfg)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert str(last) in str(err.value)
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 10, "the checkpoint is the one from before the divergence"
    assert all(torch.isfinite(t).all() for t in checkpoint["state_dict"].values() if t.is_floating_point())
    assert [s for s, _ in column(read_metrics(tmp_path / "metrics.csv"), "val/acc")] == [10]


def test_same_seed_gives_identical_metrics_and_another_seed_different_ones(tiny_cfg, tmp_path):
    def metrics(seed: int, name: str) -> list:
        out = tmp_path / name
        train(tiny_cfg(f"seed={seed}", "trainer.max_epochs=1", "predict_test=false", output_dir=out))
        rows = read_metrics(out / "metrics.csv")
        return column(rows, "train/loss") + column(rows, "val/loss") + column(rows, "val/acc")

    first = metrics(7, "a")
    assert first == metrics(7, "b")
    assert first != metrics(8, "c")


def test_each_stop_signal_saves_a_checkpoint_and_the_same_command_continues(sst2_dir, tmp_path):
    # One run stopped three times, once by each kind of signal a scheduler or a user sends (SIGTERM, a SLURM
    # warning's SIGUSR1, Ctrl-C's SIGINT); each time the very same command continues it, and the last one finishes.
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT
    from test_sweeps import tiny
    from test_train import run_cli

    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    epochs = 5  # 100 steps: each attempt is signalled a few steps past its first checkpoint, and the last finishes
    args = [*tiny(sst2_dir, epochs=epochs), f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | {"WANDB_MODE": "disabled"}

    def step_saved() -> int:
        return torch.load(last, weights_only=True)["global_step"] if last.exists() else 0

    stopped_at = 0
    # SIGUSR2 (sbatch --signal's default) is handled as SIGUSR1 is: the SLURM time-limit test sends it
    for attempt, signum in enumerate(("SIGTERM", "SIGUSR1", "SIGINT")):
        proc = subprocess.Popen([sys.executable, "src/train.py", *args], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while step_saved() <= stopped_at:  # until this attempt has trained on and saved at a validation of its own
            assert proc.poll() is None and time.monotonic() < deadline, (signum, proc.stdout.read()[-3000:])
            time.sleep(0.05)
        proc.send_signal(getattr(signal, signum))
        output = proc.communicate(timeout=60)[0]
        assert proc.returncode == 75, (signum, output[-3000:])
        assert "Checkpoint saved at step" in output and (run_dir / "job_preempted.json").exists(), signum
        previous, stopped_at = stopped_at, step_saved()
        assert previous < stopped_at < epochs * 20, (signum, previous, stopped_at)
        assert f"Run stopped by {signum} at step {stopped_at}" in output and "Traceback" not in output, output[-3000:]
        assert (f"To continue from it: python src/train.py {' '.join(args[:-1])} hydra.run.dir={run_dir} resume=true"
                in output)
        assert (run_dir / "train.log").read_text().count(f"Resuming from {last}") == attempt  # each one continued
        if attempt == 0:
            refused_leaves_the_runs_record(run_dir, args, "A command in the dir of a stopped run continues the run")

    result = run_cli(args)  # the very same command, once more
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (run_dir / "train.log").read_text().count(f"Resuming from {last}") == 3
    assert (run_dir / "job_done.json").exists() and not (run_dir / "job_preempted.json").exists()
    assert step_saved() == epochs * 20
    refused_leaves_the_runs_record(run_dir, args, "resume=true continues the run", "resume=true")


def test_ctrl_c_twice_stops_at_once_as_a_stopped_run_to_continue_from_its_last_checkpoint(tiny_cfg, tmp_path):
    # Lightning ends a fit interrupted by Ctrl-C with exit(1), as if it had failed, and no stop record was written.
    import json
    import signal

    from glue_finetune.sweep import run_job

    cfg = tiny_cfg("trainer.max_epochs=50", "predict_test=false")
    with open_dict(cfg):
        cfg.callbacks.twice = {"_target_": "test_robustness.CtrlCTwice", "step": 15}  # past step 10's checkpoint
    before = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):  # the entry point exits 130 on it
            run_job(cfg, train)
    finally:
        signal.signal(signal.SIGINT, before)  # Lightning ignores SIGINT once it has caught one
    stop = json.loads((tmp_path / "job_preempted.json").read_text())
    assert stop["reason"] == "Ctrl-C" and not (tmp_path / "job_failed.json").exists()
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10


class CtrlCTwice(L.Callback):
    """Test helper: Ctrl-C twice, as fast as a hand can, after optimizer step `step`."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)


def refused_leaves_the_runs_record(run_dir: Path, args: list[str], refusal: str, *extra: str) -> None:
    """A command refused in a run's dir (here: another learning rate) leaves Hydra's record of the run as it was:
    evaluate.py, predict.py, report.py and resume read the run's data, lengths and overrides there. Its train.log
    too: the refusal is the console's, not a line at the end of the run's log."""
    import yaml
    from test_train import run_cli

    record = {name: (run_dir / ".hydra" / name).read_bytes() for name in ("config.yaml", "hydra.yaml", "overrides.yaml")}
    log = (run_dir / "train.log").read_bytes()
    started_with = [a for a in args if not a.startswith("hydra.run.dir=")]
    assert yaml.safe_load(record["overrides.yaml"]) == started_with  # the command that started the run (Hydra's)
    result = run_cli([*(a for a in args if not a.startswith("optimizer.lr=")), "optimizer.lr=1e-4", *extra])
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert refusal in output and "optimizer.lr: 0.003 (the run) -> 0.0001 (now)" in output, output[-3000:]
    assert f"It was started with the overrides: {' '.join(started_with)}." in output.replace("\n", " ")
    assert {name: (run_dir / ".hydra" / name).read_bytes() for name in record} == record
    assert (run_dir / "train.log").read_bytes() == log


def test_a_second_process_in_a_run_dir_in_use_is_refused_before_any_work(tmp_path, monkeypatch):
    # Two commands started in the same second share Hydra's dated dir; the same command may run twice by mistake.
    from omegaconf import OmegaConf

    from glue_finetune.errors import UserError
    from glue_finetune.sweep import exclusive_run_dir, run_job

    for var in ("LOCAL_RANK", "RANK", "SLURM_PROCID", "NODE_RANK"):
        monkeypatch.delenv(var, raising=False)
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": False, "ckpt_path": None})
    calls = []
    with exclusive_run_dir(tmp_path):  # another run, training in the dir
        with pytest.raises(UserError, match=rf"Another process is running in {tmp_path}: a run started in the same "
                                            r"second .* \(hydra.run.dir=<dir>\)"):
            run_job(cfg, lambda c: calls.append(c) or 0.5)
        assert not calls and not list(tmp_path.iterdir())  # nothing touched
        monkeypatch.setenv("LOCAL_RANK", "1")  # DDP's rank 1 runs in its rank 0's dir
        assert run_job(cfg, lambda c: calls.append(c) or 0.5) == 0.5
    monkeypatch.delenv("LOCAL_RANK")
    (tmp_path / "job_done.json").unlink()
    assert run_job(cfg, lambda c: calls.append(c) or 0.5) == 0.5 and len(calls) == 2  # the other run has ended


def test_a_new_run_in_a_dir_holding_a_run_is_refused_before_any_work(tmp_path):
    from omegaconf import OmegaConf

    from glue_finetune.errors import UserError
    from glue_finetune.sweep import run_job

    calls = []
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": False, "ckpt_path": None})
    assert run_job(cfg, lambda c: calls.append(c) or 0.5) == 0.5  # an empty dir: a new run
    (tmp_path / "job_done.json").unlink()
    (tmp_path / "job_failed.json").write_text("{}")  # a failed run with no checkpoint: nothing to lose
    assert run_job(cfg, lambda c: calls.append(c) or 0.5) == 0.5 and len(calls) == 2
    assert not (tmp_path / "job_failed.json").exists()
    (tmp_path / "job_done.json").unlink()
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"state")
    with pytest.raises(UserError, match=r"already holds an unfinished run \(last.ckpt\)\. To continue it, add resume=true"):
        run_job(cfg, lambda c: calls.append(c))
    (tmp_path / "job_done.json").write_text('{"result": 0.9}')
    with pytest.raises(UserError, match=r"already holds a finished run \(result 0.9000\)\. To keep it"):
        run_job(cfg, lambda c: calls.append(c))
    assert len(calls) == 2 and (tmp_path / "checkpoints" / "last.ckpt").read_bytes() == b"state"
    cfg.resume = True  # ... which resume=true leaves as it is
    assert run_job(cfg, lambda c: calls.append(c)) == 0.9 and len(calls) == 2

    empty = OmegaConf.create({"paths": {"output_dir": str(tmp_path / "new")}, "resume": True, "ckpt_path": None})
    with pytest.raises(UserError, match=r"resume=true, but .*new holds no run to continue"):
        run_job(empty, lambda c: calls.append(c))  # resume=true in a new dir: the run's own dir was meant
    assert len(calls) == 2



def test_resume_true_in_a_dir_that_does_not_exist_is_refused_before_the_dir_is_made(tmp_path, monkeypatch):
    # A mistyped run dir: Hydra would make it, and report.py would then list it as a run that never finished.
    from omegaconf import OmegaConf
    from test_train import run_cli

    from glue_finetune.sweep import RunDirCheck


    result = run_cli(["model=tiny", f"hydra.run.dir={tmp_path / 'my-rnu'}", "resume=true"])
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert f"resume=true, but {tmp_path / 'my-rnu'} holds no run to continue" in output and "Traceback" not in output
    assert not (tmp_path / "my-rnu").exists()
    requeued = OmegaConf.create({"hydra": {"run": {"dir": str(tmp_path / "gone")}}, "resume": True, "ckpt_path": None})
    with pytest.raises(SystemExit):
        RunDirCheck().on_run_start(requeued)
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # SLURM reran the job, whose first attempt never started
    RunDirCheck().on_run_start(requeued)  # the job starts (run_job_in lets a requeued job through too)


def test_a_continued_runs_time_counts_all_its_attempts(tmp_path):
    import time

    from omegaconf import OmegaConf

    from glue_finetune.errors import Preempted
    from glue_finetune.report import read_job
    from glue_finetune.sweep import run_job

    def job(resume: bool):
        return OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": resume, "ckpt_path": None})

    def preempted(cfg):  # 1 s of training, saved, then a signal
        (tmp_path / "checkpoints").mkdir()
        (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"state")
        time.sleep(1.0)
        raise Preempted("Run stopped by SIGTERM")

    def out_of_memory(cfg):
        time.sleep(0.5)
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(Preempted):
        run_job(job(False), preempted)
    with pytest.raises(RuntimeError):
        run_job(job(True), out_of_memory)  # continued from the checkpoint, then failed
    lines = []

    def finishing(cfg):  # continued again, to the end; its time line says what came before
        from glue_finetune.tracking import RunTimes

        times = RunTimes()
        time.sleep(0.5)
        lines.append(times.describe(times.summary()))
        return 0.9

    assert run_job(job(True), finishing) == 0.9
    assert 2.0 <= read_job(tmp_path).train_seconds < 4.0, "the report's train time is every attempt's"
    assert re.search(r"s all-in this attempt \(the earlier ones: [12] s; [23] s in all\)", lines[0]), lines

def test_resume_refuses_settings_that_change_what_the_run_trains(tmp_path):
    import yaml
    from omegaconf import OmegaConf

    from glue_finetune.errors import UserError
    from glue_finetune.sweep import run_job

    started = {"seed": 1, "resume": False, "ckpt_path": None, "run_name": "experiment=quick",
               "paths": {"output_dir": str(tmp_path)}, "optimizer": {"lr": 1.5e-4}, "trainer": {"max_epochs": 1},
               "data": {"local_dir": "/old/SST-2", "max_train_samples": 320}, "logger": {"wandb": {"project": "p"}}}
    (tmp_path / "hparams.yaml").write_text(yaml.safe_dump(started))  # what the run recorded when it started
    (tmp_path / ".hydra").mkdir()  # and the overrides it was started with, as Hydra records them
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        ["experiment=quick", "data.local_dir=/old/my SST-2", f"hydra.run.dir={tmp_path}"]))
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"state")
    forgotten = OmegaConf.create({**started, "resume": True, "optimizer": {"lr": 2e-5}, "trainer": {"max_epochs": 10},
                                  "data": {"local_dir": "/old/SST-2", "max_train_samples": None}})
    with pytest.raises(UserError) as refused:
        run_job(forgotten, lambda cfg: pytest.fail("trained"))
    assert str(refused.value).splitlines()[1:4] == [
        "  - data.max_train_samples: 320 (the run) -> null (now)",
        "  - optimizer.lr: 0.00015 (the run) -> 2e-05 (now)",
        "  - trainer.max_epochs: 1 (the run) -> 10 (now)"]
    # As they would be typed again (not Hydra's comma-joined run name), less where it wrote.
    assert "It was started with the overrides: experiment=quick 'data.local_dir=/old/my SST-2'." in str(refused.value)
    # Where the data is, how it is logged: may change; the run continues from its checkpoint.
    moved = OmegaConf.create({**started, "resume": True, "data": {"local_dir": "/new/SST-2", "max_train_samples": 320},
                              "logger": {"wandb": {"project": "other"}}})
    assert run_job(moved, lambda cfg: cfg.ckpt_path) == str(tmp_path / "checkpoints" / "last.ckpt")
    assert not (tmp_path / "job_failed.json").exists(), "a refusal leaves the run dir as it was"

    # Finished: resume=true keeps its result only for the settings it was run with (not for another lr's).
    (tmp_path / "job_done.json").write_text('{"result": 0.9}')
    with pytest.raises(UserError, match=r"(?s)differ from it:\n  - data.max_train_samples: 320 \(the run\)"):
        run_job(forgotten, lambda cfg: pytest.fail("trained"))
    assert not (tmp_path / "job_failed.json").exists()
    assert run_job(moved, lambda cfg: pytest.fail("trained")) == 0.9

    # A run of an earlier version recorded Lightning's ModelCheckpoint, which is BestCheckpoint's base: the same.
    from glue_finetune.sweep import changed_settings

    checkpoint = {"callbacks": {"model_checkpoint": {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint"}}}
    assert changed_settings(checkpoint, OmegaConf.create(
        {"callbacks": {"model_checkpoint": {"_target_": "glue_finetune.checkpointing.BestCheckpoint"}}})) == []


def test_a_run_dir_moved_or_copied_is_the_same_run(tmp_path):
    # Its checkpoint dirs and Lightning's root dir are under it: they move with it, and are not changed settings.
    from omegaconf import OmegaConf

    from glue_finetune.sweep import changed_settings

    def run(out: str, lr: float = 2e-5) -> dict:
        return {"paths": {"output_dir": out}, "trainer": {"default_root_dir": out}, "optimizer": {"lr": lr},
                "callbacks": {"latest_checkpoint": {"dirpath": f"{out}/checkpoints"}}, "data": {"local_dir": "SST-2"}}

    assert changed_settings(run("/old/run"), OmegaConf.create(run("/scratch/run"))) == []
    assert changed_settings(run("/old/run"), OmegaConf.create(run("/old/run-2", lr=1e-4))) == [
        "optimizer.lr: 2e-05 (the run) -> 0.0001 (now)"]  # /old/run-2 is not under /old/run: only lr differs
    moved_elsewhere = run("/scratch/run")
    moved_elsewhere["callbacks"]["latest_checkpoint"]["dirpath"] = "/old/run/checkpoints"  # given, not derived
    assert changed_settings(run("/old/run"), OmegaConf.create(moved_elsewhere)) == [
        "callbacks.latest_checkpoint.dirpath: /scratch/run/checkpoints (the run) -> /old/run/checkpoints (now)"]


def test_a_moved_run_keeps_its_best_checkpoint_and_its_score(tmp_path):
    # Lightning keeps neither from a checkpoint saved in another dirpath: the moved run's next validation would
    # replace its best checkpoint whatever its score.
    from lightning.pytorch.callbacks import ModelCheckpoint

    from glue_finetune.checkpointing import BestCheckpoint

    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    saved = BestCheckpoint(dirpath=str(old), monitor="val/loss", mode="min", save_top_k=1)
    saved.best_model_path = saved.kth_best_model_path = str(old / "best-step30.ckpt")
    saved.best_model_score, saved.kth_value = torch.tensor(0.25), torch.tensor(0.25)
    saved.best_k_models = {str(old / "best-step30.ckpt"): torch.tensor(0.25)}
    state = saved.state_dict()
    assert saved.state_key == ModelCheckpoint(dirpath=str(old), monitor="val/loss", mode="min", save_top_k=1).state_key

    new.mkdir(parents=True)
    (new / "best-step30.ckpt").write_bytes(b"moved with its run")
    moved = BestCheckpoint(dirpath=str(new), monitor="val/loss", mode="min", save_top_k=1)
    moved.load_state_dict(state)
    assert moved.best_model_path == moved.kth_best_model_path == str(new / "best-step30.ckpt")
    assert moved.best_model_score == 0.25 and moved.best_k_models == {str(new / "best-step30.ckpt"): 0.25}

    other = BestCheckpoint(dirpath=str(tmp_path / "other"), monitor="val/loss", mode="min", save_top_k=1)
    with pytest.warns(UserWarning, match="The dirpath has changed"):  # ckpt_path of another run: Lightning's way
        other.load_state_dict(state)
    assert other.best_model_score is None and other.best_model_path == str(old / "best-step30.ckpt")


def test_a_new_run_in_a_dir_of_an_earlier_failed_one_records_its_own_command(tmp_path):
    # A config error leaves its dir (job_failed.json, Hydra's record); a new run there is recorded as itself.
    import yaml
    from test_train import run_cli

    for batch_size in (0, -1):
        result = run_cli(["model=tiny", "trainer=cpu", f"data.batch_size={batch_size}", f"hydra.run.dir={tmp_path}"])
        assert result.returncode == 2 and (tmp_path / "job_failed.json").exists(), result.stdout + result.stderr
        assert yaml.safe_load((tmp_path / ".hydra" / "overrides.yaml").read_text())[-1] == f"data.batch_size={batch_size}"
        assert yaml.safe_load((tmp_path / ".hydra" / "config.yaml").read_text())["data"]["batch_size"] == batch_size


def test_a_continued_run_records_the_command_that_continued_it(tiny_cfg, tmp_path, sst2_dir):
    # Its data folder moved between the attempts, say: evaluate.py and predict.py read the record's.
    import yaml

    from conftest import TINY_OVERRIDES, compose_config
    from glue_finetune.sweep import run_job

    run_dir, moved = tmp_path / "run", shutil.copytree(sst2_dir, tmp_path / "moved")
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("data: {local_dir: /where/it/was/SST-2}\n")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"state")
    (run_dir / "job_preempted.json").write_text("{}")  # stopped: the same command continues it
    cfg = compose_config([*TINY_OVERRIDES, f"data.local_dir={moved}"], run_dir)
    assert run_job(cfg, lambda c: c.ckpt_path) == str(run_dir / "checkpoints" / "last.ckpt")
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["data"]["local_dir"] == str(moved)


def test_ctrl_c_before_the_first_checkpoint_says_the_run_starts_again_not_that_it_continues(tmp_path, monkeypatch,
                                                                                           caplog):
    import sys

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from glue_finetune.sweep import run_job

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # a single run
    monkeypatch.setattr(sys, "argv", ["src/train.py", "seed=3"])
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": False, "ckpt_path": None})
    with caplog.at_level(logging.WARNING, logger="glue_finetune.sweep"), pytest.raises(KeyboardInterrupt):
        run_job(cfg, interrupted)
    assert ("Interrupted before the run saved a checkpoint: nothing to continue. To start it again: python "
            f"src/train.py seed=3 hydra.run.dir={tmp_path}") in caplog.text
    assert "resume=true" not in caplog.text and not (tmp_path / "job_preempted.json").exists()


def test_sigterm_outside_the_training_steps_stops_as_a_preempted_run(tmp_path):
    import os
    import signal

    from omegaconf import OmegaConf

    from glue_finetune.errors import Preempted
    from glue_finetune.sweep import run_job

    def exporting(signum):  # a signal while the run writes its artefacts, after training
        def run(cfg):
            (tmp_path / "checkpoints").mkdir(exist_ok=True)
            (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"saved at the end of training")
            os.kill(os.getpid(), signum)
            raise AssertionError("not stopped")
        return run

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": False, "ckpt_path": None})
    before = signal.getsignal(signal.SIGTERM)  # the default, or one an earlier test's library left (Ray's)
    with pytest.raises(Preempted, match="stopped by SIGTERM outside the training steps") as stopped:
        run_job(cfg, exporting(signal.SIGTERM))
    assert (tmp_path / "job_preempted.json").exists() and not (tmp_path / "job_failed.json").exists()
    assert stopped.value.resume_with.endswith(f"hydra.run.dir={tmp_path} resume=true")
    assert signal.getsignal(signal.SIGTERM) is before  # the handler before the run is back
    # SLURM's warning before a time limit, where no handler of submitit's takes it: its default action killed the
    # process without a word.
    if signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL:
        with pytest.raises(Preempted, match="stopped by SIGUSR1 outside the training steps") as stopped:
            run_job(cfg, exporting(signal.SIGUSR1))
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL and stopped.value.requeue is None  # not in SLURM
        os.environ["SLURM_JOB_ID"] = "4242"  # inside a SLURM job, the time-limit warning requeues it
        try:
            with pytest.raises(Preempted) as stopped:
                run_job(cfg, exporting(signal.SIGUSR1))
        finally:
            del os.environ["SLURM_JOB_ID"]
        assert stopped.value.requeue is not None and stopped.value.requeue.args == ("4242",)


def test_a_slurm_job_past_its_requeues_ends_as_a_stopped_job_of_its_sweep(caplog):
    # submitit refuses a requeue past hydra.launcher.max_num_timeout by raising: the job must then return (a
    # stopped job of the sweep, listed by its summary) rather than end the whole sweep with submitit's error.
    import math

    from glue_finetune.errors import PREEMPTED_EXIT_CODE, Preempted
    from glue_finetune.sweep import stop_or_requeue

    class UncompletedJobError(RuntimeError):  # submitit.core.utils'
        pass

    def timed_out_too_often():
        raise UncompletedJobError("Job not requeued because: timed-out too many times.")

    stopped = Preempted("stopped by SIGUSR2 at step 120", requeue=timed_out_too_often)
    stopped.resume_with = "the sweep's command again, with resume=true hydra.sweep.dir=multirun/s"
    with caplog.at_level(logging.WARNING, logger="glue_finetune.sweep"):
        assert math.isnan(stop_or_requeue(stopped))
    assert ("The SLURM job was not requeued (Job not requeued because: timed-out too many times). It is saved where "
            "it stopped; to continue it: the sweep's command again, with resume=true") in caplog.text
    requeued = []
    with pytest.raises(SystemExit) as exit_:  # requeued: the process ends, stopped
        stop_or_requeue(Preempted("stopped by SIGUSR2 at step 120", requeue=lambda: requeued.append(1)))
    assert exit_.value.code == PREEMPTED_EXIT_CODE and requeued == [1]


def test_a_wandb_that_cannot_close_its_run_does_not_hide_how_the_run_ended(tmp_path, monkeypatch, caplog):
    # SLURM's SIGTERM (preemption, scontrol requeue) kills W&B's service too: closing the run then fails. The
    # run's Preempted must still reach the entry point (exit 75, requeued), not become a failed job.
    import sys
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from glue_finetune.errors import Preempted
    from glue_finetune.sweep import run_job
    from glue_finetune.tracking import finish_wandb

    def lost(*args, **kwargs):
        raise ConnectionResetError("Connection lost")

    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(
        run=SimpleNamespace(dir=str(tmp_path / "wandb" / "run-1" / "files")), finish=lost, teardown=lost))

    def stopped(cfg):  # train()'s shape: W&B is closed in a finally
        try:
            (tmp_path / "checkpoints").mkdir()
            (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"saved at step 7")
            raise Preempted("stopped by SIGTERM at step 7; checkpoint: last.ckpt")
        finally:
            finish_wandb()

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": False, "ckpt_path": None})
    with caplog.at_level(logging.WARNING, logger="glue_finetune.tracking"), pytest.raises(Preempted):
        run_job(cfg, stopped)
    assert (tmp_path / "job_preempted.json").exists() and not (tmp_path / "job_failed.json").exists()
    assert "W&B could not close its run (ConnectionResetError: Connection lost)" in caplog.text
    assert f"stays in {tmp_path / 'wandb' / 'run-1'}: `wandb sync` uploads it" in caplog.text

    # Offline, with the service stopped before it wrote anything (SLURM's SIGTERM reaches it too): said, not
    # promised to `wandb sync`.
    offline = tmp_path / "wandb" / "offline-run-20261207_010000-abc"
    (offline / "files").mkdir(parents=True)
    (offline / "run-abc.wandb").write_bytes(b":W&B\x00\x00\x01")  # the header alone
    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(run=SimpleNamespace(dir=str(offline / "files")),
                                                              finish=lost, teardown=lost))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glue_finetune.tracking"):
        finish_wandb(Preempted("stopped by SIGTERM"))
    assert f"so this attempt is missing from {offline}; metrics.csv in the run dir holds all its rows" in caplog.text
    assert "wandb sync" not in caplog.text


class StopLikeSlurm(L.Callback):
    """Test helper: at micro-batch ``batch``, SIGTERM to W&B's service and to this process, as SLURM stops a job
    (preemption, scontrol requeue): every process of it."""

    def __init__(self, batch: int):
        self.batch, self.seen = batch, 0

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        import signal
        import time

        self.seen += 1
        if self.seen != self.batch:
            return
        children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
        services = [int(p) for p in children if b"wandb" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert services, "no W&B service process to stop"
        for pid in services:
            os.kill(pid, signal.SIGTERM)
        time.sleep(1)  # gone before the step's logging
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_slurm_stop_that_takes_wandb_down_too_saves_and_stops_the_run(tiny_cfg, tmp_path, monkeypatch, caplog):
    # The step's logging call then finds W&B's service gone: that error ended the run as failed, without its
    # checkpoint, where SLURM had requeued it to continue.
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = tiny_cfg("logger=wandb", "predict_test=false", "trainer.log_every_n_steps=1")
    with open_dict(cfg):
        cfg.callbacks.stop = {"_target_": "test_robustness.StopLikeSlurm", "batch": 15}
    with caplog.at_level(logging.WARNING), pytest.raises(Preempted, match="stopped by SIGTERM at step 15"):
        train(cfg)
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 15
    assert "W&B stopped taking this run's logs (" in caplog.text and "metrics.csv in the run dir holds every row" \
        in caplog.text
    # The next run of this process (a sweep's next job; here the run continued) logs to W&B again, through a
    # service of its own: not the gone one, nor the W&B run that could not close.
    caplog.clear()
    known = set((tmp_path / "wandb").glob("offline-run-*"))
    with caplog.at_level(logging.WARNING):
        train(tiny_cfg("logger=wandb", "predict_test=false", f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"))
    assert "W&B" not in caplog.text, caplog.text
    [continued] = set((tmp_path / "wandb").glob("offline-run-*")) - known
    assert any(f.stat().st_size > 1000 for f in continued.glob("run-*.wandb"))


def test_a_wandb_that_cannot_start_says_so_before_training(tmp_path, monkeypatch):
    # Only a W&B that started and was then lost is left behind: one that cannot start (a login refused, no
    # permission on the project) fails the run at its start, not after its training.
    import wandb

    from glue_finetune.tracking import wandb_logger

    def refused(**kwargs):
        raise RuntimeError("permission denied for project glue-sst2")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb, "init", refused)
    logger = wandb_logger(save_dir=str(tmp_path))
    with pytest.raises(RuntimeError, match="permission denied"):
        logger.log_hyperparams({"seed": 1})


def test_a_failed_run_is_failed_in_wandb_a_fresh_start_gets_its_own_wandb_run_and_a_continued_one_keeps_its(
        tiny_cfg, tmp_path, monkeypatch):
    from conftest import wandb_records

    monkeypatch.setenv("WANDB_MODE", "offline")

    def attempt(stop_at: int | None = None, *extra: str) -> tuple[str, int]:
        """One attempt in the run dir: its W&B run's id and the exit code W&B recorded for it."""
        cfg = tiny_cfg("logger=wandb", "predict_test=false", *extra)
        with open_dict(cfg):
            if stop_at is not None:
                cfg.callbacks.stop = {"_target_": "test_robustness.StopBeforeStep", "step": stop_at}
        known = set((tmp_path / "wandb").glob("offline-run-*"))
        try:
            train(cfg)
        except RuntimeError as err:
            assert str(err) == "killed"
        [new] = set((tmp_path / "wandb").glob("offline-run-*")) - known
        run_file = next(new.glob("run-*.wandb"))  # run-<id>.wandb (the dir's name may have a suffix)
        [exit_code] = [r.exit.exit_code for r in wandb_records(run_file) if r.WhichOneof("record_type") == "exit"]
        return run_file.stem.removeprefix("run-"), exit_code

    first, code = attempt(5)  # dies before its first checkpoint (step 10)
    assert code == 1, "a failed run must not show as finished in W&B"
    again, code = attempt(15)  # nothing to continue: started anew, in a W&B run of its own
    assert again != first and code == 1
    continued, code = attempt(None, f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}")
    assert continued == again and code == 0  # continued from step 10's checkpoint: the same W&B run, finished


def test_a_time_limit_warning_in_a_slurm_job_requeues_it_through_submitit_else_scontrol(monkeypatch):
    import signal
    import subprocess

    from glue_finetune import checkpointing

    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    assert checkpointing.slurm_requeue(signal.SIGUSR2, signal.SIG_DFL) is None  # not a SLURM job: just stop
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert checkpointing.slurm_requeue(signal.SIGTERM, signal.SIG_DFL) is None  # SLURM requeues a preempted job
    assert checkpointing.slurm_requeue(signal.SIGINT, signal.default_int_handler) is None  # Ctrl-C under srun: stop

    submitit_calls = []

    def submitit_handler(signum, frame):  # stands in for submitit's checkpoint_and_try_requeue
        submitit_calls.append(signum)

    submitit_handler.__module__ = "submitit.core.job_environment"
    checkpointing.slurm_requeue(signal.SIGUSR2, submitit_handler)()
    assert submitit_calls == [signal.SIGUSR2]

    commands = []
    monkeypatch.setattr(checkpointing.subprocess, "run",
                        lambda cmd, **kw: commands.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
    checkpointing.slurm_requeue(signal.SIGUSR1, signal.SIG_DFL)()  # one's own sbatch script's --signal=USR1@90
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")  # a task of a job array (a submitit sweep): that task only
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    checkpointing.slurm_requeue(signal.SIGUSR1, signal.SIG_DFL)()
    assert commands == [["scontrol", "requeue", "42"], ["scontrol", "requeue", "41_1"]]


@pytest.mark.parametrize("jobs_per_gpu", ["1", "4"])
def test_out_of_gpu_memory_is_one_message_saying_what_to_lower(tiny_cfg, monkeypatch, jobs_per_gpu):
    from glue_finetune.errors import UserError
    from glue_finetune.model import TextClassifier

    step = TextClassifier.training_step

    def out_of_memory_at_step_3(self, batch, batch_idx):
        if self.trainer.global_step == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return step(self, batch, batch_idx)

    monkeypatch.setattr(TextClassifier, "training_step", out_of_memory_at_step_3)
    monkeypatch.setenv("GLUE_FINETUNE_JOBS_PER_GPU", jobs_per_gpu)
    with pytest.raises(UserError, match=r"Out of GPU memory at step 3 on cpu \(CUDA out of memory") as err:
        train(tiny_cfg())
    assert "lower data.batch_size=16" in str(err.value) and "data.max_length=" in str(err.value)
    assert ("jobs_per_gpu=4): run fewer jobs per GPU" in str(err.value)) == (jobs_per_gpu == "4")


def test_gpu_runs_write_checkpoints_from_a_background_thread_unless_plugins_are_set(monkeypatch, tiny_cfg):
    from glue_finetune.checkpointing import AtomicCheckpointIO, BackgroundCheckpointIO
    from glue_finetune.training import trainer_plugins

    for var in ("SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(var, raising=False)
    trainer = tiny_cfg("trainer=default").trainer
    assert [type(p) for p in trainer_plugins(trainer, on_gpu=True)["plugins"]] == [BackgroundCheckpointIO]
    assert [type(p) for p in trainer_plugins(trainer, on_gpu=False)["plugins"]] == [AtomicCheckpointIO]
    # plugins of one's own (trainer=gpu names the background writer itself): the Trainer takes the config's as they are
    assert trainer_plugins(tiny_cfg("trainer=gpu").trainer, on_gpu=True) == {}
    assert trainer_plugins(tiny_cfg("+trainer.plugins=[{_target_: glue_finetune.checkpointing.AtomicCheckpointIO}]")
                           .trainer, on_gpu=True) == {}


def test_a_checkpoint_is_renamed_into_place_from_its_own_dir_and_its_hard_links_keep_theirs(tmp_path, monkeypatch):
    """Lightning's save writes the file to $TMPDIR and moves it: from another file system that is a copy into the
    old file, which a hard link to it (the selected checkpoint, when last.ckpt was linked to it) shares."""
    import os
    import tempfile

    other_fs = Path("/dev/shm")
    if not other_fs.is_dir() or other_fs.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a $TMPDIR on another file system than the run dir (/dev/shm)")
    scratch = Path(tempfile.mkdtemp(dir=other_fs))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # $TMPDIR on another file system, as on many clusters
    try:
        best, last = tmp_path / "best-step10.ckpt", tmp_path / "last.ckpt"
        AtomicCheckpointIO().save_checkpoint({"global_step": 10}, best)
        os.link(best, last)  # what LatestCheckpoint does when both are of the same step
        AtomicCheckpointIO().save_checkpoint({"global_step": 20}, last)
        assert torch.load(best, weights_only=True) == {"global_step": 10}
        assert torch.load(last, weights_only=True) == {"global_step": 20}
        assert not list(scratch.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == [best.name, last.name]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_the_background_checkpoint_writer_keeps_one_save_in_flight_and_says_when_the_disk_is_slow(tmp_path, caplog):
    # Each queued save holds a clone of the checkpoint (on a GPU: 1.3 GB of GPU memory for bert-base): on a slow
    # disk an unbounded queue would pile them up. A save waits for the previous one, and the wait is reported once.
    import threading
    import time

    from lightning.fabric.plugins import TorchCheckpointIO

    from glue_finetune.checkpointing import BackgroundCheckpointIO

    written = []  # (value, finished at)

    class SlowDisk(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            time.sleep(0.4)
            written.append((checkpoint["w"][0].item(), time.perf_counter()))
            assert threading.current_thread() is not threading.main_thread()

    io = BackgroundCheckpointIO(SlowDisk())
    io.SLOW_WAIT_S = 0.2
    returned = []
    weights = torch.zeros(4)
    with caplog.at_level(logging.WARNING, logger="glue_finetune.checkpointing"):
        for step in range(3):
            weights.fill_(step)
            io.save_checkpoint({"w": weights}, tmp_path / "checkpoints" / f"step{step}.ckpt")
            returned.append(time.perf_counter())
        io.teardown()
    assert [value for value, _ in written] == [0, 1, 2]  # each save wrote the weights of its own step
    assert returned[1] >= written[0][1] and returned[2] >= written[1][1]  # never more than one save in flight
    assert io.waited_s >= 0.6
    warnings = [r.getMessage() for r in caplog.records if "Training waited" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path / "checkpoints") in warnings[0]
    assert "hydra.run.dir=" in warnings[0] and "trainer.val_check_interval=" in warnings[0]


def test_a_checkpoint_with_no_room_for_its_copy_is_written_while_training_waits(tmp_path, monkeypatch, caplog):
    # The background writer's copy on the GPU (1.3 GB for bert-base) may not fit beside jobs sharing the GPU: the
    # save goes on without it rather than ending the run as out of memory.
    import threading

    from lightning.fabric.plugins import TorchCheckpointIO

    from glue_finetune import checkpointing

    written = []

    class Disk(TorchCheckpointIO):
        def save_checkpoint(self, checkpoint, path, storage_options=None):
            written.append((checkpoint["w"], threading.current_thread() is threading.main_thread()))

    def no_room(checkpoint):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.30 GiB")

    monkeypatch.setattr(checkpointing, "snapshot", no_room)
    io = checkpointing.BackgroundCheckpointIO(Disk())
    weights = torch.ones(4)
    with caplog.at_level(logging.WARNING, logger="glue_finetune.checkpointing"):
        for step in range(2):
            io.save_checkpoint({"w": weights}, tmp_path / f"step{step}.ckpt")
        io.teardown()
    assert [(w is weights, in_line) for w, in_line in written] == [(True, True)] * 2  # in line, the tensors themselves
    assert [r.getMessage() for r in caplog.records].count(
        "No GPU memory left to copy the checkpoint for the background writer: checkpoints are written while training "
        "waits.") == 1


def test_in_a_slurm_job_lightnings_auto_requeue_is_off_and_the_configs_plugins_stay(monkeypatch, tiny_cfg):
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from glue_finetune.checkpointing import BackgroundCheckpointIO
    from glue_finetune.training import trainer_plugins

    gpu_trainer = tiny_cfg("trainer=gpu").trainer  # its config holds a plugin (BackgroundCheckpointIO)
    for var in ("SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(var, raising=False)
    assert trainer_plugins(gpu_trainer, on_gpu=True) == {}  # not in SLURM: the config's plugins as they are
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "train")
    plugins = trainer_plugins(gpu_trainer, on_gpu=True)["plugins"]
    assert [type(p) for p in plugins] == [BackgroundCheckpointIO, SLURMEnvironment] and not plugins[1].auto_requeue


class FailSavesAfter(L.Callback):
    """Test helper: from optimizer step `step` on, every file write that goes through `target` fails midway."""

    def __init__(self, step: int, target: str):
        self.step, self.target, self.armed = step, target, False

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.step and not self.armed:
            import importlib

            module_name, attr = self.target.rsplit(".", 1)
            module = importlib.import_module(module_name)

            def failing(*a, **k):
                raise OSError("disk full (simulated)")

            setattr(module, attr, failing)  # the test puts the original back
            self.armed = True


@pytest.mark.parametrize("target", ["torch.save", "os.replace"], ids=["checkpoint-write", "file-rename"])
def test_a_failed_save_leaves_the_previous_files_intact(tiny_cfg, tmp_path, target, monkeypatch):
    import importlib

    module_name, attr = target.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(module_name), attr, getattr(importlib.import_module(module_name), attr))
    cfg = tiny_cfg()
    with open_dict(cfg):
        cfg.callbacks.fail = {"_target_": "test_robustness.FailSavesAfter", "step": 15, "target": target}
    with pytest.raises(OSError, match="disk full"):
        train(cfg)
    monkeypatch.undo()  # the real function back before reading the files
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 10  # the save at step 20 failed; the step-10 file is whole
    rows = read_metrics(tmp_path / "metrics.csv")  # parses: not half-written
    assert rows and max(int(float(r["step"])) for r in rows) <= 20
    assert not list(tmp_path.glob(".metrics.csv.*")), "a failed save left its temporary file behind"


class StopBeforeStep(L.Callback):
    """Test helper: the run dies (as if killed) just before optimizer step `step` + 1."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("killed")


def weights(path) -> dict:
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.parametrize("stop_at,extra", [
    (20, []), (30, []),
    # trainer.limit_train_batches: an epoch is 10 batches, not the dataset's 20; step 10 ends epoch 1
    (10, ["+trainer.limit_train_batches=10", "trainer.val_check_interval=5"]),
], ids=["epoch_boundary", "mid_epoch", "limited_epoch_boundary"])
def test_resumed_run_matches_an_uninterrupted_one(tiny_cfg, tmp_path, stop_at, extra):
    # 20 batches an epoch: step 20 ends epoch 1; step 30 is the middle of epoch 2, which must go on with the
    # batches the interrupted run had not trained on yet.
    overrides = ["trainer.max_epochs=3", "trainer.val_check_interval=10", "predict_test=false", *extra]
    stopped_at = run_whole_and_stopped_then_resumed(
        tiny_cfg, tmp_path, overrides, {"_target_": "test_robustness.StopBeforeStep", "step": stop_at},
        RuntimeError, "killed")
    assert stopped_at == stop_at
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")


def run_whole_and_stopped_then_resumed(tiny_cfg, tmp_path: Path, overrides: list[str], stopper: dict,
                                       error: type, message: str) -> int:
    """The run of ``overrides`` whole (``tmp_path/whole``), and stopped by the callback ``stopper`` with ``error``
    then continued from its last.ckpt (``tmp_path/resumed``); the step it was stopped at."""
    train(tiny_cfg(*overrides, output_dir=tmp_path / "whole"))
    cfg = tiny_cfg(*overrides, output_dir=tmp_path / "resumed")
    with open_dict(cfg):
        cfg.callbacks.stopper = stopper
    with pytest.raises(error, match=message):
        train(cfg)
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, weights_only=True)["global_step"]
    train(tiny_cfg(*overrides, f"ckpt_path={last}", output_dir=tmp_path / "resumed"))
    return stopped_at


def assert_same_run(whole: Path, resumed: Path) -> None:
    """The final weights and every metrics row of the two runs agree (to float noise)."""
    final = [weights(d / "checkpoints" / "last.ckpt") for d in (whole, resumed)]
    assert final[0].keys() == final[1].keys()
    for name in final[0]:
        torch.testing.assert_close(final[1][name], final[0][name], atol=1e-6, rtol=0, msg=name)
    curves = [read_metrics(d / "metrics.csv") for d in (whole, resumed)]
    # The best-so-far columns too: a resumed run goes on from the best values it had before the interruption.
    for metric in ("val/acc", "val/loss", "train/loss", "val/acc_best", "val/loss_best"):
        a, b = (column(rows, metric) for rows in curves)
        assert [s for s, _ in b] == [s for s, _ in a], metric
        assert [v for _, v in b] == pytest.approx([v for _, v in a], abs=1e-6), metric


class SignalDuringBatch(L.Callback):
    """Test helper: a stop signal arrives while micro-batch ``batch`` (counted across epochs) trains."""

    def __init__(self, batch: int, signum: str = "SIGUSR1"):
        self.batch, self.signum, self.seen = batch, signum, 0

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.seen += 1
        if self.seen == self.batch:
            import signal

            os.kill(os.getpid(), getattr(signal, self.signum))


@pytest.mark.parametrize("batch,step,extra", [
    (10, 10, []),  # during step 10, which validates and logs: the validation and the rows come before the stop
    (25, 13, ["trainer.accumulate_grad_batches=2"]),  # mid-window: the window's optimizer step comes before the stop
    (20, 20, ["trainer.val_check_interval=15"]),  # an epoch's last step, logging and not validating
    # ... in an epoch that does not validate (validations every other epoch's end)
    (20, 20, ["trainer.val_check_interval=1.0", "trainer.check_val_every_n_epoch=2", "trainer.max_epochs=4"]),
    (13, 13, []),  # an ordinary step
    (10, 10, ["model.whole_step=true"]),  # the whole-step path (manual optimization), at a validation step
], ids=["validation_step", "accumulation_window", "epoch_end", "epoch_end_without_validation", "mid_epoch",
        "whole_step"])
def test_a_run_stopped_by_a_signal_resumes_as_if_never_stopped(tiny_cfg, tmp_path, batch, step, extra):
    from glue_finetune.errors import Preempted

    overrides = ["trainer.max_epochs=2", "trainer.val_check_interval=10", "predict_test=false", *extra]
    stopped_at = run_whole_and_stopped_then_resumed(
        tiny_cfg, tmp_path, overrides, {"_target_": "test_robustness.SignalDuringBatch", "batch": batch},
        Preempted, f"stopped by SIGUSR1 at step {step};")
    assert stopped_at == step  # saved where the signal came (a validation's last.ckpt would also resume exactly)
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")


class RecordMicroBatches(L.Callback):
    """Test helper: per micro-batch, the dropout seed in force and how many losses the logged mean holds."""

    last: "RecordMicroBatches | None" = None  # the instance train() made from the config

    def __init__(self):
        self.seeds, self.losses_in_mean = [], []
        RecordMicroBatches.last = self

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.seeds.append(torch.initial_seed())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        stepped = (batch_idx + 1) % trainer.accumulate_grad_batches == 0
        if stepped and trainer.global_step % trainer.log_every_n_steps == 0:
            self.losses_in_mean.append(float(pl_module.train_loss.weight))


def test_gradient_accumulation_logs_epochs_losses_and_dropout_per_micro_batch(tiny_cfg, tmp_path, caplog):
    # 20 batches an epoch, 2 per optimizer step: 10 steps an epoch; the loss logged every 5 steps.
    cfg = tiny_cfg("trainer.accumulate_grad_batches=2", "trainer.max_epochs=2", "trainer.val_check_interval=10",
                   "trainer.log_every_n_steps=5", "predict_test=false")
    with open_dict(cfg):
        cfg.callbacks.record = {"_target_": "test_robustness.RecordMicroBatches"}
    with caplog.at_level(logging.INFO, logger="glue_finetune.training"):
        train(cfg)
    assert "2 epoch(s) of batch 16 × 2 accumulated (32 a step)" in caplog.text  # what a step trains on
    card = (tmp_path / "README.md").read_text()
    assert "- train_batch_size: 16\n- total_train_batch_size: 32\n" in card  # as Hugging Face's cards give it
    recorder = RecordMicroBatches.last
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [s for s, _ in column(rows, "train/loss")] == [5, 10, 15, 20]  # once per logging step, not per micro-batch
    epochs = {int(float(r["step"])): float(r["epoch"]) for r in rows if r.get("train/loss")}
    assert epochs == {5: 0.5, 10: 1.0, 15: 1.5, 20: 2.0}  # in optimizer steps: 10 an epoch
    assert recorder.losses_in_mean == [10.0] * 4  # every micro-batch's loss is in the logged mean
    assert len(recorder.seeds) == 40 and len(set(recorder.seeds)) == 40  # each micro-batch its own dropout


def test_metrics_csv_keeps_one_row_of_a_step_logged_twice_with_the_same_values(tmp_path):
    from glue_finetune.tracking import CSVLogger

    logger = CSVLogger(save_dir=str(tmp_path), name="", version="")
    logger.log_metrics({"train/loss": 0.5, "train/lr": 1e-5}, step=10)
    logger.log_metrics({"train/loss": 0.5, "train/lr": 1e-5}, step=10)  # what Lightning logs again at a stop
    logger.log_metrics({"train/loss": 0.25, "train/lr": 1e-5}, step=10)  # other values: kept
    logger.save()
    logger.log_metrics({"train/loss": 0.25, "train/lr": 1e-5}, step=10)  # the same again, after a save
    logger.log_metrics({"selected/val/acc": 0.9}, step=10)
    logger.save()
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = [{k: v for k, v in r.items() if v} for r in csv.DictReader(f)]
    assert rows == [{"step": "10", "train/loss": "0.5", "train/lr": "1e-05"},
                    {"step": "10", "train/loss": "0.25", "train/lr": "1e-05"},
                    {"step": "10", "selected/val/acc": "0.9"}]


def test_a_job_refused_inside_a_slurm_job_ends_with_a_result_rather_than_an_exit(monkeypatch, caplog):
    # submitit reports a job by the result it pickles: a job that exits leaves none, and the sweep waits on it.
    import importlib.util
    import math

    from omegaconf import OmegaConf

    from conftest import ROOT
    from glue_finetune.errors import UserError

    spec = importlib.util.spec_from_file_location("train_entry_point", ROOT / "src" / "train.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)

    def refused(cfg, train_fn):
        raise UserError("Another process is running in multirun/s/0")

    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # a basic sweep's job (an earlier test's config aside)
    monkeypatch.setattr(entry, "run_job", refused)
    monkeypatch.setenv("SUBMITIT_FOLDER", "multirun/s/.submitit/12_0")
    with caplog.at_level(logging.ERROR):
        assert math.isnan(entry.main.__wrapped__(OmegaConf.create({})))
    assert "Another process is running in multirun/s/0" in caplog.text
    monkeypatch.delenv("SUBMITIT_FOLDER")
    with pytest.raises(SystemExit) as exit_:  # anywhere else: one message, exit 2
        entry.main.__wrapped__(OmegaConf.create({}))
    assert exit_.value.code == 2


def test_the_command_that_continues_a_run_names_train_py_as_the_run_did(monkeypatch, tmp_path):
    import sys

    from hydra.core.hydra_config import HydraConfig

    from glue_finetune.sweep import continue_command

    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # a single run (an earlier test's config aside)
    monkeypatch.setattr(sys, "argv", ["/home/me/glue-finetune/src/train.py", "seed=3"])
    assert continue_command(tmp_path) == (f"python /home/me/glue-finetune/src/train.py seed=3 hydra.run.dir={tmp_path} "
                                          "resume=true")  # started from another directory than the repo's


def test_a_checkpoint_of_another_batch_size_restarts_its_epoch_and_says_so(tiny_cfg, tmp_path, caplog):
    # Its place in the epoch counts batches of its own size, in an order grouped by that size; Lightning counts them
    # against this run's epoch all the same. 320 examples: 20 batches of 16 an epoch, 10 of 32.
    run = functools.partial(batches_trained, tiny_cfg, tmp_path)
    new = run("new", "data.batch_size=32", "+trainer.max_steps=12")  # epoch 0's 10 batches of 32, then 2 of epoch 1
    for step in (4, 10, 14):
        run(f"first-{step}", f"+trainer.max_steps={step}")
        last = tmp_path / f"first-{step}" / "checkpoints" / "last.ckpt"
        assert torch.load(last, weights_only=True)["global_step"] == step
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="glue_finetune.data"):
            resumed = run(f"second-{step}", f"ckpt_path={last}", "data.batch_size=32", f"+trainer.max_steps={step + 2}")
        change = ("The checkpoint was trained in batches of 16 (data.batch_size), this run in batches of 32: its place "
                  "in epoch 0 does not carry over")
        if step == 4:  # 6 batches left of epoch 0: its first ones, as a new run's
            assert f"{change}, so the rest of that epoch (6 of its 10 batches, as Lightning counts them) trains on " \
                   "the epoch's first batches" in caplog.text
            assert resumed == new[:2]
        elif step == 10:  # 10 batches done: epoch 0 is over, and epoch 1 starts as a new run's
            assert f"{change}, and Lightning counts its 10 batches done as the whole of that epoch's 10: training " \
                   "goes on with epoch 1." in caplog.text
            assert resumed == new[10:12]
        else:  # 14 done, more than the epoch's 10: Lightning draws one more batch of epoch 0, then epoch 1's
            assert f"{change}, and Lightning counts its 14 batches done as more than that epoch's 10: it trains one " \
                   "more batch of epoch 0 (its first), then goes on with epoch 1." in caplog.text
            assert resumed == [new[0], new[10]]


@pytest.mark.parametrize("stop,trained_on,epoch,extra,saved_by", [
    (4, 26, 0, [], "this version"),  # in the middle of epoch 0 (20 batches)
    (4, 26, 0, ["model.whole_step=true"], "this version"),
    (20, 26, 1, ["trainer.val_check_interval=15"], "this version"),  # at epoch 0's last batch: no validation there
    (8, 12, 1, ["+trainer.limit_train_batches=8"], "this version"),  # at the last batch of an epoch shortened to 8
    # last.ckpt as versions before this one saved it: the epoch closed as Lightning closes it, mended as it loads
    (4, 26, 1, [], "an earlier version"),
    (20, 26, 1, ["trainer.val_check_interval=15"], "an earlier version"),
    (8, 12, 1, ["+trainer.limit_train_batches=8"], "an earlier version"),
], ids=["mid_epoch", "mid_epoch_whole_step", "epoch_end", "limited_epoch_end", "mid_epoch_earlier_version",
        "epoch_end_earlier_version", "limited_epoch_end_earlier_version"])
def test_a_run_ended_by_max_steps_trained_on_from_its_checkpoint_goes_on_where_it_ended(
        tiny_cfg, tmp_path, monkeypatch, stop, trained_on, epoch, extra, saved_by):
    # trainer.max_steps (max_time, early stopping) ends training: Lightning closes the epoch it ended in. Trained on
    # from last.ckpt with a longer max_steps, a run cut 4 batches into epoch 0 started epoch 1 at its 5th batch
    # (batches 24 on), and a run cut at an epoch's end trained one batch of the next, then went on to the one after.
    run = functools.partial(batches_trained, tiny_cfg, tmp_path)
    uninterrupted = run("whole", f"+trainer.max_steps={trained_on}", *extra)
    with monkeypatch.context() as saving:
        if saved_by == "an earlier version":
            saving.setattr("glue_finetune.checkpointing.record_where_training_ended", lambda trainer, checkpoint: None)
        assert run("first", f"+trainer.max_steps={stop}", *extra) == uninterrupted[:stop]
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == epoch
    assert run("trained_on", f"ckpt_path={last}", f"+trainer.max_steps={trained_on}", *extra) == uninterrupted[stop:]


def batches_trained(tiny_cfg, tmp_path: Path, name: str, *overrides: str) -> list:
    """Train ``overrides`` in ``tmp_path/name``; the token ids of each batch it trained on, in order."""
    cfg = tiny_cfg(*overrides, "predict_test=false", output_dir=tmp_path / name)
    with open_dict(cfg):
        cfg.callbacks.record = {"_target_": "test_robustness.RecordBatches"}
    train(cfg)
    return RecordBatches.last.batches


class RecordBatches(L.Callback):
    """Test helper: the token ids of each training batch, in order."""

    last: "RecordBatches | None" = None  # the instance train() made from the config

    def __init__(self):
        self.batches: list[list[list[int]]] = []
        RecordBatches.last = self

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.append(batch["input_ids"].tolist())  # a collated batch (model.whole_step's travel as row numbers)


def test_resume_given_as_text_is_refused_not_read_as_true(tmp_path):
    from omegaconf import OmegaConf

    from glue_finetune.errors import ConfigError
    from glue_finetune.sweep import run_job

    calls = []
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": "no", "ckpt_path": None})
    with pytest.raises(ConfigError, match="resume='no' must be true or false"):  # it was read as resume=true
        run_job(cfg, lambda c: calls.append(c) or 0.5)
    assert not calls


class CtrlCAt(L.Callback):
    """Test helper: Ctrl-C at a hook outside the training steps (the sanity check, the scoring at the end)."""

    def __init__(self, hook: str):
        self.hook = hook

    def __getattribute__(self, name):
        if name == object.__getattribute__(self, "hook"):
            return lambda *args: os.kill(os.getpid(), signal.SIGINT)
        return object.__getattribute__(self, name)


@pytest.mark.parametrize("hook,saved", [("on_sanity_check_start", False), ("on_test_start", True)])
def test_ctrl_c_outside_the_training_steps_is_an_interruption_with_its_command_not_a_silent_exit(
        tiny_cfg, tmp_path, caplog, hook, saved):
    # Lightning turns Ctrl-C into exit(1) with no word (the run looked failed, no command to continue it).
    from glue_finetune.sweep import run_job

    cfg = tiny_cfg("predict_test=false", "trainer.num_sanity_val_steps=1", "trainer.max_epochs=1")
    with open_dict(cfg):
        cfg.callbacks.interrupt = {"_target_": "test_robustness.CtrlCAt", "hook": hook}
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (an earlier test may
    try:  # have left it ignored, as Lightning leaves it once it has caught one)
        with caplog.at_level(logging.WARNING), pytest.raises(KeyboardInterrupt):  # the entry point exits 130 on it
            run_job(cfg, train)
    finally:
        signal.signal(signal.SIGINT, before)
    if saved:  # scoring, after training: the same command continues from last.ckpt, which skips to the scoring
        assert json.loads((tmp_path / "job_preempted.json").read_text())["reason"] == "Ctrl-C"
        assert "Interrupted. To continue: " in caplog.text
    else:
        assert not (tmp_path / "job_preempted.json").exists()
        assert "Interrupted before the run saved a checkpoint: nothing to continue. To start it again" in caplog.text
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN or before is signal.SIG_IGN


def test_a_stop_during_start_up_leaves_a_dir_the_same_command_starts_again(tmp_path, caplog):
    # It left job_preempted.json and a resume=true command that was then refused ("holds no run to continue").
    from omegaconf import OmegaConf

    from glue_finetune.errors import Preempted
    from glue_finetune.sweep import run_job

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": False, "ckpt_path": None})

    def stopped_at_start_up(c):
        raise Preempted("stopped by SIGTERM outside the training steps")

    with pytest.raises(Preempted) as stop:
        run_job(cfg, stopped_at_start_up)
    assert stop.value.nothing_saved and "resume=true" not in stop.value.resume_with
    assert not (tmp_path / "job_preempted.json").exists()
    assert run_job(cfg, lambda c: 0.5) == 0.5  # the same command starts it again


def test_a_half_written_checkpoint_or_export_of_a_killed_process_is_removed_when_the_run_continues(tmp_path):
    from omegaconf import OmegaConf

    from glue_finetune.sweep import run_job

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"saved")
    partial = tmp_path / "checkpoints" / ".last.ckpt.96yz7b3o"  # files.write_atomically's, its writer SIGKILLed
    partial.write_bytes(b"half")
    export = tmp_path / ".model.x1y2z3"  # artefacts.export_model's staging dir, its writer killed the same way
    export.mkdir()
    (export / "config.json").write_text("{}")
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}, "resume": True, "ckpt_path": None})
    assert run_job(cfg, lambda c: 0.5) == 0.5
    assert not partial.exists() and (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert not export.exists()


def a_saved_run_continued(run_dir: Path):
    """The config of ``resume=true`` in a run dir that holds a saved ``last.ckpt``, as ``run_job`` reads it."""
    from omegaconf import OmegaConf

    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"saved")
    return OmegaConf.create({"paths": {"output_dir": str(run_dir)}, "resume": True, "ckpt_path": None})


def test_a_full_disk_is_one_message_naming_what_is_intact_and_the_command(tmp_path):
    from glue_finetune.errors import UserError
    from glue_finetune.sweep import run_job

    cfg = a_saved_run_continued(tmp_path)

    def save_on_a_full_disk(c):
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as err:  # as torch's zip writer reports it, the OSError its context
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4096 vs 1024") from err

    with pytest.raises(UserError, match=rf"The disk holding {tmp_path} is full .* {tmp_path / 'checkpoints' / 'last.ckpt'} "
                                        r"is intact .* Free some space, then continue: .* resume=true"):
        run_job(cfg, save_on_a_full_disk)
    assert "is full" in json.loads((tmp_path / "job_failed.json").read_text())["error"]
    # torch's writer says "unexpected pos" of any failed write: a file-size limit is no full disk, and says so itself

    def save_over_a_file_size_limit(c):
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError as err:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from err

    with pytest.raises(RuntimeError, match="unexpected pos"):
        run_job(cfg, save_over_a_file_size_limit)


def test_a_full_disk_reported_by_a_writer_of_another_language_is_said_as_a_full_disk(tmp_path):
    # safetensors (Rust) raises its own exception with the OS's words, no OSError in its chain
    from glue_finetune.errors import UserError
    from glue_finetune.sweep import run_job

    cfg = a_saved_run_continued(tmp_path)

    class SafetensorError(Exception):
        pass

    def export_on_a_full_disk(c):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(UserError, match=rf"The disk holding {tmp_path} is full .* is intact .* Free some space, "
                                        r"then continue: .* resume=true"):
        run_job(cfg, export_on_a_full_disk)


def test_a_failure_after_training_says_the_weights_are_safe_and_the_command_that_finishes(tmp_path):
    from glue_finetune.sweep import run_job

    cfg = a_saved_run_continued(tmp_path)

    def fail(after_training):
        def train_fn(c):
            err = IsADirectoryError(21, "Is a directory")  # the submission file's name taken by a directory
            err.after_training = after_training  # as training.train marks what it raises
            raise err
        return train_fn

    with pytest.raises(IsADirectoryError) as failed:
        run_job(cfg, fail(after_training=True))
    note = " ".join(getattr(failed.value, "__notes__", []))
    assert f"Training had finished: {tmp_path / 'checkpoints' / 'last.ckpt'} holds its last step" in note
    assert "without training: " in note and note.rstrip().endswith("resume=true")
    with pytest.raises(IsADirectoryError) as failed:  # a failure during training says nothing of the sort
        run_job(cfg, fail(after_training=False))
    assert not getattr(failed.value, "__notes__", None)


def test_a_stopped_run_continues_from_its_own_checkpoint_unless_another_is_chosen(tmp_path):
    from omegaconf import OmegaConf

    from glue_finetune.sweep import continues_its_own_progress

    run, elsewhere = tmp_path / "run", tmp_path / "other" / "checkpoints" / "last.ckpt"
    run.mkdir()
    (run / "hparams.yaml").write_text(f"ckpt_path: {elsewhere}\n")  # started from another run's checkpoint

    def given(ckpt_path):
        return OmegaConf.create({"ckpt_path": ckpt_path})

    assert continues_its_own_progress(run, given(None))
    assert continues_its_own_progress(run, given(str(elsewhere)))  # its command again: its own progress
    assert not continues_its_own_progress(run, given(str(tmp_path / "third" / "best-step10.ckpt")))  # chosen now
    assert not continues_its_own_progress(run, given(str(run / "checkpoints" / "best-step10.ckpt")))


def test_a_run_continued_from_another_runs_checkpoint_trains_with_its_own_optimizer_settings(tiny_cfg, tmp_path):
    # Lightning restores the checkpoint's optimizer settings with its state: a lower optimizer.lr, as the NaN
    # message advises, went on at the old rate, while the card said the new one.
    from glue_finetune.errors import UserError
    from glue_finetune.training import checkpoint_step

    train(tiny_cfg("trainer.max_epochs=1", "predict_test=false", output_dir=tmp_path / "A"))
    last = tmp_path / "A" / "checkpoints" / "last.ckpt"
    continued = {}
    for name, lr in (("same", 3e-3), ("lower", 3e-4)):
        train(tiny_cfg("trainer.max_epochs=2", "predict_test=false", f"optimizer.lr={lr}", f"ckpt_path={last}",
                       output_dir=tmp_path / name))
        continued[name] = read_metrics(tmp_path / name / "metrics.csv")
    same, lower = (dict(column(continued[name], "train/lr")) for name in ("same", "lower"))
    assert min(same) == min(lower) == 30 and all(lower[step] == pytest.approx(same[step] / 10) for step in same)
    # <metric>_best are the run's own, as its checkpoint selection is (they were the other run's).
    first = min(step for step, _ in column(continued["lower"], "val/loss"))
    assert dict(column(continued["lower"], "val/loss_best"))[first] == dict(column(continued["lower"], "val/loss"))[first]
    # An optimizer state that cannot go into this config's optimizer: one message before any work, not a KeyError.
    for override, message in (("optimizer=sgd", "it was trained with another optimizer than SGD (its state has no "
                                                "dampening, momentum, nesterov)"),
                              ("optimizer.weight_decay=0.01", "its optimizer state has 1 parameter group(s), this "
                                                             "config's optimizer 2")):
        with pytest.raises(UserError, match=re.escape(message)):
            checkpoint_step(str(last), tiny_cfg(override, f"ckpt_path={last}"))


def test_a_stopped_run_started_from_another_runs_checkpoint_continues_from_its_own(tiny_cfg, tmp_path, caplog):
    # Its command names the other run's checkpoint (ckpt_path): run again, it went back to that one, training its
    # own steps again.
    from glue_finetune.errors import Preempted
    from glue_finetune.sweep import PREEMPTED, run_job

    train(tiny_cfg("trainer.max_epochs=1", "predict_test=false", output_dir=tmp_path / "A"))
    other = tmp_path / "A" / "checkpoints" / "last.ckpt"
    run = tmp_path / "B"

    def command():  # the same each time (its stop comes 15 batches in: the second attempt has 5 left to train)
        cfg = tiny_cfg("trainer.max_epochs=2", "predict_test=false", f"ckpt_path={other}", output_dir=run)
        with open_dict(cfg):
            cfg.callbacks.stop = {"_target_": "test_robustness.SignalDuringBatch", "batch": 15, "signum": "SIGTERM"}
        return cfg

    with pytest.raises(Preempted):
        run_job(command(), train)
    own = run / "checkpoints" / "last.ckpt"
    assert (run / PREEMPTED).exists() and torch.load(own, weights_only=True, mmap=True)["global_step"] == 35
    with caplog.at_level(logging.INFO):
        run_job(command(), train)
    assert f"Resuming from {own}" in caplog.text and "Continuing from step 35" in caplog.text
    assert (run / "job_done.json").exists() and not (run / PREEMPTED).exists()


def test_a_run_continues_on_the_training_data_it_started_with(tiny_cfg, sst2_dir, tmp_path):
    # data.local_dir may change on resume (a moved folder), and another train file went on silently in the first
    # one's schedule and epoch.
    from glue_finetune.errors import Preempted, UserError
    from glue_finetune.sweep import run_job

    run, moved, other = tmp_path / "run", tmp_path / "moved", tmp_path / "other"
    shutil.copytree(sst2_dir, moved)
    shutil.copytree(sst2_dir, other)
    (other / "train.tsv").write_text((sst2_dir / "train.tsv").read_text() + "one more row\t1\n")

    def command(data):
        cfg = tiny_cfg("trainer.max_epochs=1", "predict_test=false", f"data.local_dir={data}", output_dir=run)
        with open_dict(cfg):
            cfg.callbacks.stop = {"_target_": "test_robustness.SignalDuringBatch", "batch": 15, "signum": "SIGTERM"}
        return cfg

    with pytest.raises(Preempted):
        run_job(command(sst2_dir), train)
    with pytest.raises(UserError, match=r"trained on another train file than .*other/train.tsv \(its content differs"):
        run_job(command(other), train)
    assert run_job(command(moved), train) > 0  # the same file elsewhere: continued


class StopTrainingAt(L.Callback):
    """Test helper: a callback ends training at optimizer step `step`, as EarlyStopping or max_time's Timer do."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            trainer.should_stop = True


def test_training_ended_before_its_schedule_says_so_and_how_to_train_on(tiny_cfg, tmp_path, caplog):
    # It was written as finished without a word, and resume=true then kept it as it was.
    cfg = tiny_cfg("trainer.max_epochs=2", "predict_test=false")
    with open_dict(cfg):
        cfg.callbacks.stop = {"_target_": "test_robustness.StopTrainingAt", "step": 15}
    with caplog.at_level(logging.WARNING):
        train(cfg)
    assert ("Training ended at step 15 of the 40 its schedule plans: a callback stopped it (early stopping, say)"
            in caplog.text)
    assert f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'} hydra.run.dir=<a new dir>" in caplog.text


def test_a_run_continued_from_another_runs_checkpoint_counts_its_own_max_time(tiny_cfg, tmp_path):
    # Lightning's Timer, restored from the other run's checkpoint, counted that run's training time: a run continued
    # from one that had used up its trainer.max_time stopped at once.
    train(tiny_cfg("trainer.max_epochs=1", "predict_test=false", "+trainer.max_time=00:01:00:00",
                   output_dir=tmp_path / "A"))
    last = tmp_path / "A" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"] = 10 * 3600.0  # as if it had trained for 10 hours
    torch.save(checkpoint, last)
    train(tiny_cfg("trainer.max_epochs=2", "predict_test=false", "+trainer.max_time=00:01:00:00", f"ckpt_path={last}",
                   output_dir=tmp_path / "B"))
    steps = [step for step, _ in column(read_metrics(tmp_path / "B" / "metrics.csv"), "train/loss")]
    assert max(steps) == 40  # trained on to its schedule's end, from step 20
