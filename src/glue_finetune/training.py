"""``train(cfg)``: the whole run, top to bottom. Plain function; ``src/train.py`` only wraps it in Hydra."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from glue_finetune.artefacts import (export_model, hardware_name, model_card, model_name, provenance,
                                     write_glue_submission)
from glue_finetune.config import (check_constructor_keys, cpu_precision, epoch_training_batches, job_overrides,
                                  preflight, validation_interval_past_an_epoch, whole_step_blockers)
from glue_finetune.errors import UserError
from glue_finetune.files import write_text_atomically
from glue_finetune.inference import Predictor, overflowed_in_bf16, positions_of
from glue_finetune.results import best_seen, evaluations, read_metrics
from glue_finetune.tasks import metric_direction
from glue_finetune.logs import route_lightning_logs_to_root, silence_known_library_warnings
from glue_finetune.model import parameter_groups
from glue_finetune.tracking import CSVLogger, RunTimes, finish_wandb

log = logging.getLogger(__name__)

STEP_GRAPH_PAD = 8  # batch lengths rounded up to a multiple of this when the step runs as CUDA graphs


def instantiate_all(group: DictConfig | None) -> list:
    """Instantiate every entry of a group such as ``callbacks`` or ``logger`` (a mapping of name → config)."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if isinstance(node, DictConfig) and "_target_" in node]


def run_callbacks(cfg: DictConfig) -> list:
    """The ``callbacks`` group's callbacks; a progress bar only where ``trainer.enable_progress_bar`` is on
    (Lightning refuses a progress bar callback it was told not to show)."""
    from lightning.pytorch.callbacks import ProgressBar

    callbacks = instantiate_all(cfg.get("callbacks"))
    if cfg.trainer.get("enable_progress_bar", True):
        return callbacks
    return [c for c in callbacks if not isinstance(c, ProgressBar)]


def with_csv_logger(loggers: list[Logger], output_dir: str, resume_step: int | None) -> list[Logger]:
    """Every run writes ``metrics.csv`` in its run dir: reports and model cards are built from it."""
    if not any(isinstance(lg, CSVLogger) for lg in loggers):
        loggers.append(CSVLogger(save_dir=output_dir, name="", version=""))
    for lg in loggers:
        if isinstance(lg, CSVLogger):
            lg.resume_step = resume_step
    return loggers


