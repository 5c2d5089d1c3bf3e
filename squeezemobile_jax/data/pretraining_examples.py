"""Pure functions that build one BERT pretraining example (pairing, truncation, masking).

They follow google-research/bert `create_pretraining_data.py` (and ALBERT's for SOP), drawing
every random choice from a NumPy Generator that the caller seeds from (seed, epoch, index):

- A document is cut once into *chunks*: runs of consecutive sentences that reach
  `max_num_tokens = max_seq_length - 3` tokens (or end the document), as BERT accumulates its
  `current_chunk`. Chunks are the examples of an epoch (`plan_chunks`).
- Per example and epoch (`choose_pair`): with probability `short_seq_prob` the target length is
  `randint(2, max_num_tokens)` and only the chunk's leading sentences that reach it are used;
  segment A is its first `randint(1, n - 1)` sentences. NSP: with probability 0.5 (always for a
  single-sentence chunk) B is taken from a random other document starting at a random sentence
  until it fills the target (label 1 = random, 0 = actual next, as BERT and HF). SOP (ALBERT):
  B is the rest of the chunk and the two are swapped with probability 0.5 (label 1 = swapped,
  0 = in order); a single-sentence chunk takes a random B (label 1), as ALBERT does.
- `truncation_amounts`: while too long, trim the longer segment (B on ties) at a random end.
- Masking (`choose_masked_positions`, `corrupt_tokens`): `min(max_predictions_per_seq,
  max(1, round(n * masked_lm_prob)))` positions among the n maskable tokens of A and B (all but
  special ids; [UNK] is never a target, as in HF's collator), chosen by a shuffle (whole words
  at once with whole-word masking, skipping a word that would overshoot); each becomes [MASK]
  with probability 0.8, a random vocabulary id with 0.1, stays unchanged with 0.1.

Differences from the static TF script, all so that an example is a pure function of its index:
the short target is drawn per example (BERT draws it once per document, so its share of short
examples depends on document lengths); with a random B the chunk's unused sentences are not put
back (they are used in other epochs, where the split point is redrawn); the masking budget
counts the maskable tokens (BERT counts [CLS]/[SEP] too: the same 19 at length 128, and would
also mask [UNK]); a word group never spans A and B.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal, NamedTuple

import numpy as np

MASK64 = (1 << 64) - 1
STREAM_TRAIN, STREAM_EVAL, STREAM_ORDER = 0, 1, 3
_MAX_INDEX = 1 << 40
_MAX_EPOCH = 1 << 22


@dataclasses.dataclass(frozen=True)
class ExampleOptions:
    """How examples are built; defaults are BERT's create_pretraining_data.py flags."""

    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    task: Literal["nsp", "sop"] = "nsp"
    whole_word_masking: bool = False

    def __post_init__(self) -> None:
        if self.max_seq_length < 5:
            raise ValueError(f"max_seq_length must be >= 5, got {self.max_seq_length}")
        if not 1 <= self.max_predictions_per_seq <= self.max_seq_length:
            raise ValueError(
                "max_predictions_per_seq must be in [1, max_seq_length], "
                f"got {self.max_predictions_per_seq}"
            )
        if not 0.0 < self.masked_lm_prob < 1.0:
            raise ValueError(f"masked_lm_prob must be in (0, 1), got {self.masked_lm_prob}")
        if not 0.0 <= self.short_seq_prob <= 1.0:
            raise ValueError(f"short_seq_prob must be in [0, 1], got {self.short_seq_prob}")
        if self.task not in ("nsp", "sop"):
            raise ValueError(f"task must be 'nsp' or 'sop', got {self.task!r}")

    @property
    def max_num_tokens(self) -> int:
        """Tokens left for A and B after [CLS] A [SEP] B [SEP]."""
        return self.max_seq_length - 3


@dataclasses.dataclass(frozen=True)
class SpecialIds:
    """Token ids the example builder needs, plus the whole-word continuation table."""

    cls_id: int
    sep_id: int
    mask_id: int
    pad_id: int
    vocab_size: int
    unk_id: int | None = None
    continuation: np.ndarray | None = None  # bool [vocab_size]; needed for whole-word masking

    @functools.cached_property
    def never_mask(self) -> np.ndarray:
        """Bool [vocab_size]: ids never chosen for prediction (the special tokens, [UNK])."""
        table = np.zeros(self.vocab_size, bool)
        ids = [self.cls_id, self.sep_id, self.mask_id, self.pad_id, self.unk_id]
        table[[i for i in ids if i is not None]] = True
        return table


