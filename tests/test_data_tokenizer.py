"""WordPiece tokenizer vs HF transformers (fast and pure-Python BERT tokenizers) and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_data_support import bert_tokenizer, bert_uncased_file, bert_vocab_path  # noqa: F401
from transformers import AutoTokenizer, BertTokenizerFast
from transformers.models.bert.tokenization_bert import load_vocab
from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

from squeezemobile_jax.data.tokenizer import (
    TokenizerError,
    WordPieceTokenizer,
    load_tokenizer,
    save_tokenizer,
)

VARIED_TEXTS = [
    "Hello, my dog is cute",
    "Café naïve résumé Ångström façade Straße ÉCOLE",
    "中文字符测试 日本語のテキスト 한국어 문장",
    "Punctuation!!! (parens) [brackets] {braces} — “curly quotes” ‘single’ ... ?!; a-b_c/d\\e",
    "control\x00chars\x07and\ttabs\nnew\rlines \u200b zero\ufeffwidth \x85 next",
    "a" * 150 + " " + "supercalifragilisticexpialidocious" * 4 + " short",
    "",
    "   ",
    "\n\n",
    "emoji 😀🎉 and combining e\u0301 and n\u0303 and math ∑∫√ ≤ ≥",
    "Numbers 3.14159, 1,000,000 and 42nd; URL https://example.com/path?q=1&x=2#frag",
    "MiXeD CaSe McDONALD's O'Neil can't won't",
    "Ελληνικά Русский العربية עברית हिन्दी ไทย",
    "[MASK] [CLS] literal [SEP] [PAD] [UNK] tokens and [mask] lowercase",
]
PAIRS = [(a, b) for a in VARIED_TEXTS[:6] for b in VARIED_TEXTS[8:]]


@pytest.fixture(scope="module")
def hf_fast(bert_vocab_path: Path) -> BertTokenizerFast:  # noqa: F811
    return BertTokenizerFast(vocab=load_vocab(str(bert_vocab_path)), do_lower_case=True)


@pytest.fixture(scope="module")
def hf_python(bert_vocab_path: Path) -> BertTokenizerLegacy:  # noqa: F811
    return BertTokenizerLegacy(vocab_file=str(bert_vocab_path), do_lower_case=True)


def _hf(tok, text, pair=None, max_length=None) -> dict[str, list[int]]:
    kwargs = {"truncation": True, "max_length": max_length} if max_length else {}
    enc = tok(text, pair, return_token_type_ids=True, return_attention_mask=True, **kwargs)
    return {k: list(enc[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}


def test_known_ids_of_bert_base_uncased(bert_tokenizer: WordPieceTokenizer) -> None:  # noqa: F811
    # Published ids of BertTokenizer('bert-base-uncased').encode("Hello, my dog is cute").
    ids = bert_tokenizer.encode("Hello, my dog is cute")["input_ids"]
    assert ids == [101, 7592, 1010, 2026, 3899, 2003, 10140, 102]
    assert bert_tokenizer.special_ids == (0, 100, 101, 102, 103)
    assert bert_tokenizer.do_lower_case


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_single_text_matches_hf_fast_and_python(
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    hf_fast,
    hf_python,
    text: str,
) -> None:
    ours = bert_tokenizer.encode(text)
    assert ours == _hf(hf_fast, text)
    assert ours == _hf(hf_python, text)


def test_pairs_and_truncation_match_hf(
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    hf_fast,
    hf_python,
) -> None:
    # The pure-Python tokenizer breaks longest-first ties differently from the fast one, so
    # truncated pairs are compared with BertTokenizerFast only.
    for a, b in PAIRS:
        ours = bert_tokenizer.encode(a, b)
        assert ours == _hf(hf_fast, a, b)
        assert ours == _hf(hf_python, a, b)
        for max_length in (8, 13, 32):
            ours = bert_tokenizer.encode(a, b, max_length=max_length)
            assert ours == _hf(hf_fast, a, b, max_length), (a, b, max_length)
            assert len(ours["input_ids"]) <= max_length


def test_batch_encoding_equals_single(bert_tokenizer: WordPieceTokenizer) -> None:  # noqa: F811
    batch = bert_tokenizer.encode_batch(VARIED_TEXTS, VARIED_TEXTS[::-1], max_length=20)
    for enc, a, b in zip(batch, VARIED_TEXTS, VARIED_TEXTS[::-1]):
        assert enc == bert_tokenizer.encode(a, b, max_length=20)


def test_tokenizer_json_ignores_its_padding_and_truncation(
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
) -> None:
    path = bert_uncased_file("tokenizer.json")
    assert json.loads(path.read_text())["padding"] is not None  # the file pads to 128
    from_json = load_tokenizer(path)
    long_text = "word " * 300
    for text in VARIED_TEXTS + [long_text]:
        assert from_json.encode(text) == bert_tokenizer.encode(text)
    assert len(from_json.encode(long_text)["input_ids"]) == 302
    assert from_json.fingerprint() == bert_tokenizer.fingerprint()


def test_corpus_text_never_yields_special_ids(
    bert_tokenizer: WordPieceTokenizer,  # noqa: F811
    hf_fast,
) -> None:
    text = "a [SEP] b [CLS] c [MASK]"
    ids = bert_tokenizer.text_to_ids([text])[0]
    assert not set(ids) & set(bert_tokenizer.special_ids)
    # HF with special tokens split as plain text: "[", "sep", "]", ...
    assert ids == hf_fast.encode(text, add_special_tokens=False, split_special_tokens=True)


def test_save_and_reload_with_hf(bert_tokenizer: WordPieceTokenizer, tmp_path: Path) -> None:  # noqa: F811
    directory = save_tokenizer(bert_tokenizer, tmp_path / "workdir")
    assert {p.name for p in directory.iterdir()} >= {"vocab.txt", "tokenizer.json"}
    reloaded = load_tokenizer(directory)
    from_vocab = load_tokenizer(directory / "vocab.txt")
    hf = AutoTokenizer.from_pretrained(str(directory))
    for a, b in PAIRS[:6]:
        expected = bert_tokenizer.encode(a, b, max_length=16)
        assert reloaded.encode(a, b, max_length=16) == expected
        assert from_vocab.encode(a, b, max_length=16) == expected
        assert _hf(hf, a, b, 16) == expected
    assert (directory / "vocab.txt").read_text() == bert_uncased_file("vocab.txt").read_text()


def _write_vocab(path: Path, tokens: list[str]) -> Path:
    path.write_text("".join(t + "\n" for t in tokens), encoding="utf-8")
    return path


SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_case_and_accents_follow_the_vocabulary(tmp_path: Path) -> None:
    words = ["the", "cafe", "café", "The", "Café", "##s", ".", "e"]
    cased = load_tokenizer(_write_vocab(tmp_path / "cased.txt", SPECIALS + words))
    uncased = load_tokenizer(
        _write_vocab(tmp_path / "uncased.txt", SPECIALS + words[:3] + [".", "e"])
    )
    assert not cased.do_lower_case and uncased.do_lower_case
    vocab = {t: i for i, t in enumerate(SPECIALS + words)}
    assert cased.text_to_ids(["The Café"])[0] == [vocab["The"], vocab["Café"]]
    # Uncased: lowercase and strip accents, as BERT's uncased models.
    assert uncased.text_to_ids(["The Café"])[0] == [5, 6]
    hf_cased = BertTokenizerFast(vocab=load_vocab(str(tmp_path / "cased.txt")), do_lower_case=False)
    assert cased.encode("The Café the cafés") == _hf(hf_cased, "The Café the cafés")


@pytest.mark.parametrize("missing", SPECIALS)
def test_vocabulary_without_a_special_token_is_rejected(tmp_path: Path, missing: str) -> None:
    path = _write_vocab(tmp_path / "vocab.txt", [t for t in SPECIALS if t != missing] + ["a"])
    with pytest.raises(
        TokenizerError, match=rf"{path}.*{missing.replace('[', '.').replace(']', '.')}"
    ):
        load_tokenizer(path)


def test_bad_vocabulary_files_name_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="not found"):
        load_tokenizer(tmp_path / "nope.txt")
    dup = _write_vocab(tmp_path / "dup.txt", SPECIALS + ["a", "b", "a"])
    with pytest.raises(TokenizerError, match=rf"{dup}:8: token 'a' already defined on line 6"):
        load_tokenizer(dup)
    blank = _write_vocab(tmp_path / "blank.txt", SPECIALS + ["a", "", "b"])
    with pytest.raises(TokenizerError, match=rf"{blank}:7: empty line"):
        load_tokenizer(blank)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"[PAD]\n[UNK]\n\xff\xfe\n")
    with pytest.raises(TokenizerError, match=rf"{bad}:3: vocabulary is not valid UTF-8"):
        load_tokenizer(bad)
    with pytest.raises(TokenizerError, match="neither tokenizer.json nor vocab.txt"):
        load_tokenizer(tmp_path)


def test_create_vocab_script_trains_a_loadable_vocabulary(tmp_path: Path) -> None:
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "create_vocab.py"
    spec = importlib.util.spec_from_file_location("create_vocab", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    corpus = tmp_path / "corpus.txt"
    words = [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "epsilon",
        "zeta",
        "eta",
        "theta",
        "iota",
        "kappa",
        "lambda",
    ]
    corpus.write_text(
        "\n".join(" ".join(words[i % 11 :] + words[: i % 11]) + "." for i in range(200)) + "\n"
    )
    out = tmp_path / "vocab"
    module.main(["--output_dir", str(out), "--text_files", str(corpus), "--vocab_size", "120"])
    vocab = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert vocab[:5] == SPECIALS and len(vocab) <= 120
    tokenizer = load_tokenizer(out)
    hf = BertTokenizerFast(vocab=load_vocab(str(out / "vocab.txt")), do_lower_case=True)
    text = "Alpha BETA gamma, Délta! unknownword"
    assert tokenizer.encode(text) == _hf(hf, text)
    assert tokenizer.text_to_ids(["alpha"])[0] == [vocab.index("alpha")]
