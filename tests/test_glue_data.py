"""GLUE data: every task's original file layout, local CSV/JSON/parquet files, bad rows,
label mapping, encoding, offline failure and the submission files.

`write_glue_fixture` (also used by test_glue_pipeline.py) writes a small GLUE directory in the
exact layout of the original download, with labels a model can learn: a marker word in the
(last) sentence decides the label ("good"/"bad" for binary tasks, "yes"/"maybe"/"no" for
MNLI; STS-B's score is the number of "good" words among five).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from squeezemobile_jax.data.tokenizer import load_tokenizer
from squeezemobile_jax.tasks.glue import (
    GLUE_TASKS,
    SUBMISSION_FILES,
    DataSource,
    GlueDataError,
    encode_examples,
    format_prediction,
    get_task,
    load_split,
    read_glue_tsv,
    write_predictions,
    write_submission_zip,
)

FILLER = (
    "the",
    "a",
    "cat",
    "dog",
    "bird",
    "man",
    "woman",
    "car",
    "runs",
    "sits",
    "sleeps",
    "walks",
    "on",
    "under",
    "near",
    "with",
    "mat",
    "tree",
    "house",
    "road",
    "river",
    "big",
    "small",
    "red",
    "blue",
    "green",
    "old",
    "new",
    "quickly",
    "slowly",
    "today",
    "again",
    "and",
)
MARKERS = ("good", "bad", "yes", "maybe", "no")
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
BINARY_MARKERS = ("bad", "good")  # label id 0, 1
MNLI_MARKERS = ("yes", "maybe", "no")  # entailment, neutral, contradiction

# Header of each original-layout file (None: no header) and how a row is laid out.
TRAIN_HEADERS = {
    "cola": None,
    "sst2": ["sentence", "label"],
    "mrpc": ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "stsb": ["index", "genre", "filename", "year", "old_index", "source1", "source2",
             "sentence1", "sentence2", "score"],
    "qqp": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    "mnli": ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
             "sentence2_binary_parse", "sentence1_parse", "sentence2_parse", "sentence1",
             "sentence2", "label1", "gold_label"],
    "qnli": ["index", "question", "sentence", "label"],
    "rte": ["index", "sentence1", "sentence2", "label"],
    "wnli": ["index", "sentence1", "sentence2", "label"],
}  # fmt: skip
MNLI_DEV_HEADER = TRAIN_HEADERS["mnli"][:10] + ["label1", "label2", "label3", "label4",
                                                "label5", "gold_label"]  # fmt: skip
DIAGNOSTIC_HEADER = ["Lexical Semantics", "Predicate-Argument Structure", "Logic", "Knowledge",
                     "Domain", "Premise", "Hypothesis", "Label"]  # fmt: skip
TEST_HEADERS = {
    "cola": ["index", "sentence"],
    "sst2": ["index", "sentence"],
    "mrpc": ["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "stsb": TRAIN_HEADERS["stsb"][:-1],
    "qqp": ["id", "question1", "question2"],
    "mnli": TRAIN_HEADERS["mnli"][:10],
    "qnli": ["index", "question", "sentence"],
    "rte": ["index", "sentence1", "sentence2"],
    "wnli": ["index", "sentence1", "sentence2"],
}


def write_vocab(path: Path) -> Path:
    path.write_text("\n".join(SPECIALS + tuple(FILLER) + MARKERS) + "\n", encoding="utf-8")
    return path


@dataclasses.dataclass
class Row:
    texts: tuple[str, ...]
    label: str  # as the file writes it (a score for STS-B)


@dataclasses.dataclass
class Fixture:
    root: Path
    vocab: Path
    # Per submission file name: the test index column and the gold label strings.
    test_index: dict[str, list[int]]
    test_gold: dict[str, list[str]]
    dev_gold: dict[str, list[str]]


def _sentence(rng: np.random.Generator, marker: str | None, length: int = 5) -> str:
    words = list(rng.choice(FILLER, size=length))
    if marker is not None:
        words.insert(int(rng.integers(0, length + 1)), marker)
    return " ".join(words)


def make_rows(task_name: str, n: int, rng: np.random.Generator, weights=None) -> list[Row]:
    """`n` learnable rows for a task; `weights` are class probabilities (by label id)."""
    task = get_task(task_name)
    rows = []
    for _ in range(n):
        if task.is_regression:
            k = int(rng.integers(0, 6))
            words = ["good"] * k + ["bad"] * (5 - k)
            rng.shuffle(words)
            rows.append(Row((_sentence(rng, None), " ".join(words)), f"{k:.3f}"))
            continue
        label = int(rng.choice(task.num_labels, p=weights))
        marker = (MNLI_MARKERS if task.num_labels == 3 else BINARY_MARKERS)[label]
        if len(task.text_columns) == 1:
            texts: tuple[str, ...] = (_sentence(rng, marker),)
        else:
            texts = (_sentence(rng, None), _sentence(rng, marker))
        rows.append(Row(texts, task.labels[label]))
    return rows


def _train_fields(task: str, i: int, row: Row, dev: bool = False) -> list:
    a = row.texts[0]
    b = row.texts[-1]
    if task == "cola":
        return ["gj04", row.label, "" if row.label == "1" else "*", a]
    if task == "sst2":
        return [a, row.label]
    if task == "mrpc":
        return [row.label, 1000 + i, 2000 + i, a, b]
    if task == "stsb":
        return [i, "main-captions", "MSRvid", "2012test", i, "none", "none", a, b, row.label]
    if task == "qqp":
        return [i, 2 * i, 2 * i + 1, a, b, row.label]
    if task == "mnli":
        head = [i, 31193, f"{i}n", "fiction", f"( {a} )", f"( {b} )", f"(ROOT {a})",
                f"(ROOT {b})", a, b]  # fmt: skip
        return head + ([row.label] * 6 if dev else [row.label, row.label])
    return [i, a, b, row.label]  # qnli, rte, wnli


def _test_fields(task: str, index: int, row: Row) -> list:
    a, b = row.texts[0], row.texts[-1]
    if task in ("cola", "sst2"):
        return [index, a]
    if task == "mrpc":
        return [index, 3000 + index, 4000 + index, a, b]
    if task == "stsb":
        return [index, "main-news", "headlines", "2015", index, "none", "none", a, b]
    if task == "mnli":
        return [index, 1, f"{index}n", "slate", f"( {a} )", f"( {b} )", f"(ROOT {a})",
                f"(ROOT {b})", a, b]  # fmt: skip
    return [index, a, b]  # qqp, qnli, rte, wnli, AX


def _write_tsv(path: Path, header: list[str] | None, rows: list[list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ([] if header is None else ["\t".join(header)]) + [
        "\t".join(str(f) for f in r) for r in rows
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_glue_fixture(
    root: Path,
    tasks=tuple(GLUE_TASKS),
    n_train: int = 32,
    n_dev: int = 16,
    n_test: int = 12,
    seed: int = 0,
    weights: dict | None = None,
    test_is_dev: bool = False,
) -> Fixture:
    """Writes `root/<GLUE dir>/...` for `tasks` (plus `root/diagnostic/diagnostic.tsv` with
    MNLI) and `root/vocab.txt`. Test indices are a permutation, so the index column matters.
    With `test_is_dev`, every test set repeats the dev texts (their gold labels are known)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(root / "vocab.txt")
    fixture = Fixture(root, vocab, {}, {}, {})
    for name in tasks:
        task = get_task(name)
        w = (weights or {}).get(name)
        d = root / task.train.glue_files[0].split("/")[0]
        train = make_rows(name, n_train, rng, w)
        rows = [_train_fields(name, i, r) for i, r in enumerate(train)]
        _write_tsv(d / "train.tsv", TRAIN_HEADERS[name], rows)
        dev_header = MNLI_DEV_HEADER if name == "mnli" else TRAIN_HEADERS[name]
        dev_rows = {}
        for split in task.dev:
            dev = dev_rows[split.name] = make_rows(name, n_dev, rng, w)
            if name == "mrpc":  # a field that starts with a quote: read with quoting off
                dev[0] = Row(('" the cat sits', dev[0].texts[1]), dev[0].label)
            fixture.dev_gold[split.name] = [r.label for r in dev]
            path = root / split.glue_files[0]
            rows = [_train_fields(name, i, r, dev=True) for i, r in enumerate(dev)]
            _write_tsv(path, dev_header, rows)
        for split in task.test:
            if test_is_dev:  # MNLI-m/-mm repeat their own dev set, AX the matched one
                rows = dev_rows.get(split.name, dev_rows[task.dev[0].name])
            else:
                rows = make_rows(name, n_test, rng, w)
            index = [int(i) for i in rng.permutation(len(rows))]
            header = TEST_HEADERS["rte"] if split.name == "AX" else TEST_HEADERS[name]
            kind = "rte" if split.name == "AX" else name
            lines = [_test_fields(kind, i, r) for i, r in zip(index, rows)]
            _write_tsv(root / split.glue_files[0], header, lines)
            fixture.test_index[split.name] = index
            fixture.test_gold[split.name] = [r.label for r in rows]
        if name == "mnli":  # the labeled diagnostic repeats the matched dev set
            rows = [["lex", "", "", "", "news", *r.texts, r.label] for r in dev_rows["MNLI-m"]]
            _write_tsv(root / "diagnostic" / "diagnostic-full.tsv", DIAGNOSTIC_HEADER, rows)
    return fixture