def instantiate_reporting(config: DictConfig, **kwargs):
    """Hydra's instantiate, with a UserError raised by the constructor (a model dir that is not one) passed on as
    itself, one message, rather than inside Hydra's "Error in call to target ..." wrapper."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(config, **kwargs)
    except InstantiationException as err:
        if isinstance(err.__cause__, UserError):
            raise err.__cause__ from None
        raise


def instantiate_trainer(config: DictConfig, **kwargs) -> L.Trainer:
    """``instantiate_reporting`` for the trainer: Lightning's refusal of a setting (a device that is not here, a
    strategy that does not go with the accelerator) is also one message naming the trainer's keys, not inside
    Hydra's "Error in call to target" wrapper."""
    from hydra.errors import InstantiationException
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        return instantiate_reporting(config, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if not isinstance(cause, (MisconfigurationException, ValueError, TypeError, RuntimeError)):
            raise
        reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise UserError(f"Lightning refused the trainer's settings (trainer.*): {reason.rstrip('.')}. Fix that "
                        f"trainer key (python src/train.py --cfg job shows them all).") from None


def refuse_a_tokenizer_larger_than_the_model(cfg: DictConfig, tokenizer, model) -> None:
    """Token ids past the model's embedding table fail deep inside the first forward ("index out of range in
    self"): a data.tokenizer other than the model's own (another model's vocabulary)."""
    vocab_size = model.model.config.vocab_size
    if tokenizer is not None and len(tokenizer) > vocab_size:
        raise UserError(f"The tokenizer ({cfg.data.tokenizer}) has {len(tokenizer):,} tokens and the model "
                        f"({cfg.model.name_or_path}) embeds {vocab_size:,}: its ids would index past the model's "
                        f"embeddings. Fix: data.tokenizer=<the model's own tokenizer> (by default data.tokenizer "
                        f"follows model.name_or_path: leave it unset).")


def refuse_a_max_length_past_the_models_positions(cfg: DictConfig, model) -> None:
    """A sentence longer than the model has positions for fails inside the forward ("index out of range in self",
    a device-side assert on a GPU) whenever one comes: the first long one in training, or in predictions later."""
    positions = positions_of(model.model)
    if positions is not None and cfg.data.max_length > positions:
        raise UserError(f"data.max_length={cfg.data.max_length}, but {cfg.model.name_or_path} has positions for "
                        f"{positions} tokens: a longer sentence would index past them. Fix: "
                        f"data.max_length={positions}.")


@contextlib.contextmanager
def ctrl_c_said_as_such(trainer: L.Trainer) -> Iterator[None]:
    """Lightning ends a fit or test interrupted by Ctrl-C with exit(1), as if it had failed, and leaves SIGINT
    ignored: here a KeyboardInterrupt, which the job reports with the command that continues the run (or starts it
    again) and exit 130. Also Ctrl-C twice, or once before the training steps (set-up, the sanity check), which
    the stop-on-signal callback (``stopped_at_once``) turns into an immediate stop."""
    try:
        yield
    except SystemExit as stop:
        at_once = any(getattr(callback, "stopped_at_once", False) for callback in trainer.callbacks)
        if stop.code == 1 and (trainer.interrupted or at_once):
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the rest of the run's stop needs it back
            raise KeyboardInterrupt from None
        raise


def refuse_other_training_data(cfg: DictConfig, datamodule) -> None:
    """A run continues on the training set it started with: data.local_dir may change (a moved folder), its
    train file may not. Other data would go on in the schedule and epoch of the first, silently."""
    checkpoint = torch.load(cfg.ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    saved = (checkpoint.get(type(datamodule).__qualname__) or {}).get("train_digest")
    now = datamodule.source_digests.get("train")
    if saved and now and saved != now:
        raise UserError(f"The run in {cfg.paths.output_dir} trained on another train file than "
                        f"{datamodule.spec.path(Path(str(datamodule.local_dir)), 'train')} (its content differs: "
                        f"{saved} then, {now} now). A run continues on the data it started with: point "
                        "data.local_dir at that copy, or start a new run (another hydra.run.dir) on this one.")


def say_if_training_ended_early(trainer: L.Trainer, output_dir: Path) -> None:
    """A run whose training ended before its schedule did (trainer.max_time, a callback such as EarlyStopping) is
    finished, and resume=true keeps it as it is: say so, and how to train on."""
    planned = trainer.estimated_stepping_batches
    if not trainer.is_global_zero or trainer.global_step >= planned:
        return
    timer = next((c for c in trainer.callbacks if isinstance(c, L.pytorch.callbacks.Timer)), None)
    timed_out = timer is not None and timer._duration and timer.time_elapsed("train") >= timer._duration
    why = (f"trainer.max_time ({timer._duration:.0f} s of training) was reached" if timed_out
           else "a callback stopped it (early stopping, say)")
    more = " without trainer.max_time, or a longer one," if timed_out else ""
    log.warning("Training ended at step %d of the %d its schedule plans: %s. The results below come from these "
                "steps, and the run counts as finished (resume=true keeps it). To train on: the same command%s with "
                "ckpt_path=%s hydra.run.dir=<a new dir>.", trainer.global_step, planned, why, more,
                output_dir / "checkpoints" / "last.ckpt")


def own_checkpoint(cfg: DictConfig) -> bool:
    """Whether ``ckpt_path`` is one of this run's own checkpoints (a run continued in its dir), not another run's."""
    return Path(str(cfg.ckpt_path)).resolve().parent == (Path(cfg.paths.output_dir) / "checkpoints").resolve()


def checkpoint_step(ckpt_path: str | None, cfg: DictConfig) -> int | None:
    """The optimizer step a Lightning checkpoint was saved at; read before any work, so that a file that is not
    one (cut short, another kind of file), or one of another task or base model than ``cfg``'s, is one message
    rather than a traceback once data and model are loaded (or, for a head of the same shape, a run that trains
    nothing and reports the other run's checkpoint as its result)."""
    if not ckpt_path:
        return None
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        step = int(checkpoint["global_step"])
    except Exception as err:  # pickle, zip, mmap and key errors alike
        raise UserError(f"{ckpt_path}: not a readable Lightning checkpoint ({type(err).__name__}: "
                        f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}). Continue from another "
                        "one (ckpt_path=<run dir>/checkpoints/best-step<N>.ckpt), or start a new run in another "
                        "dir.") from err
    saved = checkpoint.get("hyper_parameters") or {}
    if saved.get("task") and saved.get("name_or_path"):
        # The base model by its name: a local model dir may move between the two runs.
        theirs = (saved["task"], Path(str(saved["name_or_path"]).rstrip("/")).name)
        ours = (str(cfg.data.task), Path(str(cfg.model.name_or_path).rstrip("/")).name)
        if theirs != ours:
            # Named for people: the Hub id a local copy records (model=minilm's dir is called "model"), else the path.
            their_model = saved.get("hub_id") or saved["name_or_path"]
            our_model = cfg.model.get("hub_id") or cfg.model.name_or_path
            raise UserError(f"ckpt_path={ckpt_path} is a checkpoint of task {theirs[0]} with {their_model}; this "
                            f"run is task {ours[0]} with {our_model}. Continue from a checkpoint of this task and "
                            f"model, or give the settings its run had: data={theirs[0]} model.name_or_path={saved['name_or_path']}.")
    if states := checkpoint.get("optimizer_states"):
        if problem := optimizer_state_problem(states[0].get("param_groups") or [], cfg):
            raise UserError(f"ckpt_path={ckpt_path}: {problem}. A checkpoint continues with its optimizer's state "
                            "(its moments); to start from its weights alone, export them first (a finished run's "
                            "model/ dir) and give that dir as model.name_or_path.")
    return step


