"""Whole-process time: this project's `python src/train.py` against a plain Hugging Face Trainer script, same work.

    python bench/whole_process.py                                  (CPU: MiniLM, 2,000 sentences, 1 epoch, seeds 42-44)
    python bench/whole_process.py --quick --seeds 42 --no-warmup   (a smoke run: 200 sentences, one seed)
    python bench/whole_process.py --label fused --project-args "data.num_workers=1"   (a variant of the project)

Times each command from process start to exit (subprocess + time.perf_counter: interpreter start-up, imports, data
loading and tokenization, model loading, training, the one dev evaluation and whatever each tool writes), for
  (project) python src/train.py experiment=quick model=minilm trainer=cpu logger=csv predict_test=false ...
            validating once, at the end of the epoch, and keeping its own outputs (checkpoints, metrics.csv, the
            exported model and its card): they are part of its cost
  (hf)      python bench/hf_trainer_sst2.py: Trainer with dynamic padding, as a run_glue.py-style user script,
            with the Trainer's defaults (float32 on a CPU)
  (hf-bf16) the same with --bf16: the precision the project's trainer=cpu picks where the CPU has native bf16
            matmuls (AMX / AVX512-BF16); run only on such CPUs
on all-MiniLM-L6-v2, the first 2,000 SST-2 training sentences, one epoch, batch 16 (eval 8), AdamW at lr 1.5e-4, a
linear schedule with 6% warm-up, gradient clipping at 1.0, max_length 128, then one evaluation on all 872 dev
sentences. One untimed warm-up run of each first (--no-warmup: none), so both read warm dataset/tokenizer caches,
as a user's second run does; then one run of each per seed, alternating which goes first. Each run writes to a fresh
temp dir, deleted after. Prints a table of seconds (mean ± std and per seed), dev accuracy and the ratio HF/project;
the same numbers go to --out as JSON (rewritten after every run, so an interrupted benchmark keeps what it
measured). Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from processes import ENV, composed_values, output_notes, probe_machine, run_timed, shown

ROOT = Path(__file__).resolve().parents[1]
PROJECT_ACC = re.compile(r"result: val/acc = ([0-9.]+)")
HF_ACC = re.compile(r"eval accuracy = ([0-9.]+)")
TOOLS = {"project": "this project (src/train.py)", "hf": "HF Trainer, its defaults (fp32)",
         "hf-bf16": "HF Trainer with --bf16"}
PEERS = ("hf", "hf-bf16")
# What the project's composed config must say for the two commands to do the same work (checked with --cfg job).
RECIPE = {"data.max_length": 128, "data.batch_size": 16, "data.eval_batch_size": 8, "optimizer.lr": 1.5e-4,
          "optimizer._target_": "torch.optim.AdamW", "scheduler.name": "linear", "scheduler.warmup_ratio": 0.06,
          "trainer.max_epochs": 1, "trainer.val_check_interval": 1.0, "trainer.check_val_every_n_epoch": 1,
          "trainer.gradient_clip_val": 1.0, "predict_test": False}

# The machine, and what the children will use, asked of the same Python the runs use (this process imports no torch).
def project_cmd(args, seed: int, run_dir: str) -> list[str]:
    return [sys.executable, "src/train.py", "experiment=quick", "model=minilm", "trainer=cpu",
            f"data.local_dir={args.data}", "logger=csv", "predict_test=false", f"seed={seed}",
            "trainer.val_check_interval=1.0", "trainer.check_val_every_n_epoch=1",
            *([f"data.max_train_samples={args.train_samples}"] if args.train_samples != 2000 else []),
            f"hydra.run.dir={run_dir}", *shlex.split(args.project_args)]


def hf_cmd(args, seed: int, run_dir: str, tool: str = "hf") -> list[str]:
    return [sys.executable, str(ROOT / "bench" / "hf_trainer_sst2.py"), "--model", args.model, "--data", args.data,
            "--output-dir", run_dir, "--train-samples", str(args.train_samples), "--seed", str(seed),
            *(["--bf16"] if tool == "hf-bf16" else [])]


def run_once(args, tool: str, seed: int) -> dict:
    """One whole process, timed from just before it starts until it has exited; its temp dir is deleted after."""
    tmp = tempfile.mkdtemp(prefix=f"wp-{tool}-")
    run_dir = os.path.join(tmp, "run")
    cmd = project_cmd(args, seed, run_dir) if tool == "project" else hf_cmd(args, seed, run_dir, tool)
    load = os.getloadavg()[0]
    try:
        seconds, proc = run_timed(cmd, args.timeout_s)
        out = proc.stdout
        match = (PROJECT_ACC if tool == "project" else HF_ACC).findall(out)
        acc = float(match[-1]) if match else None
        if acc is None and tool == "project" and (done := Path(run_dir) / "job_done.json").exists():
            acc = json.loads(done.read_text()).get("result")
        row = {"seed": seed, "seconds": seconds, "dev_acc": acc, "returncode": proc.returncode, "load_avg_1m": load}
        if proc.returncode != 0 or acc is None:
            row["error"] = f"exit {proc.returncode}" + ("" if acc is not None else ", no dev accuracy in its output")
        output_notes(row, out, tmp, tail=1500)
    except subprocess.TimeoutExpired as err:
        row = {"seed": seed, "seconds": None, "dev_acc": None, "error": f"timed out after {err.timeout} s",
               "load_avg_1m": load}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    row["command"] = shown(cmd, tmp)
    return row


def check_project_config(args) -> dict:
    """The project's composed config (--cfg job) for the timed command: the recipe keys, and any that differ."""
    cmd = project_cmd(args, args.seeds[0], os.path.join(tempfile.gettempdir(), "wp-cfg-check"))
    try:
        values = composed_values(cmd, [*RECIPE, "data.max_train_samples", "trainer.precision", "seed"])
    except Exception as err:  # the check must not stop the benchmark
        return {"error": f"{type(err).__name__}: {err}"}
    differs = {k: values[k] for k, v in RECIPE.items() if values[k] != v}
    if values["data.max_train_samples"] != args.train_samples:
        differs["data.max_train_samples"] = values["data.max_train_samples"]
    return {"values": values, "differs_from_recipe": differs}


