"""model.whole_step: the whole optimizer step in one method (and, on a GPU, one CUDA graph per batch shape) trains
the same weights as Lightning's automatic optimization."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from omegaconf import open_dict

from glue_finetune.config import validate_config
from glue_finetune.errors import ConfigError, TrainingDivergedError, UserError
from glue_finetune.results import read_metrics
from glue_finetune.training import train, whole_step_setting


def curves(tmp_path, name: str) -> dict[str, list]:
    """Per metric, its values in step order, the step first: [step, value, step, value, ...]."""
    rows = read_metrics(tmp_path / name / "metrics.csv")
    return {metric: [x for r in rows if r.get(metric) is not None for x in (r["step"], r[metric])]
            for metric in ("train/loss", "train/lr", "val/loss", "val/acc")}


@pytest.mark.parametrize("fused", ["true", "false"])  # clipping inside the fused AdamW's kernel, or a pass of its own
def test_the_whole_step_trains_exactly_as_lightnings_automatic_optimization(tiny_cfg, tmp_path, fused):
    # float32, so "the same" is exact (to a rounding): same batches, dropout masks, clipping, AdamW update and
    # learning rates.
    for whole_step in ("false", "true"):
        train(tiny_cfg(f"model.whole_step={whole_step}", "trainer.precision=32-true", "trainer.max_epochs=2",
                       f"optimizer.fused={fused}", "trainer.gradient_clip_val=0.05", "predict_test=false",
                       output_dir=tmp_path / whole_step))
    automatic, whole = curves(tmp_path, "false"), curves(tmp_path, "true")
    assert whole["train/loss"][::2] == [10, 20, 30, 40]
    for metric in automatic:
        assert whole[metric] == pytest.approx(automatic[metric], rel=1e-6), metric
    # and clipping did act: without it (null, or 0 as in Lightning) the run differs
    for unclipped in ("null", "0"):
        train(tiny_cfg("model.whole_step=true", "trainer.precision=32-true", "trainer.max_epochs=2",
                       f"optimizer.fused={fused}", f"trainer.gradient_clip_val={unclipped}", "predict_test=false",
                       output_dir=tmp_path / f"unclipped-{unclipped}"))
    assert curves(tmp_path, "unclipped-null")["train/loss"][1:] != whole["train/loss"][1:]
    assert curves(tmp_path, "unclipped-0") == curves(tmp_path, "unclipped-null")


def test_the_fused_clip_trains_with_gradients_of_any_precision(tiny_cfg, tmp_path):
    # The fused kernels take a float32 divisor; the gradients' norm has the gradients' dtype (bf16 here; 64-true's
    # float64 took the same path).
    for whole_step in ("false", "true"):
        train(tiny_cfg(f"model.whole_step={whole_step}", "trainer.precision=bf16-true", "trainer.max_epochs=1",
                       "optimizer.fused=true", "trainer.gradient_clip_val=0.05", "predict_test=false",
                       output_dir=tmp_path / whole_step))
    train(tiny_cfg("model.whole_step=true", "trainer.precision=bf16-true", "trainer.max_epochs=1",
                   "optimizer.fused=true", "trainer.gradient_clip_val=null", "predict_test=false",
                   output_dir=tmp_path / "unclipped"))
    # The weights, not the loss curve (in 20 bf16 steps the tiny model's loss barely moves): the fused clip's
    # weights are Lightning's but for a rounding here and there (one bf16 step is 0.004 at 0.5-1), and clipping did
    # act (over a quarter of the unclipped run's weights are elsewhere).
    automatic, whole, unclipped = (final_weights(tmp_path / name) for name in ("false", "true", "unclipped"))
    assert share_apart(whole, automatic) < 1e-3
    assert share_apart(unclipped, whole) > 0.1


def share_apart(weights: dict[str, torch.Tensor], others: dict[str, torch.Tensor], by: float = 1e-3) -> float:
    """The share of the weights more than ``by`` away from the others'."""
    apart = sum(int(((weights[name] - value).abs() > by).sum()) for name, value in others.items())
    return apart / sum(value.numel() for value in others.values())


