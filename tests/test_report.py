"""report.py on a real 2-setting x 2-seed sweep with a failed job: numbers, listing, pictures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from test_sweeps import tiny
from test_train import read_metrics, run_cli


@pytest.fixture(scope="module")
def sweep(sst2_dir, tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("sweep")
    fixed = [o for o in tiny(sst2_dir, epochs=2) if not o.startswith("optimizer.lr")]
    result = run_cli(["-m", "optimizer.lr=3e-3,1e-3,1e6", "seed=1,2", *fixed, f"hydra.sweep.dir={sweep_dir}"])
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]  # the lr=1e6 jobs diverge
    return sweep_dir


def test_report_means_and_stds_equal_numpys(sweep):
    result = run_cli([str(sweep)], script="src/report.py")
    assert result.returncode == 1, "failed jobs make the report exit non-zero"
    report = json.loads((sweep / "report.json").read_text())
    for lr, jobs in (("0.003", ("0", "1")), ("0.001", ("2", "3"))):
        accs = [[float(r["val/acc"]) for r in read_metrics(sweep / j / "metrics.csv") if r.get("val/acc")] for j in jobs]
        group = next(g for g in report["groups"] if g["setting"] == f"optimizer.lr={lr}")
        assert group["n"] == 2
        assert group["best_mean"] == pytest.approx(np.mean([max(a) for a in accs]))
        assert group["best_std"] == pytest.approx(np.std([max(a) for a in accs], ddof=1))
        assert group["final_mean"] == pytest.approx(np.mean([a[-1] for a in accs]))
        assert group["final_std"] == pytest.approx(np.std([a[-1] for a in accs], ddof=1))
        assert f"| optimizer.lr={lr} | val/acc | 2 |" in result.stdout
    assert len(report["groups"]) == 2


def test_report_lists_failed_jobs(sweep):
    result = run_cli([str(sweep)], script="src/report.py")
    report = json.loads((sweep / "report.json").read_text())
    failed = {j["setting"] for j in report["not_finished"]}
    assert failed == {"optimizer.lr=1000000.0"} and len(report["not_finished"]) == 2
    assert "## Failed or unfinished jobs" in result.stdout and "The training loss became NaN or infinite" in result.stdout
    assert (sweep / "report.md").read_text().strip() == result.stdout.strip()
    assert "to continue the sweep" not in result.stdout  # diverged: rerun as they were, they would diverge again


def test_a_stopped_sweeps_report_lists_its_stopped_jobs_those_not_started_and_how_to_continue(sweep, tmp_path):
    stopped = tmp_path / "sweep"
    shutil.copytree(sweep, stopped)
    for job in ("4", "5"):  # the sweep was stopped before its last two jobs started
        shutil.rmtree(stopped / job)
    (stopped / "3" / "job_done.json").unlink()  # and job 3 by a signal, its checkpoint saved
    (stopped / "3" / "job_preempted.json").write_text(json.dumps({"reason": "Run stopped by SIGINT at step 17"}))
    (stopped / "0" / "job_done.json").unlink()  # job 0's process killed (out of memory) before it could say anything
    result = run_cli([str(stopped)], script="src/report.py")
    assert result.returncode == 1, result.stderr[-2000:]
    statuses = {j["name"]: j["status"] for j in json.loads((stopped / "report.json").read_text())["jobs"]}
    assert statuses == {"0": "unfinished", "1": "done", "2": "done", "3": "stopped", "4": "not started",
                        "5": "not started"}
    lines = result.stdout.splitlines()
    [job3] = [line for line in lines if line.startswith("- job 3 (stopped): optimizer.lr=0.001 seed=2 ")]
    assert job3.endswith(f" — Run stopped by SIGINT at step 17 (log: {stopped / '3' / 'train.log'})")
    [job5] = [line for line in lines if line.startswith("- job 5 (not started): ")]
    assert job5.startswith("- job 5 (not started): optimizer.lr=1000000.0 seed=2 ") and "log:" not in job5
    # The sweep's own command (its multirun.yaml's), in this dir, with resume=true
    assert "`python src/train.py -m optimizer.lr=3e-3,1e-3,1e6 seed=1,2 model=tiny " in result.stdout
    assert f" hydra.sweep.dir={stopped} resume=true`" in result.stdout


def test_report_plots_are_real_pictures(sweep):
    imread = pytest.importorskip("matplotlib.image", reason='plots need: pip install -e ".[sweeps]"').imread
    run_cli([str(sweep)], script="src/report.py")
    for name in ("val_acc.png", "val_loss.png"):
        image = imread(sweep / name)
        assert image.shape[:2] == (500, 800)
        assert image[..., :3].std() > 0.01, f"{name} is blank"


def test_report_on_a_dir_without_runs_says_so(tmp_path):
    result = run_cli([str(tmp_path), str(tmp_path / "typo")], script="src/report.py")
    assert result.returncode == 2 and "no run dirs" in result.stderr
    result = run_cli([str(tmp_path / "typo")], script="src/report.py")
    assert result.returncode == 2 and f"{tmp_path / 'typo'}: no such directory" in result.stderr
    (tmp_path / "report.md").write_text("")  # --out naming a file: one line, no traceback
    result = run_cli([str(tmp_path), "--out", str(tmp_path / "report.md")], script="src/report.py")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: --out {tmp_path / 'report.md'} is a file: give a directory" in result.stderr


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no directory can be made")
def test_report_to_a_place_that_cannot_be_made_names_out(sweep):
    # it said "error: [Errno 2] No such file or directory: '/proc/nonexistent'", naming no option
    result = run_cli([str(sweep), "--out", "/proc/nonexistent/report"], script="src/report.py")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert ("error: the report could not be written to /proc/nonexistent/report (--out): No such file or directory: "
            "/proc/nonexistent") in result.stderr


def test_report_goes_to_the_sweeps_wandb_group(sweep, tmp_path):
    # Not logged in: offline by itself, saying so and how to upload it (W&B's own lines say neither).
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY")}
    result = subprocess.run([sys.executable, "src/report.py", str(sweep), "--wandb"], cwd=ROOT, text=True,
                            capture_output=True, timeout=300, env={**env, "NETRC": str(tmp_path / "no-netrc")})
    assert result.returncode == 1  # the failed jobs still count
    assert f"so the report is logged offline under {sweep / 'wandb'}. Upload it later: wandb sync" in result.stderr
    run_file = next((sweep / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes()
    group = (sweep / ".wandb_group").read_text().strip().encode()  # the jobs' group
    assert b"\x32" + bytes([len(group)]) + group in run_file  # RunRecord.run_group
    assert b"report/val_acc" in run_file and b"report/settings" in run_file


def test_a_finished_jobs_overrides_come_from_its_own_record_not_a_later_commands(tmp_path):
    from glue_finetune.report import read_job

    job = tmp_path / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- optimizer.lr=0.001\n- seed=1\n- resume=true\n")  # rerun's
    (job / "job_done.json").write_text(json.dumps({"overrides": ["optimizer.lr=0.003", "seed=1"], "result": 0.8,
                                                   "started_at": 0.0, "finished_at": 1.0}))
    assert read_job(job).overrides == ["optimizer.lr=0.003", "seed=1"]
    (job / "job_done.json").unlink()  # unfinished: what .hydra/ says is all there is
    assert read_job(job).overrides == ["optimizer.lr=0.001", "seed=1", "resume=true"]


def fake_job(job_dir, lr: str, accs: list[float]) -> None:
    """A finished job as the report reads it: its overrides, completion record and metrics.csv."""
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={lr}\n")
    (job_dir / "job_done.json").write_text(json.dumps({"overrides": [f"optimizer.lr={lr}"], "result": accs[-1],
                                                       "started_at": 0.0, "finished_at": 1.0}))
    (job_dir / "metrics.csv").write_text("step,val/acc\n" + "".join(f"{10 * i},{a}\n" for i, a in enumerate(accs)))


def test_jobs_of_several_sweeps_are_told_apart_by_their_sweep(tmp_path):
    # Every sweep numbers its jobs from 0: a report over two sweeps names each job with its sweep's dir.
    fake_job(tmp_path / "lr_a" / "0", "0.001", [0.5, 0.7])
    fake_job(tmp_path / "lr_b" / "0", "0.003", [0.6, 0.8])
    fake_job(tmp_path / "lr_b" / "1", "0.01", [0.4, 0.5])
    for job in ("lr_a/0", "lr_b/0", "lr_b/1"):  # the seed is not swept: the jobs' configs hold the default
        (tmp_path / job / ".hydra" / "config.yaml").write_text("seed: 42\n")
    out = tmp_path / "out"
    result = run_cli([str(tmp_path / "lr_a"), str(tmp_path / "lr_b"), str(tmp_path / "lr_b" / "1"), "--out", str(out)],
                     script="src/report.py")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = json.loads((out / "report.json").read_text())["jobs"]
    assert [j["name"] for j in jobs] == ["lr_a/0", "lr_b/0", "lr_b/1"]  # lr_b/1, given twice, is listed once
    assert "| lr_a/0 | optimizer.lr=0.001 | 42 |" in result.stdout
    assert "| lr_b/0 | optimizer.lr=0.003 | 42 |" in result.stdout
    assert [j["seed"] for j in jobs] == [42, 42, 42]


def test_the_submission_zip_takes_each_file_from_the_best_job_that_wrote_it(tmp_path):
    from glue_finetune.report import find_jobs, write_submission_zip

    for name, task, acc, writes in (("0", "rte", 0.7, False), ("1", "rte", 0.6, True), ("2", "cola", 0.3, True)):
        job = tmp_path / "sweep" / name
        fake_job(job, "0.001", [acc])
        (job / ".hydra" / "config.yaml").write_text(f"data:\n  task: {task}\n")
        (job / "metrics.csv").write_text(f"step,{'val/acc' if task == 'rte' else 'val/mcc'},selected/"
                                         f"{'val/acc' if task == 'rte' else 'val/mcc'}\n10,{acc},\n10,,{acc}\n")
        if writes:
            (job / f"{'RTE' if task == 'rte' else 'CoLA'}.tsv").write_text(f"index\tprediction\n0\t{name}\n")
    zipped, missing = write_submission_zip(find_jobs([tmp_path / "sweep"]), tmp_path / "glue.zip")
    assert zipped == ["CoLA.tsv", "RTE.tsv"]  # RTE's best job (0.7) wrote none: the next one's file
    with zipfile.ZipFile(tmp_path / "glue.zip") as archive:
        assert archive.read("RTE.tsv").decode().endswith("0\t1\n")
    assert missing["SST-2.tsv"] == "no finished run of SST-2" and len(missing) == 9


def fake_glue_job(job_dir, task: str, selected: dict[str, float], scored: str | None = None,
                  overrides: tuple[str, ...] = (), predict_test: bool = True, max_train_samples: int | None = None,
                  train_examples: int | None = None, epochs: tuple[float, int] | None = None) -> None:
    """A finished job of a GLUE task as the report reads it, with its model card; ``scored``: the card's "covers 160
    of 408 dev examples" of a run scored on part of the dev set; ``max_train_samples``: its config's, and
    ``train_examples`` the card's "the first N training examples" (None where it trained on the whole set);
    ``epochs``: (the fractional epoch its training ended at, its config's trainer.max_epochs)."""
    from glue_finetune.artefacts import model_card
    from glue_finetune.tasks import TASKS

    spec = TASKS[task]
    fake_job(job_dir, "0.001", [selected[spec.main_metric]])
    if overrides:
        (job_dir / "job_done.json").write_text(json.dumps({"overrides": list(overrides), "started_at": 0.0,
                                                           "finished_at": 1.0, "result": 0.0}))
    (job_dir / ".hydra" / "config.yaml").write_text(f"data:\n  task: {task}\n  max_train_samples: "
                                                    f"{max_train_samples or 'null'}\npredict_test: {predict_test}\n"
                                                    "trainer:\n  max_epochs: ${task_recipe_epochs:${data.task}}\n")
    # the resolved config (experiment=glue's epochs are an interpolation in .hydra's)
    (job_dir / "hparams.yaml").write_text(f"trainer:\n  max_epochs: {epochs[1] if epochs else 3}\n")
    scores = {name: selected.get(name, 0.5) for name in spec.logged_metrics}
    trained = epochs[0] if epochs else 3.0
    rows = [["step", "epoch", spec.main_metric, *(f"selected/{n}" for n in scores)],
            [10, trained, selected[spec.main_metric], *[""] * len(scores)], [10, trained, "", *scores.values()]]
    (job_dir / "metrics.csv").write_text("".join(",".join(map(str, row)) + "\n" for row in rows))
    (job_dir / "README.md").write_text(model_card(
        name=f"tiny-finetuned-{task}", base_model="tiny", spec=spec, selected=scores, selection="val/loss",
        best=scores, hyperparameters={}, rows=[], on_hub=False, scored=scored, train_examples=train_examples))


def test_glue_rows_scored_on_part_of_the_dev_set_are_marked_and_left_out_of_the_score(tmp_path):
    from glue_finetune.report import write_report

    fake_glue_job(tmp_path / "sweep" / "0", "rte", {"val/acc": 0.7})
    fake_glue_job(tmp_path / "sweep" / "1", "mrpc", {"val/f1": 0.84, "val/acc": 0.73},
                  scored="160 of 408 dev examples")
    summary, markdown, _ = write_report([tmp_path / "sweep"], tmp_path / "out")
    glue = json.loads((tmp_path / "out" / "report.json").read_text())["glue"]
    mrpc = next(r for r in glue["tasks"] if r["task"] == "mrpc")
    assert mrpc["partial_dev"] == "160 of 408 dev examples" and glue["not_counted"] == ["MRPC"]
    assert glue["glue_score"] == pytest.approx(70.0)  # RTE's alone
    assert "| MRPC | 1 | F1 84.00 / Accuracy 73.00 | 78.50 † | 88.85/84.07 |" in markdown
    assert "† Scored on part of the dev set only (MRPC on 160 of 408 dev examples" in markdown
    assert "**GLUE score: 70.00** (mean of the task scores; a task's score is the mean of its metrics; not counted: " \
           "MRPC (†); not every GLUE task is in these runs)" in markdown
    assert "| 0.8400 (on 160 of 408 dev examples only) |" in markdown  # the jobs table too

    (tmp_path / "sweep" / "0" / "job_done.json").unlink()  # every task on part of its dev set: no score at all
    summary, markdown, _ = write_report([tmp_path / "sweep"], tmp_path / "out")
    assert summary["glue"]["glue_score"] is None and "**No GLUE score**" in markdown and "GLUE score:" not in markdown

    # a task with jobs on the whole dev set: its row is theirs alone, and counts
    fake_glue_job(tmp_path / "sweep" / "2", "mrpc", {"val/f1": 0.9, "val/acc": 0.8})
    summary, markdown, _ = write_report([tmp_path / "sweep"], tmp_path / "out")
    mrpc = summary["glue"]["tasks"][0]
    assert (mrpc["n"], mrpc["left_out"], mrpc["partial_dev"]) == (1, 1, None)
    assert summary["glue"]["glue_score"] == pytest.approx(85.0)
    assert "| MRPC | 1 | F1 90.00 / Accuracy 80.00 | 85.00 | 88.85/84.07 |" in markdown
    assert "Left out of the table: 1 MRPC job(s) scored on part of the dev set only" in markdown


def test_a_report_without_a_submission_zip_says_why(tmp_path):
    from glue_finetune.report import write_report

    fake_glue_job(tmp_path / "sweep" / "0", "mrpc", {"val/f1": 0.84, "val/acc": 0.73},
                  overrides=("data=mrpc", "debug=limit"), predict_test=False)
    fake_glue_job(tmp_path / "sweep" / "1", "rte", {"val/acc": 0.7})  # to write RTE.tsv, but did not
    out = tmp_path / "out"
    out.mkdir()
    (out / "glue_submission.zip").write_bytes(b"an earlier report's")
    summary, markdown, _ = write_report([tmp_path / "sweep"], out)
    assert summary["submission_zip"] is None and not (out / "glue_submission.zip").exists()
    missing = json.loads((out / "report.json").read_text())["submission_missing"]
    assert missing["MRPC.tsv"] == "the MRPC job ran with predict_test=false, as debug=limit sets"
    assert missing["RTE.tsv"] == "the RTE jobs with predict_test=true found no test file for it in their data"
    assert missing["CoLA.tsv"] == "no finished run of CoLA" and len(missing) == 11
    assert "No GLUE submission zip: no job wrote a test-set prediction file; missing MRPC.tsv (the MRPC job ran with " \
           "predict_test=false, as debug=limit sets); RTE.tsv (the RTE jobs with predict_test=true found no test " \
           "file for it in their data); CoLA.tsv, SST-2.tsv, STS-B.tsv, QQP.tsv, MNLI-m.tsv, MNLI-mm.tsv, AX.tsv, " \
           "QNLI.tsv, WNLI.tsv (no finished run of the task)" in markdown


def test_the_glue_table_names_spearmans_correlation_and_the_card_keeps_hugging_faces_name(tmp_path):
    from glue_finetune.report import write_report

    fake_glue_job(tmp_path / "sweep" / "0", "stsb", {"val/pearson": 0.88, "val/spearman": 0.87})
    _, markdown, _ = write_report([tmp_path / "sweep"], tmp_path / "out")
    assert "| STS-B | 1 | Pearson 88.00 / Spearman 87.00 | 87.50 |" in markdown
    card = (tmp_path / "sweep" / "0" / "README.md").read_text()
    assert "name: Spearmanr\n" in card and "type: spearmanr\n" in card  # the model-index, as Hugging Face's cards


def test_a_dir_of_sweeps_names_them_for_the_command(tmp_path):
    day = tmp_path / "2026-12-06"  # Hydra's multirun/<date>/<time>/<job>
    fake_job(day / "10-00-00" / "0", "0.001", [0.5, 0.7])
    fake_job(day / "11-30-00" / "0", "0.003", [0.6, 0.8])
    result = run_cli([str(day)], script="src/report.py")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"error: {day} holds sweep dirs, not run dirs: name the sweeps to report on, e.g. `python src/report.py " \
           f"{day / '10-00-00'} {day / '11-30-00'}`" in result.stderr
    assert run_cli([str(day / "10-00-00"), str(day / "11-30-00")], script="src/report.py").returncode == 0


def test_a_task_run_with_several_settings_is_reported_by_its_best_one_and_its_zip_follows(tmp_path):
    from glue_finetune.report import write_report

    sweep = tmp_path / "sweep"
    # lr=1e-3 has the best single job (0.75) but the lower mean (0.625); lr=2e-3 the better mean (0.68).
    for num, (lr, seed, acc) in enumerate([("1e-3", 1, 0.75), ("1e-3", 2, 0.5), ("2e-3", 1, 0.7), ("2e-3", 2, 0.66)]):
        job = sweep / str(num)
        fake_glue_job(job, "rte", {"val/acc": acc}, overrides=("data=rte", f"optimizer.lr={lr}", f"seed={seed}"))
        (job / "RTE.tsv").write_text(f"index\tprediction\n0\tjob{num}\n")
    fake_glue_job(sweep / "4", "mrpc", {"val/f1": 0.84, "val/acc": 0.73}, overrides=("data=mrpc", "seed=1"))
    summary, markdown, _ = write_report([sweep], tmp_path / "out")
    [rte] = [r for r in summary["glue"]["tasks"] if r["task"] == "rte"]
    assert (rte["n"], rte["settings"], rte["setting"]) == (2, 2, "data=rte optimizer.lr=2e-3")
    assert rte["metrics"]["val/acc"] == pytest.approx(68.0) and rte["score"] == pytest.approx(68.0)
    assert "RTE: data=rte optimizer.lr=2e-3 (best of 2)" in markdown
    with zipfile.ZipFile(tmp_path / "out" / "glue_submission.zip") as archive:
        assert archive.read("RTE.tsv").decode().endswith("job2\n")  # the reported setting's best job, not job 0


def test_a_setting_whose_runs_never_validated_is_reported_by_its_selected_scores(tmp_path):
    from glue_finetune.report import write_report

    for num, (seed, acc) in enumerate([(1, 0.4366), (2, 0.5634)]):  # WNLI: no validation during training
        job = tmp_path / "sweep" / str(num)
        fake_glue_job(job, "wnli", {"val/acc": acc}, overrides=("data=wnli", f"seed={seed}"))
        (job / "metrics.csv").write_text(f"step,selected/val/acc,selected/val/loss\n8,{acc},0.69\n")
    summary, markdown, _ = write_report([tmp_path / "sweep"], tmp_path / "out")
    [group] = summary["groups"]
    assert group["n"] == 2 and group["best_mean"] is None
    assert group["selected_mean"] == pytest.approx(0.5) and group["selected_std"] == pytest.approx((0.5634 - 0.4366) / 2 ** 0.5)
    assert "| (all jobs alike) | val/acc | 2 | 0.5000 ± 0.0897 | - | - |" in markdown


def test_a_sweep_over_data_folders_reports_each_folder_as_a_setting(tmp_path):
    from glue_finetune.report import find_jobs, label_settings

    for num, (folder, seed) in enumerate([("clean", 1), ("clean", 2), ("noisy", 1), ("noisy", 2)]):
        fake_job(tmp_path / "sweep" / str(num), "0.001", [0.8])
        overrides = [f"data.local_dir=/data/{folder}/SST-2", f"seed={seed}"]
        (tmp_path / "sweep" / str(num) / "job_done.json").write_text(json.dumps(
            {"overrides": overrides, "result": 0.8, "started_at": 0.0, "finished_at": 1.0}))
    fake_job(tmp_path / "other_machine" / "0", "0.001", [0.8])  # where the data is elsewhere: no setting of its own
    (tmp_path / "other_machine" / "0" / "job_done.json").write_text(json.dumps(
        {"overrides": ["data.local_dir=/scratch/SST-2", "seed=1"], "result": 0.8, "started_at": 0.0,
         "finished_at": 1.0}))
    jobs = find_jobs([tmp_path / "sweep"])
    label_settings(jobs)
    assert [j.setting for j in jobs] == [f"data.local_dir=/data/{folder}/SST-2"
                                         for folder in ("clean", "clean", "noisy", "noisy")]
    elsewhere = find_jobs([tmp_path / "sweep" / "0", tmp_path / "other_machine" / "0"])
    label_settings(elsewhere)
    assert [j.setting for j in elsewhere] == ["(all jobs alike)"] * 2


def test_glue_rows_trained_fewer_epochs_than_configured_are_marked(tmp_path):
    # A sweep cut short (+trainer.max_steps=40 of CoLA's 268 steps an epoch) stood beside run_glue.py's recipe
    # results unmarked.
    from glue_finetune.report import write_report

    fake_glue_job(tmp_path / "sweep" / "0", "cola", {"val/mcc": 0.3}, epochs=(40 / 268, 3))
    fake_glue_job(tmp_path / "sweep" / "1", "rte", {"val/acc": 0.7}, epochs=(3.0, 3))  # its whole schedule
    summary, markdown, _ = write_report([tmp_path / "sweep"], tmp_path / "out")
    assert "| CoLA | 1 | Matthews Correlation 30.00 | 30.00 § | 56.53 |" in markdown
    assert "| RTE | 1 | Accuracy 70.00 | 70.00 | 65.70 |" in markdown
    assert "§ Trained fewer epochs than its config's trainer.max_epochs (CoLA 0.15 of 3 epochs: trainer.max_steps, " \
           "max_time or early stopping ended training sooner): not run_glue.py's recipe." in markdown
    assert "with tasks trained fewer epochs than configured (§)" in markdown
    # Their overrides alike, the two tasks are two settings, each scored by its own metric
    assert [(g["setting"], g["metric"]) for g in summary["groups"]] == [("data=cola", "val/mcc"), ("data=rte", "val/acc")]


def test_glue_rows_trained_on_part_of_the_training_set_are_marked(tmp_path):
    from glue_finetune.report import write_report

    fake_glue_job(tmp_path / "sweep" / "0", "rte", {"val/acc": 0.7}, max_train_samples=64, train_examples=64)
    # a max_train_samples past WNLI's 635 training examples left none out: its card says the whole set
    fake_glue_job(tmp_path / "sweep" / "1", "wnli", {"val/acc": 0.5}, max_train_samples=100000)
    summary, markdown, _ = write_report([tmp_path / "sweep"], tmp_path / "out")
    assert "| RTE | 1 | Accuracy 70.00 | 70.00 ‡ | 65.70 |" in markdown
    assert "| WNLI | 1 | Accuracy 50.00 | 50.00 |" in markdown and "WNLI on the first" not in markdown
    assert "‡ Trained on part of the training set (RTE on the first 64 training examples: data.max_train_samples)" \
        in markdown
    assert "with tasks trained on part of their training set (‡)" in markdown