def stats(rows: list[dict]) -> dict:
    done = [r for r in rows if "error" not in r]
    secs = [r["seconds"] for r in done]
    accs = [r["dev_acc"] for r in done if r["dev_acc"] is not None]
    return {"n": len(done), "failed": len(rows) - len(done),
            "mean_s": statistics.mean(secs) if secs else None,
            "std_s": statistics.stdev(secs) if len(secs) > 1 else None,
            "per_seed_s": {r["seed"]: r["seconds"] for r in done},
            "dev_acc_mean": statistics.mean(accs) if accs else None,
            "dev_acc_per_seed": {r["seed"]: r["dev_acc"] for r in done}}


def ratios(summary: dict) -> dict:
    """Peer seconds / project seconds, from the means and per seed pair, for each peer."""
    p, out = summary["project"], {}
    for peer in (t for t in summary if t != "project"):
        h = summary[peer]
        pairs = {s: h["per_seed_s"][s] / p["per_seed_s"][s] for s in p["per_seed_s"] if s in h["per_seed_s"]}
        out[peer] = {"over_project_means": h["mean_s"] / p["mean_s"] if p["mean_s"] and h["mean_s"] else None,
                     "over_project_per_seed": pairs,
                     "over_project_min": min(pairs.values()) if pairs else None,
                     "over_project_max": max(pairs.values()) if pairs else None}
    return out


