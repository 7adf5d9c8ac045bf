"""Arguments shared by the command-line tools that use a trained model (predict.py, evaluate.py).

These are tools, not experiments: plain argparse, so sentences with commas, quotes and apostrophes pass as
they are, and --help lists only what the tool takes. Nothing heavy is imported here.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import NoReturn

from glue_finetune.errors import UserError
from glue_finetune.files import unwritable, write_text_atomically
from glue_finetune.logs import release_stderr


def whole_number(low: int, high: int | None = None, why: str = ""):
    """An argparse type: a whole number in [low, high], checked as the arguments are read (before any loading);
    ``why`` explains the bounds in the message."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if high is None and value < low:
            raise argparse.ArgumentTypeError(f"{value} must be >= {low}")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} must be between {low} and {high}{why}")
        return value
    return parse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL",
                        help="a run dir (uses its exported model/), an exported model dir, or a checkpoint (.ckpt)")
    parser.add_argument("--batch-size", type=whole_number(1), default=64, help="sentences per batch (default: 64)")
    parser.add_argument("--max-length", type=whole_number(1, 512, " (BERT's positions)"), default=None,
                        help="truncation length in tokens, at most the model's positions (default: the run's "
                             "data.max_length, else 128 or the model's positions where fewer)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    parser.add_argument("--task", metavar="TASK",
                        help="the GLUE task of a model fine-tuned elsewhere, which records none (sst2, cola, mrpc, "
                             "stsb, qqp, mnli, qnli, rte, wnli); this project's models record theirs")
    parser.add_argument("--precision", choices=["auto", "32", "bf16"], default="auto",
                        help="auto (default): float32 for a run that trained in float32 (as its validation scored "
                             "it), else bf16 where the GPU or CPU computes it natively, else float32")


def fail(err: Exception | str, code: int = 2) -> NoReturn:
    """Bad input: one line naming the problem, no traceback."""
    print(f"error: {err}", file=sys.stderr)
    sys.exit(code)


def check_model_path(model: Path) -> None:
    """Before anything is loaded or derived from it: the model path exists."""
    if not model.exists():
        raise UserError(f"{model}: no such file or directory (give a run dir, an exported model dir or a .ckpt)")


def check_writable(path: Path, option: str = "--output", example: str = "out.tsv") -> None:
    """Fail now, before a model is loaded and the work done, where ``path`` could not be written at the end:
    a directory, a directory that is in fact a file, a directory that cannot be written (or created)."""
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory: give a file path, e.g. {option} {path / example}")
    if problem := unwritable(path.parent):
        raise UserError(f"{option} {path}: {problem}; give a path in a writable directory")


def write_or_print(path: Path, text: str, what: str) -> None:
    """Write ``text`` to ``path``; where that still fails (checked writable before the work, but a disk fills, a
    permission changes), print it to standard output instead so that nothing computed is lost, then fail."""
    try:
        write_text_atomically(path, text)
    except OSError as err:
        print(text, end="", flush=True)
        fail(f"{path}: could not write the {what} ({err.strerror or err}); they are printed above instead")


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


def expand_home(args: list[str]) -> list[str]:
    """``data.local_dir=~/glue/SST-2`` as the shell would read it were the key a variable name: a ``~`` that
    starts a value (or a sweep's or list's item) and is followed by ``/`` or nothing is the home dir. The shell
    leaves it alone (``data.local_dir`` is not a variable name), and Hydra's grammar rejects it with a lexer error
    that does not say why. A ``~`` at an override's start (``~key``: delete the key) or in quotes is left as is."""
    home = os.path.expanduser("~")
    expanded = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and not arg.startswith("-") and "'" not in value and '"' not in value:
            value = re.sub(r"(?:^|(?<=[,\[]))~(?=/|,|\]|$)", lambda _: home, value)
        expanded.append(key + eq + value)
    return expanded