@dataclasses.dataclass(frozen=True)
class Chunks:
    """The examples of one split: chunk c is sentences [start[c], end[c]) of document[c].

    `documents` [num_split_documents] lists the split's documents (random B is drawn from them).
    """

    documents: np.ndarray
    document: np.ndarray
    start: np.ndarray
    end: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


class Pair(NamedTuple):
    """Token ranges (offsets into the corpus token array) of segments A and B, and the label."""

    a_lo: int
    a_hi: int
    b_lo: int
    b_hi: int
    label: int  # NSP: 1 = B random; SOP: 1 = swapped
    short: bool  # the target length was drawn short


def example_rng(
    seed: int,
    epoch: int,
    index: int,
    stream: int = STREAM_TRAIN,
    reuse: np.random.Generator | None = None,
) -> np.random.Generator:
    """Independent random stream for one (seed, stream, epoch, example index).

    With `reuse` (a Philox Generator), that generator is re-keyed in place and returned: the
    same stream as a new one, for about a fifth of the cost of building one (~5 us against
    ~28), and whatever it was drawing before is gone.
    """
    if not (0 <= index < _MAX_INDEX and 0 <= epoch < _MAX_EPOCH and 0 <= stream < 4):
        raise ValueError(f"example key out of range: epoch={epoch}, index={index}")
    key = np.array([seed & MASK64, (stream << 62) | (epoch << 40) | index], dtype=np.uint64)
    if reuse is None:
        return np.random.Generator(np.random.Philox(key=key))
    reuse.bit_generator.state = {  # Philox at counter 0 with an empty output buffer
        "bit_generator": "Philox",
        "state": {"counter": np.zeros(4, np.uint64), "key": key},
        "buffer": np.zeros(4, np.uint64),
        "buffer_pos": 4,
        "has_uint32": 0,
        "uinteger": 0,
    }
    return reuse


def epoch_order(seed: int, epoch: int, num_examples: int) -> np.ndarray:
    """Permutation [num_examples] of the chunks for one epoch (int64)."""
    return example_rng(seed, epoch, 0, STREAM_ORDER).permutation(num_examples)


def held_out_documents(num_documents: int, num_held_out: int) -> np.ndarray:
    """`num_held_out` document ids spread evenly over the corpus (first and last included)."""
    if num_held_out <= 0:
        return np.zeros(0, np.int64)
    if num_held_out >= num_documents:
        raise ValueError(
            f"eval_documents={num_held_out} leaves no training document "
            f"(the corpus has {num_documents})"
        )
    return np.unique(np.linspace(0, num_documents - 1, num_held_out).round().astype(np.int64))


def plan_chunks(
    sentence_offsets: np.ndarray,
    document_offsets: np.ndarray,
    documents: np.ndarray,
    max_num_tokens: int,
) -> Chunks:
    """Cuts each listed document into chunks that reach max_num_tokens tokens (or end it).

    Vectorised over documents: each round cuts one more chunk from every unfinished document.
    Chunks come out ordered by their first sentence.
    """
    documents = np.asarray(documents, np.int64)
    so = sentence_offsets
    cur = np.asarray(document_offsets[documents], np.int64)
    end = np.asarray(document_offsets[documents + 1], np.int64)
    doc = documents
    keep = cur < end
    cur, end, doc = cur[keep], end[keep], doc[keep]
    starts, ends, docs = [], [], []
    while cur.size:
        nxt = np.searchsorted(so, so[cur] + max_num_tokens, side="left")
        nxt = np.minimum(np.maximum(nxt, cur + 1), end)
        starts.append(cur)
        ends.append(nxt)
        docs.append(doc)
        more = nxt < end
        cur, end, doc = nxt[more], end[more], doc[more]
    if not starts:
        empty = np.zeros(0, np.int64)
        return Chunks(documents, empty, empty, empty)
    start, stop, document = (np.concatenate(x) for x in (starts, ends, docs))
    order = np.argsort(start, kind="stable")
    return Chunks(documents, document[order], start[order], stop[order])


def _fill(so: np.ndarray, first: int, limit: int, target: int) -> int:
    """End sentence (exclusive) of the run from `first` that reaches `target` tokens.

    At least one sentence, at most up to `limit`.
    """
    end = int(np.searchsorted(so, so[first] + target, side="left"))
    return min(max(end, first + 1), limit)


