"""What a finished run leaves: model card, exported model, predictions from it."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml
from hydra.utils import instantiate
from transformers import AutoTokenizer, pipeline

from test_train import run_cli
from glue_finetune.artefacts import export_model
from glue_finetune.inference import SentimentPredictor, read_sentences
from glue_finetune.errors import UserError
from glue_finetune.training import train


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, sst2_dir):
    from conftest import TINY_OVERRIDES, compose_config

    run_dir = tmp_path_factory.mktemp("run")
    train(compose_config(TINY_OVERRIDES + [f"data.local_dir={sst2_dir}"], run_dir))
    return run_dir


def test_model_card_has_one_row_per_evaluation_from_metrics_csv(finished_run):
    text = (finished_run / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    with open(finished_run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    evals = [r for r in rows if r.get("val/acc")]
    best = float(next(r for r in rows if r.get("best_ckpt/val_acc"))["best_ckpt/val_acc"])
    result = meta["model-index"][0]["results"][0]
    assert result["metrics"][0] == {"name": "Accuracy", "type": "accuracy", "value": best}
    assert result["dataset"]["config"] == "sst2" and meta["datasets"] == ["glue"]

    table = [line for line in body.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(table) == len(evals)
    train_loss = {r["step"]: float(r["train/loss"]) for r in rows if r.get("train/loss")}
    for line, r in zip(table, evals):
        loss, epoch, step, val_loss, acc = (c.strip() for c in line.strip("|").split("|"))
        assert int(step) == int(float(r["step"]))
        assert float(epoch) == pytest.approx(float(r["epoch"]), abs=1e-4)
        assert float(val_loss) == pytest.approx(float(r["val/loss"]), abs=1e-4)
        assert float(acc) == pytest.approx(float(r["val/acc"]), abs=1e-4)
        assert float(loss) == pytest.approx(train_loss[r["step"]], abs=1e-4)
    for key in ("learning_rate: 0.003", "train_batch_size: 16", "eval_batch_size: 8", "seed: 42",
                "optimizer: AdamW with betas=(0.9,0.999) and epsilon=1e-08", "lr_scheduler_type: linear",
                "lr_scheduler_warmup_ratio: 0.06", "num_epochs: 3", "devices: 1", "precision: "):
        assert f"- {key}" in body
    for framework in ("Transformers", "Pytorch", "Lightning", "Datasets", "Tokenizers", "Hydra"):
        assert f"- {framework} " in body


def test_exported_model_loads_with_pipeline_and_matches_the_module(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    module = instantiate(cfg.model, optimizer=instantiate(cfg.optimizer), _convert_="all").eval()
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    export_model(module.model, tokenizer, tmp_path / "model")
    sentences = ["a great movie", "awful , boring mess", "the plot is dull", "wonderful acting", "it 's fine"]
    classify = pipeline("text-classification", model=str(tmp_path / "model"), device="cpu")
    from_pipeline = [r["label"] for r in classify(sentences)]
    with torch.no_grad():
        logits = module(tokenizer(sentences, padding=True, return_tensors="pt")).logits
    assert from_pipeline == [module.model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert set(from_pipeline) <= {"negative", "positive"}


def test_submission_file_comes_from_the_exported_model(finished_run, sst2_dir):
    lines = (finished_run / "SST-2.tsv").read_text().splitlines()[1:]
    with open(sst2_dir / "test.tsv") as f:
        sentences = [row[1] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    predictions = SentimentPredictor(finished_run / "model").predict(sentences)
    assert [int(line.split("\t")[1]) for line in lines] == [p.label_id for p in predictions]


def test_predict_cli_writes_one_prediction_per_sentence(finished_run, tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("a great movie\n\nawful , boring mess\nthe plot is dull\n")
    out = tmp_path / "predictions.tsv"
    result = run_cli(["run_dir=" + str(finished_run), f"input={sentences}", f"output={out}"], script="src/predict.py")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = out.read_text().splitlines()
    assert rows[0] == "label\tp_negative\tp_positive\tsentence"
    assert [r.split("\t")[3] for r in rows[1:]] == ["a great movie", "awful , boring mess", "the plot is dull"]
    for r in rows[1:]:
        label, p_neg, p_pos, _ = r.split("\t")
        assert label in ("negative", "positive") and float(p_neg) + float(p_pos) == pytest.approx(1, abs=1e-3)

    single = run_cli(["run_dir=" + str(finished_run), "text=a wonderful film"], script="src/predict.py")
    assert single.returncode == 0 and single.stdout.splitlines()[1].endswith("\ta wonderful film")


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.txt", "", "no sentences to classify"),
        ("blank.txt", "\n  \n", "no sentences to classify"),
        ("empty.tsv", "", "the file is empty"),
        ("noheader.tsv", "great movie\t1\n", "has no 'sentence' column"),
        ("ragged.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n", ":3: expected 2 tab-separated fields, found 3"),
    ],
)
def test_bad_input_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_sentences(path)


def test_predict_cli_reports_a_bad_file_without_traceback(finished_run, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = run_cli(["run_dir=" + str(finished_run), f"input={empty}"], script="src/predict.py")
    assert result.returncode == 2
    assert "no sentences to classify" in result.stderr and "Traceback" not in result.stderr