def optimizer_state_problem(saved_groups: list[dict], cfg: DictConfig) -> str | None:
    """Why a checkpoint's optimizer state cannot go into the optimizer this config builds (Lightning would fail
    with a KeyError or ValueError once data and model are loaded): another optimizer (its settings lack this one's,
    SGD's momentum after AdamW), or another number of parameter groups (weight decay on or off)."""
    from glue_finetune.config import constructor_parameters

    target = str(cfg.optimizer._target_)
    groups = len(parameter_groups([], cfg.optimizer.get("weight_decay")))  # as TextClassifier's optimizer has them
    if len(saved_groups) != groups:
        return (f"its optimizer state has {len(saved_groups)} parameter group(s), this config's optimizer "
                f"{groups} ({'weight decay on weights, none on biases and LayerNorm' if groups == 2 else 'no weight decay'}"
                f"): continue it with {'optimizer.weight_decay=0.0' if groups == 2 else 'the optimizer.weight_decay (> 0) its run had'}")
    try:
        expected = set(constructor_parameters(target) or {}) - {"params"}
    except Exception:  # cannot be imported: the config check names it
        return None
    # The settings that tell the kinds apart; not every setting (another torch adds some, fused, ...; Adam and AdamW
    # differ by one, decoupled_weight_decay, which this run's config then sets, and says).
    if missing := sorted((expected - set(saved_groups[0])) & {"betas", "eps", "momentum", "dampening", "nesterov"}):
        return (f"it was trained with another optimizer than {target.rsplit('.', 1)[-1]} (its state has no "
                f"{', '.join(missing)}): continue it with the optimizer its run had (optimizer=adamw, adam or sgd)")
    return None


def card_hyperparameters(cfg: DictConfig, trainer: L.Trainer, final_weights_because: str | None = None,
                         trained_on_part: bool = False) -> dict:
    """The run's hyperparameters under the names Hugging Face's model cards use. ``final_weights_because``: as
    ``write_artefacts``'s; ``trained_on_part``: whether ``data.max_train_samples`` left training examples out."""
    opt = cfg.optimizer
    optimizer = opt._target_.rsplit(".", 1)[-1]
    if "betas" in opt:
        optimizer += f" with betas=({opt.betas[0]},{opt.betas[1]}) and epsilon={opt.eps}"
    optimizer += f", weight_decay={opt.get('weight_decay', 0.0)}"
    return {
        "learning_rate": opt.lr,
        "train_batch_size": cfg.data.batch_size,
        # as Hugging Face's cards give it, where several processes or accumulation make a step's batch larger
        **({"total_train_batch_size": total} if (total := total_train_batch_size(cfg, trainer)) != cfg.data.batch_size
           else {}),
        "eval_batch_size": cfg.data.eval_batch_size,
        "seed": cfg.seed,
        "optimizer": optimizer,
        "lr_scheduler_type": cfg.scheduler.name,
        "lr_scheduler_warmup_ratio": cfg.scheduler.warmup_ratio,
        "num_epochs": cfg.trainer.max_epochs,
        "training_steps": trainer.global_step,  # what was trained (a step limit or a debug preset stops sooner)
        **({"max_train_samples": cfg.data.max_train_samples} if trained_on_part else {}),
        "max_grad_norm": cfg.trainer.get("gradient_clip_val"),
        "max_length": cfg.data.max_length,
        "devices": trainer.num_devices,
        "precision": str(trainer.precision),
        "checkpoint_selection": f"none (the final weights: {final_weights_because})" if final_weights_because
                                else selection_text(cfg.selection.metric),
    }


def use_only_allocated_cpus() -> None:
    """A SLURM job gets cpus_per_task cores; where SLURM does not also pin it to them (TaskPlugin without
    affinity or cgroups), torch starts a thread per core of the node, and jobs sharing the node spin against each
    other (two 1-CPU tiny-model jobs on a 2-core node: 3 steps/s each instead of ~50). Ray sets OMP_NUM_THREADS."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if cpus.isdigit() and 0 < int(cpus) < torch.get_num_threads():
        torch.set_num_threads(int(cpus))


def out_of_gpu_memory(err: Exception, trainer: L.Trainer, cfg: DictConfig) -> UserError:
    """One message for running out of GPU memory: where, and what to lower. last.ckpt holds the last validation."""
    fix = (f"lower data.batch_size={cfg.data.batch_size} (with trainer.accumulate_grad_batches to keep the batch) "
           f"or data.max_length={cfg.data.max_length}")
    share = os.environ.get("GLUE_FINETUNE_JOBS_PER_GPU", "1")  # set by the parallel/ray_cluster launchers
    if share != "1":
        fix = (f"this job shares its GPU with others (hydra.launcher.ray.remote.jobs_per_gpu={share}): run fewer "
               f"jobs per GPU, or {fix}")
    return UserError(f"Out of GPU memory at step {trainer.global_step} on {trainer.strategy.root_device} "
                     f"({str(err).strip().splitlines()[0][:200]}). Fix: {fix}.")


def trainer_plugins(trainer_cfg: DictConfig, on_gpu: bool) -> dict:
    """The Trainer's plugins where they differ from the config's: on a GPU with none configured, checkpoints are
    copied on the GPU and written to disk by a background thread (BackgroundCheckpointIO: the documented run
    writes a 1.3 GB last.ckpt at each of its 84 validations, seconds each if written in line). Inside a SLURM job,
    Lightning's SLURM environment with its auto-requeue off is added (Lightning would otherwise save its own
    hpc_ckpt_*.ckpt and requeue on SIGUSR1; LatestCheckpoint does both, checkpointing.py)."""
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from glue_finetune.checkpointing import AtomicCheckpointIO, BackgroundCheckpointIO

    in_slurm = SLURMEnvironment.detect()
    configured = trainer_cfg.get("plugins")
    if configured and not in_slurm:
        return {}
    plugins = instantiate(configured, _convert_="all") if configured else []
    if not configured:  # checkpoints renamed into place from their own dir (AtomicCheckpointIO), on a GPU in the background
        plugins.append(BackgroundCheckpointIO() if on_gpu else AtomicCheckpointIO())
    if in_slurm:
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return {"plugins": plugins}


def uses_gpu(cfg: DictConfig) -> bool:
    return str(cfg.trainer.get("accelerator")) in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def data_settings_for(cfg: DictConfig, whole_step: bool, on_gpu: bool) -> dict:
    """What the DataModule's config leaves to the run: how batches reach the device that trains."""
    settings = {}
    if whole_step:  # the training set on the training device, a batch gathered from its row numbers
        settings["resident_batches"] = True
    if whole_step and on_gpu and cfg.data.get("pad_to_multiple_of") is None:
        settings["pad_to_multiple_of"] = STEP_GRAPH_PAD  # a few batch shapes, one CUDA graph each
    return settings


