"""Measures pretraining-example throughput (examples/s) of the data pipeline.

  python scripts/data_throughput.py                      # built-in corpus, trained vocab
  python scripts/data_throughput.py --tokenizer path/to/vocab.txt --whole_word_masking
  python scripts/data_throughput.py --text_files corpus.txt --max_seq_length 512
  python scripts/data_throughput.py --num_workers 0,2,4     # thread, 2 and 4 processes

Tokenising the corpus (cached) is not timed; the figure covers pairing, truncation, layout
and masking of training batches, i.e. the per-step work of `PretrainingLoader.batch_at`, first
called directly, then through the loader's iterator with each `--num_workers` setting
(0: one background thread; N: N worker processes, their start-up not timed).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from squeezemobile_jax.data.corpus import CorpusSpec  # noqa: E402
from squeezemobile_jax.data.pretraining_loader import PretrainingLoader  # noqa: E402
from squeezemobile_jax.data.tokenizer import load_tokenizer  # noqa: E402
from squeezemobile_jax.data.vocab_training import trained_tokenizer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokenizer", help="vocab.txt / tokenizer.json (default: train 30522 ids)")
    p.add_argument("--text_files", nargs="+", help="BERT-format corpus (default: built-in)")
    p.add_argument("--cache_dir", help="corpus cache (default: a temporary directory)")
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--max_predictions_per_seq", type=int, default=20)
    p.add_argument("--task", choices=["nsp", "sop"], default="nsp")
    p.add_argument("--whole_word_masking", action="store_true")
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--num_workers", default="0", help="comma list of worker-process counts")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or tmp
        corpus = (
            CorpusSpec(kind="text", paths=tuple(args.text_files)) if args.text_files else "builtin"
        )
        if args.tokenizer:
            tokenizer = load_tokenizer(args.tokenizer)
        else:
            tokenizer = trained_tokenizer(corpus, 30522, cache_dir=cache_dir)
        loader = PretrainingLoader(
            corpus,
            tokenizer,
            max_seq_length=args.max_seq_length,
            max_predictions_per_seq=args.max_predictions_per_seq,
            task=args.task,
            whole_word_masking=args.whole_word_masking,
            global_batch_size=args.batch_size,
            process_index=0,
            process_count=1,
            cache_dir=cache_dir,
            show_progress=False,
        )
        loader.batch_at(0)  # warm-up (epoch permutation)
        start = time.perf_counter()
        for step in range(1, args.steps + 1):
            loader.batch_at(step)
        elapsed = time.perf_counter() - start
        rate = args.steps * args.batch_size / elapsed
        print(
            f"{rate:,.0f} examples/s (batch_at, one thread; max_seq_length="
            f"{args.max_seq_length}, task={args.task}, whole_word_masking="
            f"{args.whole_word_masking}, {args.steps} x {args.batch_size} examples, "
            f"vocab {tokenizer.vocab_size})"
        )
        for workers in [int(n) for n in args.num_workers.split(",")]:
            loader.num_workers = workers
            with loader.iterator(start_step=1) as it:
                next(it)  # the workers have started
                start = time.perf_counter()
                for _ in range(args.steps):
                    next(it)
                elapsed = time.perf_counter() - start
            how = f"{workers} worker process(es)" if workers else "background thread"
            print(f"{args.steps * args.batch_size / elapsed:,.0f} examples/s (iterator, {how})")


if __name__ == "__main__":
    main()
