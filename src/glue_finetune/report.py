"""Sweep report from run directories alone: a table per job, mean ± std per setting, curves with bands.

Reads each job's ``.hydra/overrides.yaml``, ``metrics.csv`` and its completion marker; needs no W&B.
"""

from __future__ import annotations

import csv
import json
import logging
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from glue_finetune.extras import installed
from glue_finetune.sweep import DONE, FAILED, read_json

log = logging.getLogger(__name__)

# Overrides that say where or how a job ran, not what it trained: left out when grouping jobs into settings.
NOT_A_SETTING = ("seed=", "hydra.", "hydra/", "data.local_dir=", "resume=", "ckpt_path=", "logger", "paths.")


@dataclass
class Job:
    dir: str
    overrides: list[str]
    status: str  # done | failed | unfinished
    error: str | None = None
    train_seconds: float | None = None
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # metric → [(step, value)]

    setting: str = ""  # the overrides that tell this job's setting apart from the others', seed excluded

    @property
    def best(self) -> tuple[int, float] | None:
        acc = self.curves.get("val/acc")
        return max(acc, key=lambda sv: (sv[1], -sv[0])) if acc else None

    @property
    def final(self) -> float | None:
        acc = self.curves.get("val/acc")
        return acc[-1][1] if acc else None


def read_job(job_dir: Path) -> Job:
    overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
    done, failed = read_json(job_dir / DONE), read_json(job_dir / FAILED)
    job = Job(str(job_dir), overrides, "done" if done else "failed" if failed else "unfinished",
              error=failed["error"] if failed else None,
              train_seconds=done["finished_at"] - done["started_at"] if done else None)
    if (job_dir / "metrics.csv").exists():
        with open(job_dir / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        for metric in ("val/acc", "val/loss"):
            job.curves[metric] = [(int(float(r["step"])), float(r[metric])) for r in rows if r.get(metric)]
    return job


def find_jobs(directories: list[Path]) -> list[Job]:
    """Every run dir (one with .hydra/overrides.yaml) given, or directly under a sweep dir given."""
    jobs = []
    for d in directories:
        if (d / ".hydra" / "overrides.yaml").exists():
            jobs.append(read_job(d))
        else:
            found = sorted(p.parent.parent for p in d.glob("*/.hydra/overrides.yaml"))
            if not found:
                raise FileNotFoundError(f"{d}: no run dirs (with .hydra/overrides.yaml) in it")
            jobs += [read_job(p) for p in found]
    return jobs


def label_settings(jobs: list[Job]) -> None:
    """Name each job's setting by the overrides that differ between jobs (the swept ones), not those all share."""
    values: dict[str, list[str]] = {}
    for job in jobs:
        for o in job.overrides:
            key, _, value = o.partition("=")
            values.setdefault(key, []).append(value)
    # swept: more than one value, or set in some jobs only
    swept = {key for key, vs in values.items() if len(set(vs)) > 1 or len(vs) < len(jobs)}
    for job in jobs:
        kept = [o for o in job.overrides if o.partition("=")[0] in swept and not o.startswith(NOT_A_SETTING)]
        job.setting = " ".join(kept) or "(all jobs alike)"


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1), as results over seeds are reported; no std for one value."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else None


def summarize(jobs: list[Job]) -> dict:
    label_settings(jobs)
    finished = [j for j in jobs if j.status == "done" and j.best]
    settings: dict[str, list[Job]] = {}
    for job in finished:
        settings.setdefault(job.setting, []).append(job)
    groups = []
    for setting, members in settings.items():
        best_mean, best_std = mean_std([j.best[1] for j in members])
        final_mean, final_std = mean_std([j.final for j in members])
        groups.append({"setting": setting, "n": len(members), "best_mean": best_mean, "best_std": best_std,
                       "final_mean": final_mean, "final_std": final_std})
    return {
        "jobs": [{"dir": j.dir, "overrides": j.overrides, "setting": j.setting, "status": j.status, "error": j.error,
                  "best_val_acc": j.best[1] if j.best else None, "best_step": j.best[0] if j.best else None,
                  "final_val_acc": j.final, "train_seconds": j.train_seconds} for j in jobs],
        "groups": groups,
        "not_finished": [{"dir": j.dir, "overrides": j.overrides, "setting": j.setting, "status": j.status,
                          "error": j.error, "log": str(Path(j.dir) / "train.log")}
                         for j in jobs if j.status != "done"],
    }


def plot(jobs: list[Job], metric: str, path: Path) -> Path:
    """One line per setting (the mean over its jobs at each step) with a band from min to max."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    settings: dict[str, list[Job]] = {}
    for job in jobs:
        if job.status == "done" and job.curves.get(metric):
            settings.setdefault(job.setting, []).append(job)
    for setting, members in settings.items():
        by_step: dict[int, list[float]] = {}
        for job in members:
            for step, value in job.curves[metric]:
                by_step.setdefault(step, []).append(value)
        steps = sorted(s for s, vs in by_step.items() if len(vs) == len(members))  # steps every job reached
        mean = [statistics.mean(by_step[s]) for s in steps]
        line = ax.plot(steps, mean, label=f"{setting} (n={len(members)})")[0]
        ax.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                        color=line.get_color(), alpha=0.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(metric)
    ax.set_title(f"{metric}: mean over seeds, band = min-max")
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


def to_markdown(summary: dict, plots: list[Path]) -> str:
    lines = ["# Sweep report", "", "## Settings (mean ± std over seeds)", "",
             "| setting | n | best val/acc | final val/acc |", "|---|---|---|---|"]
    for g in summary["groups"]:
        lines.append(f"| {g['setting']} | {g['n']} | {fmt(g['best_mean'], g['best_std'])} | "
                     f"{fmt(g['final_mean'], g['final_std'])} |")
    lines += ["", "## Jobs", "", "| job | setting | seed | status | best val/acc (step) | final val/acc | train time |",
              "|---|---|---|---|---|---|---|"]
    for j in summary["jobs"]:
        best = f"{j['best_val_acc']:.4f} ({j['best_step']})" if j["best_val_acc"] is not None else "-"
        seconds = f"{j['train_seconds']:.0f} s" if j["train_seconds"] is not None else "-"
        seed = next((o.partition("=")[2] for o in j["overrides"] if o.startswith("seed=")), "default")
        lines.append(f"| {Path(j['dir']).name} | {j['setting']} | {seed} | {j['status']} | {best} | "
                     f"{fmt(j['final_val_acc'])} | {seconds} |")
    if summary["not_finished"]:
        lines += ["", "## Failed or unfinished jobs", ""]
        for j in summary["not_finished"]:
            error = " — " + " ".join(j["error"].split()) if j["error"] else ""
            lines.append(f"- job {Path(j['dir']).name} ({j['status']}): {' '.join(j['overrides'])}{error} (log: {j['log']})")
    lines += ["", *[f"![{p.stem}]({p.name})" for p in plots], ""]
    return "\n".join(lines)


def write_report(directories: list[Path], out_dir: Path) -> tuple[dict, str, list[Path]]:
    jobs = find_jobs(directories)
    summary = summarize(jobs)
    out_dir.mkdir(parents=True, exist_ok=True)
    if installed("matplotlib"):
        plots = [plot(jobs, "val/acc", out_dir / "val_acc.png"), plot(jobs, "val/loss", out_dir / "val_loss.png")]
    else:
        plots = []
        log.warning('No plots: matplotlib is not installed (pip install -e ".[sweeps]"); the tables are complete.')
    markdown = to_markdown(summary, plots)
    (out_dir / "report.md").write_text(markdown)
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2))
    return summary, markdown, plots
