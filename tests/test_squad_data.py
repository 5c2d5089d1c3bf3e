"""SQuAD reading (formats, clear errors, skips) and features (windows, labels, offsets,
max-context), checked against hand-computed values and transformers' BertTokenizerFast."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from test_data_support import bert_tokenizer, bert_vocab_path  # noqa: F401
from test_squad_support import make_squad_json, write_squad_json
from transformers import BertTokenizerFast
from transformers.models.bert.tokenization_bert import load_vocab

from squeezemobile_jax.data.tokenizer import WordPieceTokenizer
from squeezemobile_jax.tasks.squad import (
    Answer,
    FeatureOptions,
    SquadExample,
    SquadFormatError,
    build_features,
    load_hub_squad,
    max_context_owner,
    read_squad_file,
    window_starts,
)
from squeezemobile_jax.tasks.squad.metrics import normalize_answer

NORMANS = (
    "The Normans (Norman: Nourmands; French: Normands; Latin: Normanni) were the people who "
    "in the 10th and 11th centuries gave their name to Normandy, a region in France. They "
    'were descended from Norse ("Norman" comes from "Norseman") raiders and pirates from '
    "Denmark, Iceland and Norway who, under their leader Rollo, agreed to swear fealty to "
    "King Charles III of West Francia. Through generations of assimilation and mixing with "
    "the native Frankish and Roman-Gaulish populations, their descendants would gradually "
    "merge with the Carolingian-based cultures of West Francia. The distinct cultural and "
    "ethnic identity of the Normans emerged initially in the first half of the 10th century, "
    "and it continued to evolve over the succeeding centuries."
)
CAFE = "Café Müller opened in 1895–1943 at the Rue d'Été, near the old naïve fountain."


def _qa(qid: str, question: str, context: str, answer: str | None, **extra) -> dict:
    answers = [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]
    return {"id": qid, "question": question, "answers": answers, **extra}


def _nested(context: str, qas: list[dict], version: str = "1.1") -> dict:
    return {
        "version": version,
        "data": [{"title": "T", "paragraphs": [{"context": context, "qas": qas}]}],
    }


def _write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def hf(bert_vocab_path: Path) -> BertTokenizerFast:  # noqa: F811
    return BertTokenizerFast(vocab=load_vocab(str(bert_vocab_path)), do_lower_case=True)


# ------------------------------------------------------------------------------ reading
def test_reads_nested_and_flattened_files(tmp_path: Path) -> None:
    qas = [
        _qa("q1", "Where is Normandy?", NORMANS, "France"),
        _qa("q2", "Who was the leader?", NORMANS, "Rollo"),
    ]
    nested = read_squad_file(_write(tmp_path / "n.json", _nested(NORMANS, qas)))
    assert nested.version == "1.1" and nested.skipped == 0
    assert [e.qid for e in nested.examples] == ["q1", "q2"]
    assert nested.examples[1].answers == (Answer("Rollo", NORMANS.index("Rollo")),)
    assert nested.examples[0].title == "T" and nested.examples[0].context == NORMANS

    flat = {
        "data": [
            {
                "id": "q1",
                "title": "T",
                "context": NORMANS,
                "question": "Where is Normandy?",
                "answers": {"text": ["France"], "answer_start": [NORMANS.index("France")]},
            }
        ]
    }
    read = read_squad_file(_write(tmp_path / "f.json", flat))
    assert read.examples == nested.examples[:1]


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "broken.json", '{"data": [\n  {"title": "x",,}\n]}')
    with pytest.raises(SquadFormatError, match=r"broken\.json:2:\d+: not valid JSON"):
        read_squad_file(path)
    with pytest.raises(SquadFormatError, match=r"nothere\.json: file not found"):
        read_squad_file(tmp_path / "nothere.json")
    with pytest.raises(SquadFormatError, match=r"top\.json: expected a JSON object with a 'data'"):
        read_squad_file(_write(tmp_path / "top.json", [1, 2]))


@pytest.mark.parametrize(
    "qa, message",
    [
        ({"id": "q7", "answers": []}, "question id 'q7': missing field 'question'"),
        ({"id": "q7", "question": "?"}, "question id 'q7': missing field 'answers'"),
        (
            {"id": "q7", "question": "?", "answers": [{"text": "France"}]},
            "question id 'q7': answer 0 \\('France'\\) has no integer 'answer_start'",
        ),
        (
            {"id": "q7", "question": "?", "answers": [{"text": "France", "answer_start": 4}]},
            "question id 'q7': answer 0 'France' does not match the context at "
            "answer_start=4 \\(the context there reads 'Norman'\\)",
        ),
        ({"question": "?", "answers": []}, r"data\[0\]\.paragraphs\[0\]\.qas\[0\]: .* 'id'"),
    ],
)
def test_bad_questions_name_file_and_id(tmp_path: Path, qa: dict, message: str) -> None:
    path = _write(tmp_path / "bad.json", _nested(NORMANS, [qa]))
    with pytest.raises(SquadFormatError, match=f"bad\\.json: {message}"):
        read_squad_file(path)


def test_structure_errors(tmp_path: Path) -> None:
    no_context = {"data": [{"paragraphs": [{"qas": [_qa("q1", "?", NORMANS, "France")]}]}]}
    with pytest.raises(SquadFormatError, match="question id 'q1': missing field 'context'"):
        read_squad_file(_write(tmp_path / "a.json", no_context))
    with pytest.raises(SquadFormatError, match=r"data\[0\]: missing field 'paragraphs'"):
        read_squad_file(_write(tmp_path / "b.json", {"data": [{"title": "x"}]}))
    dup = _nested(NORMANS, [_qa("q1", "?", NORMANS, "France")] * 2)
    with pytest.raises(SquadFormatError, match="question id 'q1': id is used by an earlier"):
        read_squad_file(_write(tmp_path / "c.json", dup))


def test_unanswerable_questions_only_in_v2(tmp_path: Path) -> None:
    qas = [_qa("q1", "?", NORMANS, None, is_impossible=True)]
    path = _write(tmp_path / "v2.json", _nested(NORMANS, qas, "v2.0"))
    assert read_squad_file(path).examples[0].is_impossible
    with pytest.raises(SquadFormatError, match="question id 'q1': 'answers' is empty; SQuAD v1.1"):
        read_squad_file(path, allow_impossible=False)
    both = [_qa("q2", "?", NORMANS, "France", is_impossible=True)]
    with pytest.raises(SquadFormatError, match="'is_impossible' is true but 'answers'"):
        read_squad_file(_write(tmp_path / "both.json", _nested(NORMANS, both)))


def test_skip_mode_counts_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    qas = [
        _qa("good1", "?", NORMANS, "France"),
        {"id": "bad1", "question": "?", "answers": [{"text": "France", "answer_start": 0}]},
        {"id": "bad2", "answers": []},
        _qa("good2", "?", NORMANS, "Rollo"),
    ]
    path = _write(tmp_path / "mixed.json", _nested(NORMANS, qas))
    with caplog.at_level(logging.WARNING, logger="squeezemobile_jax.tasks.squad.examples"):
        data = read_squad_file(path, on_error="skip")
    assert [e.qid for e in data.examples] == ["good1", "good2"]
    assert data.skipped == 2
    assert "question id 'bad1'" in caplog.text and "question id 'bad2'" in caplog.text
    assert "skipped 2 malformed question(s)" in caplog.text


def test_unreachable_hub_fails_fast_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    # A local port nobody listens on: the connection is refused at once, as offline.
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))
    with pytest.raises(SquadFormatError) as info:
        load_hub_squad("rajpurkar/squad", "validation")
    # Failing fast = no download attempt (load_dataset retries for minutes offline).
    assert calls == []
    message = str(info.value)
    assert "--config.data.train_file=PATH" in message and "HF_HUB_OFFLINE=1" in message


# ----------------------------------------------------------------------------- windows
def test_window_starts_by_hand() -> None:
    assert window_starts(10, 6, 3) == [(0, 6), (3, 6), (6, 4)]
    assert window_starts(5, 6, 3) == [(0, 5)]
    assert window_starts(0, 6, 3) == [(0, 0)]
    # A stride above the window length moves by the window length (no token left out).
    assert window_starts(13, 4, 5) == [(0, 4), (4, 4), (8, 4), (12, 1)]


def test_max_context_by_hand() -> None:
    # Windows (0,6), (3,6), (6,4); score = min(left, right) + 0.01 * length:
    # token 4: window 0 -> min(4,1)+.06 = 1.06, window 1 -> min(1,4)+.06 = 1.06: tie, first.
    # token 7: window 1 -> min(4,1)+.06 = 1.06, window 2 -> min(1,2)+.04 = 1.04.
    owner = max_context_owner([(0, 6), (3, 6), (6, 4)], 10)
    assert owner.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2]


def _hf_windows(hf: BertTokenizerFast, ex: SquadExample, opts: FeatureOptions):
    """transformers' overflowing windows for BERT's doc_stride: HF's stride is the overlap."""
    question = ex.question.lstrip()
    q_len = min(len(hf(question, add_special_tokens=False)["input_ids"]), opts.max_query_length)
    question = hf.decode(hf(question, add_special_tokens=False)["input_ids"][:q_len])
    max_doc = opts.max_seq_length - q_len - 3
    return hf(
        question,
        ex.context,
        truncation="only_second",
        max_length=opts.max_seq_length,
        stride=max_doc - opts.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )


