"""The host time of a training step outside the step itself: what is left per step once the step is a graph replay.

    python bench/loop_overhead.py --data /path/to/SST-2          (prints a table, writes bench/results/loop_overhead.json)
    python bench/loop_overhead.py --data /path/to/SST-2 --steps 5000 --repeats 3

With the whole step (model.whole_step) on a GPU, one step's host work is Lightning's loop, this project's hooks
(dropout reseed, step counting, the scheduler, the loss metric), the batch's row numbers gathered on the device,
and one graph replay. This runs the real `train()` on the real SST-2 files with `train_step` replaced by a stub
that does no training (it counts the step, as the graph would, and returns a device tensor): the ms per step it
measures is that host floor, on this machine's CPU. If a GPU step takes much longer than the floor, the time is
the GPU's, not the loop's. Validation's forward is stubbed the same way (a replayed graph's loss and logits), so
each validation's time (every --val-every steps, with the checkpoint saved after it) is the host's part of one:
Lightning's evaluation loop, the dev batches built and moved, the metrics' updates and computing them, the
checkpoint. Each configuration runs in its own process (interleaved over --repeats rounds):

  floor           model=tiny, logger=csv, no progress bar (what the GPU benchmark's short runs use)
  +progress bar   the progress bar on (the documented run's default)
  +wandb          the progress bar and W&B logging (offline): the documented run's loop as users run it
  +bar per batch  Lightning's default progress bar instead (Rich's where rich is installed; redrawn after every
                  batch), for comparison

Children run on a pseudo-terminal, as in a user's console: progress bars draw only on a terminal.

It also counts the operations (ATen ops) of one eager step of the bert-base architecture at SST-2's batch shape
(16 × 24 tokens: forward, backward, clipping, fused AdamW): roughly the kernels a GPU runs per step, each a launch
from Python when eager and a node of the graph when replayed.

Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {
    "floor": ["logger=csv", "trainer.enable_progress_bar=false"],
    "+progress bar": ["logger=csv", "trainer.enable_progress_bar=true"],
    "+wandb": ["logger=wandb", "trainer.enable_progress_bar=true"],
    # Lightning's default bar in place of callbacks.progress_bar: redrawn after every batch
    "+bar per batch": ["logger=csv", "trainer.enable_progress_bar=true", "~callbacks.progress_bar"],
}

CHILD = """
import sys, json
sys.path[:0] = [{root!r} + "/src", {root!r} + "/bench"]
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict
from glue_finetune.model import TextClassifier
from glue_finetune.training import train

def train_step(self, batch):  # what a replayed graph leaves to the host: nothing but its own bookkeeping
    self.steps_taken += 1
    return self.steps_taken.float()

def eval_forward(self, batch):  # a replayed validation forward: the graph's loss and logits, no work
    rows = batch["input_ids"].shape[0]
    return self.steps_taken.float(), self.steps_taken.float().expand(rows, self.spec.num_labels)

TextClassifier.train_step = train_step
TextClassifier.eval_forward = eval_forward
with initialize_config_dir(config_dir={root!r} + "/conf", version_base="1.3"):  # as src/train.py composes it
    cfg = compose("train", overrides=json.loads(sys.argv[1]), return_hydra_config=True)
with open_dict(cfg):
    cfg.hydra.runtime.output_dir = sys.argv[2]
HydraConfig.instance().set_config(cfg)
with open_dict(cfg):
    del cfg.hydra
