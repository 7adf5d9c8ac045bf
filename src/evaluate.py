"""Score a trained model on a labelled file: the task's metrics and the loss, printed and written as JSON.

    python src/evaluate.py outputs/2026-11-27/10-00-00                            the run's own dev set(s)
    python src/evaluate.py outputs/2026-11-27/10-00-00 --data /path/to/SST-2/dev.tsv
    python src/evaluate.py outputs/2026-11-27/10-00-00 --data /path/to/SST-2        a task's folder: its dev.tsv
    python src/evaluate.py outputs/2026-11-27/10-00-00/checkpoints/last.ckpt --data my_labelled.tsv

MODEL is a run dir (its exported model/), an exported model dir, or a checkpoint (.ckpt) of this project (a
classifier fine-tuned elsewhere, with --task naming its task); its task says which metrics (accuracy, F1, Matthews
correlation, Pearson and Spearman) and what the file holds. --data is one of the task's GLUE files with labels
(dev.tsv, train.tsv, dev_matched.tsv, ...), or a TSV whose header names the text columns (sentence; sentence1 and
sentence2; ...) and `label` (an id, a label name, or a score for STS-B); a task's folder of GLUE files (as
data.local_dir takes) means its dev.tsv (MNLI's folder holds two dev files: name one); another task's GLUE file is
refused, naming whose it is. Without --data, a run is scored on the dev set(s) it was validated on (its GLUE files,
or the Hub's validation splits). The metrics go to --output (default: eval_<data>.json in the run dir, or in the
checkpoint's run dir; beside a model outside any run dir), checked writable before the model is loaded; were
writing still to fail, they are printed.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package, also without `pip install -e .`

from glue_finetune.cli import (  # noqa: E402
    add_model_arguments, check_model_path, check_writable, exit_now, fail, write_or_print)
from glue_finetune.errors import UserError  # noqa: E402

DEV_FILES = ("dev.tsv", "dev_matched.tsv", "dev_mismatched.tsv")  # GLUE's dev files (MNLI: two)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="evaluate.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--data", "-d", type=Path, metavar="FILE",
                        help="labelled TSV, or a task's folder of GLUE files: its dev.tsv (default: the run's dev set)")
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="where to write the metrics as JSON")
    return parser


def labelled_file(data: Path, spec=None) -> Path:
    """--data as a file to read: a task's folder of GLUE files (what data.local_dir takes) means its dev file. With
    the model's task (``spec``), GLUE's folder of task folders points at the task's own, and another task's GLUE
    file is refused now, before the model is loaded."""
    from glue_finetune.inference import readable_file, refuse_another_tasks_file
    from glue_finetune.tasks import TASKS

    if not data.is_dir():
        readable_file(data, "--data")
        if spec is not None:
            refuse_another_tasks_file(data, spec)
        return data
    found = [data / name for name in DEV_FILES if (data / name).is_file()]
    if len(found) == 1:
        return labelled_file(found[0], spec)
    if found:
        raise UserError(f"--data {data}: a folder with {len(found)} dev sets ({', '.join(p.name for p in found)}): "
                        f"give one, e.g. --data {found[0]}")
    tasks = [t.glue_name for t in TASKS.values() if (data / t.glue_name).is_dir()]
    if tasks:  # GLUE's folder of task folders (glue_data/, as data.glue_dir takes it)
        if spec is not None and spec.glue_name in tasks:
            folder = data / spec.glue_name
            dev = folder if len(spec.dev_splits) == 1 else folder / spec.file_names[spec.dev_splits[0]]  # MNLI's
            raise UserError(f"--data {data}: that folder holds GLUE's task folders: --data {dev}")
        hint = (f"give the model's task's, e.g. --data {data / tasks[0]}" if spec is None else
                f"none is {spec.glue_name}'s, the model's task: --data /path/to/{spec.glue_name}")
        raise UserError(f"--data {data}: that folder holds GLUE's task folders ({', '.join(tasks)}); {hint}")
    raise UserError(f"--data {data} is a directory with no GLUE dev file ({', '.join(DEV_FILES)}): give a labelled "
                    f"file, e.g. --data {data / 'dev.tsv'}")


def main() -> None:
    args = build_parser().parse_intermixed_args()

    from glue_finetune.evaluation import default_output, evaluate
    from glue_finetune.inference import model_task, torch_device

    try:
        # What can be checked before the model is loaded and scored: the paths and the device.
        check_model_path(args.model)
        data = labelled_file(args.data, model_task(args.model, args.task)) if args.data is not None else None
        output = args.output or default_output(args.model, data)
        check_writable(output, example="metrics.json")
        torch_device(args.device)
        metrics = evaluate(args.model, data, batch_size=args.batch_size, max_length=args.max_length,
                           device=args.device, precision=args.precision, task=args.task)
    except UserError as err:
        fail(err)
    for key in (k for k in metrics if k.endswith("/data")):
        prefix = key.removesuffix("/data")
        scores = "  ".join(f"{k} = {v:.4f}" for k, v in metrics.items()
                           if k.startswith(prefix + "/") and isinstance(v, float))
        print(f"{scores}  ({metrics[prefix + '/examples']} examples of {metrics[key]})", flush=True)
    write_or_print(output, json.dumps(metrics, indent=2) + "\n", "metrics")  # printed where writing fails
    print(f"metrics written to {output}")


if __name__ == "__main__":
    main()
    exit_now(0)
