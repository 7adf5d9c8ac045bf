"""``evaluate``: a trained model scored on a labelled file or on the dev set(s) its run was validated on."""

from __future__ import annotations

from pathlib import Path

import yaml

from glue_finetune.errors import UserError
from glue_finetune.inference import Predictor, model_task, read_labelled, run_dir_of
from glue_finetune.tasks import TaskSpec, metric_prefix, read_glue_file


def started_in(run_dir: Path) -> Path:
    """The dir the run was started in (Hydra records it), against which the paths given to it were relative."""
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    if hydra_yaml.is_file():
        cwd = (yaml.safe_load(hydra_yaml.read_text()) or {}).get("hydra", {}).get("runtime", {}).get("cwd")
        if cwd:
            return Path(cwd)
    return Path.cwd()


def run_dev_sets(run_dir: Path | None, spec: TaskSpec) -> dict[str, tuple[str, list, list]]:
    """Each dev set the run at ``run_dir`` was validated on: metric prefix → (name, texts, labels)."""
    if run_dir is None:
        raise UserError("this model is not inside a run dir (no .hydra/config.yaml), so there is no default dev "
                        "set: give one with --data path/to/dev.tsv")
    data = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()).get("data", {})
    folder = data.get("local_dir") or (Path(data["glue_dir"]) / spec.glue_name if data.get("glue_dir") else None)
    if folder:
        folder = started_in(run_dir) / Path(folder).expanduser()  # relative: to where the run was started
    sets = {}
    for split in spec.dev_splits:
        if folder:
            path = spec.path(folder, split)
            if not path.is_file():
                raise UserError(f"{path}: the run's dev set is gone; give another with --data")
            try:
                columns = read_glue_file(path, spec, split)
            except Exception as err:  # DataFormatError: the file changed since the run
                raise UserError(str(err)) from err
            sets[metric_prefix(split)] = (str(path), list(zip(*(columns[c] for c in spec.text))), columns["label"])
        else:
            import datasets

            from glue_finetune.hub import fetching, go_offline_if_unreachable, offline_hint

            go_offline_if_unreachable()
            with fetching(f"dataset {data['hub_dataset']!r} ({spec.name})", hint=offline_hint(spec, "--data")):
                dev = datasets.load_dataset(data["hub_dataset"], spec.name, split=split)
            sets[metric_prefix(split)] = (f"{data['hub_dataset']}/{spec.name}:{split}",
                                          list(zip(*(dev[c] for c in spec.text))), list(dev["label"]))
    return sets


def data_prefix(data: Path, spec: TaskSpec) -> str:
    """The metrics' prefix for a labelled file, as validation names that dev set's: ``val_mismatched`` for MNLI's
    dev_mismatched.tsv (its scores are not the matched set's ``val/acc``); ``val`` for any other file."""
    for split in spec.dev_splits:
        if Path(data).name == spec.file_names[split]:
            return metric_prefix(split)
    return "val"


def evaluate(model: Path, data: Path | None = None, **predictor_args) -> dict:
    """Score ``model`` (run dir, exported model dir or checkpoint) on ``data`` (default: its run's dev sets) and
    return the metrics, named as training logs them (``val/loss``, ``val/acc``, ``val_mismatched/acc``, ...), with
    the number of examples, the data, the model, device and precision."""
    # The file read whole before the model loads, where the model's task can be read without it: a bad row is
    # reported at once.
    known = model_task(Path(model), predictor_args.get("task")) if data is not None else None
    early = {"val": (str(data), *read_labelled(data, known))} if known is not None else None
    predictor = Predictor.load(model, **predictor_args)
    spec = predictor.spec
    if early is not None and spec is known:
        sets = {data_prefix(data, spec): early["val"]}
    else:
        sets = {data_prefix(data, spec): (str(data), *read_labelled(data, spec))} if data is not None else \
            run_dev_sets(run_dir_of(model), spec)
    metrics: dict = {"task": spec.name}
    for prefix, (name, texts, labels) in sets.items():
        scores = predictor.evaluate(texts, labels)
        metrics.update({f"{prefix}/{k}": v for k, v in scores.items() if k != "examples"})
        metrics[f"{prefix}/examples"], metrics[f"{prefix}/data"] = scores["examples"], name
    metrics.update(model=str(model), device=str(predictor.device), precision="bf16" if predictor.bf16 else "32")
    return metrics


GLUE_FILE_STEMS = ("dev", "dev_matched", "dev_mismatched", "train", "test", "test_matched", "test_mismatched")


def default_output(model: Path, data: Path | None) -> Path:
    """Where evaluate.py writes the metrics by default: eval_<data>.json in the run dir; eval_<data>_<checkpoint>.json
    for a checkpoint; for a model outside a run dir, eval_<data>_<model>.json beside it (an exported model dir stays
    as it was exported, ready to upload). <data> is "dev" for the run's own dev set(s), the file's name for a file
    of one's own, and its folder's too for one of GLUE's file names (eval_RTE-dev.json: another task's or another
    copy's dev.tsv must not overwrite the run's own eval_dev.json)."""
    run_dir = run_dir_of(model)
    stem = "dev" if data is None else Path(data).stem
    if data is not None and stem in GLUE_FILE_STEMS:
        stem = f"{Path(data).absolute().parent.name}-{stem}"
    if model.is_file() or run_dir is None:
        name = model.absolute().stem if model.is_file() else model.absolute().name  # a dir's dots are its name's
        return (run_dir or model.absolute().parent) / f"eval_{stem}_{name}.json"
    return run_dir / f"eval_{stem}.json"