def final_weights(run_dir) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    return {name: value.float() for name, value in state.items() if value.is_floating_point()}


def test_the_whole_step_stops_at_a_non_finite_loss(tiny_cfg, tmp_path):
    cfg = tiny_cfg("model.whole_step=true")
    with open_dict(cfg):
        cfg.callbacks.poison = {"_target_": "test_robustness.PoisonWeightsAfter", "step": 15}
    with pytest.raises(TrainingDivergedError, match="became NaN or infinite at optimizer step 16"):
        train(cfg)
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10


def test_a_failed_run_lets_go_of_its_graphs(tiny_cfg, tmp_path):
    # on_train_end frees them after a finished fit; a failed one skips it, and an in-process sweep's next job
    # needs the GPU memory their pools hold.
    cfg = tiny_cfg("model.whole_step=true")
    with open_dict(cfg):
        cfg.callbacks.eval_graphs = {"_target_": "test_whole_step.EvalGraphsOnCPU"}
        cfg.callbacks.poison = {"_target_": "test_robustness.PoisonWeightsAfter", "step": 15}
    EvalGraphsOnCPU.modules = []
    with pytest.raises(TrainingDivergedError):
        train(cfg)
    assert EvalGraphsOnCPU.modules and EvalGraphsOnCPU.modules[-1].eval_graphs is None


def train_whole_and_stopped_then_resumed(tiny_cfg, tmp_path, *overrides: str) -> None:
    """Two runs of the same settings: "whole" uninterrupted, "resumed" killed before step 30 and continued from its
    last.ckpt (saved at step 20)."""
    train(tiny_cfg(*overrides, output_dir=tmp_path / "whole"))
    cfg = tiny_cfg(*overrides, output_dir=tmp_path / "resumed")
    with open_dict(cfg):
        cfg.callbacks.stop = {"_target_": "test_robustness.StopBeforeStep", "step": 30}
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg)
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    train(tiny_cfg(*overrides, f"ckpt_path={last}", output_dir=tmp_path / "resumed"))