def whole_step_setting(cfg: DictConfig) -> bool:
    """Whether the training step runs as one whole step (model.whole_step). ``auto``: on one GPU, when nothing
    rules it out; ``true`` where something does is a config error (``validate_config``), or, for an optimizer that
    cannot run inside a CUDA graph, an error here, before any data or model is loaded."""
    setting = cfg.model.get("whole_step", False)
    blockers = whole_step_blockers(cfg)
    on_gpu = uses_gpu(cfg)
    if on_gpu and not optimizer_is_capturable(cfg.optimizer):
        reason = f"optimizer {cfg.optimizer._target_} cannot run inside a CUDA graph (Adam and AdamW can)"
        if setting is True:
            raise UserError(f"model.whole_step=true: {reason}. Fix: optimizer=adamw, or model.whole_step=false.")
        blockers.append(reason)
    if setting == "auto":  # with model.compile, only when asked for: compiled kernels inside its graphs
        return on_gpu and not blockers and not cfg.model.get("compile")
    return setting is True


def optimizer_is_capturable(optimizer_cfg: DictConfig) -> bool:
    import inspect

    from hydra.utils import get_class

    return "capturable" in inspect.signature(get_class(optimizer_cfg._target_)).parameters


def total_train_batch_size(cfg: DictConfig, trainer: L.Trainer) -> int:
    """The examples of one optimizer step: the batch of each process, times the processes, times the batches
    accumulated."""
    return cfg.data.batch_size * trainer.world_size * (cfg.trainer.get("accumulate_grad_batches") or 1)


def record_hparams(cfg: DictConfig, trainer: L.Trainer, output_dir: Path) -> None:
    """The whole config, resolved, as every logger's hyperparameters (hparams.yaml, W&B's config)."""
    hparams = OmegaConf.to_container(cfg, resolve=True)
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)
    if cfg.trainer.get("fast_dev_run"):  # Lightning turns the loggers off: the record resume=true checks against
        from lightning.pytorch.core.saving import save_hparams_to_yaml

        save_hparams_to_yaml(output_dir / "hparams.yaml", hparams)


def describe_run(cfg: DictConfig, trainer: L.Trainer, model, datamodule, output_dir: Path, whole_step: bool = False,
                 on_gpu: bool = False) -> None:
    """One line saying what is about to run (in place of Lightning's device lines and model summary), and how the
    training step runs."""
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    spec, splits = datamodule.spec, datamodule.splits
    dev = " + ".join(f"{len(splits[s]):,}" for s in spec.dev_splits)
    selection = ("the final weights kept (selection.metric=last)" if cfg.selection.metric == "last" else
                 f"checkpoint selected by {selection_text(cfg.selection.metric)}")
    length = f"{cfg.trainer.max_epochs} epoch(s)"
    if (max_steps := cfg.trainer.get("max_steps")) is not None and max_steps > 0:
        length += f" or {max_steps:,} steps (trainer.max_steps), whichever ends first,"
    batch = f"{cfg.data.batch_size}"
    if (total := total_train_batch_size(cfg, trainer)) != cfg.data.batch_size:
        accumulate = cfg.trainer.get("accumulate_grad_batches") or 1
        batch += "".join([f" per process × {trainer.world_size} processes" if trainer.world_size > 1 else "",
                          f" × {accumulate} accumulated" if accumulate > 1 else "", f" ({total} a step)"])
    log.info("Fine-tuning %s (%.1f M parameters) on %s: %s training / %s dev examples, %s of batch %s, "
             "on %s in %s; %s. Run dir: %s", base_model_name(cfg)[0], parameters, spec.glue_name,
             f"{len(splits['train']):,}", dev, length, batch,
             trainer.strategy.root_device, trainer.precision, selection, output_dir)
    if whole_step:
        log.info("Training step: forward, backward, clipping and %s in one method%s (model.whole_step).",
                 cfg.optimizer._target_.rsplit(".", 1)[-1],
                 f", one CUDA graph per batch shape (lengths padded to multiples of {datamodule.pad_to_multiple_of})"
                 if on_gpu else "")
    if limits := debug_limits(cfg.trainer):
        log.info("Debug limits: %s.", "; ".join(limits))
    if (cfg.trainer.get("accelerator") == "auto" and trainer.strategy.root_device.type == "cpu"
            and str(trainer.precision) == "32-true" and cpu_precision() != "32-true"):
        log.info("This CPU computes bf16 natively: trainer=cpu trains in bf16 mixed precision, 1.3-1.6x faster.")


