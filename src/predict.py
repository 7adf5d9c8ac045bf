"""Predict with a trained model: a run dir (its exported model/), an exported model dir, or a checkpoint.

    python src/predict.py outputs/2026-11-27/10-00-00 "a gorgeous, witty, seductive movie" "I didn't like it"
    python src/predict.py outputs/2026-11-27/10-00-00 --input sentences.txt --output predictions.tsv
    cat reviews.txt | python src/predict.py outputs/2026-11-27/10-00-00
    python src/predict.py <MRPC run> "The cat sat." "A cat was sitting."     a pair task: two sentences an example

Prints (or writes to --output) one TSV line per example, in input order: the label and one probability per label
(a score for STS-B), then the text(s). The model's task (recorded when it was exported) says whether it takes
single sentences or pairs; for a model that records none (fine-tuned elsewhere), give it, e.g. --task sst2. --input takes the task's GLUE files (test.tsv, dev.tsv, ...), a .tsv whose header
names the text columns (sentence; sentence1 and sentence2; question1 and question2; ...), or a text file with
one example a line (a pair's two sentences separated by a tab); without sentences or --input, examples are read
from standard input the same way.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package, also without `pip install -e .`

from glue_finetune.cli import (  # noqa: E402
    add_model_arguments, check_model_path, check_writable, exit_now, fail, write_or_print)
from glue_finetune.errors import UserError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="predict.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("sentences", nargs="*", metavar="SENTENCE",
                        help="sentences to classify (quote each one); for a pair task, two per example")
    parser.add_argument("--input", "-i", type=Path, metavar="FILE",
                        help="a .tsv file (GLUE's, or a header naming the text columns) or a text file, one example a line")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the TSV here instead of printing it")
    return parser


def main() -> None:
    args = build_parser().parse_intermixed_args()  # options anywhere: before, between or after the sentences

    from glue_finetune.inference import (Predictor, format_predictions, read_texts, readable_file, texts_from_lines,
                                         torch_device)
    from glue_finetune.tasks import text_lines

    try:
        if args.sentences and args.input:
            raise UserError("give sentences or --input, not both")
        if not (args.sentences or args.input) and sys.stdin.isatty():
            raise UserError("no sentences: give them as arguments, with --input FILE, or on standard input")
        # What can be checked before the model is loaded: the paths and the device.
        check_model_path(args.model)
        if args.input:
            readable_file(args.input, "--input")
        if args.output:
            check_writable(args.output)
        torch_device(args.device)
        if empty := [i for i, sentence in enumerate(args.sentences, start=1) if not sentence.strip()]:
            raise UserError(f"sentence {empty[0]} of the arguments is empty: there is nothing to classify")
        predictor = Predictor.load(args.model, batch_size=args.batch_size, max_length=args.max_length,
                                   device=args.device, precision=args.precision, task=args.task)
        spec = predictor.spec
        if args.sentences:
            width = len(spec.text)
            if len(args.sentences) % width:
                raise UserError(f"{spec.glue_name} takes pairs of sentences: give two arguments an example "
                                f"(got {len(args.sentences)})")
            texts = [tuple(args.sentences[i : i + width]) for i in range(0, len(args.sentences), width)]
        elif args.input:
            texts = read_texts(args.input, spec)
        else:
            texts = texts_from_lines(text_lines(sys.stdin.read()), spec, "standard input")
        table = format_predictions(predictor.predict(texts), spec)
    except UserError as err:
        fail(err)
    if args.output:
        write_or_print(args.output, table, "predictions")
        print(f"{len(texts)} predictions written to {args.output}", file=sys.stderr)
    else:
        print(table, end="")


if __name__ == "__main__":
    main()
    exit_now(0)
