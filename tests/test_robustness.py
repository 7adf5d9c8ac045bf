"""Robustness: diverging runs stop cleanly, reruns are reproducible."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from glue_finetune.errors import TrainingDivergedError
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
    with pytest.raises(TrainingDivergedError, match="became NaN or infinite at optimizer step 16") as err:
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
