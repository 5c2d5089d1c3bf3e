"""Trains a BERT WordPiece vocabulary on a corpus and writes vocab.txt + tokenizer.json.

Examples:
  python scripts/create_vocab.py --output_dir /tmp/vocab --vocab_size 8192            # built-in
  python scripts/create_vocab.py --output_dir out --text_files books/*.txt wiki.txt
  python scripts/create_vocab.py --output_dir out --hf_name wikitext \\
      --hf_config wikitext-103-raw-v1 --rows lines
  python scripts/create_vocab.py --output_dir out --hf_name text --data_files a.txt b.txt \\
      --rows lines
  python scripts/create_vocab.py --output_dir out --config configs/my_pretrain.py
    (uses config.data.corpus, or config.corpus, of a `get_config()` config file)

Note: the `tokenizers` trainer breaks frequency ties in an unspecified order, so two trainings
on the same text can differ in a few rare entries; keep the written files with the run.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from squeezemobile_jax.data.corpus import CorpusSource, CorpusSpec, describe  # noqa: E402
from squeezemobile_jax.data.token_cache import default_cache_dir  # noqa: E402
from squeezemobile_jax.data.vocab_training import corpus_sentences, train_wordpiece  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--output_dir", required=True, help="where vocab.txt and tokenizer.json go")
    src = p.add_argument_group("corpus (default: the built-in offline corpus)")
    src.add_argument("--config", help="config file whose data.corpus (or corpus) to use")
    src.add_argument("--text_files", nargs="+", help="BERT-format text files or glob patterns")
    src.add_argument("--hf_name", help="HF dataset: hub id, local loader, or save_to_disk dir")
    src.add_argument("--hf_config", help="HF dataset configuration")
    src.add_argument("--hf_split", default="train")
    src.add_argument("--text_column", default="text")
    src.add_argument("--data_files", nargs="+", help="local files for --hf_name text/json/...")
    src.add_argument("--rows", choices=["documents", "lines"], default="documents")
    src.add_argument("--encoding_errors", choices=["strict", "replace"], default="strict")
    src.add_argument("--cache_dir", help="cache for the built-in corpus text")
    voc = p.add_argument_group("vocabulary")
    voc.add_argument("--vocab_size", type=int, default=30522)
    voc.add_argument("--cased", action="store_true", help="keep case and accents")
    voc.add_argument("--min_frequency", type=int, default=2)
    voc.add_argument("--limit_alphabet", type=int, default=1000)
    return p.parse_args(argv)


def corpus_from_config_file(spec: str) -> Any:
    """`file.py[:arg]` -> get_config(arg).data.corpus (or .corpus)."""
    path, _, arg = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("_vocab_config", path)
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"{path}: cannot load config file")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if arg else module.get_config()
    for getter in (lambda c: c.data.corpus, lambda c: c.corpus):
        try:
            return getter(config)
        except (AttributeError, KeyError):
            continue
    raise SystemExit(f"{path}: config has neither data.corpus nor corpus")


def corpus_spec(args: argparse.Namespace) -> CorpusSpec:
    if args.config:
        return CorpusSpec.from_config(corpus_from_config_file(args.config))
    if args.text_files:
        return CorpusSpec(
            kind="text", paths=tuple(args.text_files), encoding_errors=args.encoding_errors
        )
    if args.hf_name:
        return CorpusSpec(
            kind="hf",
            name=args.hf_name,
            config=args.hf_config,
            split=args.hf_split,
            text_column=args.text_column,
            data_files=tuple(args.data_files or ()),
            rows=args.rows,
        )
    return CorpusSpec()


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    spec = corpus_spec(args)
    source = CorpusSource(spec, args.cache_dir or default_cache_dir())
    logging.info("training a %d-id WordPiece vocabulary on %s", args.vocab_size, describe(spec))
    tokenizer = train_wordpiece(
        corpus_sentences(source),
        args.vocab_size,
        lowercase=not args.cased,
        min_frequency=args.min_frequency,
        limit_alphabet=args.limit_alphabet,
        show_progress=sys.stderr.isatty(),
    )
    out = tokenizer.save(args.output_dir)
    logging.info(
        "wrote %d-id vocabulary (%d lines read) to %s",
        tokenizer.vocab_size,
        source.stats.lines,
        out,
    )
    if tokenizer.vocab_size < args.vocab_size:
        logging.warning(
            "the corpus yields only %d ids (asked %d): lower --min_frequency or add text",
            tokenizer.vocab_size,
            args.vocab_size,
        )


if __name__ == "__main__":
    main()