train(cfg)
"""


def run(name: str, overrides: list[str], args, tmp: Path) -> dict:
    out = tmp / f"{name}.json".replace(" ", "_").replace("+", "")
    run_dir = tmp / out.stem
    cmd = ["model=tiny", f"data.local_dir={args.data}", "model.whole_step=true", f"+trainer.max_steps={args.steps}",
           f"trainer.val_check_interval={args.val_every}", "trainer.num_sanity_val_steps=0", "predict_test=false",
           "+callbacks.step_timer._target_=step_timer.StepTimer", f"+callbacks.step_timer.out={out}",
           f"+callbacks.step_timer.warm_steps={args.steps // 5}", *overrides]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    code, output = run_on_a_terminal(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), json.dumps(cmd), str(run_dir)], env, timeout=1200)
    if code != 0 or not out.exists():
        sys.exit(f"{name}: exit {code}\n{output[-3000:]}")
    return json.loads(out.read_text())


def run_on_a_terminal(cmd: list[str], env: dict, timeout: float) -> tuple[int, str]:
    """Run ``cmd`` with its output on a pseudo-terminal, as a user's console (progress bars draw only on one);
    what it writes is read as it comes (a full terminal would stall it) and its end returned."""
    master, child_end = pty.openpty()
    # a terminal of 120 x 40: one with no size (0 columns) makes tqdm draw nothing
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=child_end, stderr=child_end)
    os.close(child_end)
    tail = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # the terminal closed: the child has exited
                return
            if not data:
                return
            tail.extend(data)
            del tail[:-8000]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout)
    finally:
        proc.kill()
        reader.join(timeout=5)
        os.close(master)
    return code, tail.decode(errors="replace")


VIEW_OPS = ("view", "_unsafe_view", "t", "transpose", "permute", "expand", "unsqueeze", "squeeze", "slice",
            "select", "reshape", "detach", "as_strided", "split", "alias")


def step_operations() -> dict:
    """ATen operations in one eager training step of bert-base (random init) on a 16 × 24 batch, split into views
    (metadata only, no kernel) and the rest."""
    from collections import Counter

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import BertConfig, BertForSequenceClassification

    class Count(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops[func.overloadpacket.__name__] += 1
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=28996, num_labels=2, attn_implementation="sdpa"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=True)
    ids, labels = torch.randint(1000, 28996, (16, 24)), torch.randint(0, 2, (16,))

    def step():
        model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # the optimizer's state is created on the first step
    with Count() as counted:
        step()
    views = sum(n for op, n in counted.ops.items() if op in VIEW_OPS)
    total = sum(counted.ops.values())
    return {"operations": total, "views": views, "other": total - views, "most_common": counted.ops.most_common(12)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder of GLUE SST-2 TSVs")
    parser.add_argument("--steps", type=int, default=3000, help="steps per run (the first fifth is warm-up)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--val-every", type=int, default=1000, help="steps between validations (each timed apart)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "loop_overhead.json"))
    args = parser.parse_args()
    if args.val_every > args.steps:  # no validation would run, and it is half of what is measured
        parser.error(f"--val-every {args.val_every} is more than --steps {args.steps}: no validation would be timed; "
                     f"give a --val-every of at most --steps, e.g. --val-every {max(1, args.steps // 3)}")
    args.data = str(Path(args.data).resolve())
    measured: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="loop-overhead-") as tmp:
        for _ in range(args.repeats):
            for name, overrides in CONFIGS.items():
                measured[name].append(run(name, overrides, args, Path(tmp)))
    dev_rows = len((Path(args.data) / "dev.tsv").read_text().splitlines()) - 1
    batches = -(-dev_rows // 8)  # data.eval_batch_size
    rows = {}
    for name, runs in measured.items():
        steps = [r["steady_ms_per_step"] for r in runs]
        # every validation after the warm-up: the first one builds what the later ones reuse
        validations = [statistics.median(r["val_times"][1:] or r["val_times"]) for r in runs]
        rows[name] = {"ms_per_step_median": statistics.median(steps), "ms_per_step_runs": steps,
                      "validation_s_median": statistics.median(validations), "validation_s_runs": validations,
                      "ms_per_validation_batch_median": 1000 * statistics.median(validations) / batches}
    print(f"{'configuration':<16} {'host ms/step':>13} {'host s/validation':>18} {'ms/dev batch':>13}  (medians)")
    for name, row in rows.items():
        print(f"{name:<16} {row['ms_per_step_median']:>13.3f} {row['validation_s_median']:>18.3f} "
              f"{row['ms_per_validation_batch_median']:>13.2f}")
    import torch

    operations = step_operations()
    print(f"\none eager step of bert-base (16 x 24 tokens): {operations['operations']} ATen operations, "
          f"{operations['views']} of them views, {operations['other']} others (kernels on a GPU)")
    result = {"date": date.today().isoformat(), "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                                            "torch": torch.__version__},
              "settings": {"steps": args.steps, "repeats": args.repeats, "val_every": args.val_every,
                           "data": "SST-2 train split; validation on its dev split, batches of 8"}, "rows": rows,
              "bert_base_step_operations": operations}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
