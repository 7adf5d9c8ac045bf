"""GLUE task shapes: this project's `python src/train.py data=<task>` against a plain Hugging Face Trainer script, same
recipe and rows, metrics and whole-process seconds per task.

    python bench/glue_tasks.py                                     (CPU: MiniLM, 2,000 training rows, 1 epoch, seeds 42-44)
    python bench/glue_tasks.py --quick --seeds 42 --tasks cola stsb   (a smoke run: 200 training rows, one seed)
    python bench/glue_tasks.py --tasks rte --seeds 42 43 44 45 46     (one task, more seeds)

One task of each shape GLUE has, each from GLUE's own files (../shared/data/glue/<GLUE name>/):
  cola  single sentences, 2 classes, Matthews correlation
  mrpc  sentence pairs, 2 classes, F1 and accuracy
  stsb  sentence pairs, regression (scores 0-5), Pearson and Spearman correlation
  rte   sentence pairs with long premises (many truncated at 128 tokens), 2 classes, accuracy
for
  (project) python src/train.py model=minilm trainer=cpu trainer.precision=32-true data=<task> ... selection.metric=last
            validating once, at the end of the epoch, and keeping its final weights (as run_glue.py does); its outputs
            (checkpoint, metrics.csv, the exported model and its card; no test predictions) are part of its cost
  (hf)      python bench/hf_trainer_glue.py --task <task>: Trainer with dynamic padding, as a run_glue.py-style user
            script, reading the rows with the project's own reader (glue_finetune.tasks.read_glue_file), so both tools
            train and evaluate on identical rows and labels
on all-MiniLM-L6-v2, the first 2,000 training rows (--train-samples), one epoch, batch 16 (eval 8), AdamW at lr 1e-4
(--lr), weight decay 0, a linear schedule with 6% warm-up, gradient clipping at 1.0, max_length 128, then one
evaluation on the task's whole dev set. Both in float32 (the project forced with trainer.precision=32-true; the
Trainer's default on a CPU), so the metrics compare like for like. Metrics: the project's torchmetrics values, read
from its metrics.csv (selected/val/...); the Trainer's from scikit-learn / scipy, as GLUE computes them.

Whole-process seconds: each command timed from process start to exit (subprocess + time.perf_counter: interpreter
start-up, imports, reading and tokenizing, model loading, training, the dev evaluation, whatever each tool writes).
One untimed warm-up run of each tool first (--no-warmup: none; 200 rows of the first task), so both start with warm
file caches; then, task by task and seed by seed, one run of each tool, alternating which goes first. Each run writes
to a fresh temp dir, deleted after. Prints, per task, each metric's mean ± std over the seeds and the mean seconds of
each tool, then the difference project - HF per metric (with both stds) and the ratio HF/project seconds; the same
numbers go to --out as JSON (rewritten after every run, so an interrupted benchmark keeps what it measured), with the
1-minute load average at the start of each run. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from glue_finetune.results import read_metrics  # noqa: E402  (pure Python: csv)
from processes import ENV, composed_values, output_notes, probe_machine, run_timed, shown  # noqa: E402
from glue_finetune.tasks import TASKS  # noqa: E402  (pure Python)

DEFAULT_TASKS = ("cola", "mrpc", "stsb", "rte")
TOOLS = {"project": "this project (src/train.py), fp32", "hf": "HF Trainer (hf_trainer_glue.py), fp32"}
PROJECT_RESULT = re.compile(r"^result: (.*?)\s+\(selected", re.M)
PROJECT_VALUE = re.compile(r"val/(\w+) = (-?[0-9.]+|nan)")
# What the project's composed config must say for the two commands to do the same work (checked with --cfg job).
RECIPE = {"data.max_length": 128, "data.batch_size": 16, "data.eval_batch_size": 8,
          "optimizer._target_": "torch.optim.AdamW", "optimizer.weight_decay": 0.0, "scheduler.name": "linear",
          "scheduler.warmup_ratio": 0.06, "trainer.max_epochs": 1, "trainer.val_check_interval": 1.0,
          "trainer.check_val_every_n_epoch": 1, "trainer.gradient_clip_val": 1.0, "trainer.accumulate_grad_batches": 1,
          "trainer.precision": "32-true", "selection.metric": "last", "predict_test": False}

# The machine, and what the children will use, asked of the same Python the runs use (this process imports no torch).
def task_dir(args, task: str) -> str:
    return os.path.join(args.glue_dir, TASKS[task].glue_name)


def project_cmd(args, task: str, seed: int, run_dir: str, rows: int | None = None) -> list[str]:
    return [sys.executable, "src/train.py", "model=minilm", "trainer=cpu", "trainer.precision=32-true", f"data={task}",
            f"data.glue_dir={args.glue_dir}", f"data.max_train_samples={rows or args.train_samples}",
            "trainer.max_epochs=1", f"optimizer.lr={args.lr:g}", "trainer.val_check_interval=1.0",
            "trainer.check_val_every_n_epoch=1", "selection.metric=last", "logger=csv", "predict_test=false",
            f"seed={seed}", f"hydra.run.dir={run_dir}"]


def hf_cmd(args, task: str, seed: int, run_dir: str, rows: int | None = None) -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "hf_trainer_glue.py"), "--task", task, "--model", args.model,
            "--data", task_dir(args, task), "--output-dir", run_dir, "--train-samples", str(rows or args.train_samples),
            "--seed", str(seed), "--lr", f"{args.lr:g}"]


def command(args, tool: str, task: str, seed: int, run_dir: str, rows: int | None = None) -> list[str]:
    return (project_cmd if tool == "project" else hf_cmd)(args, task, seed, run_dir, rows)


def project_metrics(out: str, run_dir: str, task: str) -> tuple[dict, float | None]:
    """The selected (final) weights' dev metrics: metrics.csv's last row with selected/val/..., else the result line."""
    keys = TASKS[task].metrics
    for row in reversed(read_metrics(Path(run_dir) / "metrics.csv")):
        if all(f"selected/val/{k}" in row for k in keys):
            return {k: row[f"selected/val/{k}"] for k in keys}, row.get("selected/val/loss")
    lines = PROJECT_RESULT.findall(out)
    values = {k: float(v) for k, v in PROJECT_VALUE.findall(lines[-1])} if lines else {}
    return {k: values[k] for k in keys if k in values}, values.get("loss")


def hf_metrics(out: str, task: str) -> tuple[dict, float | None]:
    """The JSON line hf_trainer_glue.py prints last."""
    for line in reversed(out.splitlines()):
        if line.startswith("{") and '"metrics"' in line:
            try:
                doc = json.loads(line)
            except json.JSONDecodeError:
                continue
            return {k: doc["metrics"][k] for k in TASKS[task].metrics if k in doc["metrics"]}, doc.get("loss")
    return {}, None


def run_once(args, tool: str, task: str, seed: int, rows: int | None = None) -> dict:
    """One whole process, timed from just before it starts until it has exited; its temp dir is deleted after."""
    tmp = tempfile.mkdtemp(prefix=f"gt-{tool}-{task}-")
    run_dir = os.path.join(tmp, "run")
    cmd = command(args, tool, task, seed, run_dir, rows)
    load = os.getloadavg()[0]
    try:
        seconds, proc = run_timed(cmd, args.timeout_s)
        out = proc.stdout
        metrics, loss = project_metrics(out, run_dir, task) if tool == "project" else hf_metrics(out, task)
        row = {"seed": seed, "seconds": seconds, "metrics": metrics, "loss": loss, "returncode": proc.returncode,
               "load_avg_1m": load}
        missing = [k for k in TASKS[task].metrics if k not in metrics]
        if proc.returncode != 0 or missing:
            row["error"] = f"exit {proc.returncode}" + (f", no {'/'.join(missing)} in its output" if missing else "")
        output_notes(row, out, tmp, tail=1000)
    except subprocess.TimeoutExpired as err:
        row = {"seed": seed, "seconds": None, "metrics": {}, "loss": None, "error": f"timed out after {err.timeout} s",
               "load_avg_1m": load}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row["command"] = shown(cmd, tmp)
    return row


def check_project_config(args, task: str) -> dict:
    """The project's composed config (--cfg job) for the timed command: the recipe keys, and any that differ."""
    cmd = project_cmd(args, task, args.seeds[0], os.path.join(tempfile.gettempdir(), "gt-cfg-check"))
    expected = {**RECIPE, "data.task": task, "data.max_train_samples": args.train_samples, "optimizer.lr": args.lr}
    try:
        values = composed_values(cmd, list(expected))
    except Exception as err:  # the check must not stop the benchmark
        return {"error": f"{type(err).__name__}: {err}"}
    return {"values": values, "differs_from_recipe": {k: values[k] for k, v in expected.items() if values[k] != v}}


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    return (statistics.mean(values) if values else None, statistics.stdev(values) if len(values) > 1 else None)


