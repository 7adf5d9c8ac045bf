"""Sweep report from run directories alone: a table per job, mean ± std per setting, curves with bands, and, when
the jobs cover GLUE tasks, the GLUE table with its score and the submission zip.

Reads each job's ``.hydra/config.yaml`` (its task), ``.hydra/overrides.yaml``, ``metrics.csv``, completion
marker and model card; needs no W&B. Every number is the task's own metric (val/mcc for CoLA, val/pearson for
STS-B, ...).
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import statistics
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from glue_finetune.config import recorded_sweep, sweep_overrides
from glue_finetune.extras import installed
from glue_finetune.results import curve, read_metrics
from glue_finetune.sweep import DONE, FAILED, PREEMPTED, read_json, recorded_config, recorded_sweep_command
from glue_finetune.tasks import METRIC_LABELS, TASKS, TaskSpec, metric_prefix

log = logging.getLogger(__name__)

# Overrides that say where or how a job ran, not what it trained: left out when grouping jobs into settings.
NOT_A_SETTING = ("seed=", "hydra.", "hydra/", "data.local_dir=", "data.glue_dir=", "resume=", "ckpt_path=", "logger",
                 "paths.")
DATA_FOLDER = ("data.local_dir=", "data.glue_dir=")
# run_glue.py's published bert-base-cased dev results (transformers' text-classification example README), for the
# GLUE table: task → its metrics in the task table's order, ×100.
RUN_GLUE_RESULTS = {"cola": (56.53,), "sst2": (92.32,), "mrpc": (88.85, 84.07), "stsb": (88.64, 88.48),
                    "qqp": (90.71, 87.49), "mnli": (83.91, 84.10), "qnli": (90.66,), "rte": (65.70,), "wnli": (56.34,)}
# A run scored on part of the dev set (debug=limit, trainer.limit_val_batches, ...) says so first in its model card,
# the run's one record of it: "**A debug run: every score below covers 160 of 408 dev examples only** ...".
PART_OF_DEV_SET = re.compile(r"every score below covers (.+?) only")
# A finished run's card says when it trained on part of the training set ("the first 2,000 training examples of the
# GLUE SST-2 dataset"); a data.max_train_samples at or past the set's size left nothing out, and its card says so.
PART_OF_TRAINING_SET = re.compile(r"the first ([\d,]+) training examples of the GLUE")


@dataclass
class Job:
    dir: str
    overrides: list[str]
    task: TaskSpec
    # done | failed | stopped (by a signal, to be continued) | unfinished (killed, or running) | not started
    status: str
    error: str | None = None
    train_seconds: float | None = None
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric → [(step, value)]
    selected: dict[str, float] = field(default_factory=dict)  # the selected checkpoint's scores (val/...)
    partial_dev: str | None = None  # how much of the dev set those scores cover when not all of it ("160 of 408 ...")
    predict_test: bool = True  # whether the job was to write its test-set predictions (the submission files)
    seed: int | str | None = None  # the job's seed: its override, else its config's (the default, 42)
    max_train_samples: int | None = None  # trained on the first N training examples only (data.max_train_samples)
    # (epochs trained, trainer.max_epochs) where training ended sooner (trainer.max_steps, max_time, early stopping)
    fewer_epochs: tuple[float, int] | None = None

    setting: str = ""  # the overrides that tell this job's setting apart from the others', seed excluded
    name: str = ""  # the job's name in the tables: its dir's name, with as many parent dirs as tell it apart

    @property
    def main(self) -> str:
        return self.task.main_metric

    @property
    def best(self) -> tuple[int, float] | None:
        """The best (step, value) of the task's main metric over the run's validations."""
        values = self.curves.get(self.main)
        return max(values, key=lambda sv: (sv[1], -sv[0])) if values else None

    @property
    def final(self) -> float | None:
        values = self.curves.get(self.main)
        return values[-1][1] if values else None


def read_job(job_dir: Path) -> Job:
    done, failed = read_json(job_dir / DONE), read_json(job_dir / FAILED)
    stopped = read_json(job_dir / PREEMPTED) if not (done or failed) else None
    # A finished job's own record of its overrides, then Hydra's (.hydra/, which a run of an earlier version had
    # rewritten by each later command in its dir, also one that skipped the finished job).
    overrides = done["overrides"] if done and isinstance(done.get("overrides"), list) else \
        yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    config_file = job_dir / ".hydra" / "config.yaml"
    config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.exists() else {}
    task = config.get("data", {}).get("task", "sst2")
    card = job_dir / "README.md"
    card_text = card.read_text(errors="replace") if done and card.is_file() else None
    partial = PART_OF_DEV_SET.search(card_text) if card_text else None
    max_train_samples = (config.get("data") or {}).get("max_train_samples")
    if card_text is not None and max_train_samples:  # the card knows whether it left any training example out
        trained_on = PART_OF_TRAINING_SET.search(card_text)
        max_train_samples = int(trained_on.group(1).replace(",", "")) if trained_on else None
    job = Job(str(job_dir), overrides, TASKS.get(task, TASKS["sst2"]),
              "done" if done else "failed" if failed else "stopped" if stopped else "unfinished",
              error=failed["error"] if failed else stopped.get("reason") if stopped else None,
              # every attempt of a job continued from its checkpoint (a preempted or failed one's), not only its last
              train_seconds=done["finished_at"] - done["started_at"] + done.get("earlier_attempts_s", 0.0)
              if done else None,
              partial_dev=partial.group(1) if partial else None,
              predict_test=bool(config.get("predict_test", True)),
              seed=next((o.partition("=")[2] for o in overrides if o.startswith("seed=")), config.get("seed")),
              max_train_samples=max_train_samples)
    rows = read_metrics(job_dir / "metrics.csv")
    for metric in job.task.logged_metrics:
        job.curves[metric] = curve(rows, metric)
    for row in rows:
        job.selected.update({k.removeprefix("selected/"): v for k, v in row.items() if k.startswith("selected/")})
    # The selected scores' row (the last, as for job.selected) is training's last step, with its fractional epoch;
    # the epochs planned, resolved (.hydra's config holds experiment=glue's ${task_recipe_epochs:...}).
    trained = next((r["epoch"] for r in reversed(rows) if "epoch" in r and any(k.startswith("selected/") for k in r)),
                   None)
    max_epochs = ((recorded_config(job_dir) or {}).get("trainer") or {}).get("max_epochs")  # hparams.yaml
    if trained is not None and isinstance(max_epochs, int) and trained < max_epochs - 1e-6:
        job.fewer_epochs = (trained, max_epochs)
    return job


def jobs_not_started(sweep_dir: Path, started: list[Job]) -> list[Job]:
    """The jobs of a sweep that have no dir yet (stopped before they started, or still to come), from the sweep's
    ``multirun.yaml``; none for a sweeper that picks its jobs as it goes (Optuna) or jobs not in numbered dirs."""
    try:
        config = recorded_sweep(sweep_dir)
        if not config["sweeper"]["_target_"].endswith(".BasicSweeper") or config["sweep"]["subdir"] != \
                "${hydra.job.num}":
            return []
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        planned = [list(job) for batch in BasicSweeper.split_arguments(sweep_overrides(config), None) for job in batch]
    except Exception:  # no multirun.yaml (not a sweep dir), or one this cannot read: the dirs found are the jobs
        return []
    have = {Path(job.dir).name for job in started}
    default_task = started[0].task if started else TASKS["sst2"]
    return [Job(str(sweep_dir / str(num)), overrides,
                next((TASKS[o.partition("=")[2]] for o in overrides if o.startswith("data=")
                      and o.partition("=")[2] in TASKS), default_task), "not started")
            for num, overrides in enumerate(planned) if str(num) not in have]


def find_jobs(directories: list[Path]) -> list[Job]:
    """Every run dir (one with .hydra/overrides.yaml) given, or directly under a sweep dir given."""
    jobs = []
    for d in directories:
        if not Path(d).is_dir():
            raise FileNotFoundError(f"{d}: no such directory (give a sweep dir, multirun/<date>/<time>, or run dirs)")
        if (d / ".hydra" / "overrides.yaml").exists():
            jobs.append(read_job(d))
        else:
            found = sorted(p.parent.parent for p in d.glob("*/.hydra/overrides.yaml"))
            # Hydra's multirun/<date>: one sweep dir per time, each holding its jobs
            sweeps = sorted({p.parents[2] for p in d.glob("*/*/.hydra/overrides.yaml")}) if not found else []
            if sweeps:
                raise FileNotFoundError(
                    f"{d} holds sweep dirs, not run dirs: name the sweeps to report on, e.g. `python src/report.py "
                    f"{' '.join(shlex.quote(str(s)) for s in sweeps)}` (all of them in one report)")
            if not found:
                raise FileNotFoundError(f"{d}: no run dirs (with .hydra/overrides.yaml) in it (give a sweep dir, "
                                        "multirun/<date>/<time>, or run dirs)")
            started = [read_job(p) for p in found]
            jobs += started + jobs_not_started(d, started)
    unique = {Path(j.dir).resolve(): j for j in reversed(jobs)}  # a job given twice (its sweep and itself) once
    return [j for j in jobs if unique[Path(j.dir).resolve()] is j]


def name_jobs(jobs: list[Job]) -> None:
    """Each job by the end of its path that no other job shares: "3" within one sweep; "14-02-11/3" for every job
    when the report covers several sweeps, whose jobs are all numbered from 0."""
    parts = [Path(j.dir).resolve().parts for j in jobs]
    several_sweeps = len({own[:-1] for own in parts}) > 1
    for job, own in zip(jobs, parts):
        depth = 2 if several_sweeps else 1
        while depth < len(own) and any(other != own and other[-depth:] == own[-depth:] for other in parts):
            depth += 1
        job.name = "/".join(own[-depth:])


def label_settings(jobs: list[Job]) -> None:
    """Name each job's setting by the overrides that differ between jobs (the swept ones), not those all share."""
    values: dict[str, list[str]] = {}
    for job in jobs:
        for o in job.overrides:
            key, _, value = o.partition("=")
            values.setdefault(key, []).append(value)
    # swept: more than one value, or set in some jobs only
    swept = {key for key, vs in values.items() if len(set(vs)) > 1 or len(vs) < len(jobs)}
    # Where the data is differs between machines and is no setting; but one sweep's jobs given several data folders
    # (clean and noisy labels, say) trained on different data.
    by_sweep: dict[tuple[Path, str], set[str]] = {}
    for job in jobs:
        for o in job.overrides:
            if o.startswith(DATA_FOLDER):
                by_sweep.setdefault((Path(job.dir).parent, o.partition("=")[0]), set()).add(o)
    data_swept = {key for (_, key), seen in by_sweep.items() if len(seen) > 1}
    several_tasks = len({job.task.name for job in jobs}) > 1
    for job in jobs:
        kept = [o for o in job.overrides if o.partition("=")[0] in swept
                and (not o.startswith(NOT_A_SETTING) or o.partition("=")[0] in data_swept)]
        if several_tasks and not any(o.startswith(("data=", "data.task=")) for o in kept):
            # jobs of other tasks with overrides alike (sweeps of one task each, its task set in no override):
            # one setting would average one task's metric with another's
            kept.insert(0, f"data={job.task.name}")
        job.setting = " ".join(kept) or "(all jobs alike)"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1), as results over seeds are reported; no std for one value."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def task_score(spec: TaskSpec, selected: dict[str, float]) -> float | None:
    """A task's GLUE score (×100): the mean of its metrics, over its dev sets (MNLI: matched and mismatched), as
    GLUE's leaderboard averages a task's metrics."""
    values = [v for name, v in selected.items() if not name.endswith("/loss") and name.split("/")[-1] in spec.metrics]
    return 100 * statistics.mean(values) if values else None


