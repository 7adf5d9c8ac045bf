"""Every GLUE task's facts, in one table, and the reader of GLUE's own files.

What differs between GLUE tasks is data, not code (run_glue.py's ``task_to_keys`` is the right size): the text
columns, the labels (or a regression score), the metrics and which one is the task's main one, the dev and test
splits, GLUE's file names and formats, and the submission file's name and label format. Data loading, the model's
head and metrics, the model card, predictions, evaluation and the sweep report all read it from here.

Adding a GLUE-format task of one's own is one ``TaskSpec`` in ``TASKS`` plus a ``conf/data/<name>.yaml``.
Pure Python: nothing heavy is imported here (the config checks use it before training starts).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

from glue_finetune.errors import DataFormatError

# How each metric is named: in logs (val/<key>), and in Hugging Face model cards (name, type).
METRIC_NAMES = {
    "acc": ("Accuracy", "accuracy"),
    "f1": ("F1", "f1"),
    "mcc": ("Matthews Correlation", "matthews_correlation"),
    "pearson": ("Pearson", "pearson"),
    "spearman": ("Spearmanr", "spearmanr"),
}
# How each metric is named for people (the report's tables): the cards' "Spearmanr" is scipy's function's name.
METRIC_LABELS = {key: name for key, (name, _) in METRIC_NAMES.items()} | {"spearman": "Spearman"}


@dataclass(frozen=True)
class FileFormat:
    """One GLUE TSV file: its header (None: the file has none, and columns are positions), where the text, label
    and index columns are, and how many fields a row has."""

    header: tuple[str, ...] | None
    text: tuple[str | int, ...]
    label: str | int | None = None
    index: str | int | None = None
    fields: int | None = None  # rows without a header: the number of fields; with one: len(header)
    exact: bool = True         # the header is exactly this; False: it holds these columns among others (MNLI)

    def width(self) -> int:
        return len(self.header) if self.header else int(self.fields)


@dataclass(frozen=True)
class TaskSpec:
    name: str                        # the Hub config name and data=<name>: "mrpc"
    glue_name: str                   # GLUE's folder name: "MRPC"
    text: tuple[str, ...]            # the Hub's text columns: ("sentence1", "sentence2") for a pair
    labels: tuple[str, ...]          # label names by id (the Hub's order); () for a regression task (STS-B)
    metrics: tuple[str, ...]         # keys of METRIC_NAMES; the first is the task's main metric
    files: dict[str, FileFormat]     # split → its GLUE file's format; file names below
    file_names: dict[str, str]       # split → GLUE file name
    submissions: dict[str, str] = field(default_factory=dict)  # test split → GLUE submission file name
    label_strings: bool = False      # labels are names in GLUE's files and submissions (RTE, QNLI, MNLI, AX)
    train_with: str | None = None    # a prediction-only task: the task whose model predicts it (AX: MNLI)
    recipe_epochs: int = 3           # run_glue.py's published recipe (experiment=glue)
    score_range: tuple[float, float] | None = None  # regression: the valid scores (STS-B: 0 to 5)

    # -- derived ------------------------------------------------------------------------------------------------
    @property
    def is_regression(self) -> bool:
        return not self.labels

    @property
    def is_pair(self) -> bool:
        return len(self.text) == 2

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.labels)

    @property
    def id2label(self) -> dict[int, str]:
        return {0: "score"} if self.is_regression else dict(enumerate(self.labels))

    @property
    def dev_splits(self) -> list[str]:
        return [s for s in self.file_names if s.startswith("validation")]

    @property
    def test_splits(self) -> list[str]:
        return [s for s in self.file_names if s.startswith("test")]

    @property
    def main_metric(self) -> str:
        """The logged name of the task's main metric, on its first dev set: what sweepers optimise."""
        return f"val/{self.metrics[0]}"

    @property
    def logged_metrics(self) -> list[str]:
        """Every validation metric's logged name, loss first, per dev set."""
        return [f"{metric_prefix(split)}/{m}" for split in self.dev_splits for m in ("loss", *self.metrics)]

    def path(self, local_dir: Path, split: str) -> Path:
        return local_dir / self.file_names[split]


def metric_prefix(split: str) -> str:
    """Logged names per dev set: val/... for the first (MNLI: matched), val_mismatched/... for MNLI's other."""
    return "val" + split.removeprefix("validation").removeprefix("_matched")