def debug_limits(trainer_cfg: DictConfig) -> list[str]:
    """The Trainer's debugging limits a config sets (debug=limit, fast_dev_run, overfit), in words for the run's
    first lines: its example counts are the data's, not what these let through."""
    limits = []
    if fast := trainer_cfg.get("fast_dev_run"):
        limits.append(f"trainer.fast_dev_run={fast}: {1 if fast is True else fast} training and dev batch(es), no "
                      "checkpoint selection, no loggers")
    if overfit := trainer_cfg.get("overfit_batches"):
        limits.append(f"trainer.overfit_batches={overfit}: the same training batches every epoch, as many dev batches")
    for key, what in (("limit_train_batches", "training batches per epoch"), ("limit_val_batches", "dev batches per "
                      "validation"), ("limit_test_batches", "dev batches when scoring the selected checkpoint")):
        value = trainer_cfg.get(key)
        if value is not None and not (isinstance(value, float) and value == 1.0):  # the int 1 is one batch
            limits.append(f"trainer.{key}={value} ({value if isinstance(value, int) else f'{value:.0%} of the'} "
                          f"{what})")
    return limits


def training_batches_per_epoch(cfg: DictConfig, trainer: L.Trainer, datamodule) -> int:
    """An epoch's training batches on each process, as Lightning counts them: debug=limit's slice of each epoch,
    debug=overfit's batches."""
    return epoch_training_batches(cfg.trainer, len(datamodule.splits["train"]), datamodule.batch_size,
                                  trainer.world_size)


def refuse_a_validation_interval_past_an_epoch(cfg: DictConfig, trainer: L.Trainer, datamodule) -> None:
    """``config.validation_interval_past_an_epoch``, said once the training set's size is known, before the model
    loads (a sweep's check says it before its first job, where the data is local)."""
    if problem := validation_interval_past_an_epoch(cfg.trainer, training_batches_per_epoch(cfg, trainer, datamodule)):
        raise UserError(problem)


