"""GlueDataModule on SST-2-format files: local GLUE TSVs, row checks, tokenization cache, truncation, padding.
(Every other task's files: tests/test_tasks.py.)"""

from __future__ import annotations

import pytest

from conftest import write_sst2
from glue_finetune.data import GlueDataModule
from glue_finetune.errors import DataFormatError
from glue_finetune.tasks import TASKS, read_glue_file
from hydra.utils import instantiate


def check_glue_tsv(path, split: str = "train") -> dict:
    return read_glue_file(path, TASKS["sst2"], split)


def datamodule(tiny_cfg, *overrides) -> GlueDataModule:
    dm = instantiate(tiny_cfg(*overrides).data, _convert_="all")
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_the_runs_check_and_the_datamodule_parse_each_local_file_once(tiny_cfg, monkeypatch):
    # The run's check (train.py's, then train()'s own) reads the files before the heavy imports; the DataModule
    # takes what it read, digests included, and nothing is left kept.
    from glue_finetune import tasks
    from glue_finetune.config import preflight

    monkeypatch.setattr(tasks, "_READ_AHEAD", {})
    parsed = []
    parse = tasks.text_lines
    monkeypatch.setattr(tasks, "text_lines", lambda text: parsed.append(text) or parse(text))
    cfg = tiny_cfg()
    preflight(cfg)
    preflight(cfg)
    assert len(parsed) == 3  # train, dev, test
    dm = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    assert len(parsed) == 3 and not tasks._READ_AHEAD
    assert set(dm.source_digests) == {"train", "validation", "test"}
    plain = instantiate(cfg.data, _convert_="all")  # no check before it: it reads the files itself
    plain.prepare_data()
    assert len(parsed) == 6 and plain.source_digests == dm.source_digests


def test_local_splits_have_the_hub_columns_and_sizes(tiny_cfg):
    dm = datamodule(tiny_cfg)
    assert {name: len(ds) for name, ds in dm.splits.items()} == {"train": 320, "validation": 64, "test": 40}
    assert set(dm.splits["train"].unique("labels")) == {0, 1}
    assert dm.splits["test"].unique("labels") == [-1]  # GLUE hides test labels
    assert dm.splits["test"]["idx"] == list(range(40))
    assert dm.splits["train"].features["labels"].names == ["negative", "positive"]


def test_tokenization_is_cached_and_reused(tiny_cfg, tmp_path, monkeypatch):
    import datasets

    from glue_finetune import data

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))  # empty: this test's own
    calls = []
    tokenize = data._tokenize
    monkeypatch.setattr(data, "_tokenize", lambda batch, **kw: calls.append(1) or tokenize(batch, **kw))
    first = datamodule(tiny_cfg).splits["train"]
    assert calls, "the first run tokenizes"
    calls.clear()
    second = datamodule(tiny_cfg).splits["train"]
    assert not calls, "the second run reads the first one's tokens"
    assert first.cache_files and first.cache_files == second.cache_files
    assert first["input_ids"] == second["input_ids"]
    # A different max_length is a different fingerprint, so a new cache entry.
    other = datamodule(tiny_cfg, "data.max_length=8").splits["train"]
    assert calls and other._fingerprint != first._fingerprint


def test_truncates_at_max_length_and_pads_each_batch_to_its_longest(tiny_cfg):
    dm = datamodule(tiny_cfg, "data.max_length=10", "data.batch_size=8")
    lengths = [len(ids) for ids in dm.splits["train"]["input_ids"]]
    assert max(lengths) == 10
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[0] == 8
    assert batch["input_ids"].shape[1] == int(batch["attention_mask"].sum(1).max())  # no column is all padding
    assert set(batch) >= {"input_ids", "attention_mask", "labels"}


