"""Scores SQuAD predictions as the official v1.1 / v2.0 evaluation scripts do; prints JSON.

Examples:
  python scripts/squad_eval.py dev-v1.1.json WORKDIR/predictions.json
  python scripts/squad_eval.py dev-v2.0.json WORKDIR/predictions.json \\
      --na-prob-file WORKDIR/null_odds.json

Output keys: exact, f1, total, HasAns_exact/f1/total, NoAns_exact/f1/total (when the data has
such questions) and, with --na-prob-file, best_exact, best_exact_thresh, best_f1,
best_f1_thresh. For SQuAD 2.0, best_f1_thresh is a null-score difference: run train.py again
on the finished workdir with --config.postprocess.null_score_diff_threshold=THRESH to rewrite
the predictions with it (nothing is trained again).
The work is done by `squeezemobile_jax.tasks.squad.metrics.evaluate_files`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from squeezemobile_jax.tasks.squad.examples import SquadFormatError  # noqa: E402
from squeezemobile_jax.tasks.squad.metrics import evaluate_files  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("data_file", help="SQuAD JSON with the gold answers (e.g. dev-v2.0.json)")
    p.add_argument("pred_file", help="predictions JSON {question id: answer text}")
    p.add_argument("--na-prob-file", help="JSON {question id: no-answer score}, e.g. null_odds")
    p.add_argument(
        "--na-prob-thresh",
        type=float,
        default=1.0,
        help="a question whose no-answer score exceeds this counts as answered '' (default 1.0)",
    )
    p.add_argument("--out-file", help="also write the JSON result here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        metrics = evaluate_files(
            args.data_file,
            args.pred_file,
            args.na_prob_file,
            na_prob_thresh=args.na_prob_thresh,
        )
    except (SquadFormatError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out_file:
        Path(args.out_file).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