def _examples() -> list[SquadExample]:
    def ex(qid: str, question: str, context: str, answer: str | None) -> SquadExample:
        answers = () if answer is None else (Answer(answer, context.index(answer)),)
        return SquadExample(qid, question, context, answers)

    return [
        ex("n1", "In what country is Normandy located?", NORMANS, "France"),
        ex("n2", "  Who was the Norse leader?", NORMANS, "Rollo"),
        ex("n3", "When did the identity emerge?", NORMANS, "first half of the 10th century"),
        ex("n4", "Who gave an oath to the king?", NORMANS, "Denmark, Iceland and Norway"),
        ex("n5", "What is this?", NORMANS, None),
        ex("c1", "When was it open?", CAFE, "1895–1943"),
        ex("c2", "Which street?", CAFE, "Rue d'Été"),
        ex("c3", "Name?", CAFE, "Café Müller"),
    ]


def test_windows_match_transformers(bert_tokenizer: WordPieceTokenizer, hf) -> None:  # noqa: F811
    opts = FeatureOptions(max_seq_length=48, doc_stride=12, max_query_length=16)
    examples = _examples()
    features, stats = build_features(examples, bert_tokenizer, opts, training=True)
    row = 0
    for i, ex in enumerate(examples):
        ref = _hf_windows(hf, ex, opts)
        n = len(ref["input_ids"])
        rows = np.nonzero(features.example_index == i)[0]
        ctx_offsets = hf(ex.context, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
        assert rows.tolist() == list(range(row, row + n)), ex.qid
        for k, r in enumerate(rows):
            np.testing.assert_array_equal(features.input_ids[r], ref["input_ids"][k])
            np.testing.assert_array_equal(features.token_type_ids[r], ref["token_type_ids"][k])
            np.testing.assert_array_equal(features.attention_mask[r], ref["attention_mask"][k])
            context = np.array(ref.sequence_ids(k)) == 1
            want = np.where(context[:, None], np.array(ref["offset_mapping"][k]), -1)
            np.testing.assert_array_equal(features.offsets[r], want)
            # Window k's context starts at context token k * doc_stride.
            first = ctx_offsets[k * opts.doc_stride]
            assert tuple(features.offsets[r][context][0]) == tuple(first), (ex.qid, k)
        row += n
    assert len(features) == row
    normans_windows = np.sum(np.isin(features.example_index, [0, 1, 2, 3, 4]))
    assert normans_windows == 5 * len(_hf_windows(hf, examples[0], opts)["input_ids"]) > 5
    # Every context token is "max context" in exactly one window of its example.
    for i in (0, 5):
        rows = features.example_index == i
        assert features.max_context[rows].sum() == len(
            hf(examples[i].context, add_special_tokens=False)["input_ids"]
        )
    assert stats.examples == 8 and stats.features == len(features)


def _check_round_trip(examples, features) -> int:
    """Decoded labelled spans equal the answers (normalised); returns the labelled count.

    Expected: a window is labelled exactly when the answer's characters lie inside the
    characters its context tokens cover; the label is [CLS] (0) otherwise."""
    labelled = 0
    for r in range(len(features)):
        ex = examples[features.example_index[r]]
        start, end = features.start_positions[r], features.end_positions[r]
        offsets = features.offsets[r]
        covered = offsets[offsets[:, 0] >= 0]
        inside = bool(ex.answers) and (
            covered[0, 0] <= ex.answers[0].start and ex.answers[0].end <= covered[-1, 1]
        )
        if not inside:
            assert start == end == 0, ex.qid
            continue
        labelled += 1
        assert 0 < start <= end
        text = ex.context[offsets[start, 0] : offsets[end, 1]]
        assert normalize_answer(text) == normalize_answer(ex.answers[0].text), ex.qid
    return labelled


def test_labels_round_trip(bert_tokenizer: WordPieceTokenizer, tmp_path: Path) -> None:  # noqa: F811
    opts = FeatureOptions(max_seq_length=48, doc_stride=12, max_query_length=16)
    examples = _examples()
    features, _ = build_features(examples, bert_tokenizer, opts, training=True)
    labelled = _check_round_trip(examples, features)
    answered = {features.example_index[r] for r in np.nonzero(features.start_positions)[0]}
    assert answered == {0, 1, 2, 3, 5, 6, 7}  # every answerable example, not n5
    assert labelled > len(answered)  # overlapping windows label the same answer again

    path = write_squad_json(tmp_path / "s.json", make_squad_json(40, seed=5, version_2=True))
    synthetic = read_squad_file(path).examples
    features, _ = build_features(synthetic, bert_tokenizer, opts, training=True)
    assert _check_round_trip(synthetic, features) >= sum(not e.is_impossible for e in synthetic)


def test_answer_inside_a_token_and_unlabelable_answers(
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
) -> None:
    opts = FeatureOptions(max_seq_length=32, doc_stride=8, max_query_length=8)
    # "unaffable" -> una ##ffa ##ble: the answer "ffa" is one whole piece; "naff" is not.
    context = "It was unaffable."
    inner = SquadExample("x", "?", context, (Answer("naff", 8),))
    features, stats = build_features([inner], bert_tokenizer, opts, training=True)
    s, e = features.start_positions[0], features.end_positions[0]
    assert context[features.offsets[0, s, 0] : features.offsets[0, e, 1]] == "unaffa"
    assert stats.inexact_answer_tokens == 1

    blank = SquadExample("w", "?", "a  b", (Answer(" ", 1),))
    with pytest.raises(ValueError, match="question id 'w': answer ' ' covers no token"):
        build_features([blank], bert_tokenizer, opts, training=True)
    features, stats = build_features(
        [blank, inner], bert_tokenizer, opts, training=True, on_error="skip"
    )
    assert stats.skipped_examples == 1 and features.example_index.tolist() == [1]
    features, _ = build_features([blank], bert_tokenizer, opts)  # evaluation: no label needed
    assert features.start_positions.tolist() == [0]


def test_special_token_text_in_data_stays_text(
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
) -> None:
    opts = FeatureOptions(max_seq_length=32, doc_stride=8, max_query_length=8)
    ex = SquadExample("s", "a [SEP] b?", "x [CLS] y [SEP] z", ())
    features, _ = build_features([ex], bert_tokenizer, opts)
    ids = features.input_ids[0].tolist()
    assert ids.count(bert_tokenizer.sep_id) == 2 and ids.count(bert_tokenizer.cls_id) == 1


def test_long_question_is_cut(bert_tokenizer: WordPieceTokenizer) -> None:  # noqa: F811
    opts = FeatureOptions(max_seq_length=32, doc_stride=8, max_query_length=4)
    ex = SquadExample("q", "one two three four five six", "seven eight", ())
    features, stats = build_features([ex], bert_tokenizer, opts)
    ids = bert_tokenizer.text_to_ids(["one two three four", "seven eight"])
    want = [bert_tokenizer.cls_id, *ids[0], bert_tokenizer.sep_id, *ids[1], bert_tokenizer.sep_id]
    assert features.input_ids[0, : len(want)].tolist() == want
    assert stats.truncated_questions == 1
    with pytest.raises(ValueError, match="leaves no room for the context"):
        FeatureOptions(max_seq_length=16, max_query_length=13)
