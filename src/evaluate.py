"""Score a trained model on a labelled file: the task's metrics and the loss, printed and written as JSON.

    python src/evaluate.py outputs/2026-11-27/10-00-00                            the run's own dev set(s)
    python src/evaluate.py outputs/2026-11-27/10-00-00 --data /path/to/SST-2/dev.tsv
    python src/evaluate.py outputs/2026-11-27/10-00-00/checkpoints/last.ckpt --data my_labelled.tsv

MODEL is a run dir (its exported model/), an exported model dir, or a checkpoint (.ckpt) of this project; its
task says which metrics (accuracy, F1, Matthews correlation, Pearson and Spearman) and what the file holds.
--data is one of the task's GLUE files with labels (dev.tsv, train.tsv, dev_matched.tsv, ...), or a TSV whose
header names the text columns (sentence; sentence1 and sentence2; ...) and `label` (an id, a label name, or a
score for STS-B). Without --data, a run is scored on the dev set(s) it was validated on (its GLUE files, or the
Hub's validation splits). The metrics go to --output (default: eval_<data>.json in the run dir, or in the
checkpoint's run dir).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package, also without `pip install -e .`

from glue_finetune.cli import add_model_arguments, exit_now, fail  # noqa: E402
from glue_finetune.errors import UserError  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--data", "-d", type=Path, metavar="FILE", help="labelled TSV (default: the run's dev set)")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="where to write the metrics as JSON")
    args = parser.parse_args()

    from glue_finetune.evaluation import evaluate

    try:
        metrics, path = evaluate(args.model, args.data, args.output, batch_size=args.batch_size,
                                 max_length=args.max_length, device=args.device, precision=args.precision)
    except UserError as err:
        fail(err)
    for key in (k for k in metrics if k.endswith("/data")):
        prefix = key.removesuffix("/data")
        scores = "  ".join(f"{k} = {v:.4f}" for k, v in metrics.items()
                           if k.startswith(prefix + "/") and isinstance(v, float))
        print(f"{scores}  ({metrics[prefix + '/examples']} examples of {metrics[key]})")
    print(f"metrics written to {path}")


if __name__ == "__main__":
    main()
    exit_now(0)