# ---------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Fixture:
    return write_glue_fixture(tmp_path_factory.mktemp("glue"))


def test_every_split_of_every_task_reads_from_the_original_layout(fixture_dir):
    source = DataSource(glue_dir=str(fixture_dir.root), bad_rows="error")
    for task in GLUE_TASKS.values():
        train = load_split(source, task, task.train)
        assert len(train) == 32 and train.labels is not None and train.skipped == 0
        assert len(train.texts) == len(task.text_columns)
        for split in task.dev:
            dev = load_split(source, task, split)
            gold = [format_prediction(task, v) for v in dev.labels]
            assert gold == fixture_dir.dev_gold[split.name]  # labels round-trip to strings
        for split in task.test:
            test = load_split(source, task, split)
            assert test.labels is None
            assert list(test.index) == fixture_dir.test_index[split.name]


def test_cola_has_no_header_and_text_in_the_fourth_column(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("gj04\t1\t\tThe sailors rode the breeze.\nbc01\t0\t*\tHerself likes Mary.\n")
    task = get_task("cola")
    ex = read_glue_tsv(str(path), task, task.train)
    assert ex.texts == (["The sailors rode the breeze.", "Herself likes Mary."],)
    assert list(ex.labels) == [1, 0]


def test_quoting_is_off_and_mnli_gold_label_is_the_last_dev_column(tmp_path):
    fields = MNLI_DEV_HEADER
    row = ["7", "1", "7n", "fiction", "x", "y", "x", "y", '"Yes," he said', "b\"c",
           "neutral", "contradiction", "neutral", "neutral", "neutral", "neutral"]  # fmt: skip
    path = tmp_path / "dev_matched.tsv"
    path.write_text("\t".join(fields) + "\n" + "\t".join(row) + "\n")
    task = get_task("mnli")
    ex = read_glue_tsv(str(path), task, task.dev[0])
    assert ex.texts == (['"Yes," he said'], ['b"c'])
    assert list(ex.labels) == [1]  # neutral = id 1 in HF's order


def test_mnli_label_strings_map_to_hf_ids_and_back():
    task = get_task("mnli")
    assert [format_prediction(task, i) for i in range(3)] == [
        "entailment",
        "neutral",
        "contradiction",
    ]
    # WNLI: HF id 1 = entailment, which the GLUE files and the leaderboard write as "1".
    wnli = get_task("WNLI")
    assert format_prediction(wnli, 1) == "1" and wnli.label_names[1] == "entailment"
    assert format_prediction(get_task("sts-b"), 7.2) == "5.000"
    assert format_prediction(get_task("stsb"), -0.5) == "0.000"
    assert format_prediction(get_task("stsb"), 2.71828) == "2.718"


def test_bad_rows_name_file_and_line_or_are_counted(tmp_path, caplog):
    path = tmp_path / "train.tsv"
    path.write_text(
        "index\tsentence1\tsentence2\tlabel\n"
        "0\ta\tb\tentailment\n"
        "1\tonly two\n"  # line 3: too few fields
        "2\ta\tb\tmaybe\n"  # line 4: unknown label
        "3\ta\tb\tnot_entailment\n"
    )
    task = get_task("rte")
    with pytest.raises(GlueDataError, match=r"train\.tsv:3: 2 tab-separated fields, expected 4"):
        read_glue_tsv(str(path), task, task.train, bad_rows="error")
    with caplog.at_level(logging.WARNING):
        ex = read_glue_tsv(str(path), task, task.train, bad_rows="skip")
    assert list(ex.labels) == [0, 1] and ex.skipped == 2
    assert "skipped 2 bad row(s)" in caplog.text and "train.tsv:4: unknown label 'maybe'" in (
        caplog.text
    )
    # Test rows are never skipped: each one needs a prediction.
    test = tmp_path / "test.tsv"
    test.write_text("index\tsentence1\tsentence2\n0\ta\tb\n1\ta\n")
    with pytest.raises(GlueDataError, match=r"test\.tsv:3"):
        read_glue_tsv(str(test), task, task.test[0], bad_rows="skip")


def test_stsb_score_must_be_a_number(tmp_path):
    path = tmp_path / "dev.tsv"
    header = TRAIN_HEADERS["stsb"]
    good = [0, "g", "f", "y", 0, "n", "n", "a", "b", "2.500"]
    bad = [1, "g", "f", "y", 1, "n", "n", "a", "b", "high"]
    _write_tsv(path, header, [good, bad])
    task = get_task("stsb")
    with pytest.raises(GlueDataError, match=r"dev\.tsv:3: score 'high' is not a number"):
        read_glue_tsv(str(path), task, task.dev[0])


def test_local_parquet_csv_and_json_files_with_hf_columns(tmp_path):
    import pandas as pd

    pd.DataFrame(
        {"premise": ["p0", "p1"], "hypothesis": ["h0", "h1"], "label": [2, 0], "idx": [0, 1]}
    ).to_parquet(tmp_path / "train.parquet")
    (tmp_path / "dev.csv").write_text(
        "premise,hypothesis,label\nNA,null,neutral\nx,y,contradiction\n"
    )
    (tmp_path / "test.jsonl").write_text(
        "\n".join(
            json.dumps({"premise": f"t{i}", "hypothesis": "h", "idx": 10 + i}) for i in range(3)
        )
    )
    task = get_task("mnli")
    files = {
        "train": str(tmp_path / "train.parquet"),
        "validation_matched": str(tmp_path / "dev.csv"),
        "test_matched": str(tmp_path / "test.jsonl"),
    }
    source = DataSource(files=files, cache_dir=str(tmp_path / "cache"))
    train = load_split(source, task, task.train)
    assert train.texts == (["p0", "p1"], ["h0", "h1"]) and list(train.labels) == [2, 0]
    dev = load_split(source, task, task.dev[0])
    assert dev.texts[0] == ["NA", "x"] and dev.texts[1] == ["null", "y"]  # no NaN conversion
    assert list(dev.labels) == [1, 2]
    test = load_split(source, task, task.test[0])
    assert list(test.index) == [10, 11, 12] and test.labels is None
    # Local data never falls back to the hub: a missing required split is an error ...
    with pytest.raises(GlueDataError, match="validation_mismatched: no data"):
        load_split(source, task, task.dev[1])
    # ... and a missing test set is skipped with a warning.
    assert load_split(source, task, task.test[2], required=False) is None


def test_hf_style_snapshot_directory(tmp_path):
    import pandas as pd

    (tmp_path / "ax").mkdir()
    frame = {"premise": ["a", "b"], "hypothesis": ["c", "d"], "label": [-1, -1], "idx": [0, 1]}
    pd.DataFrame(frame).to_parquet(tmp_path / "ax" / "test-00000-of-00001.parquet")
    task = get_task("mnli")
    source = DataSource(glue_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"))
    ax = load_split(source, task, task.test[2])
    assert ax.texts == (["a", "b"], ["c", "d"]) and ax.labels is None


def test_offline_hub_fails_fast_and_says_how_to_pass_local_files(monkeypatch):
    import datasets
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))
    task = get_task("rte")
    with pytest.raises(GlueDataError) as info:
        load_split(DataSource(), task, task.train)
    assert calls == []  # failing fast = no download attempt (load_dataset retries offline)
    message = str(info.value)
    assert "not reachable" in message and "--config.data.glue_dir" in message
    assert "--config.data.files.train" in message