def explain_unknown_keys(args: list[str], conf_dir: Path, hydra_said: str = "") -> bool:
    """After Hydra refused to compose the config: for each override of a key the config lacks, the closest key it
    has. Hydra's own message (``hydra_said``: "Could not override 'optimizer.lrr'. To append to your config use
    +optimizer.lrr=1") points at a + that would add a key nothing reads (or that the sweeper's or launcher's schema
    would refuse): these lines replace it when it names one of their keys, and follow it otherwise. Whether it named
    one: the command's problem is then its input."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    def key_of(arg: str) -> str:
        return arg.split("=", 1)[0].split("@", 1)[0]

    def is_group(key: str) -> bool:
        return key.startswith("hydra") or (conf_dir / key).is_dir()

    overrides = [a for a in args if "=" in a and not a.startswith(("-", "+", "~"))]
    groups = [a for a in overrides if is_group(key_of(a)) and not a.startswith("hydra.")]  # hydra/launcher=...
    problems: list[tuple[str, str]] = []  # (how Hydra's message would quote the override, what to say of it)
    for arg in list(groups):
        if unknown := unknown_options(conf_dir, key_of(arg), arg):
            # data=SST-2: Hydra lists the options ("Could not find 'data/SST-2'"), without the one that was meant
            problems += [(f"'{key_of(arg)}/", problem) for problem in unknown]
            groups.remove(arg)  # the keys below are looked up in the config of the groups' other options
    # a sweep over a group's options (-m data=sst2,mrpc): its keys are looked up in its first option's config
    groups = [g if "," not in g or any(c in g for c in "()[]{}") else g.split(",", 1)[0] for g in groups]
    try:  # the config as the groups chosen make it, without the overrides of single keys
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            cfg = compose("train", overrides=groups, return_hydra_config=True)
    except Exception:  # a group or option Hydra has named already
        cfg = None
    for arg in overrides if cfg is not None else []:
        key = key_of(arg)
        if key.startswith(("hydra.sweeper.", "hydra.launcher.")):
            problems.append((f"'{key}'", unknown_sweeper_key(cfg, key)))
        elif not is_group(key):
            problems.append((f"'{key}'", unknown_key(cfg, key, arg)))  # "Could not override 'optimizer.lrr'"
    problems = [(quoted, problem) for quoted, problem in problems if problem]
    if hydra_said and not any(quoted in hydra_said for quoted, _ in problems):  # Hydra refused something else
        print(hydra_said, end="", file=sys.stderr)
    for _, problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return bool(problems)


def unknown_options(conf_dir: Path, group: str, arg: str) -> list[str]:
    """This project's group options (in a sweep, several) that conf/<group>/ lacks, each with the one meant: GLUE's
    names of the tasks (data=SST-2, data=STS-B) are this project's without case and dashes (data=sst2, stsb).
    Hydra's own groups (hydra/launcher, with its plugins' options) are left to Hydra's message."""
    import difflib

    options = sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))
    if group.startswith("hydra") or not options:
        return []
    value = arg.split("=", 1)[1]
    if any(c in value for c in "()[]{}*"):  # a sweep's choice(...), glob(...): Hydra's grammar, Hydra's message
        return []
    problems = []
    for option in (v.strip().strip("'\"") for v in value.split(",")):  # data='sst2' is Hydra's data=sst2
        if not option or option in options or option == "null":
            continue
        plain = option.lower().replace("-", "").replace("_", "")
        meant = plain if plain in options else next(iter(difflib.get_close_matches(plain, options, n=1)), None)
        problems.append(f"{group}={option} is not an option of {group}"
                        + (f"; did you mean {group}={meant}?" if meant else "") + f" ({group} has {', '.join(options)})")
    return problems


