"""Helpers for the SQuAD tests: a small, learnable SQuAD-format data set and its vocabulary.
(Helpers plus a check of the generator itself; the tests that use them are in test_squad_*.)

Each context is a shuffled list of short sentences: "the KIND is VALUE ." facts (KIND one of
city / color / animal / fruit, VALUE one or two words) and filler sentences. A question asks
"what is the KIND ?"; its answer is the VALUE of that fact. In v2.0 sets, a question may ask for
a KIND the context has no fact about: it is unanswerable. Contexts run to ~60 tokens, so with
a short max_seq_length they span several windows.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from squeezemobile_jax.data.tokenizer import SPECIAL_TOKENS, WordPieceTokenizer, load_tokenizer

VALUES = {
    "city": ["paris", "rome", "oslo", "lima", "new york", "san jose", "cairo", "tokyo"],
    "color": ["red", "blue", "green", "dark red", "light blue", "pink", "black", "white"],
    "animal": ["cat", "dog", "horse", "sea lion", "wolf", "owl", "brown bear", "fox"],
    "fruit": ["apple", "pear", "plum", "kiwi", "lime", "star fruit", "fig", "melon"],
}
FILLER = [
    "we",
    "saw",
    "many",
    "birds",
    "today",
    "and",
    "then",
    "left",
    "the",
    "old",
    "house",
    "near",
    "river",
    "it",
    "was",
    "late",
    "she",
    "said",
    "that",
    "they",
    "walked",
    "home",
    "slowly",
    "under",
    "grey",
    "sky",
    "with",
    "some",
    "friends",
]
QUESTION = "what is the {kind} ?"


def fixture_words() -> list[str]:
    words = set(FILLER) | {"what", "is", "the", "?", ".", *VALUES}
    for values in VALUES.values():
        for value in values:
            words.update(value.split())
    return sorted(words)


def write_vocab(directory: Path) -> Path:
    """A vocab.txt with the special tokens and every fixture word (under 128 entries)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vocab.txt"
    path.write_text("".join(f"{t}\n" for t in [*SPECIAL_TOKENS, *fixture_words()]))
    return path


def fixture_tokenizer(directory: Path) -> WordPieceTokenizer:
    return load_tokenizer(write_vocab(directory))


def make_squad_json(
    num_contexts: int,
    *,
    seed: int,
    version_2: bool,
    num_facts: tuple[int, int] = (1, 1),
    unanswerable_facts: tuple[int, int] = (0, 0),
    filler_sentences: tuple[int, int] = (5, 8),
) -> dict:
    """An official-format SQuAD dict ({"version", "data": [...]}), one question per context.

    An answerable question's context has `num_facts` facts (min, max), one of them about the
    asked KIND. In v2.0, half the questions are unanswerable; their contexts hold
    `unanswerable_facts` facts, none about the asked KIND.
    """
    rng = random.Random(seed)
    kinds = sorted(VALUES)
    articles = []
    for c in range(num_contexts):
        asked = rng.choice(kinds)
        impossible = version_2 and rng.random() < 0.5
        others = [k for k in kinds if k != asked]
        if impossible:
            present = rng.sample(others, rng.randint(*unanswerable_facts))
        else:
            present = [asked, *rng.sample(others, rng.randint(*num_facts) - 1)]
        facts = {k: rng.choice(VALUES[k]) for k in present}
        sentences = [("fact", k, f"the {k} is {v} .") for k, v in facts.items()]
        for _ in range(rng.randint(*filler_sentences)):
            n = rng.randint(4, 7)
            sentences.append(("filler", None, " ".join(rng.choices(FILLER, k=n)) + " ."))
        rng.shuffle(sentences)
        context, starts = "", {}
        for kind_of, kind, text in sentences:
            if context:
                context += " "
            if kind_of == "fact":
                starts[kind] = len(context) + len(f"the {kind} is ")
            context += text
        qa = {"id": f"c{c}", "question": QUESTION.format(kind=asked), "answers": []}
        if not impossible:
            qa["answers"] = [{"text": facts[asked], "answer_start": starts[asked]}]
        if version_2:
            qa["is_impossible"] = impossible
        articles.append({"title": f"t{c}", "paragraphs": [{"context": context, "qas": [qa]}]})
    return {"version": "v2.0" if version_2 else "1.1", "data": articles}


def write_squad_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_fixture_answers_sit_at_their_offsets(tmp_path: Path) -> None:
    for version_2 in (False, True):
        data = make_squad_json(30, seed=3, version_2=version_2)
        impossible = 0
        for article in data["data"]:
            for paragraph in article["paragraphs"]:
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    kind = qa["question"].split()[3]
                    for a in qa["answers"]:
                        assert a["text"] in VALUES[kind]
                        before = context[: a["answer_start"]]
                        assert before.endswith(f"the {kind} is ")
                        assert context[a["answer_start"] :].startswith(a["text"] + " .")
                    impossible += not qa["answers"]
        assert (impossible > 0) == version_2
    assert len(write_vocab(tmp_path).read_text().split()) < 128