def test_a_limited_validation_scores_batches_spread_over_the_lengths_not_the_longest(tiny_cfg):
    from types import SimpleNamespace

    dm = datamodule(tiny_cfg, "data.eval_batch_size=8")  # 64 dev examples: 8 batches
    lengths = dm.lengths("validation")
    dm.trainer = SimpleNamespace(limit_val_batches=1.0, limit_test_batches=1.0, world_size=1, global_rank=0)
    whole = list(dm._eval_sampler("validation"))
    assert [lengths[i] for i in whole] == sorted(lengths, reverse=True)  # all of it: longest first
    dm.trainer.limit_val_batches = 3  # +trainer.limit_val_batches=3, debug=limit: the first 3 batches are scored
    limited = list(dm._eval_sampler("validation"))
    assert sorted(limited) == sorted(whole) and limited[:8] == whole[:8]  # every example; the longest batch first
    batches = [limited[i:i + 8] for i in range(0, 64, 8)]
    assert batches[1:3] != [whole[8:16], whole[16:24]] and sorted(map(sorted, batches)) == sorted(
        sorted(whole[i:i + 8]) for i in range(0, 64, 8))  # other batches, whole ones: still of similar lengths


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_rows_split_at_newlines_only_not_at_line_separators_inside_a_sentence(tmp_path, newline):
    from glue_finetune.inference import read_labelled

    sentences = ["a line\u2028separator", "a next-line\x85mark", "a form\x0cfeed", "plain"]
    path = tmp_path / "dev.tsv"
    path.write_bytes(newline.join(["sentence\tlabel", *(f"{s}\t{i % 2}" for i, s in enumerate(sentences))]).encode()
                     + newline.encode())
    assert check_glue_tsv(path, "validation")["sentence"] == sentences
    assert read_labelled(path, TASKS["sst2"]) == ([(s,) for s in sentences], [0, 1, 0, 1])
    path.write_bytes(path.read_bytes() + newline.encode() * 2)  # blank lines after the last row: the end
    assert check_glue_tsv(path, "validation")["sentence"] == sentences
    path.write_bytes(path.read_bytes() + b"last\t1" + newline.encode())  # ... unless a row follows them
    with pytest.raises(DataFormatError, match=":6: the line is blank; every line holds a row"):
        check_glue_tsv(path, "validation")
    own = tmp_path / "own.tsv"  # a header of one's own: read by evaluate.py's and predict.py's own reader
    own.write_bytes(newline.join(["label\tsentence", *(f"{i % 2}\t{s}" for i, s in enumerate(sentences))]).encode())
    assert read_labelled(own, TASKS["sst2"]) == ([(s,) for s in sentences], [0, 1, 0, 1])


def test_eval_loaders_serve_the_dev_set(tiny_cfg):
    dm = datamodule(tiny_cfg, "data.eval_batch_size=8")
    assert sum(len(b["labels"]) for b in dm.val_dataloader()[0]) == 64
    # the best checkpoint is scored on the labelled dev set
    assert dm.test_dataloader()[0].dataset["input_ids"] == dm.val_dataloader()[0].dataset["input_ids"]


def test_max_train_samples_takes_the_first_sentences(tiny_cfg):
    dm = datamodule(tiny_cfg, "data.max_train_samples=50")
    assert len(dm.splits["train"]) == 50 and dm.splits["train"]["idx"] == list(range(50))


def test_sentences_are_read_verbatim(tmp_path, tiny_cfg):
    # Unquoted TSV: quotes are text, and "null"/"nan" are sentences, not missing values.
    d = write_sst2(tmp_path / "sst2", n_train=4, n_dev=2, n_test=1)
    (d / "train.tsv").write_text('sentence\tlabel\n"quoted" start\t1\nnull\t0\nnan\t1\n\'tis fine\t0\n')
    dm = instantiate(tiny_cfg(f"data.local_dir={d}").data, _convert_="all")
    raw = dm.load_raw()["train"]
    assert raw["sentence"] == ['"quoted" start', "null", "nan", "'tis fine"]


