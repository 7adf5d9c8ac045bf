"""The command line as a new user meets it: help, start-up, console output, failures, optional extras, and the
README's promises about them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import CONF_DIR, README, ROOT, TINY_OVERRIDES, write_glue_task, write_sst2
from glue_finetune.extras import missing_extras
from test_sweeps import tiny
from test_train import run_cli

HEAVY = ("torch", "lightning", "transformers", "datasets", "wandb")


def imported_modules(args: list[str], tmp_path) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run train.py with -X importtime and return the top-level modules it imported."""
    result = subprocess.run([sys.executable, "-X", "importtime", "src/train.py", *args], cwd=ROOT, text=True,
                            capture_output=True, timeout=120)
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in result.stderr.splitlines()
               if line.startswith("import time:") and "|" in line}
    return result, modules


def test_help_lists_every_config_group_and_option_without_heavy_imports(tmp_path):
    result, modules = imported_modules(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert not modules & set(HEAVY), f"--help imported {modules & set(HEAVY)}"
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("  ") and line.split()}
    for group_dir in [p for p in CONF_DIR.rglob("*") if p.is_dir() and p.name != "hydra"]:
        group = group_dir.relative_to(CONF_DIR).as_posix()
        for option in (p.stem for p in group_dir.glob("*.yaml")):
            assert re.search(rf"\b{option}\b", lines[group]), f"{group}={option} missing from --help"
    assert "bert_base_cased*" in lines["model"] and "wandb*" in lines["logger"]  # defaults are marked


@pytest.mark.parametrize("script,options", [
    ("src/predict.py", ["MODEL", "SENTENCE", "--input", "--output", "--batch-size", "--device", "--precision"]),
    ("src/evaluate.py", ["MODEL", "--data", "--output", "--batch-size", "--device", "--precision"]),
    ("src/report.py", ["dirs", "--out", "--wandb", "--wandb-project"]),
])
def test_each_tools_help_lists_what_it_takes_and_nothing_of_training(script, options):
    result = subprocess.run([sys.executable, "-X", "importtime", script, "--help"], cwd=ROOT, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(f"usage: {Path(script).name}")
    for option in options:
        assert option in result.stdout
    for unrelated in ("callbacks", "trainer", "hydra", "override"):
        assert unrelated not in result.stdout, f"{script} --help mentions {unrelated}"
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY), f"{script} --help imported {imported & set(HEAVY)}"


def test_config_errors_are_reported_before_any_heavy_import(tmp_path):
    run_dir = tmp_path / "run"
    result, modules = imported_modules(["optimizer.lr=-1", "data.max_length=600", f"hydra.run.dir={run_dir}"],
                                       tmp_path)
    assert result.returncode == 2
    assert "optimizer.lr=-1 must be > 0" in result.stdout and "data.max_length=600" in result.stdout
    assert not modules & set(HEAVY), f"a config error imported {modules & set(HEAVY)} first"
    cfg_job, modules = imported_modules(["--cfg", "job"], tmp_path)
    assert cfg_job.returncode == 0 and not modules & set(HEAVY)