def write_results(args, result: dict) -> None:
    runs = result["runs"]
    result["summary"] = {tool: stats([r for r in runs if r["tool"] == tool]) for tool in args.tools}
    result["ratios"] = ratios(result["summary"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


def print_table(result: dict) -> None:
    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    s, machine, settings = result["summary"], result["machine"], result["settings"]
    print(f"\nWhole-process wall time, {settings['train_samples']} training sentences, 1 epoch, seeds "
          f"{' '.join(map(str, settings['seeds']))}" + (f"  [{settings['label']}]" if settings["label"] else ""))
    print(f"\n| {'tool':<46} | {'mean ± std (s)':>15} | {'per seed (s)':<32} | {'dev acc':>7} |")
    print(f"|{'-' * 48}|{'-' * 17}|{'-' * 34}|{'-' * 9}|")
    for tool in s:
        row, name = s[tool], TOOLS[tool]
        if tool == "project":
            name += ", bf16" if machine.get("native_bf16") else ", fp32"
        per_seed = "  ".join(f"{seed}: {sec:.1f}" for seed, sec in row["per_seed_s"].items()) or "-"
        if row["failed"]:
            per_seed += f"  ({row['failed']} failed)"
        mean = f"{fmt(row['mean_s'], '.1f')} ± {fmt(row['std_s'], '.1f')}"
        print(f"| {name:<46} | {mean:>15} | {per_seed:<32} | {fmt(row['dev_acc_mean'], '.4f'):>7} |")
    for peer, r in result["ratios"].items():
        print(f"{peer} / project seconds: {fmt(r['over_project_means'], '.3f')} (means); per seed pair: "
              f"min {fmt(r['over_project_min'], '.3f')}, max {fmt(r['over_project_max'], '.3f')}"
              + "".join(f"  [{seed}: {v:.3f}]" for seed, v in r["over_project_per_seed"].items()))
    if result["warmup"]:
        print("warm-up (first) runs, not in the stats: " + ", ".join(
            f"{w['tool']} {fmt(w['seconds'], '.1f')} s" + (" (failed)" if "error" in w else "")
            for w in result["warmup"]))
    print(f"\nmachine: {machine.get('platform')}, {machine.get('cpus')} CPUs, native bf16 {machine.get('native_bf16')}, "
          f"torch {machine.get('torch')}, transformers {machine.get('transformers')}, lightning "
          f"{machine.get('lightning')}, {result['date']}")
    check = result.get("project_config_check", {})
    if check.get("differs_from_recipe"):
        print(f"project config differs from the recipe: {check['differs_from_recipe']}")
    elif check.get("error"):
        print(f"project config check failed: {check['error']}")
    print("commands (cwd: the repository root; env " + " ".join(f"{k}={v}" for k, v in ENV.items()) + "):")
    for tool, cmd in result["commands"].items():
        print(f"  {tool}: {cmd}")
    failed = [r for r in result["warmup"] + result["runs"] if "error" in r]
    for r in failed:
        print(f"\nFAILED {r['tool']} seed {r['seed']}: {r['error']}\n{r.get('output_tail', '')[-1500:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/glue/SST-2",
                        help="folder of GLUE SST-2 TSVs, relative to the repository root unless absolute")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--train-samples", type=int, default=2000, help="first N training sentences")
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 training sentences")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up run of each tool")
    parser.add_argument("--project-args", default="", help="extra overrides appended to the project's command, "
                        "e.g. 'data.num_workers=1 trainer.enable_progress_bar=false'")
    parser.add_argument("--label", default="", help="a name for this measurement (e.g. the variant measured)")
    parser.add_argument("--peers", nargs="+", choices=PEERS, default=list(PEERS),
                        help="hf: Trainer with its defaults (fp32 on a CPU), as a user runs it; "
                             "hf-bf16: with --bf16, the precision the project's trainer=cpu picks (only on CPUs with "
                             "native bf16)")
    parser.add_argument("--timeout-s", type=float, default=3600, help="per run")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "whole_process.json"))
    args = parser.parse_args()
    if args.peers and importlib.util.find_spec("accelerate") is None:  # else each Trainer run fails, and the JSON
        parser.error('the Hugging Face Trainer needs accelerate: pip install -e ".[bench]"')  # records only that
    if args.quick:
        args.train_samples = 200
    args.data = os.path.relpath((ROOT / args.data).resolve(), ROOT)  # the children run in ROOT
    args.out = str(Path(args.out).resolve())

    machine = probe_machine()
    args.model = machine.pop("model_dir")
    # The HF Trainer in bf16 only where the CPU computes bf16 natively (elsewhere it is emulated and slow).
    args.tools = ["project", *(t for t in args.peers if t != "hf-bf16" or machine["native_bf16"])]

    settings = {k: os.path.relpath(v, ROOT) if k in ("model", "out") else v for k, v in vars(args).items()}
    result = {
        "date": datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        "precision": {"project": "bf16-mixed" if machine["native_bf16"] else "32-true (trainer=cpu's choice)",
                      "hf": "fp32", "hf-bf16": "bf16"},
        "env": ENV,
        "commands": {tool: shown(project_cmd(args, args.seeds[0], "<tmp>/run") if tool == "project"
                                 else hf_cmd(args, args.seeds[0], "<tmp>/run", tool)) for tool in args.tools},
        "project_config_check": check_project_config(args),
        "warmup": [],
        "runs": [],
    }
    if result["project_config_check"].get("differs_from_recipe"):
        print(f"warning: the project's config differs from the recipe: "
              f"{result['project_config_check']['differs_from_recipe']}", flush=True)
    write_results(args, result)

    def go(tool: str, seed: int, into: list, what: str) -> None:
        print(f"{what} {tool} seed {seed} ...", end=" ", flush=True)
        row = {"tool": tool, **run_once(args, tool, seed)}
        into.append(row)
        print(f"{row['seconds']:.1f} s, dev acc {row['dev_acc']}" if row["seconds"] is not None else "",
              row.get("error", ""), flush=True)
        write_results(args, result)

    if not args.no_warmup:
        for tool in args.tools:
            go(tool, args.seeds[0], result["warmup"], "warm-up")
    # Seed by seed, the two tools in turn, alternating which goes first: a shared machine's load drifts, and a
    # fixed order would hand one tool whatever the other leaves behind (page cache, clocks) every time.
    for i, seed in enumerate(args.seeds):
        for tool in (args.tools if i % 2 == 0 else args.tools[::-1]):
            go(tool, seed, result["runs"], "timed")
    print_table(result)
    print(f"\nwritten: {os.path.relpath(args.out, ROOT) if args.out.startswith(str(ROOT)) else args.out}")


if __name__ == "__main__":
    main()