@pytest.mark.parametrize(
    "content,problem",
    [
        (b"sentence\tlabel\ngood\t1\nbad\t0\textra\n", "train.tsv:3: expected 2 tab-separated fields, found 3"),
        (b"sentence\tlabel\ngood\t1\nbad\n", "train.tsv:3: expected 2 tab-separated fields, found 1"),
        (b"sentence\tlabel\ngood\t2\n", "train.tsv:2: label must be 0 or 1 (negative, positive), found '2'"),
        (b"sentence\tlabel\ngood\tpositive\n", "train.tsv:2: label must be 0 or 1 (negative, positive), found 'positive'"),
        (b"sentence\tlabel\ngood\t1\nbad \xff\t0\n", "train.tsv:3: not valid UTF-8"),
        (b"", "train.tsv: the file is empty"),
        (b"sentence\tlabel\n", "train.tsv: no data rows"),
        (b"text\tlabel\ngood\t1\n", "train.tsv:1: header is 'text\\tlabel', expected SST-2's header 'sentence\\tlabel'"),
        (b"sentence,label\n\"good, really\",1\n", "header is 'sentence,label', expected SST-2's header 'sentence\\tlabel'"
                                                  "; this file reads as comma-separated: GLUE's files separate columns by tabs"),
    ],
    ids=["extra-field", "missing-field", "label-2", "label-word", "non-utf8", "empty", "header-only", "bad-header",
         "comma-separated"],
)
def test_malformed_train_rows_are_named_by_file_and_line(tmp_path, content, problem):
    path = tmp_path / "train.tsv"
    path.write_bytes(content)
    with pytest.raises(DataFormatError) as err:
        check_glue_tsv(path)
    assert problem in str(err.value)
    assert str(path) in str(err.value)


def test_malformed_file_stops_the_data_module_before_tokenizing(tmp_path, tiny_cfg):
    d = write_sst2(tmp_path / "sst2")
    (d / "dev.tsv").write_text("sentence\tlabel\nok\t1\nbroken row\n")
    dm = instantiate(tiny_cfg(f"data.local_dir={d}").data, _convert_="all")
    with pytest.raises(DataFormatError, match=r"dev.tsv:3: expected 2 tab-separated fields"):
        dm.prepare_data()
    assert dm.splits is None


