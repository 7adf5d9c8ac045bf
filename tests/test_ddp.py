"""trainer=ddp for real: two CPU processes (gloo) train the tiny model as `python src/train.py trainer=ddp` does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from conftest import ROOT, write_sst2
from test_train import column, read_metrics, run_cli

DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


@pytest.fixture(scope="module")
def tiny_without_dropout(tmp_path_factory) -> Path:
    """The tiny model with dropout off: two runs can then only differ by how their batches are split."""
    model = tmp_path_factory.mktemp("model") / "tiny-bert"
    shutil.copytree(ROOT / "src" / "glue_finetune" / "assets" / "tiny-bert", model)
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))
    return model


@pytest.fixture(scope="module")
def sst2_odd_dev(tmp_path_factory) -> Path:
    """33 dev sentences: on 2 ranks one scores 17 (3 batches of 8), the other 16 (2 batches)."""
    return write_sst2(tmp_path_factory.mktemp("sst2_odd_dev"), n_dev=33)


def common(sst2_dir: Path, model: Path) -> list[str]:
    # 320 training sentences: 10 steps an epoch at a global batch of 32; float32 for comparable numbers.
    return ["model=tiny", f"model.name_or_path={model}", "logger=csv", "optimizer.lr=3e-3", "trainer.max_epochs=2",
            "trainer.val_check_interval=5", "trainer.log_every_n_steps=5", "trainer.enable_progress_bar=false",
            "trainer.precision=32-true", f"data.local_dir={sst2_dir}", "predict_test=false"]


def final_step(run_dir: Path) -> int:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["global_step"]


def test_ddp_on_two_processes_trains_and_scores_as_one_process_with_the_global_batch(sst2_odd_dev,
                                                                                     tiny_without_dropout, tmp_path):
    # 2 processes x batch 16 against 1 process x batch 32: the same batches (length-grouped), the same updates. The
    # dev set's 33 sentences are each scored once: no rank pads its share by repeating one.
    args = common(sst2_odd_dev, tiny_without_dropout)
    ddp = run_cli([*DDP, *args, f"hydra.run.dir={tmp_path / 'ddp'}"], timeout=300)
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    single = run_cli(["trainer=cpu", "data.batch_size=32", *args, f"hydra.run.dir={tmp_path / 'single'}"])
    assert single.returncode == 0, single.stderr[-3000:]
    ddp_loss = column(read_metrics(tmp_path / "ddp" / "metrics.csv"), "val/loss")
    single_loss = column(read_metrics(tmp_path / "single" / "metrics.csv"), "val/loss")
    assert [s for s, _ in ddp_loss] == [s for s, _ in single_loss] == [5, 10, 15, 20]
    assert ddp_loss[-1][1] < ddp_loss[0][1] - 0.005  # it learned something, across both epochs
    for (step, a), (_, b) in zip(ddp_loss, single_loss):
        assert a == pytest.approx(b, rel=1e-5), f"step {step}: ddp {a} vs one process {b}"
    ddp_acc = column(read_metrics(tmp_path / "ddp" / "metrics.csv"), "val/acc")
    assert ddp_acc == column(read_metrics(tmp_path / "single" / "metrics.csv"), "val/acc")
    assert {round(acc * 33, 6) % 1 for _, acc in ddp_acc} == {0.0}  # fractions of 33 examples, not of 34
    assert ddp.stdout.count("result:") == 1  # one process reports
    assert (ddp.stdout + ddp.stderr).count("Fine-tuning tiny-bert") == 1  # the other prints its errors only


def test_ddp_ranks_split_each_epochs_own_order():
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    from glue_finetune.data import EpochSeededSampler

    lengths = [5 + i % 13 for i in range(320)]
    ranks = [DistributedSamplerWrapper(EpochSeededSampler(lengths, 32, 7), num_replicas=2, rank=r, shuffle=False)
             for r in (0, 1)]
    one_process = EpochSeededSampler(lengths, 32, 7)
    for epoch in (0, 1):
        for sampler in (*ranks, one_process):
            sampler.set_epoch(epoch)
        orders = [list(r) for r in ranks]
        first_step = sorted(orders[0][:16] + orders[1][:16])
        assert first_step == sorted(list(one_process)[:32])  # step 1 of both ranks = one process's first batch
        if epoch == 0:
            epoch0 = orders[0]
    assert orders[0] != epoch0  # Lightning < 2.6 did not pass set_epoch on: every epoch repeated epoch 0


def test_ddp_resume_at_an_epoch_end_goes_on_and_mid_epoch_warns(sst2_dir, tiny_without_dropout, tmp_path):
    # One run stopped three times over: at step 10 (epoch 1's end), then at 15 (the middle of epoch 2), then on to
    # its end at 20. An epoch's end must not be mistaken for its middle; the middle is warned about.
    run_dir = tmp_path / "run"
    args = [*DDP, *common(sst2_dir, tiny_without_dropout), f"hydra.run.dir={run_dir}"]
    warning = "Resuming in the middle of epoch 1 on 2 devices: the rest of the epoch trains on its first batches"

    def stopped_as_if_by_a_signal(max_steps: int | None):
        # As if the run had been stopped at its step limit (a signal under DDP reaches one rank): it is continued
        # by a command whose step limit, if any, resume=true checks against the run's recorded config.
        (run_dir / "job_done.json").unlink()
        recorded = yaml.safe_load((run_dir / "hparams.yaml").read_text())
        recorded["trainer"].pop("max_steps")
        if max_steps is not None:
            recorded["trainer"]["max_steps"] = max_steps
        (run_dir / "hparams.yaml").write_text(yaml.safe_dump(recorded))

    first = run_cli([*args, "+trainer.max_steps=10"], timeout=300)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert final_step(run_dir) == 10
    stopped_as_if_by_a_signal(max_steps=15)
    at_epoch_end = run_cli([*args, "+trainer.max_steps=15", "resume=true"], timeout=300)
    assert at_epoch_end.returncode == 0, at_epoch_end.stdout[-3000:] + at_epoch_end.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "Continuing from step 10" in log and warning not in log
    assert final_step(run_dir) == 15
    stopped_as_if_by_a_signal(max_steps=None)
    mid_epoch = run_cli([*args, "resume=true"], timeout=300)
    assert mid_epoch.returncode == 0, mid_epoch.stdout[-3000:] + mid_epoch.stderr[-3000:]
    log = (run_dir / "train.log").read_text()
    assert "Continuing from step 15" in log and warning in log
    assert final_step(run_dir) == 20  # 2 epochs of 10 steps
    steps = [step for step, _ in column(read_metrics(run_dir / "metrics.csv"), "val/loss")]
    assert steps == [5, 10, 15, 20]


def test_ddp_stopped_by_a_signal_to_one_process_saves_and_stops_on_every_rank(sst2_dir, tiny_without_dropout,
                                                                             tmp_path):
    # `kill <pid>` (or a container's stop) reaches only the launching process, rank 0; rank 1 learns of it at the
    # next step, and both stop there: saving is collective, so a rank stopping alone would hang the other.
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    args = [*DDP, *common(sst2_dir, tiny_without_dropout), "trainer.max_epochs=200", f"hydra.run.dir={run_dir}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | {"WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "src/train.py", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "checkpoints" / "last.ckpt").exists():  # training is under way on both ranks
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 75, output[-3000:]
    stopped_at = final_step(run_dir)
    assert f"Run stopped by SIGTERM at step {stopped_at}" in output and "Traceback" not in output, output[-3000:]
    assert 0 < stopped_at < 200 * 10
    time.sleep(1)
    others = subprocess.run(["pgrep", "-f", f"hydra.run.dir={run_dir}"], capture_output=True, text=True).stdout
    assert not others.split(), "rank 1 is still running"


def test_a_signal_arriving_during_the_ranks_all_reduce_is_kept_for_the_next_step(monkeypatch, tmp_path):
    # Each step the ranks all-reduce whether any received a stop signal; a rank waits there for the others, so a
    # signal mostly arrives during that call. It is then not in this step's result (the other ranks have not heard
    # of it, so no rank may stop on it yet), and must still be in the next step's, not cleared by this one's 0.
    import signal
    from types import SimpleNamespace

    from glue_finetune.checkpointing import LatestCheckpoint

    callback = LatestCheckpoint(str(tmp_path))
    trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    arrivals = [signal.SIGTERM]

    def all_reduce(tensor, op):  # the other rank has received nothing; this one's signal comes while it waits
        if arrivals:
            callback._note(arrivals.pop(), None)

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "all_reduce", all_reduce)
    assert callback.agreed_signal(trainer) is None  # not agreed yet: stopping now would leave the other rank behind
    assert callback.agreed_signal(trainer) == signal.SIGTERM  # the next step: every rank stops here


def test_a_save_that_fails_on_rank_0_is_told_to_every_rank_before_it_raises(tmp_path):
    # Rank 0 decides how last.ckpt is saved and tells the others (a broadcast they wait in): its error there (the
    # background writer's, from an earlier save) must reach them, not leave them waiting until the timeout.
    from types import SimpleNamespace

    from glue_finetune.checkpointing import LatestCheckpoint

    told = []  # what rank 0 broadcast

    def trainer(rank_0: bool):
        def broadcast(value):
            if rank_0:
                told.append(value)
                return value
            return told.pop(0)  # rank 0's answers, in order

        return SimpleNamespace(is_global_zero=rank_0, global_step=20, lightning_module=object(),
                               strategy=SimpleNamespace(checkpoint_io=None, broadcast=broadcast))

    callback = LatestCheckpoint(str(tmp_path))

    def disk_full(trainer, path):
        raise OSError(28, "No space left on device")

    callback.link_to_best = disk_full
    with pytest.raises(OSError, match="No space left"):
        callback.save(trainer(rank_0=True))
    assert told == [False, "failed"]
    with pytest.raises(RuntimeError, match="Rank 0 could not save last.ckpt"):
        callback.save(trainer(rank_0=False))  # the other rank, told "failed"