def choose_pair(
    rng: np.random.Generator,
    sentence_offsets: np.ndarray,
    document_offsets: np.ndarray,
    chunks: Chunks,
    chunk: int,
    options: ExampleOptions,
) -> Pair:
    """Segments A and B for one example built from chunk `chunk` (see the module docstring)."""
    so = sentence_offsets
    s0, s1, doc = int(chunks.start[chunk]), int(chunks.end[chunk]), int(chunks.document[chunk])
    max_tokens = options.max_num_tokens
    target, short = max_tokens, False
    if rng.random() < options.short_seq_prob:
        target, short = int(rng.integers(2, max_tokens + 1)), True
    n_end = _fill(so, s0, s1, target)
    n_seg = n_end - s0
    a_end = s0 + 1 if n_seg == 1 else s0 + int(rng.integers(1, n_seg))
    a_lo, a_hi = int(so[s0]), int(so[a_end])
    if options.task == "nsp":
        random_b = n_seg == 1 or rng.random() < 0.5
        swap = False
    else:
        random_b = n_seg == 1
        swap = not random_b and rng.random() < 0.5
    if random_b:
        b_lo, b_hi = _random_segment(
            rng, so, document_offsets, chunks.documents, doc, target - (a_hi - a_lo)
        )
        return Pair(a_lo, a_hi, b_lo, b_hi, 1, short)
    b_lo, b_hi = a_hi, int(so[n_end])
    if swap:
        return Pair(b_lo, b_hi, a_lo, a_hi, 1, short)
    return Pair(a_lo, a_hi, b_lo, b_hi, 0, short)


def _random_segment(
    rng: np.random.Generator,
    so: np.ndarray,
    document_offsets: np.ndarray,
    documents: np.ndarray,
    current_document: int,
    target: int,
) -> tuple[int, int]:
    """Token range of sentences from a random other document, from a random sentence on,
    until `target` tokens (at least one sentence). Up to 10 draws avoid the current document."""
    draws = documents[rng.integers(0, len(documents), 10)]
    others = np.flatnonzero(draws != current_document)
    doc = int(draws[others[0]] if others.size else draws[-1])
    first, limit = int(document_offsets[doc]), int(document_offsets[doc + 1])
    start = int(rng.integers(first, limit))
    end = _fill(so, start, limit, target)
    return int(so[start]), int(so[end])


def truncation_amounts(
    rng: np.random.Generator, len_a: int, len_b: int, max_num_tokens: int
) -> tuple[int, int, int, int]:
    """Tokens to cut (A front, A back, B front, B back) so that A + B <= max_num_tokens.

    Same distribution as BERT's `truncate_seq_pair` loop (cut the longer one, B on ties, front
    or back with probability 1/2 each), in O(1): the cut counts per segment are fixed by the
    lengths, and the number cut from the front is Binomial(count, 1/2).
    """
    excess = len_a + len_b - max_num_tokens
    if excess <= 0:
        return 0, 0, 0, 0
    gap = min(excess, abs(len_a - len_b))
    rest = excess - gap
    cut_a = rest // 2 + (gap if len_a > len_b else 0)
    cut_b = rest - rest // 2 + (gap if len_b > len_a else 0)
    a_front = int(rng.binomial(cut_a, 0.5)) if cut_a else 0
    b_front = int(rng.binomial(cut_b, 0.5)) if cut_b else 0
    return a_front, cut_a - a_front, b_front, cut_b - b_front


def num_to_mask(num_candidates: int, masked_lm_prob: float, max_predictions: int) -> int:
    """`min(max_predictions, max(1, round(num_candidates * masked_lm_prob)))`."""
    return min(max_predictions, max(1, int(round(num_candidates * masked_lm_prob))))


def masking_candidates(
    input_ids: np.ndarray, len_a: int, len_b: int, never_mask: np.ndarray | None = None
) -> np.ndarray:
    """Positions (int64, ascending) of `[CLS] A [SEP] B [SEP]` that may be masked: those of A
    and B, minus any holding an id flagged in `never_mask` (bool [vocab], e.g. [UNK])."""
    candidates = np.concatenate([np.arange(1, len_a + 1), np.arange(len_a + 2, len_a + len_b + 2)])
    if never_mask is not None:
        candidates = candidates[~never_mask[input_ids[candidates]]]
    return candidates