def test_test_index_must_be_an_integer(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("index\tsentence\n0\tfine\nx\tbad\n")
    with pytest.raises(DataFormatError, match=r"test.tsv:3: index must be a non-negative integer, found 'x'"):
        check_glue_tsv(path, "test")


def test_missing_test_file_only_skips_predictions(tmp_path, tiny_cfg):
    d = write_sst2(tmp_path / "sst2")
    (d / "test.tsv").unlink()
    dm = datamodule(tiny_cfg, f"data.local_dir={d}")
    assert "train" in dm.splits and not dm.test_sets()  # no submission file to write, the rest as usual


def padding_ratio(loader) -> float:
    padded = real = 0
    for batch in loader:
        padded += batch["attention_mask"].numel()
        real += int(batch["attention_mask"].sum())
    return padded / real


def test_length_grouped_batches_are_random_and_carry_little_padding(tiny_cfg):
    grouped = datamodule(tiny_cfg, "data.group_by_length=true")
    plain = datamodule(tiny_cfg, "data.group_by_length=false")
    assert padding_ratio(grouped.train_dataloader()) < padding_ratio(plain.train_dataloader())
    assert padding_ratio(grouped.train_dataloader()) < 1.15
    # Still a random permutation of the whole split: different each epoch, the same for the same (seed, epoch).
    sampler = grouped.train_dataloader().sampler
    orders = {}
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.setdefault(epoch, []).append(list(sampler))
    assert sorted(orders[0][0]) == list(range(320))
    assert orders[0][0] == orders[0][1] and orders[0][0] != orders[1][0]
    other_seed = datamodule(tiny_cfg, "seed=43").train_dataloader().sampler
    assert list(other_seed) != orders[0][0]


def test_eval_batches_are_sorted_by_length(tiny_cfg):
    dm = datamodule(tiny_cfg)
    widths = [b["input_ids"].shape[1] for b in dm.val_dataloader()[0]]
    assert widths == sorted(widths, reverse=True)
    assert sum(len(b["labels"]) for b in dm.val_dataloader()[0]) == 64


def test_pad_to_multiple_of_rounds_batch_lengths_up(tiny_cfg):
    from hydra.utils import instantiate

    dm = instantiate(tiny_cfg("data.pad_to_multiple_of=8").data)
    dm.setup()
    widths = set()
    for batch in dm.train_dataloader():  # each batch's longest row, rounded up to 8: not one width for all
        longest = int(batch["attention_mask"].sum(1).max())
        assert batch["input_ids"].shape[1] == -(-longest // 8) * 8
        widths.add(batch["input_ids"].shape[1])
    assert len(widths) > 1


def test_a_resumed_sampler_continues_its_epoch_once_then_draws_whole_epochs():
    from glue_finetune.data import EpochSeededSampler

    lengths = [(i * 7) % 23 + 1 for i in range(200)]
    sampler = EpochSeededSampler(lengths, batch_size=4, seed=3)
    sampler.set_epoch(2)
    epoch_2 = list(sampler)
    resumed = EpochSeededSampler(lengths, batch_size=4, seed=3)
    resumed.resume(epoch=2, samples_done=40)
    assert list(resumed) == epoch_2[40:]  # the rest of epoch 2, in the same order
    assert len(resumed) == 200  # Lightning counts the skipped batches as done
    resumed.set_epoch(3)
    sampler.set_epoch(3)
    assert list(resumed) == list(sampler)  # the next epoch is whole


@pytest.mark.parametrize("task,multiple", [("sst2", None), ("mrpc", 8), ("stsb", None)])
def test_resident_batches_are_the_collated_batches(tiny_cfg, glue_dir, task, multiple):
    # The training and dev sets kept padded on the device, a batch gathered from its row numbers: the same tensors
    # as the per-batch collation, in the same order (single sentences and pairs, class labels and scores, with and
    # without rounding; dev batches sorted by length).
    import torch

    overrides = [f"data={task}", "data.local_dir=null", f"data.glue_dir={glue_dir}",
                 f"data.pad_to_multiple_of={'null' if multiple is None else multiple}"]
    collated = datamodule(tiny_cfg, *overrides)
    resident = datamodule(tiny_cfg, *overrides, "+data.resident_batches=true")
    pairs = [(collated.train_dataloader(), resident.train_dataloader()),  # then every dev set, in its order
             *zip(collated.val_dataloader(), resident.val_dataloader())]
    for expected_loader, resident_loader in pairs:
        batches = 0
        for expected, rows in zip(expected_loader, resident_loader, strict=True):
            assert set(rows) == {"rows", "length", "split"}  # what travels to the device
            got = resident.on_after_batch_transfer(rows, 0)
            assert got.keys() == set(expected.keys())
            for name, tensor in expected.items():
                assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
            batches += 1
        assert batches > 5
    assert set(resident.resident) == {"train", *resident.spec.dev_splits}
    # Kept in the narrowest integers (4 bytes a token, not 24), widened to the collated int64 per batch above.
    stored = resident.resident["train"].inputs
    assert {c: t.dtype for c, t in stored.items()} == {"input_ids": torch.int16, "attention_mask": torch.int8,
                                                       "token_type_ids": torch.int8}


def test_max_train_samples_past_the_training_set_says_all_of_it_is_used(tiny_cfg, caplog):
    # accepted without a word: the run used every example while its card recorded a subset of 100,000
    with caplog.at_level("WARNING", logger="glue_finetune.data"):
        dm = datamodule(tiny_cfg, "data.max_train_samples=100000")
    assert len(dm.splits["train"]) == 320  # the fixture's whole training set
    assert ("data.max_train_samples=100000 is not less than SST-2's 320 training examples: all of them are used, and "
            "the run is recorded as trained on the whole set" in caplog.text)
    assert not dm.trained_on_part  # what the card and the report's ‡ go by
    caplog.clear()
    with caplog.at_level("WARNING", logger="glue_finetune.data"):
        dm = datamodule(tiny_cfg, "data.max_train_samples=100")
    assert len(dm.splits["train"]) == 100 and dm.trained_on_part
    assert "max_train_samples" not in caplog.text
