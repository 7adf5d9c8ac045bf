"""Optional dependencies: what ``pip install -e ".[sweeps]"`` or ``".[tensorboard]"`` adds, and the message for a
command that needs an extra which is not installed.

Hydra would fail on such a command with "Could not find 'hydra/launcher/ray'" (the launcher's config ships with
its plugin), which does not say what to install; so the entry point checks the command line first.
"""

from __future__ import annotations

import importlib.util
import sys

# (config group, option or None for every option) → (extra, what it needs, the modules that provide it)
NEEDS = {
    ("hydra/launcher", "parallel"): ("sweeps", "Ray and its Hydra launcher", ("hydra_plugins.hydra_ray_launcher", "ray")),
    ("hydra/launcher", "ray_cluster"): ("sweeps", "Ray and its Hydra launcher",
                                        ("hydra_plugins.hydra_ray_launcher", "ray")),
    ("hydra/launcher", "slurm"): ("sweeps", "submitit and its Hydra launcher",
                                  ("hydra_plugins.hydra_submitit_launcher", "submitit")),
    ("hydra/sweeper", "optuna"): ("sweeps", "Optuna and its Hydra sweeper", ("hydra_plugins.hydra_optuna_sweeper", "optuna")),
    ("hparams_search", None): ("sweeps", "Optuna and its Hydra sweeper", ("hydra_plugins.hydra_optuna_sweeper", "optuna")),
    ("logger", "tensorboard"): ("tensorboard", "TensorBoard", ("tensorboard",)),
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def missing_extras(overrides: list[str]) -> list[str]:
    """One message per command-line choice (``group=option``, also in a sweep list ``a,b``) whose extra is not
    installed; empty when everything needed is there."""
    problems = []
    for override in overrides:
        if "=" not in override or override.startswith("-"):
            continue
        key, _, value = override.lstrip("+").partition("=")
        for option in (o.strip() for o in value.split(",")):
            need = NEEDS.get((key, option)) or NEEDS.get((key, None))
            if need is None or option in ("", "null"):
                continue
            extra, what, modules = need
            if not all(installed(m) for m in modules):
                problems.append(f'{key}={option} needs {what} (not installed). '
                                f'Install with: pip install -e ".[{extra}]"')
    return problems


def exit_if_missing_extras(overrides: list[str]) -> None:
    if problems := missing_extras(overrides):
        print("\n".join(f"error: {p}" for p in problems), file=sys.stderr)
        sys.exit(2)