def glue_table(jobs: list[Job]) -> dict | None:
    """Per task: its selected checkpoint's metrics (mean over its finished jobs, e.g. seeds), its score; and the
    GLUE score, the mean of the task scores. None unless the jobs cover GLUE tasks other than SST-2 alone.

    A task run with several settings (a learning-rate sweep) is represented by one of them, the best by its jobs'
    mean score on the dev set, as GLUE results are reported (BERT's: the best fine-tuning learning rate on dev),
    not by a pool of every setting's jobs; its row names that setting and lists its jobs (``jobs``), whose best is
    the one whose test predictions go in the submission zip.

    Scores on part of a dev set (a debug run's) are no result: a task's row leaves its jobs out where it has jobs
    scored on the whole dev set, and is marked (``partial_dev``) where it has none; such rows are not in the score."""
    by_task: dict[str, list[Job]] = {}
    for job in jobs:
        if job.status == "done" and job.selected:
            by_task.setdefault(job.task.name, []).append(job)
    if not by_task or set(by_task) == {"sst2"}:  # SST-2 alone: the settings table says it all
        return None
    rows = []
    for name in [t for t in TASKS if t in by_task]:
        spec = TASKS[name]
        scored = [j for j in by_task[name] if not j.partial_dev] or by_task[name]
        by_setting: dict[str, list[Job]] = {}
        for job in scored:
            by_setting.setdefault(job.setting, []).append(job)
        setting, members = max(by_setting.items(),
                               key=lambda item: statistics.mean(task_score(spec, j.selected) for j in item[1]))
        names = [f"{metric_prefix(split)}/{m}" for split in spec.dev_splits for m in spec.metrics]
        metrics = {m: 100 * statistics.mean(j.selected[m] for j in members) for m in names if m in members[0].selected}
        rows.append({"task": name, "glue_name": spec.glue_name, "n": len(members), "metrics": metrics,
                     "score": statistics.mean(task_score(spec, j.selected) for j in members),
                     "setting": setting, "settings": len(by_setting), "jobs": [j.dir for j in members],
                     "run_glue": RUN_GLUE_RESULTS.get(name),
                     "partial_dev": "; ".join(sorted({j.partial_dev for j in members if j.partial_dev})) or None,
                     "train_subset": sorted({j.max_train_samples for j in members if j.max_train_samples}),
                     "fewer_epochs": sorted({f"{j.fewer_epochs[0]:.2f} of {j.fewer_epochs[1]}" for j in members
                                             if j.fewer_epochs}),
                     "left_out": len(by_task[name]) - len(scored)})
    counted = [r for r in rows if not r["partial_dev"]]
    return {"tasks": rows, "glue_score": statistics.mean(r["score"] for r in counted) if counted else None,
            "not_counted": [r["glue_name"] for r in rows if r["partial_dev"]],
            "complete": {r["task"] for r in counted} >= set(RUN_GLUE_RESULTS)}


