"""Classify sentences with a trained model: a run dir (its exported model/), an exported model dir, or a checkpoint.

    python src/predict.py outputs/2026-11-27/10-00-00 "a gorgeous, witty, seductive movie" "I didn't like it"
    python src/predict.py outputs/2026-11-27/10-00-00 --input sentences.txt --output predictions.tsv
    cat reviews.txt | python src/predict.py outputs/2026-11-27/10-00-00

Prints (or writes to --output) one TSV line per sentence, in input order: label, one probability per label, the
sentence. --input takes a .txt file (one sentence a line) or a .tsv file whose header names a `sentence` column
(GLUE's files qualify); with neither sentences nor --input, sentences are read from standard input.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package, also without `pip install -e .`

from glue_finetune.cli import add_model_arguments, exit_now, fail  # noqa: E402
from glue_finetune.errors import UserError  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(prog="predict.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("sentences", nargs="*", metavar="SENTENCE", help="sentences to classify (quote each one)")
    parser.add_argument("--input", "-i", type=Path, metavar="FILE", help="a .txt (one sentence a line) or .tsv file")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the TSV here instead of printing it")
    args = parser.parse_args()

    from glue_finetune.inference import SentimentPredictor, format_predictions, read_sentences
    from glue_finetune.files import write_text_atomically

    try:
        if args.sentences and args.input:
            raise UserError("give sentences or --input, not both")
        if args.sentences:
            sentences = args.sentences
        elif args.input:
            sentences = read_sentences(args.input)
        elif not sys.stdin.isatty():
            sentences = [line for line in sys.stdin.read().splitlines() if line.strip()]
            if not sentences:
                raise UserError("no sentences on standard input")
        else:
            raise UserError("no sentences: give them as arguments, with --input FILE, or on standard input")
        predictor = SentimentPredictor.load(args.model, batch_size=args.batch_size, max_length=args.max_length,
                                            device=args.device, precision=args.precision)
        table = format_predictions(predictor.predict(sentences))
    except UserError as err:
        fail(err)
    if args.output:
        write_text_atomically(args.output, table)
        print(f"{len(sentences)} predictions written to {args.output}", file=sys.stderr)
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
    exit_now(0)
