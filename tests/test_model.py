"""TextClassifier: labels, loss, train mode, optimizer groups."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from hydra.utils import instantiate

from glue_finetune.model import TextClassifier


def build(tiny_cfg, *overrides) -> TextClassifier:
    cfg = tiny_cfg(*overrides)
    return instantiate(cfg.model, optimizer=instantiate(cfg.optimizer), scheduler=None, _convert_="all")


def test_labels_are_negative_and_positive(tiny_cfg):
    config = build(tiny_cfg).model.config
    assert config.id2label == {0: "negative", 1: "positive"}
    assert config.label2id == {"negative": 0, "positive": 1}
    assert config.num_hidden_layers == 2 and 32 <= config.hidden_size <= 64


def test_forward_gives_loss_and_two_logits(tiny_cfg):
    model = build(tiny_cfg)
    batch = {"input_ids": torch.tensor([[2, 50, 3], [2, 60, 3]]), "attention_mask": torch.ones(2, 3, dtype=torch.long),
             "labels": torch.tensor([0, 1]), "idx": torch.tensor([7, 8])}  # extra keys are ignored
    out = model(batch)
    assert out.logits.shape == (2, 2) and out.loss.ndim == 0 and torch.isfinite(out.loss)


def test_pretrained_weights_are_fine_tuned_in_train_mode(tiny_cfg, tmp_path):
    # from_pretrained hands back an eval-mode model; dropout must be on while fine-tuning.
    build(tiny_cfg).model.save_pretrained(tmp_path)
    model = build(tiny_cfg, f"model.name_or_path={tmp_path}", "model.pretrained=true")
    assert all(m.training for m in model.model.modules())


def test_a_model_fine_tuned_on_another_task_gets_a_new_head_and_keeps_its_encoder(tiny_cfg, tmp_path, caplog):
    # Intermediate-task transfer: SST-2's 2-label classifier, then STS-B's single score.
    caplog.set_level(logging.INFO, logger="glue_finetune")
    sst2 = build(tiny_cfg).model
    sst2.save_pretrained(tmp_path)
    stsb = build(tiny_cfg, f"model.name_or_path={tmp_path}", "model.pretrained=true", "data=stsb").model
    assert stsb.classifier.out_features == 1 and stsb.config.problem_type == "regression"
    for name, weight in sst2.bert.state_dict().items():
        assert torch.equal(stsb.bert.state_dict()[name], weight), f"{name} was not kept"
    assert "has a classifier head of another size (classifier.bias (2,), classifier.weight (2, " in caplog.text
    assert "STS-B gets a new one" in caplog.text


def test_weight_decay_skips_biases_and_layer_norms(tiny_cfg):
    model = build(tiny_cfg, "optimizer.weight_decay=0.01")
    optimizer = model.configure_optimizers()
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_without_weight_decay_one_group_holds_every_parameter(tiny_cfg):
    model = build(tiny_cfg)
    optimizer = model.configure_optimizers()
    assert len(optimizer.param_groups) == 1
    held = [id(p) for p in optimizer.param_groups[0]["params"]]
    assert sorted(held) == sorted(id(p) for p in model.parameters()) and len(held) > 0  # each once, biases too
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == 3e-3


def test_bf16_mixed_precision_clips_gradients_with_a_fused_optimizer(tiny_cfg):
    import lightning as L

    model = build(tiny_cfg, "optimizer.fused=true")
    model.trainer = L.Trainer(precision="bf16-mixed", accelerator="cpu", logger=False, enable_progress_bar=False)
    optimizer = model.configure_optimizers()
    batch = {"input_ids": torch.randint(5, 100, (8, 6)), "labels": torch.randint(0, 2, (8,))}
    model(batch).loss.backward()
    model.configure_gradient_clipping(optimizer, gradient_clip_val=1e-3, gradient_clip_algorithm="norm")
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    assert norm <= 1e-3 * 1.01


@pytest.mark.gpu
def test_training_step_never_waits_for_the_gpu(tiny_cfg):
    # A host sync per step (`.item()`, a NaN check in a metric, ...) stalls the GPU's queue on every batch.
    model = build(tiny_cfg).cuda()
    model.trainer = type("T", (), {"global_step": 0})()  # training_step reads only the step
    batch = {"input_ids": torch.randint(5, 100, (8, 6), device="cuda"), "labels": torch.randint(0, 2, (8,), device="cuda")}
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            model.training_step(batch, 0).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_dev_loss_is_the_mean_over_examples_and_shows_a_nan(tiny_cfg):
    # Batches of 4, 4 and 2 examples: the last batch's mean loss counts for 2 examples, not for a third of the set.
    model = build(tiny_cfg).eval()
    generator = torch.Generator().manual_seed(0)
    ids, labels = torch.randint(5, 90, (10, 6), generator=generator), torch.tensor([0, 1] * 5)

    def dev_loss() -> torch.Tensor:
        with torch.no_grad():
            for a, b in ((0, 4), (4, 8), (8, 10)):
                batch = {"input_ids": ids[a:b], "attention_mask": torch.ones(b - a, 6, dtype=torch.long),
                         "labels": labels[a:b]}
                model._evaluate(batch, model.val_losses[0], model.val_metrics[0])
        return model._scores(model.val_losses, model.val_metrics)["val/loss"]

    with torch.no_grad():
        logits = model({"input_ids": ids, "attention_mask": torch.ones(10, 6, dtype=torch.long)}).logits
    expected = torch.nn.functional.cross_entropy(logits, labels, reduction="none").mean()
    torch.testing.assert_close(dev_loss(), expected)
    # a token whose embedding is NaN, only in the last batch: that batch's loss is NaN, and so is the dev loss (a
    # NaN batch is not dropped from the mean)
    ids[9, 1] = 95
    with torch.no_grad():
        model.model.get_input_embeddings().weight[95] = float("nan")
    assert torch.isnan(dev_loss())


def test_under_ddp_every_rank_stops_when_any_rank_saw_a_non_finite_loss(tiny_cfg):
    # A rank that stopped alone would leave the others waiting for it in their next collective: the check takes
    # the largest flag of all ranks (here, the other rank's step 7 comes through the strategy's reduce).
    from types import SimpleNamespace

    from glue_finetune.errors import TrainingDivergedError

    model = build(tiny_cfg)
    reduced = []

    def reduce(tensor, reduce_op):
        reduced.append(reduce_op)
        return torch.maximum(tensor, torch.tensor(7))

    model._trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(reduce=reduce), callbacks=[],
                                     global_step=10)
    with pytest.raises(TrainingDivergedError, match="at optimizer step 7; training stopped at its next check, step 10"):
        model.check_finite()
    assert reduced == ["max"] and int(model.first_nonfinite_step) == -1  # this rank's own flag is left as it was


def deberta_dir(tmp_path, version: str) -> str:
    """A randomly initialised DeBERTa's config (v1 or v2), sized for the tiny BERT's vocabulary: trained with
    model.pretrained=false and the tiny BERT's tokenizer (data.tokenizer)."""
    import json

    from transformers import DebertaConfig, DebertaV2Config

    from conftest import TINY_BERT

    vocab_size = json.loads((TINY_BERT / "config.json").read_text())["vocab_size"]
    config = (DebertaV2Config if version == "v2" else DebertaConfig)(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128)
    config.save_pretrained(tmp_path / f"deberta-{version}")
    return str(tmp_path / f"deberta-{version}")