def summarize(jobs: list[Job]) -> dict:
    name_jobs(jobs)
    label_settings(jobs)
    # A finished job counts with its selected checkpoint's score, which a run that never validated during training
    # (WNLI's default) has too; best and final are over the jobs that validated.
    finished = [j for j in jobs if j.status == "done" and (j.best or j.main in j.selected)]
    settings: dict[str, list[Job]] = {}
    for job in finished:
        settings.setdefault(job.setting, []).append(job)
    groups = []
    for setting, members in settings.items():
        selected_mean, selected_std = mean_std(scores) if (scores := [j.selected[j.main] for j in members
                                                                      if j.main in j.selected]) else (None, None)
        validated = [j for j in members if j.best]
        best_mean, best_std = mean_std([j.best[1] for j in validated]) if validated else (None, None)
        final_mean, final_std = mean_std([j.final for j in validated]) if validated else (None, None)
        groups.append({"setting": setting, "metric": members[0].main, "n": len(members),
                       "selected_mean": selected_mean, "selected_std": selected_std, "best_mean": best_mean,
                       "best_std": best_std, "final_mean": final_mean, "final_std": final_std})
    return {
        "jobs": [{"name": j.name, "dir": j.dir, "overrides": j.overrides, "task": j.task.name, "setting": j.setting,
                  "status": j.status, "error": j.error, "metric": j.main,
                  "best": j.best[1] if j.best else None, "best_step": j.best[0] if j.best else None,
                  "final": j.final, "selected": j.selected, "partial_dev": j.partial_dev,
                  "train_seconds": j.train_seconds, "seed": j.seed} for j in jobs],
        "groups": groups,
        "glue": glue_table(jobs),
        "not_finished": [{"name": j.name, "dir": j.dir, "overrides": j.overrides, "setting": j.setting, "status": j.status,
                          "error": j.error,
                          "log": str(Path(j.dir) / "train.log") if j.status != "not started" else None}
                         for j in jobs if j.status != "done"],
        # resume=true reruns a diverged job as it was, to diverge again (the sweep's summary says what to do instead)
        "sweeps_to_continue": sorted({str(Path(j.dir).parent) for j in jobs if j.status != "done"
                                      and not (j.error or "").startswith("TrainingDivergedError")
                                      and (Path(j.dir).parent / "multirun.yaml").exists()}),
    }