def unknown_key(cfg, key: str, arg: str) -> str | None:
    """What is wrong with overriding ``key`` (not a group) where the config lacks it, with the closest key it has."""
    import difflib

    from omegaconf import DictConfig, OmegaConf

    from glue_finetune.config import habit_hint

    def keys_of(node: DictConfig, path: str) -> list[str]:  # at the top level, less Hydra's own config
        return [str(k) for k in node if not str(k).startswith("_") and (path or k != "hydra")]

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
    if parent and node is None:  # a mistyped node on the way (optimizre.lr): the closest one there
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            above = ".".join(parts[:depth])
            here = OmegaConf.select(cfg, above, default=None) if above else cfg
            if not isinstance(here, DictConfig):
                return None
            if part not in here:
                known = keys_of(here, above)
                close = difflib.get_close_matches(part, known, n=1)
                return f"{key} is not a key of the config" + (
                    f"; did you mean {'.'.join([*parts[:depth], close[0], *parts[depth + 1:]])}?" if close
                    else f" ({above or 'its top level'} has {', '.join(known)})")
    if not isinstance(node, DictConfig) or leaf in node:
        return None
    if (takes := constructor_arguments(node)) and leaf in takes:  # trainer.max_steps: Hydra's + is the fix
        return f"{key} is an argument of {node._target_} that the config does not set: add it with +{arg}"
    if hint := habit_hint(leaf):  # learning_rate=2e-5, trainer.num_train_epochs=3, ...
        return hint
    known = keys_of(node, parent) + [n for n in takes if n not in node]
    close = difflib.get_close_matches(leaf, known, n=1)
    # a constructor's argument the config does not set is added with a +
    meant = close and ("" if close[0] in node else "+") + (f"{parent}." if parent else "") + close[0]
    return f"{key} is not a key of the config" + (f"; did you mean {meant}?" if close else
                                                   f" ({parent or 'its top level'} has {', '.join(known)})")


OPTUNA_KEYS = ("n_trials", "n_jobs", "direction", "study_name", "storage", "sampler", "params", "max_failure_rate")


def unknown_sweeper_key(cfg, key: str) -> str | None:
    """A hydra.sweeper.* or hydra.launcher.* key the chosen sweeper or launcher lacks: the closest one it has, or,
    for a search's key given to a grid sweep (-m seed=1 hydra.sweeper.n_trials=3), the search that has it."""
    import difflib

    from omegaconf import DictConfig, OmegaConf

    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None)
    if not isinstance(node, DictConfig) or leaf in node:
        return None
    if parent == "hydra.sweeper" and leaf in OPTUNA_KEYS:
        return (f"{key} is a key of the Optuna search, and this sweep is a grid (Hydra's basic sweeper): add "
                f"hparams_search=lr_optuna for a search, or leave out {key}")
    known = [str(k) for k in node if not str(k).startswith("_")]
    if not known:  # Hydra's basic launcher: one job after another, nothing to set
        return (f"{key}: this sweep's launcher ({parent}) has no settings; hydra/launcher=parallel runs the jobs at "
                "the same time (README, Sweeps)")
    close = difflib.get_close_matches(leaf, known, n=1)
    return f"{key} is not a key of {parent}" + (f"; did you mean {parent}.{close[0]}?" if close else
                                                 f" (it has {', '.join(known)})")


def constructor_arguments(node) -> list[str]:
    """The keyword arguments of the constructor a config node goes to (its ``_target_``); none for a node without
    one, or a constructor that takes any keyword."""
    from glue_finetune.config import constructor_keywords

    try:
        return constructor_keywords(str(node._target_)) or []
    except Exception:  # no _target_, or one that cannot be imported: validation names it once the config composes
        return []


def exit_if_cfg_of_a_sweep(args: list[str]) -> None:
    """``-m ... --cfg job``: Hydra refuses the pair with a traceback ("Only one of --run, --multirun, --cfg ...").
    One line instead, with the command that shows a job's config."""
    multirun = any(a in ("-m", "--multirun") for a in args)
    cfg = any(a in ("-c", "--cfg", "--info", "-i") or a.startswith(("--cfg=", "--info=")) for a in args)
    if multirun and cfg:
        print("error: --cfg (and --info) show the config of one run, not of a sweep: drop -m and give each swept "
              "key one of its values, e.g. python src/train.py seed=1 --cfg job", file=sys.stderr)
        sys.exit(2)


def exit_now(code: int | str | None = 0) -> NoReturn:
    """Exit as Python would, minus the interpreter's own teardown of every module and object, which takes
    1-1.5 s once torch, Lightning and transformers are loaded and does nothing a finished run needs: other
    threads are waited for, atexit handlers (Ray's shutdown, logging's flush) run, output is flushed."""
    import atexit
    import os
    import threading

    release_stderr()  # what train.py held back until Hydra composed the config
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