def stats(rows: list[dict], task: str) -> dict:
    done = [r for r in rows if "error" not in r]
    out = {"n": len(done), "failed": len(rows) - len(done)}
    for key in (*TASKS[task].metrics, "loss"):
        values = {r["seed"]: (r["loss"] if key == "loss" else r["metrics"][key]) for r in done}
        values = {s: v for s, v in values.items() if v is not None}
        mean, std = mean_std(list(values.values()))
        out[key] = {"mean": mean, "std": std, "per_seed": values}
    mean, std = mean_std([r["seconds"] for r in done])
    out["seconds"] = {"mean": mean, "std": std, "per_seed": {r["seed"]: r["seconds"] for r in done}}
    return out


def compare(summary: dict, task: str) -> dict:
    """Project - HF per metric (with both stds; within_2_std: |difference| <= 2 x the larger std), and HF/project
    seconds from the means and per seed pair."""
    p, h = summary["project"], summary["hf"]
    out = {}
    for key in (*TASKS[task].metrics, "loss"):
        a, b = p[key], h[key]
        diff = a["mean"] - b["mean"] if a["mean"] is not None and b["mean"] is not None else None
        stds = [s for s in (a["std"], b["std"]) if s is not None]
        out[key] = {"project_minus_hf": diff, "std_project": a["std"], "std_hf": b["std"],
                    "within_2_std": (abs(diff) <= 2 * max(stds)) if diff is not None and stds else None}
    ps, hs = p["seconds"]["per_seed"], h["seconds"]["per_seed"]
    pairs = {s: hs[s] / ps[s] for s in ps if s in hs}
    out["seconds_hf_over_project"] = {
        "means": h["seconds"]["mean"] / p["seconds"]["mean"] if p["seconds"]["mean"] and h["seconds"]["mean"] else None,
        "per_seed": pairs}
    return out