def warn_of_a_run_too_short_to_validate(cfg: DictConfig, trainer: L.Trainer, datamodule,
                                        resume_step: int | None = None) -> None:
    """A run shorter than its validation interval validates nothing during training (and keeps its final weights),
    one shorter than its logging interval logs no train/loss: the documented run's 500 steps applied to a small
    task (WNLI: 400 steps in 10 epochs of batch 16). Said before training, with the interval that validates once
    per epoch. Lightning's own warning on this (training batches fewer than log_every_n_steps) is silenced: it
    counts one epoch, while this project's logging and validation intervals count steps across epochs. A run that
    continues from a checkpoint at or past its last step is told instead that nothing is left to train."""
    if cfg.trainer.get("fast_dev_run"):  # one batch of each, validated whatever the intervals
        return
    interval = cfg.trainer.get("val_check_interval")
    by_steps = cfg.trainer.get("check_val_every_n_epoch") is None and isinstance(interval, int)  # else per epoch
    accumulate = cfg.trainer.get("accumulate_grad_batches") or 1
    epoch_batches = training_batches_per_epoch(cfg, trainer, datamodule)
    per_epoch = max(1, -(-epoch_batches // accumulate))  # optimizer steps: an epoch's last window may be short
    steps, batches = per_epoch * cfg.trainer.max_epochs, epoch_batches * cfg.trainer.max_epochs
    if (max_steps := cfg.trainer.get("max_steps") or -1) > 0 and max_steps < steps:
        steps = max_steps
        batches = max_steps // per_epoch * epoch_batches + min(max_steps % per_epoch * accumulate, epoch_batches)
    misses, fixes = [], {}
    every = min(per_epoch, steps)  # once per epoch; once, at its end, for a run shorter than an epoch (max_steps)
    # Lightning counts val_check_interval in training batches, log_every_n_steps in optimizer steps: the two differ
    # by accumulate_grad_batches.
    if by_steps and batches < interval:
        misses.append(f"validates nothing during training (trainer.val_check_interval={interval} training batches: "
                      "no checkpoint to select, the final weights are kept)")
        fixes["validate"] = f"trainer.val_check_interval={min(epoch_batches, batches)}"
    if steps < (log_every := cfg.trainer.get("log_every_n_steps") or 50):
        misses.append(f"logs no train/loss (trainer.log_every_n_steps={log_every})")
        fixes["log"] = f"trainer.log_every_n_steps={every}"
    if resume_step is not None and resume_step >= steps:
        if own_checkpoint(cfg):  # stopped after training (while scoring or exporting): what is left follows
            log.info("Training had finished at step %d: scoring and export follow.", resume_step)
        else:
            log.warning("The checkpoint this run continues from is at step %d, and this run ends at step %d: nothing "
                        "is left to train, its weights are scored as they are. To train on: a larger "
                        "trainer.max_epochs (or +trainer.max_steps).", resume_step, steps)
        return
    if misses:
        # experiment=glue (validation at each epoch's end) only where validation counts steps, i.e. not already on
        # ... and where the run is epochs long: one cut short by trainer.max_steps would not reach an epoch's end
        recipe = (" (or experiment=glue: run_glue.py's recipe for each task)"
                  if "validate" in fixes and steps == per_epoch * cfg.trainer.max_epochs else "")
        log.warning("This run takes %d training steps (%d per epoch): it %s. To %s %s: %s%s.", steps, per_epoch,
                    " and ".join(misses), " and ".join(fixes), "once per epoch" if every == per_epoch else
                    "at its end", " ".join(fixes.values()), recipe)


def selection_text(metric: str) -> str:
    if metric == "last":
        return "none (the final weights)"
    return f"{'lowest' if metric_direction(metric) == 'min' else 'highest'} {metric}"


def base_model_name(cfg: DictConfig) -> tuple[str, bool]:
    """The base model's name for people, and whether it is a Hub id (only those belong in a card's metadata)."""
    return model_name(str(cfg.model.name_or_path), cfg.model.get("hub_id"))


def score_selected_checkpoint(trainer: L.Trainer, model, datamodule,
                              selection: str) -> tuple[dict, str, str | None]:
    """The selected checkpoint's loss and metrics on every dev set (``val/loss``, ``val/acc``, ...), logged as
    ``selected/...``, its path, and why the final weights were scored instead where ``selection`` named a
    checkpoint to select but none could be (None otherwise); the model holds the scored weights afterwards.

    When the selected checkpoint holds the weights already in memory (the last validation was the best one, or
    the final weights are kept and were validated at the last step) its scores are the ones that validation just
    computed: reused, not computed again. Otherwise the checkpoint (or the final weights) is scored.
    """
    # Under DDP, rank 0 writes the checkpoints: every rank reads the selected one only once every rank is here.
    trainer.strategy.barrier("score_selected_checkpoint")
    final_weights_because = None
    if selection == "last":
        last_ckpt = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt" if trainer.checkpoint_callback else None
        path = str(last_ckpt) if last_ckpt and last_ckpt.exists() else ""  # its weights are those in memory
        in_memory = True
    else:
        path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if path and Path(path).parent != Path(trainer.checkpoint_callback.dirpath):
            # Another run's, which Lightning carries over from a ckpt_path of that run until this run validates:
            # a run selects among its own checkpoints.
            path = ""
        # Deleted since (to free disk space, or lost in a crash). Rank 0's answer, under DDP: every rank scores the
        # same weights.
        gone = trainer.strategy.broadcast(bool(path) and not Path(path).is_file())
        if gone:
            log.warning("The selected checkpoint %s is gone: scoring the final weights instead.", path)
            final_weights_because = f"the selected checkpoint, {Path(path).name}, was deleted before the run scored it"
            path = ""
        # Memory-mapped: only the weights are read (as they are copied into the model), not the optimizer's state
        # that makes up two thirds of a checkpoint with Adam. weights_only: tensors and plain values only.
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True) if path else None
        in_memory = saved is None or saved["global_step"] == trainer.global_step
        if not path and not gone and trainer.fast_dev_run:  # it validates once, and saves no checkpoints by design
            final_weights_because = "trainer.fast_dev_run saves no checkpoints, so none was selected"
        elif not path and not gone:
            final_weights_because = "no validation ran during training, so no checkpoint was selected"
            log.warning("No checkpoint was selected (no validation ran during training): scoring the final weights "
                        "instead.")
        elif not in_memory:
            model.load_state_dict(saved["state_dict"])
        del saved
    last = model.last_validation
    # Reused only where scoring would see the same dev batches: with +trainer.limit_val_batches alone, validation
    # saw a slice and scoring sees the whole dev set (whichever validation was selected).
    same_batches = trainer.limit_val_batches == trainer.limit_test_batches and not trainer.overfit_batches
    if in_memory and last and last["step"] == trainer.global_step and same_batches:
        scores = {name: value for name, value in last.items() if name != "step"}
        for logger in trainer.loggers:
            logger.log_metrics({**{f"selected/{k}": v for k, v in scores.items()}, "epoch": model.position()["epoch"]},
                               step=trainer.global_step)
    else:  # the model holds the selected weights: score them on every dev set
        with ctrl_c_said_as_such(trainer):
            tested = trainer.test(model, datamodule=datamodule, verbose=False)
        scores = {k.removeprefix("selected/"): float(v) for result in tested for k, v in result.items()
                  if k.startswith("selected/")}  # not the row's step and epoch
    return scores, path, final_weights_because


def say_what_the_scores_cover(cfg: DictConfig, trainer: L.Trainer, datamodule, validated: bool,
                              final_weights_because: str | None) -> tuple[str | None, str | None]:
    """(how much of the dev sets the final scores cover, how much the validations during training covered where
    that differs), each None for all of it, said as warnings: a debug limit's scores are a check of the pipeline,
    not a result. ``validated``: whether any validation ran during training."""
    scored = dev_examples_scored(trainer, datamodule)
    validated_on = dev_examples_scored(trainer, datamodule, during_training=True)
    if validated_on and validated_on != scored and validated and not final_weights_because:
        log.warning("The validations during training scored %s only (the trainer's limit_val_batches)%s. The scores "
                    "below cover %s; the model card says which is which.", validated_on,
                    "" if cfg.selection.metric == "last" else ": the checkpoint was selected on them",
                    scored or "the whole dev set")
    else:
        validated_on = None
    if scored:
        log.warning("The scores below cover %s (the trainer's limit_val_batches, limit_test_batches, overfit_batches "
                    "or fast_dev_run): a check of the pipeline, not a result. The model card says so.", scored)
    return scored, validated_on


def dev_examples_scored(trainer: L.Trainer, datamodule, during_training: bool = False) -> str | None:
    """How much of the dev set the selected checkpoint's scores cover when it is not all of it ("160 of 872 dev
    examples": debug=limit, debug=fast_dev_run, trainer.limit_val_batches); None when they cover every example.
    ``during_training``: how much the validations during training covered, which selected the checkpoint."""
    # trainer.test ran where the last validation's scores could not be reused (score_selected_checkpoint)
    batches = trainer.num_val_batches if during_training else trainer.num_test_batches or trainer.num_val_batches
    sizes = [len(datamodule.splits[split]) for split in datamodule.spec.dev_splits]
    # every batch but a loader's last is full; under DDP each rank scores its share of the batches
    scored = [min(size, int(n) * datamodule.eval_batch_size * trainer.world_size) for size, n in zip(sizes, batches)]
    if not batches or scored == sizes:
        return None
    return f"{' + '.join(f'{n:,}' for n in scored)} of {' + '.join(f'{n:,}' for n in sizes)} dev examples"


def write_artefacts(cfg: DictConfig, trainer: L.Trainer, model, datamodule, selected: dict,
                    output_dir: Path, scored: str | None = None,
                    final_weights_because: str | None = None, validated_on: str | None = None) -> list[Path]:
    """Exported model with its model card, GLUE submission file(s); the card also goes to W&B when it is on.
    ``final_weights_because``: why the final weights were scored where selection.metric named a checkpoint to
    select (none was saved; it was deleted). Returns the submission files written."""
    spec = datamodule.spec
    export_dir = export_model(model.model, datamodule.tokenizer, output_dir / "model", pairs=len(spec.text) == 2)
    for logger in trainer.loggers:
        logger.save()  # metrics.csv complete on disk before the card reads it
    rows = read_metrics(output_dir / "metrics.csv")
    base_model, on_hub = base_model_name(cfg)
    card = model_card(
        name=f"{base_model.rsplit('/', 1)[-1]}-finetuned-{spec.name}",
        overrides=" ".join(job_overrides() or []),
        base_model=base_model,
        on_hub=on_hub,
        spec=spec,
        selected=selected,
        selection=cfg.selection.metric,
        final_weights_because=final_weights_because,
        train_examples=len(datamodule.splits["train"]) if datamodule.trained_on_part else None,
        best=best_seen(rows, spec.logged_metrics, metric_direction),
        hyperparameters=card_hyperparameters(cfg, trainer, final_weights_because, datamodule.trained_on_part),
        rows=evaluations(rows),
        scored=scored,
        validated_on=validated_on,
        provenance_lines=provenance(datamodule.source_digests, hardware_name(trainer.strategy.root_device)),
    )
    # In the run dir for people, and in model/ so that the exported dir is a complete Hub model repo.
    for path in (output_dir / "README.md", export_dir / "README.md"):
        write_text_atomically(path, card)
    written = []
    if cfg.get("predict_test"):
        for test_spec, file_name, rows_to_predict in datamodule.test_sets():
            # The weights in memory are the exported ones; the same batching and precision as validation.
            predictor = Predictor(model.model, datamodule.tokenizer, max_length=cfg.data.max_length, task=test_spec,
                                  device=str(trainer.strategy.root_device),
                                  precision="bf16" if "bf16" in str(trainer.precision) else "32")
            encoded = {k: list(rows_to_predict[k]) for k in ("input_ids", "token_type_ids")
                       if k in rows_to_predict.column_names}
            written.append(write_glue_submission(list(rows_to_predict["idx"]), predictor.predict_encoded(encoded),
                                                 test_spec, output_dir / file_name))
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            save_to_wandb_run(logger, output_dir / "README.md")
    return written


def save_to_wandb_run(logger: WandbLogger, path: Path) -> None:
    """A copy in the W&B run's files dir, which W&B uploads when the run ends (``run.save`` would symlink it and
    print a warning about doing so)."""
    run_dir = getattr(logger.experiment, "dir", None)
    if run_dir:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(run_dir) / path.name)


