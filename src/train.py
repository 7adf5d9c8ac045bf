"""Fine-tune BERT on GLUE: SST-2 (the documented run) or any other task (data=<task>).

    python src/train.py                         the documented run (bert-base-cased, dev acc ~0.914)
    python src/train.py -m seed=1,2,3           a seed sweep
    python src/train.py --cfg job               show the composed config
    python src/train.py --help                  config groups and options
"""

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Light imports only up to here: --help, --cfg and config errors answer in about a second. Lightning, transformers
# and datasets (seconds to import) are imported once the config has passed its checks.
from glue_finetune.cli import exit_if_cfg_of_a_sweep, exit_now, expand_home, explain_unknown_keys, train_help
from glue_finetune.config import preflight
from glue_finetune.errors import Preempted, UserError
from glue_finetune.extras import exit_if_missing_extras
from glue_finetune.logs import hold_stderr, release_stderr
from glue_finetune.sweep import failed_job_result, run_job, run_composed, stop_or_requeue

log = logging.getLogger("train")


def train(cfg: DictConfig) -> float:
    preflight(cfg)  # bad values, unreachable Hub: reported before the heavy imports below
    from glue_finetune.training import train as fit_and_evaluate

    return fit_and_evaluate(cfg)


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    release_stderr()  # the config is composed (RunDirCheck released it already, unless Hydra reran a pickled one)
    try:
        return run_job(cfg, train)  # train(cfg), plus resume=true and sweep-job bookkeeping
    except UserError as err:
        # Bad input, not a bug: one message with the fix, no traceback.
        log.error("%s", err)
        if os.environ.get("SUBMITIT_FOLDER"):  # a SLURM job of a sweep: an exit leaves submitit no result to report,
            return failed_job_result(str(err))  # and the sweep would wait on it
        sys.exit(2)
    except Preempted as err:
        return stop_or_requeue(err)  # exits 75 (after requeueing a SLURM job warned of its time limit)


if __name__ == "__main__":
    if "--help" in sys.argv[1:] or "-h" in sys.argv[1:]:
        print(train_help(CONF_DIR))
        sys.exit(0)
    sys.argv[1:] = expand_home(sys.argv[1:])  # data.local_dir=~/glue/SST-2, which Hydra's grammar would reject
    exit_if_cfg_of_a_sweep(sys.argv[1:])
    exit_if_missing_extras(sys.argv[1:])  # e.g. hydra/launcher=parallel without Ray: name the extra to install
    hold_stderr()  # until Hydra has composed the config: its message for a mistyped key may give way to ours
    try:
        main()
    except SystemExit as stop:  # Hydra and main() end with sys.exit(code) on errors
        # Hydra refused the overrides (a run's, or a sweep's job's): a mistyped key or option gets its closest
        # one, and bad input's exit code. A sweep whose jobs failed exits 1, as a run that failed.
        if stop.code == 1 and not run_composed():
            hydra_said = release_stderr(keep=False)
            try:
                named = explain_unknown_keys(sys.argv[1:], CONF_DIR, hydra_said)
            except Exception:  # noqa: BLE001 - the hint failed on an override it did not foresee: Hydra's message
                print(hydra_said, end="", file=sys.stderr)
                named = False
            if named:
                exit_now(2)
        exit_now(stop.code)
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training (the run said how to continue)
        from glue_finetune.launchers import SigtermAsCtrlC, explain_an_interrupted_slurm_sweep

        explain_an_interrupted_slurm_sweep()  # on a SLURM sweep's command (Ctrl-C or SIGTERM): its jobs go on
        exit_now(143 if SigtermAsCtrlC.came else 130)  # as a shell reports a process either signal ended
    finally:  # an exception that escaped Hydra: its traceback goes to the real stderr
        release_stderr()
    exit_now(0)