def plot(jobs: list[Job], metric: str, path: Path) -> Path:
    """One line per setting (the mean over its jobs at each step) with a band from min to max. ``metric`` is
    "main" (each job's task metric) or a logged name such as val/loss."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    settings: dict[str, list[Job]] = {}
    for job in jobs:
        name = job.main if metric == "main" else metric
        if job.status == "done" and job.curves.get(name):
            settings.setdefault(job.setting, []).append(job)
    for setting, members in settings.items():
        name = members[0].main if metric == "main" else metric
        by_step: dict[int, list[float]] = {}
        for job in members:
            for step, value in job.curves[name]:
                by_step.setdefault(step, []).append(value)
        steps = sorted(s for s, vs in by_step.items() if len(vs) == len(members))  # steps every job reached
        mean = [statistics.mean(by_step[s]) for s in steps]
        line = ax.plot(steps, mean, label=f"{setting} (n={len(members)}, {name})")[0]
        ax.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                        color=line.get_color(), alpha=0.2)
    title = "main metric of each task" if metric == "main" else metric
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(title)
    ax.set_title(f"{title}: mean over seeds, band = min-max")
    ax.grid(alpha=0.3)
    if settings:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def fmt(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def glue_markdown(glue: dict) -> list[str]:
    lines = ["## GLUE (dev sets, the selected checkpoints; mean over each task's jobs, ×100)", "",
             "| task | n | metrics | score | run_glue.py, bert-base-cased |", "|---|---|---|---|---|"]
    for r in glue["tasks"]:
        spec = TASKS[r["task"]]
        metrics = " / ".join(f"{METRIC_LABELS[name.split('/')[-1]]}"
                             f"{' (mm)' if name.startswith('val_mismatched') else ''} {value:.2f}"
                             for name, value in r["metrics"].items())
        reference = "/".join(f"{v:.2f}" for v in r["run_glue"]) if r["run_glue"] else "-"
        mark = (" †" if r["partial_dev"] else "") + (" ‡" if r["train_subset"] else "") + (
            " §" if r["fewer_epochs"] else "")
        lines.append(f"| {spec.glue_name} | {r['n']} | {metrics} | {r['score']:.2f}{mark} | {reference} |")
    partial = [f"{r['glue_name']} on {r['partial_dev']}" for r in glue["tasks"] if r["partial_dev"]]
    left_out = [f"{r['left_out']} {r['glue_name']} job(s)" for r in glue["tasks"] if r["left_out"]]
    subsets = [f"{r['glue_name']} on the first {' / '.join(f'{n:,}' for n in r['train_subset'])}"
               for r in glue["tasks"] if r["train_subset"]]
    shortened = [f"{r['glue_name']} {' / '.join(r['fewer_epochs'])}" for r in glue["tasks"] if r["fewer_epochs"]]
    lines.append("")
    if shortened:
        lines += [f"§ Trained fewer epochs than its config's trainer.max_epochs ({', '.join(shortened)} epochs: "
                  "trainer.max_steps, max_time or early stopping ended training sooner): not run_glue.py's recipe.",
                  ""]
    if subsets:
        lines += [f"‡ Trained on part of the training set ({', '.join(subsets)} training examples: "
                  "data.max_train_samples): not comparable with run_glue.py's results, which train on all of it.", ""]
    if partial:
        lines += [f"† Scored on part of the dev set only ({', '.join(partial)}: the trainer's limit_val_batches, "
                  "limit_test_batches, overfit_batches or fast_dev_run, as the debug configs set): a check of the "
                  "pipeline, not comparable with run_glue.py's results, and not in the GLUE score.", ""]
    if left_out:
        lines += [f"Left out of the table: {', '.join(left_out)} scored on part of the dev set only (the task's "
                  "other jobs cover all of it).", ""]
    chosen = [f"{r['glue_name']}: {r['setting']} (best of {r['settings']})" for r in glue["tasks"] if r["settings"] > 1]
    if chosen:
        lines += [f"Tasks run with several settings: each row is the setting with the best mean score on the dev set "
                  f"(as GLUE results are reported), its jobs' mean; the submission zip takes that setting's best job. "
                  f"{'; '.join(chosen)}.", ""]
    if glue["glue_score"] is None:
        lines += ["**No GLUE score**: every task here was scored on part of its dev set only (†).", ""]
    else:
        notes = [*(["not counted: " + ", ".join(glue["not_counted"]) + " (†)"] if glue["not_counted"] else []),
                 *([] if glue["complete"] else ["not every GLUE task is in these runs"]),
                 *(["with tasks trained on part of their training set (‡)"]
                   if any(r["train_subset"] and not r["partial_dev"] for r in glue["tasks"]) else []),
                 *(["with tasks trained fewer epochs than configured (§)"]
                   if any(r["fewer_epochs"] and not r["partial_dev"] for r in glue["tasks"]) else [])]
        lines += [f"**GLUE score: {glue['glue_score']:.2f}** (mean of the task scores; a task's score is the mean of "
                  f"its metrics{''.join('; ' + n for n in notes)})", ""]
    return lines


def submission_markdown(summary: dict) -> list[str]:
    """Where the GLUE server's files are, or why there are none; each file it expects that is missing, and why."""
    # the files of the tasks that ran first, with why; those of tasks not run in one list
    not_run = [name for name, why in summary["submission_missing"].items() if why.startswith("no finished run of ")]
    missing = "; ".join([*(f"{name} ({why})" for name, why in summary["submission_missing"].items()
                           if name not in not_run),
                         *([f"{', '.join(not_run)} (no finished run of the task)"] if not_run else [])])
    if not summary["submission_zip"]:
        return [f"No GLUE submission zip: no job wrote a test-set prediction file; missing {missing}", ""]
    return [f"Submission files for the GLUE server: `{Path(summary['submission_zip']).name}`"
            + (f" — incomplete: the server takes all "
               f"{len(summary['submission_missing']) + len(summary['submission_files'])} files; missing {missing}"
               if missing else ""), ""]