def choose_masked_positions(
    rng: np.random.Generator,
    input_ids: np.ndarray,
    candidates: np.ndarray,
    num_to_predict: int,
    continuation: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted positions to predict (int64 [<= num_to_predict]), a subset of `candidates`.

    Chosen by a shuffle of the candidates. With `continuation` (bool [vocab]), a `##` piece
    joins the word of the candidate right before it, and whole words are taken in shuffled
    order, skipping a word that would overshoot the budget, as BERT's whole-word masking.
    A word never spans a gap (the [SEP] between A and B, or an excluded token).
    """
    if continuation is None:
        chosen = candidates[rng.permutation(len(candidates))[:num_to_predict]]
        chosen.sort()
        return chosen
    n = len(candidates)
    if n == 0:
        return candidates
    joins = continuation[input_ids[candidates]]
    joins[0] = False
    joins[1:] &= np.diff(candidates) == 1
    group_start = np.flatnonzero(~joins)
    group_len = np.diff(np.append(group_start, n))
    picked, total = [], 0
    for g in rng.permutation(len(group_start)):
        if total >= num_to_predict:
            break
        size = int(group_len[g])
        if total + size > num_to_predict:
            continue
        picked.append(g)
        total += size
    if not picked:
        return np.zeros(0, np.int64)
    idx = np.concatenate([np.arange(group_start[g], group_start[g] + group_len[g]) for g in picked])
    return np.sort(candidates[idx])


def corrupt_tokens(
    rng: np.random.Generator, original: np.ndarray, mask_id: int, vocab_size: int
) -> np.ndarray:
    """Inputs at the chosen positions: [MASK] w.p. 0.8, a random id in [0, vocab) w.p. 0.1,
    the original w.p. 0.1 (the random id is drawn from the whole vocabulary, as BERT)."""
    u = rng.random(len(original))
    random_ids = rng.integers(0, vocab_size, len(original))
    return np.where(u < 0.8, mask_id, np.where(u < 0.9, original, random_ids))


def write_example(
    rng: np.random.Generator,
    tokens: np.ndarray,
    pair: Pair,
    options: ExampleOptions,
    special: SpecialIds,
    out: dict[str, np.ndarray],
    row: int,
) -> None:
    """Truncates, lays out, masks one pair and writes it into row `row` of the batch arrays.

    `out` holds zero-initialised arrays: input_ids, attention_mask, token_type_ids [b, T];
    masked_lm_positions, masked_lm_ids [b, P]; masked_lm_weights [b, P]; next_sentence_labels [b].
    """
    a_lo, a_hi, b_lo, b_hi = pair.a_lo, pair.a_hi, pair.b_lo, pair.b_hi
    af, ab, bf, bb = truncation_amounts(rng, a_hi - a_lo, b_hi - b_lo, options.max_num_tokens)
    a = tokens[a_lo + af : a_hi - ab]
    b = tokens[b_lo + bf : b_hi - bb]
    la, lb = len(a), len(b)
    ids = out["input_ids"][row]
    ids[0] = special.cls_id
    ids[1 : 1 + la] = a
    ids[1 + la] = special.sep_id
    ids[2 + la : 2 + la + lb] = b
    ids[2 + la + lb] = special.sep_id
    out["token_type_ids"][row, 2 + la : 3 + la + lb] = 1
    out["attention_mask"][row, : 3 + la + lb] = 1
    candidates = masking_candidates(ids, la, lb, special.never_mask)
    k = num_to_mask(len(candidates), options.masked_lm_prob, options.max_predictions_per_seq)
    continuation = special.continuation if options.whole_word_masking else None
    positions = choose_masked_positions(rng, ids, candidates, k, continuation)
    original = ids[positions].copy()
    ids[positions] = corrupt_tokens(rng, original, special.mask_id, special.vocab_size)
    m = len(positions)
    out["masked_lm_positions"][row, :m] = positions
    out["masked_lm_ids"][row, :m] = original
    out["masked_lm_weights"][row, :m] = 1.0
    out["next_sentence_labels"][row] = pair.label


def empty_batch(batch_size: int, options: ExampleOptions) -> dict[str, np.ndarray]:
    """Zero-filled batch arrays with the pretraining shapes and dtypes."""
    t, p = options.max_seq_length, options.max_predictions_per_seq
    return {
        "input_ids": np.zeros((batch_size, t), np.int32),
        "attention_mask": np.zeros((batch_size, t), np.int32),
        "token_type_ids": np.zeros((batch_size, t), np.int32),
        "masked_lm_positions": np.zeros((batch_size, p), np.int32),
        "masked_lm_ids": np.zeros((batch_size, p), np.int32),
        "masked_lm_weights": np.zeros((batch_size, p), np.float32),
        "next_sentence_labels": np.zeros((batch_size,), np.int32),
    }