def test_a_malformed_row_of_local_data_is_reported_before_any_heavy_import(tmp_path):
    data = write_sst2(tmp_path / "SST-2")
    (data / "dev.tsv").write_text((data / "dev.tsv").read_text() + "a row without its label\n")
    result, modules = imported_modules(["model=tiny", f"data.local_dir={data}", f"hydra.run.dir={tmp_path / 'run'}"],
                                       tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"{data / 'dev.tsv'}:66: expected 2 tab-separated fields, found 1" in result.stdout
    assert not modules & set(HEAVY), f"a malformed row imported {modules & set(HEAVY)} first"
    assert "expected 2 tab-separated fields" in (tmp_path / "run" / "job_failed.json").read_text()


def test_cfg_of_a_sweep_is_one_line_with_the_command_that_shows_a_jobs_config():
    result = run_cli(["-m", "seed=1,2", "--cfg", "job"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: --cfg (and --info) show the config of one run, not of a sweep" in result.stderr
    assert "python src/train.py seed=1 --cfg job" in result.stderr


def test_a_home_dir_tilde_in_a_value_is_the_home_dir_as_the_shell_would_read_it(tmp_path):
    # The shell leaves data.local_dir=~/... alone (not a variable name) and Hydra's grammar rejects an unquoted ~.
    result = run_cli(["data.local_dir=~/glue/SST-2", "~trainer.deterministic", "--cfg", "job"],
                     env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"local_dir: {tmp_path}/glue/SST-2" in result.stdout
    assert "deterministic" not in result.stdout  # ~key at an override's start still deletes the key
    swept = run_cli(["-m", "data.local_dir=~/a,~/b", "model=tiny", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                    env={"HOME": str(tmp_path)})  # each of a sweep's values
    assert swept.returncode == 2 and "Invalid config in 2 of 2 job(s)" in swept.stdout + swept.stderr
    assert f"data.local_dir={tmp_path}/b: no such directory" in swept.stdout + swept.stderr


def test_an_override_of_a_key_the_config_lacks_names_the_closest_key_or_the_plus_that_adds_it():
    # Hydra refuses the first and suggests +optimizer.lrr=1e-5, which would add a key nothing reads: its message
    # gives way to these lines, which come first and alone.
    result = run_cli(["optimizer.lrr=1e-5", "sed=3", "trainer.max_steps=100", "trainer.max_step=100",
                      "num_train_epochs=3", "data.per_device_train_batch_size=32", "optimizre.lr=1e-5"])
    assert result.returncode == 2 and "Could not override" not in result.stderr and "+optimizer.lrr" not in \
        result.stderr and result.stderr.startswith("error: optimizer.lrr"), result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")] == [
        "error: optimizer.lrr is not a key of the config; did you mean optimizer.lr?",
        "error: sed is not a key of the config; did you mean seed?",
        "error: trainer.max_steps is an argument of lightning.pytorch.Trainer that the config does not set: add it "
        "with +trainer.max_steps=100",
        "error: trainer.max_step is not a key of the config; did you mean +trainer.max_steps?",
        # Hugging Face Trainer's names, typed from habit
        "error: num_train_epochs is Hugging Face's name; here it is trainer.max_epochs",
        "error: per_device_train_batch_size is Hugging Face's name; here it is data.batch_size",
        "error: optimizre.lr is not a key of the config; did you mean optimizer.lr?"]


def test_hydra_message_gives_way_only_where_these_hints_name_its_key(capsys):
    from glue_finetune.cli import explain_unknown_keys

    hydra_said = ("Could not override 'optimizre.lr'.\nTo append to your config use +optimizre.lr=1\n"
                  "Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n")
    assert explain_unknown_keys(["optimizre.lr=1"], CONF_DIR, hydra_said)
    assert capsys.readouterr().err == "error: optimizre.lr is not a key of the config; did you mean optimizer.lr?\n"
    options = "In 'train': Could not find 'data/SST-2'\n\nAvailable options in 'data':\n\tax\n"
    assert explain_unknown_keys(["data=SST-2"], CONF_DIR, options)
    assert capsys.readouterr().err.startswith("error: data=SST-2 is not an option of data; did you mean data=sst2?")
    # Hydra refused something else (its grammar): its message stays, and the mistyped key follows it
    grammar = "no viable alternative at input '[1'\n"
    assert explain_unknown_keys(["optimizer.lr=[1", "optimizre.lr=1"], CONF_DIR, grammar)
    assert capsys.readouterr().err == grammar + "error: optimizre.lr is not a key of the config; did you mean " \
                                                "optimizer.lr?\n"
    assert not explain_unknown_keys(["optimizer.lr=[1"], CONF_DIR, grammar)  # nothing to add: Hydra's, as it was
    assert capsys.readouterr().err == grammar
    # Hydra refused another override than the one named (its first; the hint names the one after)
    other = "Could not override 'hydra.job.chdirr'.\nKey 'chdirr' not in 'JobConf'\n"
    assert explain_unknown_keys(["hydra.job.chdirr=true", "optimizre.lr=1"], CONF_DIR, other)
    assert capsys.readouterr().err == other + "error: optimizre.lr is not a key of the config; did you mean " \
                                              "optimizer.lr?\n"


def test_a_group_option_it_lacks_names_the_option_meant(capsys):
    # Hydra lists a group's options; GLUE's names of the tasks (SST-2, STS-B) are the ones users type.
    from glue_finetune.cli import explain_unknown_keys

    explain_unknown_keys(["-m", "data=sst2,CoLA,STS-B", "scheduler=cosine", "model=bert", "hydra/launcher=basic",
                          "data.max_length=64"], CONF_DIR)
    assert capsys.readouterr().err.splitlines() == [
        "error: data=CoLA is not an option of data; did you mean data=cola? (data has ax, cola, mnli, mrpc, qnli, "
        "qqp, rte, sst2, stsb, wnli)",
        "error: data=STS-B is not an option of data; did you mean data=stsb? (data has ax, cola, mnli, mrpc, qnli, "
        "qqp, rte, sst2, stsb, wnli)",
        "error: scheduler=cosine is not an option of scheduler; did you mean scheduler=cosine_warmup? (scheduler has "
        "constant, cosine_warmup, linear_warmup)",
        "error: model=bert is not an option of model (model has bert_base_cased, minilm, tiny)"]
    # a quoted option is Hydra's option; keys of a sweep over options are looked up in the first one's config
    explain_unknown_keys(["-m", "data='sst2'", "experiment=glue,quick", "optimizer.lrr=1"], CONF_DIR)
    assert capsys.readouterr().err.splitlines() == [
        "error: optimizer.lrr is not a key of the config; did you mean optimizer.lr?"]


def test_a_sweeper_or_launcher_key_it_lacks_names_its_closest_key_or_the_search_that_has_it(capsys):
    from glue_finetune.cli import explain_unknown_keys
    from glue_finetune.extras import installed

    if not (installed("hydra_plugins.hydra_optuna_sweeper") and installed("hydra_plugins.hydra_ray_launcher")):
        pytest.skip('the sweepers and launchers come with pip install -e ".[sweeps]"')
    # Hydra's own message suggests +hydra.sweeper.n_trial=3, which the sweeper's schema refuses in turn.
    for args, said in (
            (["-m", "hparams_search=lr_optuna", "hydra.sweeper.n_trial=3"],
             "error: hydra.sweeper.n_trial is not a key of hydra.sweeper; did you mean hydra.sweeper.n_trials?"),
            (["-m", "seed=1,2", "hydra.sweeper.n_trials=3"],
             "error: hydra.sweeper.n_trials is a key of the Optuna search, and this sweep is a grid (Hydra's basic "
             "sweeper): add hparams_search=lr_optuna for a search, or leave out hydra.sweeper.n_trials"),
            (["-m", "seed=1,2", "hydra/launcher=parallel", "hydra.launcher.ray.remote.jobs_per_gpus=4"],
             "error: hydra.launcher.ray.remote.jobs_per_gpus is not a key of hydra.launcher.ray.remote; did you mean "
             "hydra.launcher.ray.remote.jobs_per_gpu?"),
            (["-m", "seed=1,2", "hydra.launcher.n_jobs=2"],
             "error: hydra.launcher.n_jobs: this sweep's launcher (hydra.launcher) has no settings; "
             "hydra/launcher=parallel runs the jobs at the same time (README, Sweeps)")):
        explain_unknown_keys(args, CONF_DIR)
        assert capsys.readouterr().err.strip() == said


def test_a_config_error_leaves_job_failed_json_and_every_problem_comes_at_once(tmp_path):
    # A bad value and a key added with a typo: both in one message (the typo is checked against the constructor)
    run_dir = tmp_path / "run"
    result = run_cli(["optimizer.lr=0", "+trainer.max_step=10", "model=tiny", f"hydra.run.dir={run_dir}"])
    assert result.returncode == 2
    failed = json.loads((run_dir / "job_failed.json").read_text())
    assert "optimizer.lr=0 must be > 0" in failed["error"] and failed["overrides"][0] == "optimizer.lr=0"
    assert "trainer.max_step: lightning.pytorch.Trainer takes no argument 'max_step'; did you mean " \
           "trainer.max_steps?" in failed["error"]
    assert not (run_dir / "job_done.json").exists()


def test_the_console_shows_what_a_user_can_act_on_and_nothing_else(sst2_dir, tmp_path):
    run_dir = tmp_path / "run"
    overrides = [o for o in tiny(sst2_dir, epochs=2) if o != "trainer.enable_progress_bar=false"]
    # W&B offline, as for a user who is not logged in; the default console; a sanity check and 4 validations.
    result = run_cli([*overrides, "logger=wandb", "predict_test=true", f"hydra.run.dir={run_dir}"],
                     env={"WANDB_MODE": "offline", "WANDB_SILENT": "false"})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    for noise in ("weights_only", "LeafSpec", "litlogger", "anonymous", "Symlinked", "FLOPs", "model summary",
                  "Run history", "Run summary", "Tokenizing", "Loading weights", "LOAD REPORT", "GPU available",
                  "TPU available", "Writing model shards", "Restoring states", "Trainer.fit` stopped"):
        assert noise not in output, f"{noise!r} printed:\n{output}"
    assert "Fine-tuning tiny-bert" in output and f"Run dir: {run_dir}" in output
    assert "result: val/acc = " in output and f"{run_dir / 'model'}" in output
    assert "Run data is saved locally in" in output  # W&B's line saying where the run is
    assert len(output.splitlines()) <= 15, output
    # Lightning's lines are not lost: train.log keeps them.
    assert "GPU available" in (run_dir / "train.log").read_text()


def test_a_launcher_whose_extra_is_missing_names_the_extra(tmp_path):
    # Ray and its Hydra plugin made unimportable, as in an install without the sweeps extra.
    blocker = tmp_path / "without_ray.py"
    blocker.write_text(
        "import importlib.abc, runpy, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'ray' or name.startswith('hydra_plugins.hydra_ray_launcher'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "sys.argv = ['src/train.py', *sys.argv[1:]]\n"
        "runpy.run_path('src/train.py', run_name='__main__')\n")
    result = subprocess.run([sys.executable, str(blocker), "-m", "seed=1,2", "hydra/launcher=parallel"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert ('hydra/launcher=parallel needs Ray and its Hydra launcher (not installed). Install with: '
            'pip install -e ".[sweeps]"') in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_extras_are_found_per_choice(monkeypatch):
    monkeypatch.setattr("glue_finetune.extras.installed", lambda module: module != "tensorboard")
    assert missing_extras(["logger=csv", "hydra/launcher=slurm", "hparams_search=null"]) == []
    [problem] = missing_extras(["-m", "logger=csv,tensorboard", "seed=1"])
    assert problem == 'logger=tensorboard needs TensorBoard (not installed). Install with: pip install -e ".[tensorboard]"'


# -- the README says what the code does ----------------------------------------------------------------------------
def readme_section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start: end if end > 0 else None]


def test_readme_lists_every_file_a_run_leaves(sst2_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli([*tiny(sst2_dir), "predict_test=true", "logger=wandb", f"hydra.run.dir={run_dir}"],
                     env={"WANDB_MODE": "offline"})
    assert result.returncode == 0, result.stderr[-2000:]
    section = readme_section("What a run leaves")
    for path in run_dir.iterdir():
        name = path.name + ("/" if path.is_dir() else "")
        assert f"`{name}" in section or f"`{path.name}`" in section, f"README does not list {name}"
    for path in (run_dir / "model").iterdir():
        assert path.name in section or path.suffix in (".json", ".safetensors"), f"model/{path.name} not described"


def bad_data(tmp, name: str, content: bytes, task: str = "sst2") -> Path:
    data = write_glue_task(tmp / f"data-{task}-{name}-{len(content)}", task, n_train=16, n_dev=4, n_test=2)
    (data / name).write_bytes(content)
    return data


def train_on(data: Path) -> list[str]:
    task = data.name.split("-")[1]
    return [*TINY_OVERRIDES, f"data={task}", f"data.local_dir={data}", f"hydra.run.dir={data / 'run'}"]


def finished(run_dir: Path) -> Path:
    """A run dir as a finished run leaves it, as far as a new run there can tell."""
    run_dir.mkdir(parents=True)
    (run_dir / "job_done.json").write_text('{"result": 0.914}')
    return run_dir


# Every message the README's "Common errors" table quotes (by its start), and a command that prints it.
COMMON_ERRORS = {
    "Could not load model": lambda tmp: run_cli(
        [f"hydra.run.dir={tmp / 'offline'}"],
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "0"}),
    "Invalid config:": lambda tmp: run_cli(["optimizer.lr=0", "data.max_length=600", f"hydra.run.dir={tmp / 'r'}"]),
    "trainer.devices=": lambda tmp: run_cli(["trainer=gpu", "trainer.devices=2", "model=tiny",
                                             f"hydra.run.dir={tmp / 'gpu'}"]),
    "hydra/launcher=parallel needs": None,  # Ray must be missing: test_a_launcher_whose_extra_is_missing_names_the_extra
    ".../dev.tsv:3:": lambda tmp: run_cli(train_on(bad_data(tmp, "dev.tsv", b"sentence\tlabel\nok\t1\nbroken row\n"))),
    ".../train.tsv:812:": lambda tmp: run_cli(train_on(bad_data(
        tmp, "train.tsv", b"sentence\tlabel\n" + b"fine\t1\n" * 810 + b"bad\t2\n"))),
    ".../train.tsv:2: not valid UTF-8": lambda tmp: run_cli(train_on(bad_data(
        tmp, "train.tsv", b"sentence\tlabel\ncaf\xe9\t1\n"))),
    ".../dev.tsv: the file is empty": lambda tmp: run_cli(train_on(bad_data(tmp, "dev.tsv", b""))),
    ".../train.tsv: this is SST-2's": lambda tmp: run_cli([*TINY_OVERRIDES, "data=mrpc",
                                                          f"data.local_dir={write_sst2(tmp / 'sst2-for-mrpc')}",
                                                          f"hydra.run.dir={tmp / 'mrpc'}"]),
    "data.local_dir=.../glue_data holds": lambda tmp: run_cli([
        "model=tiny", f"data.local_dir={write_sst2(tmp / 'glue_data' / 'SST-2').parent}",
        f"hydra.run.dir={tmp / 'g'}"]),
    ".../dev.tsv:2: label must be one of": lambda tmp: run_cli(train_on(bad_data(
        tmp, "dev.tsv", b"index\tsentence1\tsentence2\tlabel\n3\tA man.\tA person.\tmaybe\n", task="rte"))),
    ".../train.tsv:2: score must be": lambda tmp: run_cli(train_on(bad_data(
        tmp, "train.tsv", b"index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
                          b"0\tg\tf\t2012\t0\tnone\tnone\tA man.\tA person.\t5.5\n", task="stsb"))),
    ".../train.tsv:2: the sentence2 text is empty": lambda tmp: run_cli(train_on(bad_data(
        tmp, "train.tsv", b"index\tsentence1\tsentence2\tlabel\n0\tA man.\t\t1\n", task="wnli"))),
    "selection.metric=": lambda tmp: run_cli(["selection.metric=val/mcc", "model=tiny", f"hydra.run.dir={tmp / 's'}"]),
    "data.task=ax": lambda tmp: run_cli(["data=ax", "model=tiny", f"hydra.run.dir={tmp / 'ax'}"]),
    "callbacks.model_checkpoint.mode=": lambda tmp: run_cli(["callbacks.model_checkpoint.mode=max", "model=tiny",
                                                             f"hydra.run.dir={tmp / 'mode'}"]),
    "model.task=": lambda tmp: run_cli(["model.task=mrpc", "model=tiny", f"hydra.run.dir={tmp / 'task'}"]),
    "Lightning refused": lambda tmp: run_cli([*train_on(write_sst2(tmp / "strategy-sst2")),
                                              "+trainer.strategy=nonesuch"]),
    "trainer.val_check_interval=100": lambda tmp: run_cli([*train_on(write_sst2(tmp / "interval-sst2")),
                                                           "trainer.check_val_every_n_epoch=1",
                                                           "trainer.val_check_interval=100"]),
    ".../my-run already holds a finished run": lambda tmp: run_cli(["model=tiny", f"hydra.run.dir={finished(tmp / 'my-run')}"]),
    # A read-only mount is not at hand in tests: test_bad_inputs.py's run-dir tests assert the message and its parts.
    "Cannot write the run dir": None,
    "trainer.max_step:": lambda tmp: run_cli(["+trainer.max_step=10", "model=tiny", f"hydra.run.dir={tmp / 'k'}"]),
    "optimizre: not a key": lambda tmp: run_cli(["+optimizre.lr=1e-3", "model=tiny", f"hydra.run.dir={tmp / 'o'}"]),
    "error: optimizer.lrr": lambda tmp: run_cli(["optimizer.lrr=1e-5"]),
    "error: data=SST-2": lambda tmp: run_cli(["data=SST-2"]),
    "The training loss became NaN": None,  # needs a diverging run: tests/test_robustness.py asserts this message
}


def test_readme_common_errors_are_what_the_code_prints(tmp_path):
    table = readme_section("When things go wrong").split("**Common errors**")[1]
    excerpts = [span for row in table.splitlines() if row.startswith("| `")
                for span in re.findall(r"`([^`]+)`", row.split(" | ")[0])]
    assert len(excerpts) >= 10
    keys = {}
    for excerpt in excerpts:
        key = next((k for k in COMMON_ERRORS if excerpt.startswith(k)), None)
        assert key is not None, f"no reproducer for the README's {excerpt!r}: add one to COMMON_ERRORS"
        keys[excerpt] = key
    # Each reproducer is a process of its own, mostly start-up: side by side, they take half the time.
    reproduced = sorted({key for key in keys.values() if COMMON_ERRORS[key] is not None})
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = dict(zip(reproduced, pool.map(lambda key: COMMON_ERRORS[key](tmp_path), reproduced)))
    for excerpt, key in keys.items():
        if key not in results:
            continue
        result = results[key]
        assert result.returncode != 0
        output = " ".join((result.stdout + result.stderr).split())
        for fragment in (f.strip() for f in excerpt.split("...") if f.strip()):
            assert " ".join(fragment.split()) in output, f"README quotes {fragment!r}; the code printed:\n{output[-1500:]}"


def test_exit_waits_for_running_threads_and_stops_idle_thread_pools(tmp_path):
    # torch.compile leaves an idle concurrent.futures pool behind after compiling; the fast exit of train.py,
    # predict.py and evaluate.py must stop it (as the interpreter does), while a thread still writing finishes first.
    script = tmp_path / "exit.py"
    script.write_text(
        "import sys, threading, time\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        f"sys.path.insert(0, {str(ROOT / 'src')!r})\n"
        "from glue_finetune.cli import exit_now\n"
        "pool = ThreadPoolExecutor(2)\n"
        "pool.submit(print, 'pool used', flush=True).result()\n"
        "threading.Thread(target=lambda: (time.sleep(1), print('writer done', flush=True))).start()\n"
        "exit_now(3)\n")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and result.stdout.split() == ["pool", "used", "writer", "done"], result


def test_an_output_dir_set_apart_that_holds_a_run_names_paths_output_dir(tmp_path):
    # "give it another hydra.run.dir" could not help: the run it would overwrite is in paths.output_dir
    result = run_cli(["model=tiny", f"paths.output_dir={finished(tmp_path / 'results')}",
                      f"hydra.run.dir={tmp_path / 'new-run'}"])
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2, output[-3000:]
    assert (f"{tmp_path / 'results'} (paths.output_dir) already holds a finished run (result 0.9140). To keep it "
            "(and skip the run), add resume=true; to start a new run, give another paths.output_dir, or leave it out "
            "(it follows hydra.run.dir).") in output
