"""Report on one or more sweep (or run) directories: per-job table, mean ± std per setting, PNG curves.

    python src/report.py multirun/2026-11-27/10-00-00
    python src/report.py multirun/seeds multirun/lr_search --out reports/all

Writes report.md, report.json and the curves of the task's main metric and of the loss (val_acc.png, val_loss.png
for SST-2) into --out (default: the first directory) and prints
the markdown. --wandb also logs the tables and plots to W&B, in the sweep's group.
"""

import argparse
import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package, also without `pip install -e .`

from glue_finetune.report import write_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(prog="report.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="sweep dirs (or single run dirs)")
    parser.add_argument("--out", type=Path, help="where to write the report (default: the first dir)")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the report to W&B, in the group the first dir's jobs logged to")
    parser.add_argument("--wandb-project", help="the W&B project (default: glue-<task>, or glue for several tasks)")
    args = parser.parse_args()
    out = args.out or args.dirs[0]
    if args.out and out.exists() and not out.is_dir():  # found before the runs are read
        print(f"error: --out {out} is a file: give a directory for the report (it is created if missing)",
              file=sys.stderr)
        sys.exit(2)
    try:
        summary, markdown, plots = write_report(args.dirs, out)
    except FileNotFoundError as err:
        missing = Path(err.filename).absolute() if err.filename else None
        if missing and (missing.is_relative_to(out.absolute()) or out.absolute().is_relative_to(missing)):  # --out's
            print(f"error: the report could not be written to {out} (--out): {err.strerror}: {err.filename}",
                  file=sys.stderr)
        else:  # a dir given that holds no runs
            print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:  # a read-only place, a full disk
        print(f"error: the report could not be written to {out}: {err}", file=sys.stderr)
        sys.exit(2)
    print(markdown)
    if args.wandb:
        from glue_finetune.tracking import log_report_to_wandb

        tasks = {job["task"] for job in summary["jobs"]}
        project = args.wandb_project or (f"glue-{tasks.pop()}" if len(tasks) == 1 else "glue")
        log_report_to_wandb(summary, plots, project=project, group=sweep_wandb_group(args.dirs[0]), directory=out)
    sys.exit(1 if summary["not_finished"] else 0)


def sweep_wandb_group(sweep_dir: Path) -> str:
    """The W&B group the sweep's jobs logged to (recorded in each job's hparams.yaml), so that the report joins
    them; for jobs that recorded none, the group a sweep in this dir gets."""
    import yaml

    from glue_finetune.config import group_name, recorded_group

    for hparams in sorted(Path(sweep_dir).glob("*/hparams.yaml")):
        with contextlib.suppress(Exception):
            group = ((yaml.safe_load(hparams.read_text()) or {}).get("logger") or {}).get("wandb", {}).get("group")
            if group:
                return str(group)
    return recorded_group(Path(sweep_dir)) or group_name(Path(sweep_dir), Path.cwd())


if __name__ == "__main__":
    main()
