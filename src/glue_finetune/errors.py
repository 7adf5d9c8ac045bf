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