def test_encoding_pads_counts_truncation_and_keeps_pairs(tmp_path):
    tokenizer = load_tokenizer(write_vocab(tmp_path / "vocab.txt"))
    task = get_task("rte")
    source = DataSource(glue_dir=str(write_glue_fixture(tmp_path, ("rte",)).root))
    ex = load_split(source, task, task.dev[0])
    arrays, truncated = encode_examples(ex, tokenizer, 10)
    # Each pair has 5 + 6 words + [CLS] + 2 [SEP] = 14 tokens > 10: all truncated.
    assert truncated == len(ex) and arrays["input_ids"].shape == (len(ex), 10)
    full, none_cut = encode_examples(ex, tokenizer, 16)
    assert none_cut == 0
    row = full["input_ids"][0]
    cls, sep = tokenizer.cls_id, tokenizer.sep_id
    words = ex.texts[0][0].split() + ex.texts[1][0].split()
    assert row[0] == cls and list(row).count(sep) == 2 and row[15] == tokenizer.pad_id
    assert full["attention_mask"][0].sum() == len(words) + 3
    assert list(full["token_type_ids"][0][: len(ex.texts[0][0].split()) + 2]) == [0] * 7
    assert full["token_type_ids"][0][7] == 1


def test_prediction_files_and_flat_zip(tmp_path):
    task = get_task("mnli")
    write_predictions(str(tmp_path / "MNLI-m.tsv"), task, [4, 0, 9], np.array([2, 0, 1]))
    lines = (tmp_path / "MNLI-m.tsv").read_text().splitlines()
    assert lines == ["index\tprediction", "4\tcontradiction", "0\tentailment", "9\tneutral"]
    missing = write_submission_zip(
        str(tmp_path / "s.zip"), {"MNLI-m": str(tmp_path / "MNLI-m.tsv")}
    )
    assert missing == [n for n in SUBMISSION_FILES if n != "MNLI-m"]
    with zipfile.ZipFile(tmp_path / "s.zip") as zf:
        assert zf.namelist() == ["MNLI-m.tsv"]
    assert os.path.basename(str(tmp_path / "s.zip")) == "s.zip"


