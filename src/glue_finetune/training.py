"""``train(cfg)``: the whole run, top to bottom. Plain function; ``src/train.py`` only wraps it in Hydra."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from glue_finetune.artefacts import (
    evaluation_rows,
    export_model,
    model_card,
    write_glue_submission,
    write_text_atomically,
)
from glue_finetune.config import validate_config
from glue_finetune.hub import go_offline_if_unreachable, is_local_path
from glue_finetune.inference import SentimentPredictor
from glue_finetune.sweep import job_overrides
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


def card_hyperparameters(cfg: DictConfig, trainer: L.Trainer) -> dict:
    """The run's hyperparameters under the names Hugging Face's model cards use."""
    opt = cfg.optimizer
    optimizer = opt._target_.rsplit(".", 1)[-1]
    if "betas" in opt:
        optimizer += f" with betas=({opt.betas[0]},{opt.betas[1]}) and epsilon={opt.eps}"
    optimizer += f", weight_decay={opt.get('weight_decay', 0.0)}"
    return {
        "learning_rate": opt.lr,
        "train_batch_size": cfg.data.batch_size,
        "eval_batch_size": cfg.data.eval_batch_size,
        "seed": cfg.seed,
        "optimizer": optimizer,
        "lr_scheduler_type": cfg.scheduler.name,
        "lr_scheduler_warmup_ratio": cfg.scheduler.warmup_ratio,
        "num_epochs": cfg.trainer.max_epochs,
        "max_grad_norm": cfg.trainer.get("gradient_clip_val"),
        "max_length": cfg.data.max_length,
        "devices": trainer.num_devices,
        "precision": str(trainer.precision),
    }


def write_artefacts(cfg: DictConfig, trainer: L.Trainer, model, datamodule, best: dict, output_dir: Path) -> None:
    """Exported model, model card, GLUE submission file; the card also goes to W&B when it is on."""
    export_dir = export_model(model.model, datamodule.tokenizer, output_dir / "model")
    for logger in trainer.loggers:
        logger.save()  # metrics.csv complete on disk before the card reads it
    name_or_path = str(cfg.model.name_or_path)
    card = write_text_atomically(output_dir / "README.md", model_card(
        name=f"{Path(name_or_path).name}-finetuned-sst2",
        overrides=" ".join(job_overrides()),
        base_model=name_or_path if not is_local_path(name_or_path) else Path(name_or_path).name,
        on_hub=not is_local_path(name_or_path),
        best=best,
        hyperparameters=card_hyperparameters(cfg, trainer),
        rows=evaluation_rows(output_dir / "metrics.csv"),
    ))
    log.info("Model card: %s; exported model: %s", card, export_dir)
    if cfg.get("predict_test") and datamodule.has_test_split:
        test = datamodule.load_raw()["test"]
        predictions = SentimentPredictor(export_dir, max_length=cfg.data.max_length).predict(test["sentence"])
        path = write_glue_submission(test["idx"], [p.label_id for p in predictions], output_dir / "SST-2.tsv")
        log.info("GLUE test-set predictions: %s", path)
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.save(str(card), base_path=str(output_dir), policy="now")


def train(cfg: DictConfig) -> float:
    """Fine-tune, re-score the best checkpoint on the dev set, write test predictions; return best dev accuracy."""
    validate_config(cfg)  # every config problem at once, before any download or training
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)
    torch.set_float32_matmul_precision(cfg.get("matmul_precision", "highest"))
    if needs_hub(cfg):
        go_offline_if_unreachable()  # no network: use the local cache, fail in seconds instead of retrying

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
        if trainer.is_global_zero:  # the model now holds the best checkpoint's weights
            best = {"accuracy": best_acc, "loss": float(scores["best_ckpt/val_loss"])}
            write_artefacts(cfg, trainer, model, datamodule, best, output_dir)

        log.info("Best checkpoint: %s", best_ckpt or "(none: final weights)")
        log.info("Best dev accuracy (val/acc): %.4f", best_acc)
        print(f"best val/acc = {best_acc:.4f}  ({best_ckpt or 'final weights'})")
        return best_acc
    finally:
        finish_wandb()  # also after a failure, so the next job of a sweep starts its own W&B run