def metric_direction(name: str) -> str:
    """"min" for losses, "max" for every metric GLUE reports."""
    return "min" if name.rsplit("/", 1)[-1].startswith("loss") else "max"


# GLUE's files, as its download script leaves them (see also the Hub's nyu-mll/glue, whose columns and label
# orders TASKS follows).
_PAIR_TEST = FileFormat(("index", "sentence1", "sentence2"), text=("sentence1", "sentence2"), index="index")
_PAIR = FileFormat(("index", "sentence1", "sentence2", "label"), text=("sentence1", "sentence2"), label="label")
_NLI_LABELS = ("entailment", "not_entailment")
_SPLITS = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}

TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    TaskSpec(
        "cola", "CoLA", text=("sentence",), labels=("unacceptable", "acceptable"), metrics=("mcc",),
        files={"train": FileFormat(None, text=(3,), label=1, fields=4),
               "validation": FileFormat(None, text=(3,), label=1, fields=4),
               "test": FileFormat(("index", "sentence"), text=("sentence",), index="index")},
        file_names=_SPLITS, submissions={"test": "CoLA.tsv"}),
    TaskSpec(
        "sst2", "SST-2", text=("sentence",), labels=("negative", "positive"), metrics=("acc",),
        files={"train": FileFormat(("sentence", "label"), text=("sentence",), label="label"),
               "validation": FileFormat(("sentence", "label"), text=("sentence",), label="label"),
               "test": FileFormat(("index", "sentence"), text=("sentence",), index="index")},
        file_names=_SPLITS, submissions={"test": "SST-2.tsv"}),
    TaskSpec(
        "mrpc", "MRPC", text=("sentence1", "sentence2"), labels=("not_equivalent", "equivalent"),
        metrics=("f1", "acc"),
        files={"train": FileFormat(("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                                   text=("#1 String", "#2 String"), label="Quality"),
               "validation": FileFormat(("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                                        text=("#1 String", "#2 String"), label="Quality"),
               "test": FileFormat(("index", "#1 ID", "#2 ID", "#1 String", "#2 String"),
                                  text=("#1 String", "#2 String"), index="index")},
        file_names=_SPLITS, submissions={"test": "MRPC.tsv"}, recipe_epochs=5),
    TaskSpec(
        "stsb", "STS-B", text=("sentence1", "sentence2"), labels=(), metrics=("pearson", "spearman"),
        files={split: FileFormat(("index", "genre", "filename", "year", "old_index", "source1", "source2",
                                  "sentence1", "sentence2") + (("score",) if split != "test" else ()),
                                 text=("sentence1", "sentence2"), label="score" if split != "test" else None,
                                 index="index" if split == "test" else None)
               for split in _SPLITS},
        file_names=_SPLITS, submissions={"test": "STS-B.tsv"}, score_range=(0.0, 5.0)),
    TaskSpec(
        "qqp", "QQP", text=("question1", "question2"), labels=("not_duplicate", "duplicate"), metrics=("acc", "f1"),
        files={"train": FileFormat(("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
                                   text=("question1", "question2"), label="is_duplicate"),
               "validation": FileFormat(("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
                                        text=("question1", "question2"), label="is_duplicate"),
               "test": FileFormat(("id", "question1", "question2"), text=("question1", "question2"), index="id")},
        file_names=_SPLITS, submissions={"test": "QQP.tsv"}),
    TaskSpec(
        "mnli", "MNLI", text=("premise", "hypothesis"), labels=("entailment", "neutral", "contradiction"),
        metrics=("acc",), label_strings=True,
        # MNLI's files carry parses and annotator labels besides: only these columns are read (by name).
        files={"train": FileFormat(("sentence1", "sentence2", "gold_label"), text=("sentence1", "sentence2"),
                                   label="gold_label", exact=False),
               "validation_matched": FileFormat(("sentence1", "sentence2", "gold_label"),
                                                text=("sentence1", "sentence2"), label="gold_label", exact=False),
               "validation_mismatched": FileFormat(("sentence1", "sentence2", "gold_label"),
                                                   text=("sentence1", "sentence2"), label="gold_label", exact=False),
               "test_matched": FileFormat(("index", "sentence1", "sentence2"), text=("sentence1", "sentence2"),
                                          index="index", exact=False),
               "test_mismatched": FileFormat(("index", "sentence1", "sentence2"), text=("sentence1", "sentence2"),
                                             index="index", exact=False)},
        file_names={"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                    "validation_mismatched": "dev_mismatched.tsv", "test_matched": "test_matched.tsv",
                    "test_mismatched": "test_mismatched.tsv"},
        submissions={"test_matched": "MNLI-m.tsv", "test_mismatched": "MNLI-mm.tsv"}),
    TaskSpec(
        "qnli", "QNLI", text=("question", "sentence"), labels=_NLI_LABELS, metrics=("acc",), label_strings=True,
        files={"train": FileFormat(("index", "question", "sentence", "label"), text=("question", "sentence"),
                                   label="label"),
               "validation": FileFormat(("index", "question", "sentence", "label"), text=("question", "sentence"),
                                        label="label"),
               "test": FileFormat(("index", "question", "sentence"), text=("question", "sentence"), index="index")},
        file_names=_SPLITS, submissions={"test": "QNLI.tsv"}),
    TaskSpec(
        "rte", "RTE", text=("sentence1", "sentence2"), labels=_NLI_LABELS, metrics=("acc",), label_strings=True,
        files={"train": _PAIR, "validation": _PAIR, "test": _PAIR_TEST},
        file_names=_SPLITS, submissions={"test": "RTE.tsv"}),
    TaskSpec(
        "wnli", "WNLI", text=("sentence1", "sentence2"), labels=("not_entailment", "entailment"), metrics=("acc",),
        files={"train": _PAIR, "validation": _PAIR, "test": _PAIR_TEST},
        file_names=_SPLITS, submissions={"test": "WNLI.tsv"}, recipe_epochs=5),
    TaskSpec(
        "ax", "AX", text=("premise", "hypothesis"), labels=("entailment", "neutral", "contradiction"),
        metrics=("acc",), label_strings=True, train_with="mnli",
        files={"test": FileFormat(("index", "sentence1", "sentence2"), text=("sentence1", "sentence2"),
                                  index="index")},
        file_names={"test": "diagnostic.tsv"}, submissions={"test": "AX.tsv"}),
]}

# The Hub's column names of a task whose GLUE files name them otherwise (MNLI and AX: sentence1/2 → premise/hypothesis)
for _spec in TASKS.values():
    for _fmt in _spec.files.values():
        assert len(_fmt.text) == len(_spec.text), _spec.name


def task_folder(spec: TaskSpec, local_dir: str | Path | None, glue_dir: str | Path | None) -> Path | None:
    """The folder of the task's GLUE files: ``data.local_dir``, or the task's folder in ``data.glue_dir`` (GLUE's
    folder of task folders, glue_data/, for sweeps over tasks); None for data from the Hub."""
    if local_dir:
        return Path(str(local_dir)).expanduser()
    return Path(str(glue_dir)).expanduser() / spec.glue_name if glue_dir else None


def ax_file(local_dir: Path) -> Path | None:
    """GLUE's diagnostic set beside MNLI's files, as GLUE's download script lays them out (glue_data/diagnostic/),
    or in the MNLI folder itself."""
    for path in (local_dir / "diagnostic.tsv", local_dir.parent / "diagnostic" / "diagnostic.tsv"):
        if path.is_file():
            return path
    return None


# -- reading GLUE's files ----------------------------------------------------------------------------------------
def _describe(fmt: FileFormat) -> str:
    if fmt.header:
        return ("header " if fmt.exact else "header with the columns ") + repr("\t".join(fmt.header))
    return f"no header line and {fmt.fields} tab-separated fields a row"


IDENTIFY_ROWS = 100  # data rows a file's task is told by: enough to tell its labels, few to read


class WrongTaskFile(DataFormatError):
    """One of another GLUE task's files where ``own``'s were expected: ``other`` is the task it is of."""

    def __init__(self, path: Path, own: TaskSpec, other: TaskSpec):
        self.path, self.own, self.other = path, own, other
        super().__init__(another_tasks_file(path, own, other, "data.local_dir"))


def glue_task_of(rows: list[list[str]]) -> TaskSpec | None:
    """Which GLUE task's file this is, from its rows (fields split at tabs, the header first): by its header, or
    by CoLA's rows where it has none (source, a 0/1 label, the original judgement, the sentence). Where tasks share
    a header (RTE's and WNLI's files: entailment/not_entailment against 0/1), by the labels of its first rows.
    None when the rows fit no task's files, or several tasks' alike (SST-2's and CoLA's test.tsv)."""
    if not rows:
        return None
    by_header: dict[str, list[FileFormat]] = {}
    for exact in (True, False):  # MNLI's files hold more columns than it reads: theirs only if no other fits
        for spec in TASKS.values():
            for fmt in spec.files.values():
                if fmt.exact != exact:
                    continue
                if fmt.header is None:
                    fits = all(len(row) == fmt.fields and _label_fits(row[fmt.label], spec)
                               and set(row[2]) <= set("*?") and row[3].strip() for row in rows[:IDENTIFY_ROWS])
                else:
                    fits = rows[0] == list(fmt.header) if exact else set(fmt.header) <= set(rows[0])
                if fits:
                    by_header.setdefault(spec.name, []).append(fmt)
        if by_header:
            break
    if len(by_header) > 1:  # the same header: the task whose labels its rows hold
        header = rows[0]
        by_header = {name: formats for name, formats in by_header.items()
                     if any(fmt.header and fmt.label is not None and all(
                         len(row) == len(header) and _label_fits(row[header.index(fmt.label)], TASKS[name])
                         for row in rows[1: IDENTIFY_ROWS + 1]) for fmt in formats)}
    return TASKS[next(iter(by_header))] if len(by_header) == 1 else None


def _label_fits(value: str, spec: TaskSpec) -> bool:
    try:
        parse_label(value, spec, "")
    except DataFormatError:
        return False
    return True


def own_folder_beside(path: Path, own: TaskSpec) -> Path:
    """``own``'s folder beside the folder of another task's file ``path``, as GLUE lays them out (glue_data/RTE/
    next to glue_data/CoLA/), where it is there; else a placeholder to fill in."""
    beside = Path(path).absolute().parent.parent / own.glue_name
    return beside if beside.is_dir() and beside != Path(path).absolute().parent else Path("/path/to") / own.glue_name


def another_tasks_file(path: Path, own: TaskSpec, other: TaskSpec, option: str) -> str:
    """What to say when ``path`` is ``other``'s GLUE file but ``own``'s is wanted: whose file it is, whose the
    run (``option`` data.local_dir) or the model (``option`` --data, --input) is, and the fix: ``own``'s folder (beside
    this one, as GLUE lays them out, where it is there) or the task the file is of."""
    path = Path(path)
    what = (f"this is {other.glue_name}'s {path.name}" if path.name in other.file_names.values()
            else f"this is a file in {other.glue_name}'s GLUE format")
    folder = own_folder_beside(path, own)
    if option == "--data":
        target = folder if len(own.dev_splits) == 1 else folder / own.file_names[own.dev_splits[0]]
        return (f"--data {path}: {what}; the model is {own.glue_name}'s (data={own.name}): use --data {target} "
                f"(or a model trained with data={other.name})")
    if option == "--input":
        example = folder / own.file_names[(own.test_splits or own.dev_splits)[0]]
        return (f"--input {path}: {what}; the model is {own.glue_name}'s (data={own.name}): give {own.glue_name}'s "
                f"texts, e.g. --input {example} (or a model trained with data={other.name})")
    return (f"{path}: {what}; the run is {own.glue_name}'s (data={own.name}): use {option}={folder} "
            f"(or data={other.name})")


def text_lines(text: str) -> list[str]:
    """A TSV's lines, split at newlines only (``\\n`` or ``\\r\\n``), as a file read line by line splits them (and
    Hugging Face's GLUE loader). ``str.splitlines`` also splits at characters a sentence may hold (U+2028, U+0085,
    form feeds, ...), which would cut its row in two."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and lines[-1] == "":  # the file's last newline, and blank lines an editor left after the last row
        lines.pop()
    return lines


def tsv_rows(lines: list[str]) -> list[list[str]]:
    """Each line's fields, split at tabs: GLUE's files quote nothing (a quote is part of its sentence). Not
    ``csv.reader``: it refuses a field over 131,072 characters and a carriage return inside a line. A blank line
    has no fields."""
    return [line.split("\t") if line else [] for line in lines]


# The files ``read_ahead`` read and checked, each kept (its columns and digest) for the one read of it that follows.
_READ_AHEAD: dict[tuple, tuple[dict[str, list], str]] = {}


def _file_key(path: Path, spec: TaskSpec, split: str) -> tuple:
    stat = path.stat()  # a file changed since it was read ahead is read again (ctime: no tool sets it back)
    return (str(path.resolve()), spec.name, split, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
            stat.st_ctime_ns)


def read_ahead(folder: Path | None, spec: TaskSpec) -> None:
    """Read and check every file of the task in ``folder`` (and MNLI's diagnostic set) now, in a fraction of a
    second for most tasks (SST-2's training set: 0.2 s), so that a malformed row is reported before the seconds
    that importing torch, Lightning and transformers takes, and before the model loads. What was read is kept for
    the DataModule's read of the same, unchanged file (``read_glue_file_and_digest``): each file is read and
    parsed once (also when this is called again before that). Only the latest run's files are kept; ``None``
    (data from the Hub) keeps none."""
    files = [(spec.path(folder, split), spec, split) for split in spec.file_names] if folder is not None else []
    if folder is not None and spec.name == "mnli" and (ax := ax_file(folder)) is not None:
        files.append((ax, TASKS["ax"], "test"))
    files = {_file_key(*file): file for file in files if file[0].is_file()}
    for key in set(_READ_AHEAD) - set(files):
        del _READ_AHEAD[key]
    for key, (path, file_spec, split) in files.items():
        if key not in _READ_AHEAD:
            _READ_AHEAD[key] = read_glue_file_and_digest(path, file_spec, split)


def training_rows_read_ahead(folder: Path, spec: TaskSpec) -> int | None:
    """How many examples the training file ``read_ahead`` kept has; None where it kept none."""
    path = spec.path(folder, "train")
    kept = _READ_AHEAD.get(_file_key(path, spec, "train")) if path.is_file() else None
    return len(kept[0]["label"]) if kept else None


def batches_per_epoch(samples: int, batch_size: int, limit: int | float | None = None) -> int:
    """Training batches an epoch of ``samples`` has in batches of ``batch_size``, as Lightning counts them:
    ``limit`` (a number of batches, or a fraction of them: ``trainer.limit_train_batches``, ``overfit_batches``)
    applied."""
    batches = math.ceil(samples / batch_size)
    if limit is None:
        return batches
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(limit, batches)
    return int(batches * float(limit)) if limit != 1.0 else batches


def forget_read_ahead() -> None:
    """Drop what ``read_ahead`` kept and nobody took (the DataModule has read what it needs)."""
    _READ_AHEAD.clear()


def read_glue_file(path: Path, spec: TaskSpec, split: str) -> dict[str, list]:
    """A GLUE TSV of ``spec``'s ``split``, checked row by row, as columns with the Hub's names: the text columns,
    ``label`` (ids; floats for a regression task; -1 for test files) and ``idx``.

    Raises DataFormatError naming the file, the line and the expected format: not UTF-8, empty, another header, a
    row with a missing field, an empty text, an unknown label, a score out of range, an index that is not an
    integer; WrongTaskFile where a wrong header or label is that of another task's file (``glue_task_of``).
    """
    return read_glue_file_and_digest(path, spec, split)[0]


def read_glue_file_and_digest(path: Path, spec: TaskSpec, split: str) -> tuple[dict[str, list], str]:
    """``read_glue_file``, and a digest of the very bytes it parsed (the key of their tokenization's cache), or
    what ``read_ahead`` kept of the unchanged file."""
    try:
        if (kept := _READ_AHEAD.pop(_file_key(path, spec, split), None)) is not None:
            return kept
    except OSError:  # no such file: said below, as for any read
        pass
    data = path.read_bytes()
    return _parse_glue_file(data, path, spec, split), hashlib.sha256(data).hexdigest()[:16]


def _parse_glue_file(data: bytes, path: Path, spec: TaskSpec, split: str) -> dict[str, list]:
    fmt = spec.files[split]
    try:
        text = data.decode("utf-8-sig")  # MRPC's files start with a byte-order mark
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not valid UTF-8 ({err.reason} at byte {err.start})") from err
    lines = text_lines(text)
    if not lines:
        raise DataFormatError(f"{path}: the file is empty (expected {spec.glue_name}'s {_describe(fmt)} and data rows)")
    rows = whole = tsv_rows(lines)

    def refuse_if_another_tasks() -> None:
        other = glue_task_of(whole)
        if other is not None and other.name != spec.name:
            raise WrongTaskFile(path, spec, other)

    if fmt.header:
        header, first = rows[0], 2
        missing = [c for c in fmt.header if c not in header]
        if missing or (fmt.exact and header != list(fmt.header)):
            refuse_if_another_tasks()
            commas = "\t" not in lines[0] and "," in lines[0]
            raise DataFormatError(f"{path}:1: header is {lines[0]!r}, expected {spec.glue_name}'s {_describe(fmt)}"
                                  + ("; this file reads as comma-separated: GLUE's files separate columns by tabs"
                                     if commas else ""))
        position = {name: header.index(name) for name in header}
        width = len(header)
        rows = rows[1:]
    else:  # CoLA's train and dev files: no header
        position, width, first = {}, fmt.width(), 1
        refuse_if_another_tasks()

    def column(key: str | int) -> int:
        return key if isinstance(key, int) else position[key]

    text_at = [column(c) for c in fmt.text]
    columns: dict[str, list] = {name: [] for name in spec.text}
    labels, indices = [], []
    for lineno, row in enumerate(rows, start=first):
        if not row:
            raise DataFormatError(f"{path}:{lineno}: the line is blank; every line holds a row ({spec.glue_name}'s "
                                  f"{path.name} has {_describe(fmt)}): delete it")
        if fmt.header is None and lineno == 1 and not any(field.strip().isdigit() for field in row):
            # a header line added to a file that has none (CoLA's train.tsv and dev.tsv: a 0/1 label in each row)
            raise DataFormatError(f"{path}:1: {spec.glue_name}'s {path.name} has no header line, and this line "
                                  f"reads as one ({chr(9).join(row)[:80]!r}): delete it ({spec.glue_name}'s "
                                  f"{path.name} has {_describe(fmt)})")
        if len(row) != width:
            raise DataFormatError(f"{path}:{lineno}: expected {width} tab-separated fields, found {len(row)} "
                                  f"({spec.glue_name}'s {path.name} has {_describe(fmt)})")
        for name, at in zip(spec.text, text_at):
            if not row[at].strip():
                raise DataFormatError(f"{path}:{lineno}: the {name} text is empty")
            columns[name].append(row[at])
        if fmt.label is not None:
            try:
                labels.append(parse_label(row[column(fmt.label)], spec, f"{path}:{lineno}"))
            except DataFormatError:  # RTE's header over WNLI's 0/1 labels: which file it is says more
                refuse_if_another_tasks()
                raise
        if fmt.index is not None:
            value = row[column(fmt.index)]
            if not value.isdigit():
                raise DataFormatError(f"{path}:{lineno}: index must be a non-negative integer, found {value!r}")
            indices.append(int(value))
    if not rows:
        raise DataFormatError(f"{path}: no data rows (expected {spec.glue_name}'s {_describe(fmt)} and rows)")
    n = len(rows)
    return {**columns, "label": labels if fmt.label is not None else [-1] * n,
            "idx": indices if fmt.index is not None else list(range(n))}


def parse_label(value: str, spec: TaskSpec, where: str) -> int | float:
    """A label as GLUE's files write it: an id ("0"/"1"), a name (RTE, QNLI, MNLI), or a score (STS-B)."""
    if spec.is_regression:
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        low, high = spec.score_range or (-math.inf, math.inf)
        if not low <= score <= high:
            raise DataFormatError(f"{where}: score must be a number from {low:g} to {high:g}, found {value!r}")
        return score
    if spec.label_strings:
        if value not in spec.labels:
            raise DataFormatError(f"{where}: label must be one of {', '.join(spec.labels)}, found {value!r}")
        return spec.labels.index(value)
    if value not in [str(i) for i in range(len(spec.labels))]:
        ids = " or ".join(str(i) for i in range(len(spec.labels)))
        raise DataFormatError(f"{where}: label must be {ids} ({', '.join(spec.labels)}), found {value!r}")
    return int(value)


def submission_line(index: int, prediction: int | float, spec: TaskSpec) -> str:
    """One row of GLUE's submission format: ids for most tasks, label names for RTE, QNLI, MNLI and AX, and the
    score, clipped to its range, for STS-B."""
    if spec.is_regression:
        low, high = spec.score_range or (-math.inf, math.inf)
        return f"{index}\t{min(max(float(prediction), low), high):.3f}"
    return f"{index}\t{spec.labels[int(prediction)] if spec.label_strings else int(prediction)}"