def log_times(times: RunTimes, trainer: L.Trainer) -> None:
    """Where the run's time went: one line, and ``time/*`` on every logger's last row (W&B's run summary)."""
    summary = times.summary()
    log.info("%s", times.describe(summary))
    for logger in trainer.loggers:
        logger.log_metrics(summary, step=trainer.global_step)
        logger.save()


def train(cfg: DictConfig) -> float:
    """Fine-tune, score the selected checkpoint on every dev set, write the artefacts; return the task's main
    metric (val/acc, val/mcc, ...) of that checkpoint: what sweepers optimise."""
    times = RunTimes()  # from the process's (or sweep job's) start
    preflight(cfg)  # every config problem at once, and the network, before any download or training
    check_constructor_keys(cfg)  # a key added with a typo (+trainer.max_step=10), before the data and model load
    silence_known_library_warnings(resuming=bool(cfg.get("ckpt_path")))
    route_lightning_logs_to_root()
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    use_only_allocated_cpus()

    resume_step = checkpoint_step(cfg.get("ckpt_path"), cfg)
    if resume_step is not None:
        log.info("Continuing from step %d: %s", resume_step, cfg.ckpt_path)
    failure, trained = None, False
    try:
        whole_step = whole_step_setting(cfg)
        on_gpu = uses_gpu(cfg)
        # The whole step clips the gradients itself (Lightning refuses to clip under manual optimization): the
        # norm goes to the model, not the trainer.
        max_grad_norm = cfg.trainer.get("gradient_clip_val") if whole_step else None
        # The trainer first: a setting Lightning refuses (trainer.accelerator=mps on a machine without) fails in a
        # second, not after tokenizing and loading the model.
        trainer = instantiate_trainer(
            cfg.trainer,
            **trainer_plugins(cfg.trainer, on_gpu),
            **({"gradient_clip_val": None} if whole_step else {}),
            callbacks=[*run_callbacks(cfg), times],
            logger=with_csv_logger(instantiate_all(cfg.get("logger")), str(output_dir), resume_step),
        )
        # _convert_="all": plain lists and dicts, so checkpoints hold no OmegaConf objects (weights_only loads).
        datamodule: L.LightningDataModule = instantiate_reporting(
            cfg.data, **data_settings_for(cfg, whole_step, on_gpu), _convert_="all")
        datamodule.prepare_data()  # fetch, check and tokenize now, so bad data fails before the model downloads
        refuse_a_validation_interval_past_an_epoch(cfg, trainer, datamodule)
        if resume_step is not None and own_checkpoint(cfg):
            refuse_other_training_data(cfg, datamodule)
        model: L.LightningModule = instantiate_reporting(
            cfg.model, optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler),
            whole_step=whole_step, max_grad_norm=max_grad_norm, _convert_="all"
        )
        model.continues_another_run = resume_step is not None and not own_checkpoint(cfg)
        refuse_a_tokenizer_larger_than_the_model(cfg, datamodule.tokenizer, model)
        refuse_a_max_length_past_the_models_positions(cfg, model)
        record_hparams(cfg, trainer, output_dir)
        describe_run(cfg, trainer, model, datamodule, output_dir, whole_step, on_gpu)
        warn_of_a_run_too_short_to_validate(cfg, trainer, datamodule, resume_step)

        try:
            with ctrl_c_said_as_such(trainer):
                trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        except torch.OutOfMemoryError as err:
            raise out_of_gpu_memory(err, trainer, cfg) from None
        except RuntimeError as err:  # trainer=cpu (on CPUs with native bf16) and trainer=gpu train in bf16
            overflow = overflowed_in_bf16(err, model.model, "trainer.precision=32-true",
                                          f" (trainer.precision={trainer.precision})")
            if overflow is None or "bf16" not in str(trainer.precision):
                raise
            raise overflow from None
        finally:  # a failed fit skips on_train_end: the graphs' memory pools go now, not when the failure's
            model.step_graphs = model.eval_graphs = None  # traceback is collected (a sweep's next job needs them)
        times.end_fit()
        trained = True
        say_if_training_ended_early(trainer, output_dir)

        with times.phase("scoring"):
            selected, selected_path, final_weights_because = score_selected_checkpoint(
                trainer, model, datamodule, cfg.selection.metric)
        scored, validated_on = say_what_the_scores_cover(cfg, trainer, datamodule, bool(times.validation_times),
                                                         final_weights_because)
        main = datamodule.spec.main_metric
        if trainer.is_global_zero:  # the model now holds the selected checkpoint's weights
            with times.phase("artefacts"):
                written = write_artefacts(cfg, trainer, model, datamodule, selected, output_dir, scored,
                                          final_weights_because, validated_on)
            log.info("Exported model and model card: %s; %s", output_dir / "model",
                     "GLUE submission files: " + ", ".join(str(p) for p in written) if written
                     else "no submission files")
            log_times(times, trainer)
            others = ", ".join(f"{k} = {v:.4f}" for k, v in selected.items() if k != main)
            print(f"result: {main} = {selected[main]:.4f}, {others}  (selected: {selected_path or 'final weights'}"
                  f"{'; on ' + scored + ' only' if scored else ''})")
        return selected[main]
    except BaseException as err:
        failure = err
        with contextlib.suppress(AttributeError, TypeError):  # the job says what is intact and how to finish
            err.after_training = trained
        raise
    finally:
        finish_wandb(failure)  # also after a failure (marked failed), so the next sweep job starts its own W&B run
