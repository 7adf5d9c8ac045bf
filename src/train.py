"""Fine-tune BERT on GLUE SST-2.

    python src/train.py                         the documented run (bert-base-cased, dev acc ~0.914)
    python src/train.py -m seed=1,2,3           a seed sweep
    python src/train.py --cfg job               show the composed config
    python src/train.py --help                  config groups and options
"""

import logging
import sys

import hydra
from omegaconf import DictConfig

from glue_finetune import UserError
from glue_finetune.checkpointing import PREEMPTED_EXIT_CODE, Preempted
from glue_finetune.sweep import run_job
from glue_finetune.training import train

log = logging.getLogger("train")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    try:
        return run_job(cfg, train)  # train(cfg), plus resume=true and sweep-job bookkeeping
    except UserError as err:
        # Bad input, not a bug: one message with the fix, no traceback.
        log.error("%s", err)
        sys.exit(2)
    except Preempted as err:
        log.warning("Preempted: %s. Run the same command again (same run dir) to continue.", err)
        sys.exit(PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
    main()
