"""Arguments shared by the command-line tools that use a trained model (predict.py, evaluate.py).

These are tools, not experiments: plain argparse, so sentences with commas, quotes and apostrophes pass as
they are, and --help lists only what the tool takes. Nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL",
                        help="a run dir (uses its exported model/), an exported model dir, or a checkpoint (.ckpt)")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per batch (default: 64)")
    parser.add_argument("--max-length", type=int, default=None,
                        help="truncation length in tokens (default: the run's data.max_length, else 128)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    parser.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                        help="auto (default): bf16 where the GPU or CPU computes it natively, else float32")


def fail(err: Exception, code: int = 2) -> NoReturn:
    """Bad input: one line naming the problem, no traceback."""
    print(f"error: {err}", file=sys.stderr)
    sys.exit(code)


TRAIN_USAGE = """\
train.py: fine-tune BERT on GLUE (the documented run: bert-base-cased on SST-2, dev accuracy ~0.914)

  python src/train.py                                   the documented run
  python src/train.py experiment=quick model=minilm trainer=cpu data.local_dir=/path/to/SST-2
                                                        offline, a minute on a CPU
  python src/train.py data=mrpc                         another GLUE task (cola, mrpc, stsb, qqp, mnli, ...)
  python src/train.py -m experiment=glue data=cola,sst2,mrpc,stsb,qqp,mnli,qnli,rte,wnli     the GLUE benchmark
  python src/train.py -m seed=1,2,3                     a sweep: one job per seed under multirun/
  python src/train.py --cfg job [overrides]             the config a command runs, every key
"""

GROUP_NOTES = {"hydra/launcher": '(pip install -e ".[sweeps]")', "hparams_search": '(pip install -e ".[sweeps]")',
               "logger": '(tensorboard: pip install -e ".[tensorboard]")'}


def train_help(conf_dir: Path) -> str:
    """``train.py --help``: what to type, and every config group with its options, read from conf/.

    Hydra's own --help builds a config repository per group (seconds); listing the files takes milliseconds.
    """
    import yaml

    defaults = {}
    for entry in yaml.safe_load((conf_dir / "train.yaml").read_text())["defaults"]:
        if isinstance(entry, dict):
            defaults.update({str(k): str(v) for k, v in entry.items()})
    groups = {}
    for directory in sorted(p for p in conf_dir.rglob("*") if p.is_dir()):
        group = directory.relative_to(conf_dir).as_posix()
        options = sorted(p.stem for p in directory.glob("*.yaml"))
        if options and group != "hydra":
            groups[group] = ", ".join(o + ("*" if defaults.get(group) == o else "") for o in options)
    width = max(map(len, groups)) + 2
    lines = [TRAIN_USAGE, "Config groups: pick an option with group=option (* the default); override any key with "
             "key=value.", ""]
    lines += [f"  {group:<{width}}{options}  {GROUP_NOTES.get(group, '')}".rstrip() for group, options in groups.items()]
    lines += ["", "README.md describes every group and key. Hydra's own flags: python src/train.py --hydra-help"]
    return "\n".join(lines)


def exit_now(code: int | str | None = 0) -> NoReturn:
    """Exit as Python would, minus the interpreter's own teardown of every module and object, which takes
    1-1.5 s once torch, Lightning and transformers are loaded and does nothing a finished run needs: other
    threads are waited for, atexit handlers (Ray's shutdown, logging's flush) run, output is flushed."""
    import atexit
    import os
    import threading

    if isinstance(code, str):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    # What the interpreter does first at exit: threading's own exit hooks (concurrent.futures' pools, such as
    # torch.compile's, tell their idle workers to stop), then every non-daemon thread is joined. Joining the
    # threads without those hooks waits forever on an idle pool worker.
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code or 0)