def to_markdown(summary: dict, plots: list[Path]) -> str:
    lines = ["# Sweep report" if len(summary["jobs"]) > 1 else "# Run report", ""]
    if summary["glue"]:
        lines += glue_markdown(summary["glue"]) + submission_markdown(summary)
    lines += ["## Settings (mean ± std over seeds)", "",
              "selected: the selected checkpoint's score on the dev set (what each run returns); best and final: the "
              "best and the last of its validations during training.", "",
              "| setting | metric | n | selected | best | final |", "|---|---|---|---|---|---|"]
    for g in summary["groups"]:
        lines.append(f"| {g['setting']} | {g['metric']} | {g['n']} | {fmt(g['selected_mean'], g['selected_std'])} | "
                     f"{fmt(g['best_mean'], g['best_std'])} | {fmt(g['final_mean'], g['final_std'])} |")
    lines += ["", "## Jobs", "", "| job | setting | seed | status | metric | best (step) | final | selected | train time |",
              "|---|---|---|---|---|---|---|---|---|"]
    for j in summary["jobs"]:
        best = f"{j['best']:.4f} ({j['best_step']})" if j["best"] is not None else "-"
        seconds = f"{j['train_seconds']:.0f} s" if j["train_seconds"] is not None else "-"
        seed = "?" if j["seed"] is None else j["seed"]  # no config to read it from: a run of an old version
        selected = fmt(j["selected"].get(j["metric"])) + (f" (on {j['partial_dev']} only)" if j["partial_dev"] else "")
        lines.append(f"| {j['name']} | {j['setting']} | {seed} | {j['status']} | {j['metric']} | {best} | "
                     f"{fmt(j['final'])} | {selected} | {seconds} |")
    if summary["not_finished"]:
        lines += ["", "## Failed or unfinished jobs", ""]
        for j in summary["not_finished"]:
            error = " — " + " ".join(j["error"].split()) if j["error"] else ""
            log_file = f" (log: {j['log']})" if j["log"] else ""
            lines.append(f"- job {j['name']} ({j['status']}): {' '.join(j['overrides'])}{error}{log_file}")
        for sweep_dir in summary["sweeps_to_continue"]:
            lines.append(f"- to continue the sweep (finished jobs are skipped; stopped and unfinished ones continue from "
                         f"their last checkpoint; failed ones, their cause fixed, and those not started run again): "
                         f"`{recorded_sweep_command(sweep_dir)}`")
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    return "\n".join(lines)