def test_a_run_with_the_whole_step_resumes_mid_epoch_as_if_uninterrupted(tiny_cfg, tmp_path):
    train_whole_and_stopped_then_resumed(tiny_cfg, tmp_path, "model.whole_step=true", "trainer.max_epochs=2",
                                         "predict_test=false")
    whole, resumed = (torch.load(tmp_path / d / "checkpoints" / "last.ckpt", weights_only=True)
                      for d in ("whole", "resumed"))
    for name, tensor in whole["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][name], tensor, atol=1e-6, rtol=0, msg=name)
    assert curves(tmp_path, "resumed")["val/loss"] == pytest.approx(curves(tmp_path, "whole")["val/loss"], abs=1e-6)


def test_settings_that_rule_out_the_whole_step_are_named_before_training(tiny_cfg):
    cfg = tiny_cfg("model.whole_step=true", "trainer.accumulate_grad_batches=2", "trainer.precision=16-mixed",
                   "+trainer.gradient_clip_algorithm=value", "+trainer.num_nodes=2")
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    for setting in ("trainer.accumulate_grad_batches=2", "trainer.precision=16-mixed",
                    "trainer.gradient_clip_algorithm=value", "trainer.num_nodes=2"):
        assert setting in str(err.value)
    assert "model.whole_step=false" in str(err.value)
    with pytest.raises(ConfigError, match="model.compile=reduce-overhead .CUDA graphs of its own"):
        validate_config(tiny_cfg("model.whole_step=true", "model.compile=reduce-overhead"))
    with pytest.raises(ConfigError, match="model.whole_step='always': use auto, true or false"):
        validate_config(tiny_cfg("model.whole_step=always"))
    # auto: simply off where it cannot run
    validate_config(tiny_cfg("model.whole_step=auto", "trainer.accumulate_grad_batches=2"))


def test_batches_are_pinned_for_a_run_that_trains_on_a_gpu_only(tiny_cfg, monkeypatch):
    # Pinning makes a CUDA context: a CPU run (or a CPU sweep job) on a GPU machine would hold one on GPU 0.
    from types import SimpleNamespace

    from hydra.utils import instantiate

    from glue_finetune.training import data_settings_for

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine
    for device, pinned in (("cpu", False), ("cuda", True)):
        datamodule = instantiate(tiny_cfg().data)
        datamodule.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
        assert datamodule.pinned_memory is pinned, device
    datamodule = instantiate(tiny_cfg("data.pin_memory=true").data)
    datamodule.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    assert datamodule.pinned_memory is True  # as configured
    assert data_settings_for(tiny_cfg("trainer=gpu"), True, True) == {"resident_batches": True,
                                                                      "pad_to_multiple_of": 8}


def test_auto_uses_the_whole_step_on_one_gpu_only_with_an_optimizer_a_graph_can_hold(tiny_cfg, monkeypatch):
    import glue_finetune.training as training

    assert whole_step_setting(tiny_cfg("model.whole_step=auto")) is False  # no GPU
    monkeypatch.setattr(training, "uses_gpu", lambda cfg: True)
    assert whole_step_setting(tiny_cfg("model.whole_step=auto")) is True
    assert whole_step_setting(tiny_cfg("model.whole_step=auto", "trainer.accumulate_grad_batches=2")) is False
    assert whole_step_setting(tiny_cfg("model.whole_step=auto", "+trainer.num_nodes=2")) is False  # DDP, 1 GPU a node
    assert whole_step_setting(tiny_cfg("model.whole_step=auto", "optimizer=sgd")) is False
    assert whole_step_setting(tiny_cfg("model.whole_step=auto", "model.compile=true")) is False  # only when asked
    assert whole_step_setting(tiny_cfg("model.whole_step=true", "model.compile=true")) is True
    assert whole_step_setting(tiny_cfg("model.whole_step=false")) is False
    with pytest.raises(UserError, match="optimizer torch.optim.SGD cannot run inside a CUDA graph.*optimizer=adamw"):
        whole_step_setting(tiny_cfg("model.whole_step=true", "optimizer=sgd"))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_on_a_gpu_the_graphed_step_matches_the_eager_one(tiny_cfg, tmp_path, precision):
    # Stopped at step 35, after the validation at step 30: the selected checkpoint is loaded and scored again at the
    # end, eagerly in both runs (validation's graphs end with training).
    common = ["trainer=gpu", f"trainer.precision={precision}", "trainer.max_epochs=2", "+trainer.max_steps=35",
              "predict_test=false", "data.pad_to_multiple_of=8"]
    train(tiny_cfg(*common, "model.whole_step=true", output_dir=tmp_path / "graphed"))
    train(tiny_cfg(*common, "model.whole_step=false", output_dir=tmp_path / "eager"))
    graphed, eager = curves(tmp_path, "graphed"), curves(tmp_path, "eager")
    tolerance = 2e-2 if precision == "bf16-mixed" else 2e-3  # TF32 / bf16 kernels differ between the two
    # validation included: its forward is replayed as graphs too. Accuracy moves in steps of 1/64 (64 dev
    # sentences): the runs' small differences may flip a sentence or two at the decision boundary.
    for metric in ("train/loss", "val/loss", "val/acc"):
        assert graphed[metric][::2] == eager[metric][::2]
        allowed = max(tolerance, 2 / 64) if metric == "val/acc" else tolerance
        assert graphed[metric][1::2] == pytest.approx(eager[metric][1::2], abs=allowed), metric
    selected = [next(r for r in read_metrics(tmp_path / name / "metrics.csv")
                     if r.get("selected/val/loss") is not None) for name in ("graphed", "eager")]
    assert selected[0]["selected/val/loss"] == pytest.approx(selected[1]["selected/val/loss"], abs=tolerance)
    # the graphed run's selected checkpoint (step 30 or before) scores as it did when it was validated
    assert selected[0]["selected/val/loss"] == pytest.approx(min(graphed["val/loss"][1::2]), abs=1e-5)
    checkpoint = torch.load(tmp_path / "graphed" / "checkpoints" / "last.ckpt", weights_only=True)
    for group in checkpoint["optimizer_states"][0]["param_groups"]:  # plain values: it resumes anywhere
        assert isinstance(group["lr"], float) and group["capturable"] is False


@pytest.mark.gpu
def test_captured_steps_replay_without_waiting_for_the_gpu_and_train_as_eager_steps():
    from glue_finetune.step_graphs import CapturedSteps, shape_key

    def make():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                    torch.nn.Linear(16, 1)).cuda()
        lr = torch.tensor(1e-2, device="cuda")
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, fused=True, capturable=True)

        def step(batch):
            loss = torch.nn.functional.mse_loss(model(batch["x"]).squeeze(-1), batch["y"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5, foreach=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()
        return model, lr, step

    generator = torch.Generator().manual_seed(1)
    batches = [{"x": torch.randn(n, 8, generator=generator).cuda(), "y": torch.randn(n, generator=generator).cuda()}
               for n in (4, 4, 6, 4, 6, 6, 4, 5)]
    eager_model, eager_lr, eager_step = make()
    graphed_model, graphed_lr, graphed_step = make()
    steps = CapturedSteps(graphed_step)
    eager_losses, graphed_losses = [], []
    for i, batch in enumerate(batches):
        for lr in (eager_lr, graphed_lr):
            lr.fill_(1e-2 / (i + 1))  # the scheduler's in-place update reaches the graph
        torch.manual_seed(100 + i)
        eager_losses.append(eager_step(batch))
        torch.manual_seed(100 + i)  # dropout: the same masks in the graph as in the eager step
        replay = steps.graphs.get(shape_key(batch))
        torch.cuda.set_sync_debug_mode("error" if replay else "default")
        try:
            graphed_losses.append(steps(batch).clone())
        finally:
            torch.cuda.set_sync_debug_mode("default")
    # shapes 4 and 6: eager the first time, captured the second; 5 came once and ran eagerly
    assert steps.captures == 2 and steps.replays == 5
    torch.testing.assert_close(torch.stack(graphed_losses), torch.stack(eager_losses), rtol=1e-4, atol=1e-5)
    for a, b in zip(graphed_model.parameters(), eager_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_a_step_that_cannot_be_captured_runs_eagerly_with_one_warning(monkeypatch, caplog):
    # Speed is lost, not the run: the batch whose capture failed runs eagerly (after the cleanup hook: an aborted
    # capture may leave gradients behind), and so does every later batch, without trying again.
    from glue_finetune.step_graphs import CapturedSteps

    ran = []

    def train_step(batch):
        ran.append(tuple(batch["x"].shape))
        return batch["x"].sum()

    steps = CapturedSteps(train_step, before_eager_rerun=lambda: ran.append("cleared"))

    def capture(key, batch):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nmore detail")

    monkeypatch.setattr(steps, "_capture", capture)
    for n in (2, 2, 2, 3, 3):
        assert steps({"x": torch.ones(n)}) == n
    assert ran == [(2,), "cleared", (2,), (2,), (3,), (3,)]
    assert steps.captures == steps.replays == 0
    warnings = [r.getMessage() for r in caplog.records if "Could not capture" in r.getMessage()]
    assert len(warnings) == 1
    assert "train_step" in warnings[0] and "operation not permitted when stream is capturing" in warnings[0]
    assert "more detail" not in warnings[0] and "model.whole_step=false" in warnings[0]


def test_a_capture_that_fails_at_its_end_names_the_steps_error_and_puts_the_stream_back(monkeypatch):
    # torch.cuda.graph's exit ends the capture before it restores the stream; when the step broke the capture,
    # ending it fails too, with an error that names no cause. (CUDA's calls stood in for, as the CPU has none.)
    from glue_finetune.step_graphs import CapturedSteps

    streams = ["training"]  # the current stream, last

    class Capture:
        def __init__(self, graph, pool=None, capture_error_mode=None):
            pass

        def __enter__(self):
            streams.append("capture's side stream")

        def __exit__(self, *exc):
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: None)
    monkeypatch.setattr(torch.cuda, "graph", Capture)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: "training")
    monkeypatch.setattr(torch.cuda, "set_stream", streams.append)

    def train_step(batch):
        raise RuntimeError("CUDA error: operation not permitted when stream is capturing")

    with pytest.raises(RuntimeError, match="not permitted when stream is capturing"):
        CapturedSteps(train_step)._capture(("x", (2,)), {"x": torch.ones(2)})
    assert streams[-1] == "training"


class EvalGraphsOnCPU(L.Callback):
    """Test helper: validation's forward through CapturedSteps on a CPU, where every capture fails (no CUDA)."""

    scored_through_graphs: list[bool] = []  # per test batch: whether the final scoring went through the graphs
    modules: list = []  # the modules it gave graphs to

    def on_validation_start(self, trainer, pl_module):
        from glue_finetune.step_graphs import CapturedSteps

        if pl_module.eval_graphs is None:
            pl_module.eval_graphs = CapturedSteps(pl_module.eval_forward)
        EvalGraphsOnCPU.modules.append(pl_module)

    def on_test_batch_start(self, trainer, pl_module, *args):
        EvalGraphsOnCPU.scored_through_graphs.append(pl_module.eval_graphs is not None)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_validation_through_the_graph_path_scores_as_plain_validation(tiny_cfg, tmp_path, caplog, precision):
    # The path a graphed run's validation takes (its own autocast, loss and logits out of CapturedSteps), here with
    # every capture failing as it does without CUDA: one warning, the same scores, training untouched.
    # Stopped at step 35, after the validation at step 30: the selected checkpoint is loaded and scored again at the
    # end, eagerly: Lightning moves the module off the GPU and back between fit and test, and a graph replays the
    # parameter addresses it captured.
    common = ["model.whole_step=true", f"trainer.precision={precision}", "trainer.max_epochs=2",
              "+trainer.max_steps=35", "predict_test=false"]
    cfg = tiny_cfg(*common, output_dir=tmp_path / "graph_path")
    with open_dict(cfg):
        cfg.callbacks.eval_graphs = {"_target_": "test_whole_step.EvalGraphsOnCPU"}
    EvalGraphsOnCPU.scored_through_graphs = []
    train(cfg)
    assert EvalGraphsOnCPU.scored_through_graphs and not any(EvalGraphsOnCPU.scored_through_graphs)
    train(tiny_cfg(*common, output_dir=tmp_path / "plain"))
    assert curves(tmp_path, "graph_path") == curves(tmp_path, "plain")
    selected = [{k: v for r in read_metrics(tmp_path / name / "metrics.csv") for k, v in r.items()
                 if k.startswith("selected/")} for name in ("graph_path", "plain")]
    assert selected[0] == selected[1]
    # what the selected checkpoint scored when it was validated
    assert selected[0]["selected/val/loss"] == pytest.approx(min(curves(tmp_path, "plain")["val/loss"][1::2]))
    assert len(curves(tmp_path, "plain")["val/acc"]) == 6
    warnings = [r.getMessage() for r in caplog.records if "Could not capture" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("Could not capture eval_forward"), warnings


class EvalReplaysOnCPU(L.Callback):
    """Test helper: validation's forward returning the same output tensors for every batch of a shape, refilled,
    as a CUDA graph's replay does."""

    def on_validation_start(self, trainer, pl_module):
        outputs: dict = {}

        def replay(batch):
            from glue_finetune.step_graphs import shape_key

            eager = pl_module.eval_forward(batch)
            kept = outputs.setdefault(shape_key(batch), tuple(torch.empty_like(t) for t in eager))
            for out, value in zip(kept, eager):
                out.copy_(value)
            return kept

        replay.captures, replay.replays = 0, 0
        pl_module.eval_graphs = replay


def test_metrics_that_keep_predictions_get_copies_of_a_replays_output(glue_dir, tiny_cfg, tmp_path):
    # STS-B's Spearman correlation keeps every prediction until the end of the validation; a float32 regression
    # score is a view of the logits, and a graph's logits are overwritten by the next replay of the same shape
    # (float32: bf16's scores are copies; padded to 64 tokens: every dev batch one shape).
    common = ["data=stsb", f"data.local_dir={glue_dir / 'STS-B'}", "model.whole_step=true", "trainer.max_epochs=3",
              "trainer.precision=32-true", "data.pad_to_multiple_of=64", "predict_test=false"]
    cfg = tiny_cfg(*common, output_dir=tmp_path / "replayed")
    with open_dict(cfg):
        cfg.callbacks.eval_graphs = {"_target_": "test_whole_step.EvalReplaysOnCPU"}
    train(cfg)
    train(tiny_cfg(*common, output_dir=tmp_path / "plain"))
    scores = [[(r["step"], r["val/spearman"], r["val/pearson"]) for r in read_metrics(tmp_path / name / "metrics.csv")
               if r.get("val/spearman") is not None] for name in ("replayed", "plain")]
    assert len(scores[0]) >= 2 and scores[0] == scores[1]


@pytest.mark.gpu
def test_a_gpu_run_replays_its_steps_as_graphs(tiny_cfg, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="glue_finetune.model")
    train(tiny_cfg("trainer=gpu", "trainer.max_epochs=3", "predict_test=false"))  # model.whole_step: auto
    messages = [r.getMessage() for r in caplog.records if "captured as CUDA graphs" in r.getMessage()]
    training = next(m for m in messages if m.startswith("Training step"))
    replayed = int(training.split(" steps replayed")[0].split(", ")[-1].split(" of ")[0])
    assert replayed >= 30, training  # of 60 steps; the first of each shape runs eagerly
    # 6 validations (and the sanity check) of 8 dev batches: all but the first one or two of each shape replayed
    validation = next(m for m in messages if m.startswith("Validation"))
    assert int(validation.split(", ")[-1].split(" batches replayed")[0]) >= 24, validation


@pytest.mark.gpu
@pytest.mark.parametrize("fused", ["true", "false"])
def test_a_gpu_run_resumes_mid_epoch_as_if_uninterrupted(tiny_cfg, tmp_path, fused):
    # Capturable AdamW wants its step counts on the GPU; a checkpoint's come back on the CPU (for fused=false).
    train_whole_and_stopped_then_resumed(tiny_cfg, tmp_path, "trainer=gpu", f"optimizer.fused={fused}",
                                         "trainer.max_epochs=2", "predict_test=false")
    # TF32 and the GPU's atomics in the embeddings' backward: close, not bit-equal
    assert curves(tmp_path, "resumed")["val/loss"] == pytest.approx(curves(tmp_path, "whole")["val/loss"], rel=1e-3)


@pytest.mark.gpu
def test_a_gpu_runs_last_checkpoint_holds_the_final_weights(tiny_cfg, tmp_path):
    # Written by the background thread from clones copied on a stream of its own (BackgroundCheckpointIO): the
    # copies must hold the weights of the step they were taken at, not of a later step that training went on to.
    from safetensors.torch import load_file

    train(tiny_cfg("trainer=gpu", "trainer.max_epochs=1", "selection.metric=last", "predict_test=false"))
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    exported = load_file(tmp_path / "model" / "model.safetensors")  # the weights in memory at the end
    for name, tensor in exported.items():
        torch.testing.assert_close(saved[f"model.{name}"].cpu(), tensor.cpu(), rtol=0, atol=0)


class FailOnHostSync(L.Callback):
    """Test helper: from optimizer step `start` on (every batch shape captured by then), any operation that makes
    the host wait for the GPU raises, naming itself, until step `stop`: in each training batch (`training`), in
    each validation batch (`validation`; their shapes are captured by the second validation)."""

    def __init__(self, start: int = 30, stop: int = 45, training: bool = True, validation: bool = False):
        self.start, self.stop, self.training, self.validation = start, stop, training, validation

    validation_batches_checked = 0  # over all instances: the test reads it after train()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.training and self.start <= trainer.global_step < self.stop:
            torch.cuda.set_sync_debug_mode("error")

    def on_train_batch_end(self, trainer, pl_module, *args):
        torch.cuda.set_sync_debug_mode("default")

    def on_validation_batch_start(self, trainer, pl_module, *args):
        if self.validation and not trainer.sanity_checking and self.start <= trainer.global_step < self.stop:
            torch.cuda.set_sync_debug_mode("error")
            FailOnHostSync.validation_batches_checked += 1

    def on_validation_batch_end(self, trainer, pl_module, *args):
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
def test_a_whole_training_step_on_the_gpu_never_waits_for_it(tiny_cfg):
    # Hooks, data loading, the replay, the scheduler and the loss metric included: a host that waits for the GPU
    # once per step serialises the two, and the step takes host time + GPU time instead of the longer of them.
    cfg = tiny_cfg("trainer=gpu", "model.whole_step=true", "trainer.max_epochs=3", "trainer.precision=32-true", "predict_test=false",
                   "data.pad_to_multiple_of=32", "trainer.log_every_n_steps=1000", "trainer.val_check_interval=1000",
                   "trainer.num_sanity_val_steps=0")
    with open_dict(cfg):
        cfg.callbacks.no_sync = {"_target_": "test_whole_step.FailOnHostSync"}
    try:
        train(cfg)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
def test_validation_of_a_graphed_run_never_waits_for_the_gpu_between_batches(tiny_cfg):
    # Its forward replayed, the dev loss and metrics accumulated on the GPU: the host queues a validation's batches
    # without waiting, and waits once at its end for the scores.
    cfg = tiny_cfg("trainer=gpu", "model.whole_step=true", "trainer.max_epochs=3", "trainer.precision=32-true", "predict_test=false",
                   "data.pad_to_multiple_of=32", "trainer.val_check_interval=10")
    with open_dict(cfg):
        cfg.callbacks.no_sync = {"_target_": "test_whole_step.FailOnHostSync", "start": 20, "stop": 60,
                                 "training": False, "validation": True}
    FailOnHostSync.validation_batches_checked = 0
    try:
        train(cfg)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert FailOnHostSync.validation_batches_checked >= 4 * 8  # validations at steps 20, 30, 40, 50; 8 batches each


def test_a_compiled_model_inside_the_whole_step_trains_as_the_eager_one(tiny_cfg, tmp_path):
    # model.compile=true model.whole_step=true: torch.compile's kernels run inside train_step (on a GPU, inside
    # its graphs); on the CPU the compiled step is compared with the eager one, with the compiler drawing dropout
    # masks as eager PyTorch does (its own generator would give other masks: the same training, other bits).
    # Its C++ kernels are scalar: no build of a probe program per vector ISA and shorter code, a third of the
    # test's time on 2 cores (vectorized kernels are the compiler's to test; what runs them is the same).
    import torch._inductor.config

    torch._dynamo.reset()
    # one batch shape (lengths padded to 32), so one graph to compile for training and one for evaluation
    common = ["model.whole_step=true", "trainer.precision=32-true", "+trainer.max_steps=4", "predict_test=false",
              "data.pad_to_multiple_of=32", "trainer.log_every_n_steps=2", "trainer.val_check_interval=4",
              "trainer.num_sanity_val_steps=0"]
    torch._dynamo.utils.counters.clear()
    with torch._inductor.config.patch({"fallback_random": True, "cpp.vec_isa_ok": False}):
        train(tiny_cfg(*common, "model.compile=true", output_dir=tmp_path / "compiled"))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # it went through the compiler
    train(tiny_cfg(*common, output_dir=tmp_path / "eager"))
    compiled, eager = curves(tmp_path, "compiled"), curves(tmp_path, "eager")
    assert compiled["train/loss"][::2] == eager["train/loss"][::2] == [2, 4]
    assert compiled["train/loss"][1::2] == pytest.approx(eager["train/loss"][1::2], abs=1e-4)
    assert compiled["val/loss"][1::2] == pytest.approx(eager["val/loss"][1::2], abs=1e-4)
    # torch.compile wraps the model (its keys gain "_orig_mod."): checkpoints keep the plain model's keys, so that
    # either kind of run continues, or is scored from, the other's
    keys = {run: torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"].keys()
            for run in ("compiled", "eager")}
    assert keys["compiled"] == keys["eager"] and not any("_orig_mod" in key for key in keys["compiled"])


@pytest.mark.parametrize("first,then", [("false", "true"), ("true", "false")])
def test_a_checkpoint_resumes_at_its_step_whichever_way_the_step_runs(tiny_cfg, tmp_path, first, then):
    # Lightning counts optimizer steps apart for automatic and manual optimization: a run stopped on a CPU
    # (automatic) and continued on a GPU (the whole step), or the other way round, goes on from its step.
    overrides = ["trainer.max_epochs=2", "predict_test=false", "trainer.precision=32-true"]
    cfg = tiny_cfg(*overrides, f"model.whole_step={first}", output_dir=tmp_path / "run")
    with open_dict(cfg):
        cfg.callbacks.stop = {"_target_": "test_robustness.StopBeforeStep", "step": 30}
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    train(tiny_cfg(*overrides, f"model.whole_step={then}", f"ckpt_path={last}", output_dir=tmp_path / "run"))
    assert torch.load(last, weights_only=True)["global_step"] == 40
    assert curves(tmp_path, "run")["val/loss"][::2] == [10, 20, 30, 40]


def test_a_roberta_without_token_type_ids_trains_a_pair_task_alike_on_both_paths(glue_dir, tmp_path):
    # RoBERTa: no token_type_ids, padding id 1 (not 0), positions counted from padding_idx + 1; the whole step pads
    # the resident training and dev sets itself (ResidentRows) with the tokenizer's padding id.
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    from conftest import compose_config, tiny_overrides

    sentences = [line.split("\t", 4)[3] for line in (glue_dir / "MRPC" / "train.tsv")
                 .read_text(encoding="utf-8-sig").splitlines()[1:]]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sentences, vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(tmp_path))
    tokenizer = transformers.RobertaTokenizerFast(vocab=str(tmp_path / "vocab.json"),
                                                  merges=str(tmp_path / "merges.txt"))
    assert tokenizer.pad_token_id == 1 and "token_type_ids" not in tokenizer("a b", "c d")
    model_dir = tmp_path / "roberta"
    tokenizer.save_pretrained(model_dir)
    transformers.RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=130, type_vocab_size=1,
                               pad_token_id=1, bos_token_id=0, eos_token_id=2).save_pretrained(model_dir)
    for whole_step in ("false", "true"):
        train(compose_config(tiny_overrides(
            "data=mrpc", f"data.local_dir={glue_dir / 'MRPC'}", f"model.name_or_path={model_dir}",
            "model.pretrained=false", "trainer.precision=32-true", "trainer.max_epochs=1", "predict_test=false",
            f"model.whole_step={whole_step}"), tmp_path / whole_step))
    automatic, whole = curves(tmp_path, "false"), curves(tmp_path, "true")
    assert automatic["val/loss"] and whole["train/loss"][::2] == automatic["train/loss"][::2]
    for metric in automatic:
        assert whole[metric] == pytest.approx(automatic[metric], rel=1e-5), metric
