"""Converts models between HF `save_pretrained` directories and this library's workdirs.

    # a train.py / distill.py workdir (newest checkpoint, or --step) -> HF directory
    python scripts/convert_checkpoint.py to-hf --workdir workdirs/run --out exported/
    # an HF directory -> a model directory usable as --config.init / --config.teacher
    python scripts/convert_checkpoint.py from-hf --hf squeezebert-uncased/ --out models/sq

`--head` picks the exported head (default: the one the run trained, or the HF
`architectures`). The tokenizer files travel with the model when the source has them.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flax import nnx  # noqa: E402

from squeezemobile_jax.hub import from_hf_pretrained, save_hf_pretrained  # noqa: E402
from squeezemobile_jax.hub.hf import head_of  # noqa: E402
from squeezemobile_jax.tasks.common import (  # noqa: E402
    CHECKPOINT_DIR,
    load_pretrained,
    read_model_spec,
    write_model_spec,
)
from squeezemobile_jax.training.checkpoint import save_params  # noqa: E402

TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def copy_tokenizer_files(source: str, destination: str) -> None:
    """Copies the tokenizer files `source` has (if any) into `destination`."""
    present = [f for f in TOKENIZER_FILES if os.path.isfile(os.path.join(source, f))]
    if present:
        os.makedirs(destination, exist_ok=True)
    for name in present:
        shutil.copy(os.path.join(source, name), os.path.join(destination, name))


def to_hf(workdir: str, out: str, head: str | None, step: int | None) -> None:
    _, trained_head = read_model_spec(workdir)
    model = load_pretrained(workdir, head or trained_head, step=step)
    save_hf_pretrained(model, out)
    copy_tokenizer_files(os.path.join(workdir, "tokenizer"), out)
    print(f"wrote {head_of(model)} model ({type(model).__name__}) to {out}")


def from_hf(hf_dir: str, out: str, head: str | None) -> None:
    model = from_hf_pretrained(hf_dir, head)
    save_params(
        os.path.join(out, CHECKPOINT_DIR),
        nnx.state(model, nnx.Param),
        metadata={"converted_from": os.path.abspath(hf_dir)},
    )
    write_model_spec(out, model.config, head_of(model))
    copy_tokenizer_files(hf_dir, os.path.join(out, "tokenizer"))
    print(f"wrote {head_of(model)} model to {out} (use it as --config.init={out})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="direction", required=True)
    a = sub.add_parser("to-hf", help="workdir -> HF directory")
    a.add_argument("--workdir", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--head", help="e.g. pretraining, masked_lm, sequence_classification")
    a.add_argument("--step", type=int, help="checkpoint step (default: newest)")
    b = sub.add_parser("from-hf", help="HF directory -> model directory")
    b.add_argument("--hf", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--head", help="default: from config.json architectures")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.direction == "to-hf":
        to_hf(args.workdir, args.out, args.head, args.step)
    else:
        from_hf(args.hf, args.out, args.head)


if __name__ == "__main__":
    main()