def test_a_model_without_sdpa_attention_runs_its_own(tiny_cfg, tmp_path, caplog):
    # model.attn_implementation=sdpa, the default, is BERT's: transformers refuses it for DeBERTa, which failed to
    # load with a message suggesting sdpa itself.
    from conftest import TINY_BERT

    with caplog.at_level(logging.INFO, logger="glue_finetune.model"):
        model = build(tiny_cfg, f"model.name_or_path={deberta_dir(tmp_path, 'v2')}", "model.pretrained=false",
                      f"data.tokenizer={TINY_BERT}")
    assert type(model.model).__name__ == "DebertaV2ForSequenceClassification"
    assert model.model.config._attn_implementation == "eager"
    assert ("DebertaV2ForSequenceClassification has no SDPA attention in transformers: it runs its own (eager) "
            "instead of model.attn_implementation=sdpa.") in caplog.text
    # BERT keeps the sdpa asked for
    assert build(tiny_cfg).model.config._attn_implementation == "sdpa"


def test_a_model_that_cannot_run_in_bf16_says_which_precision_to_use(tiny_cfg, tmp_path):
    from conftest import TINY_BERT
    from glue_finetune.errors import UserError
    from glue_finetune.training import train

    cfg = tiny_cfg(f"model.name_or_path={deberta_dir(tmp_path, 'v1')}", "model.pretrained=false",
                   f"data.tokenizer={TINY_BERT}", "trainer.precision=bf16-mixed", "+trainer.max_steps=2",
                   "predict_test=false", output_dir=tmp_path / "run")
    with pytest.raises(UserError, match=r"DebertaForSequenceClassification does not run in bf16 \(trainer.precision="
                                        r"bf16-mixed\): its forward overflowed \(.*BFloat16 without overflow.*\). "
                                        r"Fix: trainer.precision=32-true."):
        train(cfg)


def test_predictions_in_bf16_of_a_model_that_cannot_run_in_it_say_which_precision_to_use(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from conftest import TINY_BERT
    from glue_finetune.errors import UserError
    from glue_finetune.inference import Predictor

    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(deberta_dir(tmp_path, "v1"),
                                                                                      num_labels=2))
    predictor = Predictor(model, AutoTokenizer.from_pretrained(TINY_BERT), device="cpu", precision="bf16", task="sst2")
    with pytest.raises(UserError, match=r"DebertaForSequenceClassification does not run in bf16: its forward "
                                        r"overflowed \(.*\). Fix: --precision 32"):
        predictor.predict([("a fine film",)])
    predictor.bf16 = False
    assert len(predictor.predict([("a fine film",)])) == 1  # in float32 it runs