def write_results(args, result: dict) -> None:
    result["summary"], result["comparison"] = {}, {}
    for task in args.tasks:
        runs = [r for r in result["runs"] if r["task"] == task]
        if not runs:
            continue
        result["summary"][task] = {tool: stats([r for r in runs if r["tool"] == tool], task) for tool in TOOLS}
        result["comparison"][task] = compare(result["summary"][task], task)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def pm(cell: dict, spec: str = ".4f") -> str:
    return f"{fmt(cell['mean'], spec)} ± {fmt(cell['std'], spec)}"


def print_tables(result: dict) -> None:
    settings, machine = result["settings"], result["machine"]
    print(f"\nGLUE task shapes, {settings['train_samples']} training rows, 1 epoch, lr {settings['lr']:g}, float32, "
          f"seeds {' '.join(map(str, settings['seeds']))}: metrics mean ± std, whole-process seconds")
    for task, summary in result["summary"].items():
        keys = [*TASKS[task].metrics, "loss"]
        print(f"\n{TASKS[task].glue_name} ({task}; dev rows: "
              f"{'pairs' if TASKS[task].is_pair else 'single sentences'}, "
              f"{'regression' if TASKS[task].is_regression else 'classification'})")
        print("| tool | " + " | ".join(f"dev {k}" for k in keys) + " | seconds | runs |")
        print("|---|" + "---|" * (len(keys) + 2))
        for tool, row in summary.items():
            runs = f"{row['n']}" + (f" ({row['failed']} failed)" if row["failed"] else "")
            print(f"| {TOOLS[tool]} | " + " | ".join(pm(row[k]) for k in keys)
                  + f" | {pm(row['seconds'], '.1f')} | {runs} |")
        comp = result["comparison"][task]
        for k in keys:
            c = comp[k]
            note = {True: "within 2 std", False: "MORE THAN 2 std", None: ""}[c["within_2_std"]]
            print(f"  project - HF, {k}: {fmt(c['project_minus_hf'], '+.4f')} (std project "
                  f"{fmt(c['std_project'], '.4f')}, HF {fmt(c['std_hf'], '.4f')}) {note}")
        r = comp["seconds_hf_over_project"]
        print(f"  HF / project seconds: {fmt(r['means'], '.2f')} (means)"
              + "".join(f"  [{seed}: {v:.2f}]" for seed, v in r["per_seed"].items()))

    print("\n| task | metric | this project | HF Trainer | project − HF | s, project | s, HF | HF / project |")
    print("|---|---|---|---|---|---|---|---|")
    for task, summary in result["summary"].items():
        p, h, comp = summary["project"], summary["hf"], result["comparison"][task]
        for i, k in enumerate(TASKS[task].metrics):
            secs = ([fmt(p["seconds"]["mean"], ".1f"), fmt(h["seconds"]["mean"], ".1f"),
                     fmt(comp["seconds_hf_over_project"]["means"], ".2f") + "×"] if i == 0 else ["", "", ""])
            print(f"| {TASKS[task].glue_name if i == 0 else ''} | {k} | {pm(p[k])} | {pm(h[k])} | "
                  f"{fmt(comp[k]['project_minus_hf'], '+.4f')} | " + " | ".join(secs) + " |")
    if result["warmup"]:
        print("\nwarm-up (first) runs, not in the stats: " + ", ".join(
            f"{w['tool']} {fmt(w['seconds'], '.1f')} s" + (" (failed)" if "error" in w else "")
            for w in result["warmup"]))
    loads = [r["load_avg_1m"] for r in result["runs"]]
    if loads:
        print(f"1-minute load average at the runs' start: min {min(loads):.2f}, max {max(loads):.2f}, "
              f"mean {statistics.mean(loads):.2f}")
    print(f"\nmachine: {machine.get('platform')}, {machine.get('cpus')} CPUs, torch {machine.get('torch')}, "
          f"transformers {machine.get('transformers')}, lightning {machine.get('lightning')}, "
          f"datasets {machine.get('datasets')}, {result['date']}; both tools in float32 ({result['precision_note']})")
    for task, check in result["project_config_check"].items():
        if check.get("differs_from_recipe"):
            print(f"project config for {task} differs from the recipe: {check['differs_from_recipe']}")
        elif check.get("error"):
            print(f"project config check for {task} failed: {check['error']}")
    print("commands (cwd: the repository root; env " + " ".join(f"{k}={v}" for k, v in ENV.items()) + "):")
    for tool, cmd in result["commands"].items():
        print(f"  {tool}: {cmd}")
    for r in [r for r in result["warmup"] + result["runs"] if "error" in r]:
        print(f"\nFAILED {r['tool']} {r['task']} seed {r['seed']}: {r['error']}\n{r.get('output_tail', '')[-1500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", choices=list(DEFAULT_TASKS), default=list(DEFAULT_TASKS))
    parser.add_argument("--glue-dir", default="../shared/data/glue",
                        help="GLUE's folder of task folders (CoLA, MRPC, STS-B, RTE), relative to the repository root "
                             "unless absolute")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--train-samples", type=int, default=2000, help="first N training rows of each task")
    parser.add_argument("--lr", type=float, default=1e-4, help="AdamW's peak learning rate, both tools")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 training rows")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run of each tool")
    parser.add_argument("--timeout-s", type=float, default=3600, help="per run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "glue_tasks.json"))
    args = parser.parse_args()
    if importlib.util.find_spec("accelerate") is None:  # else each Trainer run fails, and the JSON records only that
        parser.error('the Hugging Face Trainer needs accelerate: pip install -e ".[bench]"')
    if args.quick:
        args.train_samples = 200
    args.glue_dir = os.path.relpath((ROOT / args.glue_dir).resolve(), ROOT)  # the children run in ROOT
    args.out = str(Path(args.out).resolve())
    for task in args.tasks:
        for split in ("train", "validation"):
            if not (path := ROOT / task_dir(args, task) / TASKS[task].file_names[split]).is_file():
                sys.exit(f"no {path}: --glue-dir must hold GLUE's {TASKS[task].glue_name} folder")

    machine = probe_machine("sklearn", "scipy")
    args.model = machine.pop("model_dir")

    settings = {k: os.path.relpath(v, ROOT) if k in ("model", "out") else v for k, v in vars(args).items()}
    result = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        "precision": {"project": "32-true (trainer.precision=32-true)", "hf": "fp32 (the Trainer's default on a CPU)"},
        "precision_note": "the project forced to 32-true"
                          + (" (trainer=cpu would pick bf16-mixed on this CPU)" if machine["native_bf16"] else "")
                          + "; the Trainer's default on a CPU",
        "env": ENV,
        "commands": {tool: shown(command(args, tool, args.tasks[0], args.seeds[0], "<tmp>/run")) for tool in TOOLS},
        "project_config_check": {task: check_project_config(args, task) for task in args.tasks},
        "warmup": [],
        "runs": [],
    }
    for task, check in result["project_config_check"].items():
        if check.get("differs_from_recipe") or check.get("error"):
            print(f"warning: the project's config for {task}: {check}", flush=True)
    write_results(args, result)

    def go(tool: str, task: str, seed: int, into: list, what: str, rows: int | None = None) -> None:
        print(f"{what} {tool} {task} seed {seed} ...", end=" ", flush=True)
        row = {"tool": tool, "task": task, **run_once(args, tool, task, seed, rows)}
        into.append(row)
        shown_metrics = ", ".join(f"{k} {v:.4f}" for k, v in row["metrics"].items())
        print(f"{row['seconds']:.1f} s, {shown_metrics} (load {row['load_avg_1m']:.2f})"
              if row["seconds"] is not None else "", row.get("error", ""), flush=True)
        write_results(args, result)

    if not args.no_warmup:
        for tool in TOOLS:
            go(tool, args.tasks[0], args.seeds[0], result["warmup"], "warm-up", rows=200)
    # Task by task, seed by seed, the two tools in turn, alternating which goes first: a shared machine's load
    # drifts, and a fixed order would hand one tool whatever the other leaves behind (page cache, clocks) every time.
    turn = 0
    for task in args.tasks:
        for seed in args.seeds:
            for tool in (list(TOOLS) if turn % 2 == 0 else list(TOOLS)[::-1]):
                go(tool, task, seed, result["runs"], "timed")
            turn += 1
    result["finished"] = datetime.now().isoformat(timespec="seconds")
    write_results(args, result)
    print_tables(result)
    print(f"\nwritten: {os.path.relpath(args.out, ROOT) if args.out.startswith(str(ROOT)) else args.out}")


if __name__ == "__main__":
    main()