def test_hub_rows_with_class_label_ids_and_hidden_test_labels(monkeypatch):
    import datasets

    from squeezemobile_jax.tasks.glue import sources as glue_sources

    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["not_entailment", "entailment"]),
            "idx": datasets.Value("int32"),
        }
    )
    splits = {
        "train": {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": [1, 0], "idx": [0, 1]},
        "test": {"sentence1": ["e"], "sentence2": ["f"], "label": [-1], "idx": [0]},
    }
    calls = []

    def fake_load_dataset(path, name, split, cache_dir=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict(splits[split], features=features)

    monkeypatch.setattr(glue_sources, "hub_reachable", lambda timeout=5.0: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    task = get_task("wnli")
    train = load_split(DataSource(), task, task.train)
    # HF's WNLI id 1 is "entailment", which the leaderboard writes as "1".
    assert [format_prediction(task, v) for v in train.labels] == ["1", "0"]
    test = load_split(DataSource(), task, task.test[0])
    assert test.labels is None and test.texts == (["e"], ["f"])
    assert calls == [("nyu-mll/glue", "wnli", "train"), ("nyu-mll/glue", "wnli", "test")]
    # The labeled AX diagnostic is not on the hub (its labels are hidden there).
    assert load_split(DataSource(), get_task("mnli"), get_task("mnli").diagnostic) is None
