"""The LightningModule: a Hugging Face sequence classifier (or regressor), its loss and metrics, its optimisation."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MinMetric
from transformers import AutoConfig, AutoModelForSequenceClassification

from glue_finetune.errors import TrainingDivergedError, UserError
from glue_finetune.hub import fetching
from glue_finetune.logs import quiet_transformers
from glue_finetune.metrics import predictions, task_metrics
from glue_finetune.step_graphs import CapturedSteps
from glue_finetune.tasks import TASKS, TaskSpec, metric_direction, metric_prefix

log = logging.getLogger(__name__)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def head_config(name_or_path: str | Path, spec: TaskSpec):
    """The model's config with the head a task needs: its labels (one output for a regression task, which makes
    the model's loss mean squared error and ``pipeline()`` return the raw score), and the task's name, which
    exported models keep (``finetuning_task``) so that prediction knows what they take."""
    config = AutoConfig.from_pretrained(
        name_or_path, num_labels=spec.num_labels, id2label=spec.id2label,
        label2id={name: i for i, name in spec.id2label.items()},
        problem_type="regression" if spec.is_regression else "single_label_classification")
    config.finetuning_task = spec.name  # not a constructor argument of transformers 5's configs: set it
    return config


def parameter_groups(params: list[torch.nn.Parameter], weight_decay: float | None) -> list[dict]:
    """The optimizer's parameter groups. With weight decay, none on biases and LayerNorm weights (the 1-D
    tensors), as in BERT and Hugging Face's Trainer: two groups."""
    if not weight_decay:
        return [{"params": params}]
    return [{"name": "decay", "params": [p for p in params if p.ndim >= 2]},
            {"name": "no_decay", "params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


class TextClassifier(L.LightningModule):
    """``AutoModelForSequenceClassification`` fine-tuned on one GLUE task and scored by its metrics.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``): the optimizer gets the parameter
    groups, the scheduler gets the optimizer and the number of optimizer steps of the whole run. ``task`` names
    the task table's entry (labels, metrics, dev sets). ``hub_id`` names the Hub model that a local
    ``name_or_path`` holds (kept in checkpoints; the model card cites it). Every argument comes from
    ``conf/model/*.yaml``.

    ``whole_step``: one method, ``train_step``, runs the whole optimizer step (forward, backward, clipping the
    gradients' norm to ``max_grad_norm``, the optimizer update) under Lightning's manual optimization, and on a
    GPU each batch shape's step is replayed as one CUDA graph (``step_graphs.py``). False: Lightning's automatic
    optimization runs the step, clipping with the Trainer's ``gradient_clip_val``. ``train()`` decides
    (``model.whole_step: auto``: on for one GPU); both train the same weights from the same batches.
    """

    # The whole step applies clip_grad_norm_'s factor inside a fused optimizer's kernel (train_step); False: a pass
    # of its own, as clip_grad_norm_ does (bench/throughput.py's whole+clip-pass stage times the difference).
    clip_in_fused_optimizer = True

    def __init__(self, *, name_or_path: str, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None = None,
                 task: str, pretrained: bool, attn_implementation: str | None, compile: bool | str,
                 hub_id: str | None, whole_step: bool | str = False, max_grad_norm: float | None = None):
        super().__init__()
        # Plain values only, so checkpoints load with torch.load(weights_only=True); the optimizer and scheduler
        # partials are code, not data. Loggers get the whole resolved Hydra config instead.
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "whole_step", "max_grad_norm"], logger=False)
        self.whole_step = whole_step is True  # "auto" is resolved by train(); a model built without it runs eagerly
        self.automatic_optimization = not self.whole_step
        self.max_grad_norm = max_grad_norm
        self.clips = max_grad_norm is not None and max_grad_norm > 0  # 0 or null: no clipping, as in Lightning
        self.spec = spec = TASKS[task]
        with fetching(f"model {name_or_path!r}", name_or_path), quiet_transformers():
            config = head_config(name_or_path, spec)

            def load(attention: str | None):
                if not pretrained:  # same architecture, random weights
                    return AutoModelForSequenceClassification.from_config(config, attn_implementation=attention), {}
                # ignore_mismatched_sizes: a model fine-tuned on another task (MNLI's 3 labels, then RTE's 2: the
                # usual intermediate-task transfer) gets a new head of the task's size, its encoder kept.
                return AutoModelForSequenceClassification.from_pretrained(
                    name_or_path, config=config, attn_implementation=attention, output_loading_info=True,
                    ignore_mismatched_sizes=True)

            try:
                self.model, loading = load(attn_implementation)
            except ValueError as err:
                # sdpa, the default, is BERT's; a model whose transformers code has none (DeBERTa) gets its own.
                if attn_implementation != "sdpa" or "scaled_dot_product_attention" not in str(err):
                    raise
                self.model, loading = load(None)
                log.info("%s has no SDPA attention in transformers: it runs its own (%s) instead of "
                         "model.attn_implementation=sdpa.", type(self.model).__name__,
                         self.model.config._attn_implementation)
            if pretrained:
                # A new classifier head is what fine-tuning expects; any other weight left at random is a problem.
                missing = [k for k in loading["missing_keys"] if not k.startswith("classifier.")]
                if missing:
                    log.warning("%d weight(s) of %s were not in %s and start random: %s", len(missing),
                                type(self.model).__name__, name_or_path, ", ".join(missing[:10]))
                mismatched = sorted(loading.get("mismatched_keys") or ())
                if mismatched:
                    log.info("%s has a classifier head of another size (%s): %s gets a new one, the rest of its "
                             "weights are kept.", name_or_path, ", ".join(f"{k} {tuple(saved)}" for k, saved, _ in
                                                                         mismatched), spec.glue_name)
                    if any(not k.startswith("classifier.") for k, _, _ in mismatched):
                        log.warning("Weights of %s other than its classifier head do not fit this model and start "
                                    "random: %s", name_or_path, ", ".join(k for k, _, _ in mismatched))
        # from_pretrained returns the model in eval mode and Lightning keeps submodules' modes as it finds them:
        # without this, dropout would be off during fine-tuning.
        self.model.train()
        if compile:
            # In place (nn.Module.compile), so state_dict keys, checkpoints and the exported model stay the same
            # as without it. Compilation happens at the first batch of each new shape (length buckets:
            # data.pad_to_multiple_of); "reduce-overhead" replays CUDA graphs, which removes the per-kernel launch
            # cost that dominates BERT steps on SST-2's short sentences.
            self.model.compile(mode=None if compile is True else compile)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.continues_another_run = False  # set by train(): ckpt_path is another run's checkpoint

        # Accumulated on the device between logging steps: no host sync on the steps in between. Persistent, so
        # a run resumed between two logging steps logs the same mean.
        # nan_strategy="disable": torchmetrics' NaN filtering asks the host `nans.any()` on every update, a GPU
        # sync per training step; a NaN must show in the logged loss anyway (the run stops on it, check_finite).
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.train_loss.persistent(True)
        # One set of metrics per dev set (MNLI: matched and mismatched), for validation and for scoring the
        # selected checkpoint at the end. Logged as <prefix>/<metric>: val/acc, val_mismatched/acc, val/loss.
        # The dev losses too keep NaNs (a NaN dev loss shows as one) and so never wait on the GPU (_evaluate).
        self.prefixes = [metric_prefix(split) for split in spec.dev_splits]
        self.val_losses = nn.ModuleList(MeanMetric(nan_strategy="disable") for _ in self.prefixes)
        self.val_metrics = nn.ModuleList(task_metrics(spec) for _ in self.prefixes)
        self.test_losses = nn.ModuleList(MeanMetric(nan_strategy="disable") for _ in self.prefixes)
        self.test_metrics = nn.ModuleList(task_metrics(spec) for _ in self.prefixes)
        # The best value seen of every validation metric (<name>_best). Persistent: a resumed run goes on from the
        # best values it had, not from those seen since the restart.
        self.best = nn.ModuleDict()
        for name in spec.logged_metrics:
            best = MinMetric() if metric_direction(name) == "min" else MaxMetric()
            best.persistent(True)
            self.best[name.replace("/", "__")] = best
        # First optimizer step whose loss was NaN/inf (-1: none), kept on the device so the check costs no host
        # sync per step; it is read when the loss is logged and before each validation (and so each checkpoint).
        self.register_buffer("first_nonfinite_step", torch.tensor(-1), persistent=False)
        # The whole step's own count of optimizer steps, on the device (a graph cannot read Lightning's Python
        # int): set from global_step when training starts, counted up inside the step.
        self.register_buffer("steps_taken", torch.tensor(0), persistent=False)
        self.step_graphs: CapturedSteps | None = None
        self.eval_graphs: CapturedSteps | None = None  # validation's forward per batch shape (graphed runs)
        self.step_rates: list[torch.Tensor] = []  # the optimizer's learning rates as GPU tensors (graphed step)
        # Dropout draws from the global RNG, which a restart does not restore; reseeding it every batch from this
        # (checkpointed) value makes each batch's dropout masks a function of (seed, step, micro-batch), so a
        # resumed run trains exactly as an uninterrupted one. Drawn after seed_everything: it follows the seed.
        self.dropout_seed = int(torch.randint(2**31 - 1, ()))
        self.step_lr: float | torch.Tensor = 0.0
        self.last_validation: dict | None = None

    def forward(self, batch: dict[str, torch.Tensor]):
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels") if k in batch}
        return self.model(**inputs)

    # -- training ---------------------------------------------------------------------------------------------
    @property
    def accumulate(self) -> int:
        return self.trainer.accumulate_grad_batches

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # A different seed for every micro-batch of an accumulation window, and the same on a rerun.
        seed = self.dropout_seed + self.global_step * self.accumulate + batch_idx % self.accumulate
        # The generators dropout draws from: the CPU's and this GPU's. (torch.manual_seed seeds every backend,
        # and for each one not in use, CUDA on a CPU machine, XPU, MTIA, it queues the call with a formatted stack
        # trace: ~1.7 ms of host time per step and a list that grows every step.)
        torch.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)
        # The learning rate this step trains with; logged with the step's loss (see on_train_batch_end).
        self.step_lr = self.trainer.optimizers[0].param_groups[0]["lr"]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dropout_seed"] = self.dropout_seed
        # The whole step's GPU learning-rate tensors and capturable flag are how this run executes, not state:
        # checkpoints keep plain floats, so they resume anywhere (CPU, eager, another GPU).
        for state in checkpoint.get("optimizer_states", []):
            for group in state.get("param_groups", []):
                if isinstance(group.get("lr"), torch.Tensor):
                    group["lr"] = float(group["lr"])
                if "capturable" in group:
                    group["capturable"] = False
        for state in checkpoint.get("lr_schedulers", []):
            if "_last_lr" in state:
                state["_last_lr"] = [float(v) for v in state["_last_lr"]]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.dropout_seed = checkpoint.get("dropout_seed", self.dropout_seed)
        self.resumed_step = checkpoint.get("global_step")
        self.restored_optimizer = bool(checkpoint.get("optimizer_states"))
        if self.continues_another_run:
            # This run's trainer.max_time counts its own training: Lightning's Timer, restored after this hook, would
            # count the other run's too (and stop at once where that one had used up its own limit).
            for key in [k for k in checkpoint.get("callbacks", {}) if str(k).startswith("Timer")]:
                del checkpoint["callbacks"][key]

    def _continue_step_count(self) -> None:
        """Lightning counts optimizer steps apart for automatic and manual optimization (global_step reads the
        counter of the mode in use), so a checkpoint saved with the whole step on and resumed with it off, or the
        other way round (a CPU run continued on a GPU), would start counting again from 0: the mode in use takes
        over the checkpoint's count."""
        step, self.resumed_step = getattr(self, "resumed_step", None), None
        if step is None or self.global_step == step:
            return
        loop = self.trainer.fit_loop.epoch_loop
        progress = (loop.automatic_optimization.optim_progress.optimizer.step if self.automatic_optimization
                    else loop.manual_optimization.optim_step_progress)
        progress.total.ready = progress.total.completed = step

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        if self.whole_step:
            return self._whole_training_step(batch)
        loss = self(batch).loss
        self.train_loss.update(loss.detach())
        diverged = ~torch.isfinite(loss.detach()) & (self.first_nonfinite_step < 0)
        self.first_nonfinite_step.masked_fill_(diverged, self.global_step + 1)
        return loss

    # -- the whole step (model.whole_step) -----------------------------------------------------------------------
    def train_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimizer step on one batch: forward, backward, clip, update; the loss, NaN flag and step count
        kept on the device. Nothing in it waits for the GPU or depends on Python state that changes between steps,
        so a CUDA graph of it replays the same step (``CapturedSteps``)."""
        optimizer = self.optimizers().optimizer
        with self._autocast():
            loss = self(batch).loss
        loss.backward()
        fused = getattr(optimizer, "_step_supports_amp_scaling", False)  # what GradScaler checks: fused=True
        if self.clips and fused and self.clip_in_fused_optimizer:
            # A fused optimizer (Adam, AdamW with fused=True) clips as it reads each gradient: its kernel divides
            # the gradients by grad_scale, the input AMP's GradScaler unscales through. clip_grad_norm_'s factor
            # min(1, max_norm / (norm + 1e-6)) as that divisor saves a pass over the gradients (read and write
            # 108 M values for bert-base), the same update to a rounding.
            norm = torch.nn.utils.get_total_norm([p.grad for p in self.trained_parameters if p.grad is not None],
                                                 foreach=True)
            # float32 whatever the gradients are (bf16-true, 64-true): the fused kernels read a float divisor
            optimizer.grad_scale = ((norm.float() + 1e-6) / self.max_grad_norm).clamp_(min=1.0)
        elif self.clips:
            torch.nn.utils.clip_grad_norm_(self.trained_parameters, self.max_grad_norm, foreach=True)
        try:
            optimizer.step()
        finally:
            optimizer.__dict__.pop("grad_scale", None)  # the next step's divisor is its own (an unclipped one: none)
        optimizer.zero_grad(set_to_none=True)  # gradients live only inside the step (inside its graph)
        loss = loss.detach().float()
        self.steps_taken += 1
        diverged = ~torch.isfinite(loss) & (self.first_nonfinite_step < 0)
        self.first_nonfinite_step.copy_(torch.where(diverged, self.steps_taken, self.first_nonfinite_step))
        return loss

    def _autocast(self):
        # Lightning's bf16 autocast caches each weight's bf16 copy for its whole training_step; inside a graph the
        # copies must be made by the graph itself, so the step runs its own autocast without the cache (the same
        # casts, so the same numbers).
        if "bf16-mixed" in str(self.trainer.precision):
            return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()

    def _whole_training_step(self, batch: dict[str, torch.Tensor]) -> None:
        optimizer, scheduler = self.optimizers(), self.lr_schedulers()
        if scheduler is not None:
            self.step_lr = scheduler.get_last_lr()[0]  # the rate this step trains with (on the device)
        # Lightning counts a manual optimizer step (global_step) around LightningOptimizer.step; the optimizer
        # update here runs inside train_step (and its graph), so the same two calls count it.
        optimizer._on_before_step()
        loss = self.step_graphs(batch) if self.step_graphs is not None else self.train_step(batch)
        optimizer._on_after_step()
        if scheduler is not None:
            scheduler.step()  # writes the next rate into the optimizer's learning-rate tensor, in place
            for group, rate in zip(optimizer.param_groups, self.step_rates):
                if group["lr"] is not rate:  # a scheduler that assigns a float instead: the graph reads `rate`
                    rate.fill_(float(group["lr"]))
                    group["lr"] = rate
        self.train_loss.update(loss)
        return None

    def on_train_start(self) -> None:
        self._continue_step_count()  # after Lightning has restored its loops from a checkpoint
        if getattr(self, "restored_optimizer", False):
            self.restored_optimizer = False
            if changed := self.apply_configured_optimizer_settings():
                log.info("Continuing with this run's optimizer settings, not the checkpoint's: %s.", "; ".join(changed))
        if self.continues_another_run:
            # <metric>_best are this run's own, as its checkpoint selection is: not the other run's, which its
            # checkpoint carried.
            for best in self.best.values():
                best.reset()
        if not self.whole_step:
            return
        if self.trainer.world_size > 1:  # train_step's backward is its own: DDP would not all-reduce its gradients
            raise UserError(f"model.whole_step=true runs on one device, and this run has {self.trainer.world_size} "
                            "processes. Fix: model.whole_step=false (or auto).")
        self.trained_parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.steps_taken.fill_(self.global_step)
        if self.device.type == "cuda":
            # What capture needs of the optimizer: its update and step counts on the GPU, and its learning rate a
            # GPU tensor that the graph reads and the scheduler fills (checkpoints keep plain floats: on_save).
            self.step_rates = []
            optimizer = self.optimizers().optimizer
            for group in optimizer.param_groups:
                group["capturable"] = True
                group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
                self.step_rates.append(group["lr"])
            # A restored state's step counts stay on the CPU (Lightning loads to the CPU and moves every state but
            # "step"; torch moves them with their parameters only where the saved group was fused or capturable, and
            # checkpoints say capturable=False): as Adam's own __setstate__ does, on the parameters' device.
            for param, state in optimizer.state.items():
                if isinstance(state.get("step"), torch.Tensor):
                    state["step"] = state["step"].to(param.device, torch.float32)
            # A capture that fails midway may leave gradients allocated inside it: the eager rerun starts from none.
            self.step_graphs = CapturedSteps(self.train_step, before_eager_rerun=lambda: self.optimizers().zero_grad(
                set_to_none=True))

    def on_train_end(self) -> None:
        self.check_finite()
        if self.step_graphs is not None:
            log.info("Training step: %d batch shape(s) captured as CUDA graphs, %d of %d steps replayed.",
                     self.step_graphs.captures, self.step_graphs.replays, self.global_step)
        if self.eval_graphs is not None:
            log.info("Validation: %d batch shape(s) captured as CUDA graphs, %d batches replayed.",
                     self.eval_graphs.captures, self.eval_graphs.replays)
        # Frees the graphs and their memory pools. Validation's cannot serve the scoring of the selected checkpoint
        # either: when fit ends Lightning moves the module to the CPU and the test loop moves it back, into new
        # memory, and a graph replays the addresses it captured. Scoring runs eagerly, once.
        self.step_graphs = None
        self.eval_graphs = None

    def check_finite(self) -> None:
        """Stop training at the first non-finite loss, before a validation could checkpoint the broken weights."""
        flag = self.first_nonfinite_step
        if self.trainer.world_size > 1:  # every rank checks here: all stop, or the others would wait for the one that
            flag = self.trainer.strategy.reduce(flag.clone(), reduce_op="max")  # stopped in their next collective
        step = int(flag)
        if step >= 0:
            candidates = [Path(cb.dirpath) / "last.ckpt" for cb in self.trainer.callbacks if getattr(cb, "dirpath", None)]
            last = next((str(p) for p in candidates if p.exists()), "")
            raise TrainingDivergedError(
                f"The training loss became NaN or infinite at optimizer step {step}; training stopped at its next "
                f"check, step {self.global_step}. "
                + (f"The last good checkpoint is {last}. " if last else "No checkpoint was saved before it. ")
                + "Try a lower optimizer.lr or a longer warm-up (scheduler.warmup_ratio)."
            )

    def on_validation_start(self) -> None:
        if self.trainer.state.fn != "fit":
            return
        if not self.trainer.sanity_checking:
            self.check_finite()
        if self.whole_step and self.device.type == "cuda" and self.eval_graphs is None:
            # With the training step graphed, validation's eager forward would be most of the time between two
            # validations' training: its forward is replayed too, one graph per batch shape, in its own pool.
            self.eval_graphs = CapturedSteps(self.eval_forward)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        # Log the mean loss since the last log, every `trainer.log_every_n_steps` optimizer steps (as HF's
        # Trainer does with logging_steps), instead of a single noisy batch, and the learning rate of the step
        # just taken, on the same row: one step numbering for the whole run. (Lightning's LearningRateMonitor
        # logs against a step counter that is one behind the optimizer step, and after the scheduler has moved.)
        # Only on the batch that ended an accumulation window: the optimizer stepped on it.
        stepped = (batch_idx + 1) % self.accumulate == 0 or batch_idx + 1 == self.trainer.num_training_batches
        if stepped and self.global_step % self.trainer.log_every_n_steps == 0:
            self.check_finite()
            self.log_dict({"train/loss": self.train_loss.compute(), "train/lr": float(self.step_lr)})
            self.log_dict(self.position())
            self.train_loss.reset()

    def position(self) -> dict[str, float]:
        # Logged with each metric so rows carry the optimizer step (Lightning's default is one less) and the
        # fractional epoch (in optimizer steps, so also right when gradients accumulate), like HF's model cards.
        steps_per_epoch = math.ceil(max(self.trainer.num_training_batches, 1) / self.accumulate)
        return {"step": float(self.global_step), "epoch": self.global_step / steps_per_epoch}

    # -- evaluation -------------------------------------------------------------------------------------------
    def eval_forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch's mean loss and logits, with the step's own autocast when it is replayed as a graph."""
        with self._autocast() if self.eval_graphs is not None else contextlib.nullcontext():
            out = self(batch)
        return out.loss, out.logits

    def _evaluate(self, batch: dict[str, torch.Tensor], loss_metric: MeanMetric, metrics) -> None:
        if self.eval_graphs is not None:
            loss, logits = self.eval_graphs(batch)
            # A replay returns the graph's own output, which the next replay of the shape overwrites: Spearman keeps
            # every prediction it is given (a float32 regression score is the logits' own memory), so it gets a copy.
            logits = logits.clone()
        else:
            loss, logits = self.eval_forward(batch)
        # The dev loss is the mean over examples: the batch's mean counted once per example (a Python-number
        # weight would be copied to the GPU at every batch).
        loss_metric.update(loss.float().expand(batch["labels"].shape[0]))
        metrics.update(predictions(self.spec, logits), batch["labels"])

    def _scores(self, losses: nn.ModuleList, collections: nn.ModuleList) -> dict[str, torch.Tensor]:
        """Every dev set's loss and metrics, named <prefix>/<metric>; the metrics are reset for the next round."""
        scores = {}
        for prefix, loss_metric, collection in zip(self.prefixes, losses, collections):
            scores[f"{prefix}/loss"] = loss_metric.compute()
            scores.update({f"{prefix}/{key}": value for key, value in collection.compute().items()})
            loss_metric.reset()
            collection.reset()
        return scores

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.val_losses[dataloader_idx], self.val_metrics[dataloader_idx])

    def on_validation_epoch_end(self) -> None:
        scores = self._scores(self.val_losses, self.val_metrics)
        main = {"val/loss", self.spec.main_metric}
        self.log_dict({k: v for k, v in scores.items() if k in main}, prog_bar=True)
        self.log_dict({k: v for k, v in scores.items() if k not in main})
        if self.trainer.sanity_checking:  # Lightning's check of the loop, not a result
            return
        for name, value in scores.items():
            best = self.best[name.replace("/", "__")]
            best.update(value)
            self.log(f"{name}_best", best.compute())
        self.log_dict(self.position())
        # The scores of the weights now in memory: if this validation's checkpoint ends up the selected one,
        # training need not score it again (train() reads this).
        self.last_validation = {"step": self.global_step, **{k: float(v) for k, v in scores.items()}}

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluate(batch, self.test_losses[dataloader_idx], self.test_metrics[dataloader_idx])

    def on_test_epoch_end(self) -> None:
        # The test loop scores the selected checkpoint on every dev set (GLUE's test labels are hidden).
        self.log_dict({f"selected/{k}": v for k, v in self._scores(self.test_losses, self.test_metrics).items()})
        self.log_dict(self.position())  # the row's step and fractional epoch are training's last, as it scored them

    # -- optimisation -----------------------------------------------------------------------------------------
    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning refuses to clip under any mixed precision when the optimizer is fused, because with fp16 the
        # GradScaler unscales inside the fused step. bf16 has no scaler, so the gradients are true values and
        # clipping them directly is exact; fp16 still goes through Lightning (and its error).
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if gradient_clip_val is not None and gradient_clip_val > 0 and scaler is None \
                and gradient_clip_algorithm in (None, "norm"):
            torch.nn.utils.clip_grad_norm_(self.parameters(), gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        weight_decay = getattr(self.optimizer_factory, "keywords", {}).get("weight_decay")
        optimizer = self.optimizer_factory(params=parameter_groups(params, weight_decay))
        scheduler = None if self.scheduler_factory is None else self.scheduler_factory(
            optimizer=optimizer, num_training_steps=self.trainer.estimated_stepping_batches)
        # The settings this run's config gives each group (and the schedule's peak rates), before a checkpoint's
        # optimizer state replaces them: a run continued from another run's checkpoint trains with its own.
        self.configured_groups = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def apply_configured_optimizer_settings(self) -> list[str]:
        """After Lightning restored the optimizer and scheduler from a checkpoint: each parameter group's settings
        (peak learning rate, weight decay, betas, eps, momentum, ...) as this run's config gives them, the current
        rate recomputed from the restored position in the schedule. The checkpoint's moments and step counts stay.
        Lightning restores the checkpoint's settings too, so a run continued from another run's checkpoint with a
        lower optimizer.lr would go on at the old one. Returns what differed (nothing, for the same run)."""
        optimizer = self.trainer.optimizers[0]
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        changed = []
        for index, (group, configured) in enumerate(zip(optimizer.param_groups, self.configured_groups)):
            name = f" ({group['name']})" if group.get("name") else ""
            for key, value in configured.items():
                if key in ("lr", "name") or group.get(key) == value:
                    continue
                if key in ("initial_lr", "weight_decay", "betas", "eps", "momentum", "dampening", "nesterov",
                           "decoupled_weight_decay"):
                    changed.append(f"{'lr' if key == 'initial_lr' else key}{name}: {group.get(key)} -> {value}")
                group[key] = value
            if not schedulers:
                if group["lr"] != configured["lr"]:
                    changed.append(f"lr{name}: {group['lr']} -> {configured['lr']}")
                    group["lr"] = configured["lr"]
        for scheduler in schedulers:
            if hasattr(scheduler, "lr_lambdas") and "initial_lr" in optimizer.param_groups[0]:
                scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
                for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                    group["lr"] = base * factor(scheduler.last_epoch)
                scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
        return changed