def write_submission_zip(jobs: list[Job], path: Path, glue: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """Every task's submission file(s), each from the task's job with the best selected main metric that wrote it,
    under the names the GLUE server expects (CoLA.tsv, ..., MNLI-m.tsv, MNLI-mm.tsv, AX.tsv); with ``glue``
    (``glue_table``'s), from the jobs of the setting each task's row reports. Returns the files zipped (none: no
    zip), and each file the server expects that is not in it, with why (it takes a complete set)."""
    reported = {Path(d) for row in (glue or {}).get("tasks", []) for d in row["jobs"]}
    reported_tasks = {row["task"] for row in (glue or {}).get("tasks", [])}
    ranked: dict[str, list[Job]] = {}  # task -> its finished jobs, best first
    for job in sorted((j for j in jobs if j.status == "done" and j.main in j.selected
                       and (j.task.name not in reported_tasks or Path(j.dir) in reported)),
                      key=lambda j: j.selected[j.main], reverse=True):
        ranked.setdefault(job.task.name, []).append(job)
    files, missing = {}, {}
    for name in RUN_GLUE_RESULTS:  # every task GLUE scores, in the task table's order
        spec = TASKS[name]
        for file_name in [*spec.submissions.values(), *(TASKS["ax"].submissions.values() if name == "mnli" else [])]:
            written = [Path(j.dir) / file_name for j in ranked.get(name, []) if (Path(j.dir) / file_name).is_file()]
            if written:
                files[file_name] = written[0]
            elif name in ranked:
                missing[file_name] = not_written_why(spec, ranked[name])
            else:
                missing[file_name] = f"no finished run of {spec.glue_name}"
    if files:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file_name, source in sorted(files.items()):
                archive.write(source, arcname=file_name)
    else:  # an earlier report's zip would pass for these runs'
        path.unlink(missing_ok=True)
    return sorted(files), missing


def not_written_why(spec: TaskSpec, jobs: list[Job]) -> str:
    """Why none of a task's finished jobs wrote one of its submission files: each was told not to (predict_test=false,
    as the debug configs set), or those that were to write it found no test file for it in their data."""
    if not any(j.predict_test for j in jobs):
        debug = sorted({o for j in jobs for o in j.overrides if o.startswith("debug=")})
        ran = "job ran" if len(jobs) == 1 else f"jobs ({len(jobs)}) ran"
        set_by = f", as {' and '.join(debug)} set{'s' if len(debug) == 1 else ''}" if debug else ""
        return f"the {spec.glue_name} {ran} with predict_test=false{set_by}"
    return f"the {spec.glue_name} jobs with predict_test=true found no test file for it in their data"


def write_report(directories: list[Path], out_dir: Path) -> tuple[dict, str, list[Path]]:
    jobs = find_jobs(directories)
    summary = summarize(jobs)
    out_dir.mkdir(parents=True, exist_ok=True)
    if installed("matplotlib"):
        mains = {job.main for job in jobs}
        main_png = f"{mains.pop().replace('/', '_')}.png" if len(mains) == 1 else "val_main.png"  # val_acc.png, ...
        plots = [plot(jobs, "main", out_dir / main_png), plot(jobs, "val/loss", out_dir / "val_loss.png")]
    else:
        plots = []
        log.warning('No plots: matplotlib is not installed (pip install -e ".[sweeps]"); the tables are complete.')
    zipped, missing = write_submission_zip(jobs, out_dir / "glue_submission.zip", summary["glue"]) \
        if summary["glue"] else ([], {})
    zip_path = out_dir / "glue_submission.zip" if zipped else None
    summary.update(submission_zip=str(zip_path) if zip_path else None, submission_files=zipped,
                   submission_missing=missing)
    markdown = to_markdown(summary, plots)
    (out_dir / "report.md").write_text(markdown)
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2))
    return summary, markdown, plots