def test_a_max_length_past_the_models_positions_is_refused_before_training_and_predicting(tiny_cfg, tmp_path):
    # A sentence longer than the model's position embeddings fails inside the forward, whenever one comes (a
    # device-side assert on a GPU): said before training or predicting, with the length that fits.
    import json

    from transformers import BertConfig

    from conftest import TINY_BERT
    from glue_finetune.errors import UserError
    from glue_finetune.training import train

    config = json.loads((TINY_BERT / "config.json").read_text())
    BertConfig(**{**config, "max_position_embeddings": 64}).save_pretrained(tmp_path / "short")
    short = (f"model.name_or_path={tmp_path / 'short'}", f"data.tokenizer={TINY_BERT}", "+trainer.max_steps=2",
             "predict_test=false")
    with pytest.raises(UserError, match=rf"data.max_length=128, but {tmp_path / 'short'} has positions for 64 tokens: "
                                        r"a longer sentence would index past them. Fix: data.max_length=64."):
        train(tiny_cfg(*short, output_dir=tmp_path / "refused"))
    assert not (tmp_path / "refused" / "checkpoints").exists()  # before any training
    train(tiny_cfg(*short, "data.max_length=64", output_dir=tmp_path / "fits"))
    assert (tmp_path / "fits" / "checkpoints" / "last.ckpt").exists()

    from glue_finetune.inference import Predictor

    long_sentence = " ".join(["a moving , funny and wholly original film"] * 20)  # well past 64 tokens
    with pytest.raises(UserError, match=r"--max-length 100: this model has positions for 64 tokens, .* Fix: "
                                        r"--max-length 64 or less."):
        Predictor.load(tmp_path / "fits", max_length=100)
    # Moved out of its run, the model records no length: 128 would index past its positions, so it takes 64.
    elsewhere = shutil.copytree(tmp_path / "fits" / "model", tmp_path / "elsewhere")
    predictor = Predictor.load(elsewhere, precision="32")
    assert predictor.max_length == 64
    assert len(predictor.predict([(long_sentence,)])) == 1


def test_a_pairs_second_sentence_is_its_own_segment_and_a_model_without_segments_trains_on_pairs(glue_dir, tmp_path):
    # transformers 5's tokenizers of ALBERT, XLNet, Funnel and others leave segment ids out unless asked for (their
    # model_input_names lack them): their models read both of a pair's sentences as the first. DistilBERT's model
    # takes none, and trains and predicts pairs all the same.
    import json

    from transformers import AutoTokenizer, DistilBertConfig

    from conftest import TINY_BERT, compose_config, tiny_overrides
    from glue_finetune.inference import Predictor
    from glue_finetune.training import train

    albert_like = tmp_path / "segments-unless-asked"
    AutoTokenizer.from_pretrained(TINY_BERT).save_pretrained(albert_like)
    config = json.loads((albert_like / "tokenizer_config.json").read_text())
    (albert_like / "tokenizer_config.json").write_text(json.dumps({**config, "model_input_names": ["input_ids",
                                                                                                   "attention_mask"]}))
    tokenizer = AutoTokenizer.from_pretrained(albert_like)
    assert "token_type_ids" not in tokenizer("a pair", "of sentences")
    data = instantiate(compose_config(tiny_overrides("data=mrpc", f"data.local_dir={glue_dir / 'MRPC'}",
                                                     f"data.tokenizer={albert_like}")).data)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    for ids, segments in zip(batch["input_ids"].tolist(), batch["token_type_ids"].tolist()):
        first_sep = ids.index(tokenizer.sep_token_id)
        assert set(segments[: first_sep + 1]) == {0} and segments[first_sep + 1] == 1  # the second sentence: 1

    distilbert = tmp_path / "distilbert"
    vocab_size = json.loads((TINY_BERT / "config.json").read_text())["vocab_size"]
    DistilBertConfig(vocab_size=vocab_size, dim=32, n_layers=1, n_heads=2, hidden_dim=64).save_pretrained(distilbert)
    train(compose_config(tiny_overrides(
        "data=mrpc", f"data.local_dir={glue_dir / 'MRPC'}", f"model.name_or_path={distilbert}",
        f"data.tokenizer={albert_like}", "model.pretrained=false", "+trainer.max_steps=3", "predict_test=false"),
        tmp_path / "run"))
    predictor = Predictor.load(tmp_path / "run", precision="32")
    assert len(predictor.predict([("The cat sat.", "A cat was sitting.")])) == 1
    # The exported tokenizer gives a pair's segment ids as training did: pipeline() feeds them to the model
    exported = AutoTokenizer.from_pretrained(tmp_path / "run" / "model")
    assert exported("The cat sat.", "A cat was sitting.")["token_type_ids"][-1] == 1

