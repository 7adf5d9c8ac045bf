"""Errors that mean "the input is wrong", as opposed to bugs.

Entry points print these as one message (no traceback): each names what is wrong and how to fix it.
"""


class UserError(Exception):
    """Bad input: a config value, a file, or a source that cannot be reached."""


class ConfigError(UserError):
    """The composed config has one or more invalid values; the message lists all of them."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("Invalid config:\n" + "\n".join(f"  - {p}" for p in problems))


class DataFormatError(UserError):
    """A local GLUE TSV file is malformed; the message names the file and line."""


class SourceUnavailableError(UserError):
    """A model or dataset could not be fetched from the Hugging Face Hub or found in the local cache."""


class TrainingDivergedError(UserError):
    """The training loss became NaN or infinite; the message names the optimizer step."""


PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: a temporary failure, retrying is expected to work


class Preempted(Exception):
    """The run was asked to stop by a signal and saved a checkpoint to continue from.

    ``requeue``, when set, puts the SLURM job back in the queue (it continues from that checkpoint when it starts
    again); the entry point calls it last, once the run has finished writing.
    """

    def __init__(self, message: str, requeue=None):
        super().__init__(message)
        self.requeue = requeue


# ray.cancel, which stops a Ray sweep's jobs when the sweep's command gets Ctrl-C or SIGTERM, interrupts each job's
# process with SIGINT: in a job, that SIGINT is the sweep stopping, not a Ctrl-C of its own.
A_RAY_SWEEP_STOPPING = "the sweep's stop (Ctrl-C or SIGTERM on its command)"


def in_a_ray_job() -> bool:
    """Whether this process is a Ray worker running a sweep's job (``hydra/launcher=parallel`` / ``ray_cluster``)."""
    import sys

    ray = sys.modules.get("ray")  # imported in a Ray worker; not imported here for the question
    if ray is None:
        return False
    try:
        from ray._private.worker import WORKER_MODE

        return ray.is_initialized() and ray.get_runtime_context().worker.mode == WORKER_MODE
    except Exception:  # another Ray, without these
        return False


def sigint_from_a_ray_sweep() -> str | None:
    """``A_RAY_SWEEP_STOPPING`` in a Ray sweep's job, whose SIGINT only the sweep sends; None elsewhere."""
    return A_RAY_SWEEP_STOPPING if in_a_ray_job() else None
