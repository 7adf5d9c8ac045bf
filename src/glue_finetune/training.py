"""``train(cfg)``: the whole run, top to bottom. Plain function; ``src/train.py`` only wraps it in Hydra."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
import torch
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from glue_finetune.artefacts import write_glue_submission
from glue_finetune.config import validate_config
from glue_finetune.hub import go_offline_if_unreachable, is_local_path
from glue_finetune.tracking import CSVLogger, finish_wandb

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a group such as ``callbacks`` or ``logger`` (a mapping of name → config)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def with_csv_logger(loggers: list[Logger], output_dir: str, resume_step: int | None) -> list[Logger]:
    """Every run writes ``metrics.csv`` in its run dir: reports and model cards are built from it."""
    if not any(isinstance(lg, CSVLogger) for lg in loggers):
        loggers.append(CSVLogger(save_dir=output_dir, name="", version=""))
    for lg in loggers:
        if isinstance(lg, CSVLogger):
            lg.resume_step = resume_step
    return loggers


def checkpoint_step(ckpt_path: str | None) -> int | None:
    """The optimizer step a Lightning checkpoint was saved at."""
    if not ckpt_path:
        return None
    return int(torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)["global_step"])


def needs_hub(cfg: DictConfig) -> bool:
    return not cfg.data.get("local_dir") or not is_local_path(cfg.model.name_or_path)


def train(cfg: DictConfig) -> float:
    """Fine-tune, re-score the best checkpoint on the dev set, write test predictions; return best dev accuracy."""
    validate_config(cfg)  # every config problem at once, before any download or training
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))
    if needs_hub(cfg):
        go_offline_if_unreachable()  # no network: use the local cache, fail in seconds instead of retrying

    # Lightning warns that the run dir is not empty (Hydra's .hydra/ and the log are there): that is expected.
    warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
    try:
        # _convert_="all": plain lists and dicts, so checkpoints hold no OmegaConf objects (weights_only loads).
        datamodule: L.LightningDataModule = instantiate(cfg.data, _convert_="all")
        datamodule.prepare_data()  # fetch, check and tokenize now, so bad data fails before the model downloads
        model: L.LightningModule = instantiate(
            cfg.model, optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler), _convert_="all"
        )
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            callbacks=instantiate_all(cfg.get("callbacks")),
            logger=with_csv_logger(
                instantiate_all(cfg.get("logger")), str(output_dir), checkpoint_step(cfg.get("ckpt_path"))
            ),
        )
        hparams = OmegaConf.to_container(cfg, resolve=True)
        for logger in trainer.loggers:
            logger.log_hyperparams(hparams)

        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))

        # Re-score the best checkpoint (by val/acc) on the dev set; without one (fast_dev_run), the final weights.
        best_ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best_ckpt:
            log.warning("No best checkpoint was saved: scoring the final weights instead.")
        scores = trainer.test(model, datamodule=datamodule, ckpt_path=best_ckpt or None, verbose=False)[0]
        best_acc = float(scores["best_ckpt/val_acc"])

        if cfg.get("predict_test") and datamodule.has_test_split:
            predictions = trainer.predict(model, datamodule=datamodule)
            if trainer.is_global_zero:
                path = write_glue_submission(predictions, output_dir / "SST-2.tsv")
                log.info("GLUE test-set predictions: %s", path)

        log.info("Best checkpoint: %s", best_ckpt or "(none: final weights)")
        log.info("Best dev accuracy (val/acc): %.4f", best_acc)
        print(f"best val/acc = {best_acc:.4f}  ({best_ckpt or 'final weights'})")
        return best_acc
    finally:
        finish_wandb()  # also after a failure, so the next job of a sweep starts its own W&B run
