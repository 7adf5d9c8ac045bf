"""Score a trained model on a labelled file: accuracy and loss, printed and written as JSON.

    python src/evaluate.py outputs/2026-11-27/10-00-00                            the run's own dev set
    python src/evaluate.py outputs/2026-11-27/10-00-00 --data /path/to/SST-2/dev.tsv
    python src/evaluate.py outputs/2026-11-27/10-00-00/checkpoints/last.ckpt --data my_labelled.tsv

MODEL is a run dir (its exported model/), an exported model dir, or a checkpoint (.ckpt) of this project.
--data is a TSV file whose header names a `sentence` and a `label` column (GLUE's train.tsv and dev.tsv
qualify); a label is an id (0, 1) or a name (negative, positive). Without --data, a run is scored on the dev set
it was validated on (its data.local_dir's dev.tsv, or the Hub's validation split). The metrics go to --output
(default: eval_<data>.json beside the model: in the run dir, or in the checkpoint's run dir).
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
    print(f"accuracy = {metrics['accuracy']:.4f}  loss = {metrics['loss']:.4f}  ({metrics['examples']} sentences "
          f"of {metrics['data']})")
    print(f"metrics written to {path}")


if __name__ == "__main__":
    main()
    exit_now(0)
