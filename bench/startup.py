"""Start-up: how long the commands that do little take, whole process, as a user waits for them.

    python bench/startup.py                       (prints a table, writes bench/results/startup.json)
    python bench/startup.py --repeats 10

Times, from process start to exit (subprocess + time.perf_counter), each of:
  --help              python src/train.py --help
  --cfg job           python src/train.py --cfg job
  config error        python src/train.py optimizer.lr=-1 data.max_length=600      (exits 2, lists both)
  no network          python src/train.py   with the Hub unreachable and nothing cached (exits 2, names the fix)
  predict --help      python src/predict.py --help
and, for scale, `python -c "import lightning"` (what every command used to import first). Runs are interleaved
(one of each, then the next round) and the median and min of --repeats runs are reported. Not a test: timings
depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def commands(tmp: Path) -> dict[str, tuple[list[str], dict[str, str], int]]:
    """name → (argv, extra environment, expected exit code)"""
    py = sys.executable
    offline = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "0"}
    return {
        "--help": ([py, "src/train.py", "--help"], {}, 0),
        "--cfg job": ([py, "src/train.py", "--cfg", "job"], {}, 0),
        "config error": ([py, "src/train.py", "optimizer.lr=-1", "data.max_length=600",
                          f"hydra.run.dir={tmp / 'error'}"], {}, 2),
        "no network": ([py, "src/train.py", f"hydra.run.dir={tmp / 'offline'}"], offline, 2),
        "predict --help": ([py, "src/predict.py", "--help"], {}, 0),
        "import lightning": ([py, "-c", "import lightning"], {}, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "startup.json")
    args = parser.parse_args()

    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        todo = commands(Path(tmp))
        for _ in range(args.repeats):
            for name, (argv, env, expected) in todo.items():
                start = time.perf_counter()
                result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                                        env={**os.environ, "WANDB_MODE": "disabled", **env})
                elapsed = time.perf_counter() - start
                if result.returncode != expected:
                    sys.exit(f"{name}: exit {result.returncode}, expected {expected}\n{result.stderr[-2000:]}")
                seconds.setdefault(name, []).append(elapsed)

    rows = {name: {"median_s": statistics.median(v), "min_s": min(v), "runs_s": v} for name, v in seconds.items()}
    print(f"Start-up, whole process, {args.repeats} interleaved runs each\n")
    print("| command | median (s) | min (s) |")
    print("|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['median_s']:.2f} | {row['min_s']:.2f} |")
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
               "date": datetime.now().isoformat(timespec="seconds")}
    print(f"\nmachine: {machine['platform']}, {machine['cpus']} CPUs, {machine['date']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "repeats": args.repeats, "results": rows,
                                    "commands": {k: " ".join(v[0][1:]) for k, v in commands(Path("<tmp>")).items()}},
                                   indent=2) + "\n")
    print(f"written: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
