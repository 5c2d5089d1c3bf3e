"""SQuAD v1.1 / v2.0 fine-tuning: `run(config, workdir)` (``config.task = 'squad'``).

    python train.py --config configs/squad.py:model=mobilebert,version=2.0 \
        --config.init=INIT_DIR --workdir DIR

The run reads the training and evaluation sets (local JSON files or the hub datasets), makes
BERT-style windowed features, trains a `question_answering` model (initialised from
`config.init`: a train.py / distill.py workdir or an HF directory; empty = from scratch) with
the generic loop, and at each evaluation writes into the workdir `predictions.json`,
`nbest_predictions.json`, for v2.0 `null_odds.json`, and `eval_results.json` (the official
metrics, for v2.0 with the best no-answer threshold search over `null_odds`).

Restarting on a workdir resumes training; on a finished one it only evaluates again, so
``--config.postprocess.null_score_diff_threshold=T`` (e.g. the evaluation's best_f1_thresh)
rewrites the predictions with another no-answer threshold without training.

Files: `examples.py` (reading and checking questions), `features.py` (windowed features),
`losses.py`, `predict.py` (spans, prediction files, scores), `postprocess.py` (best spans per
question, the no-answer decision), `metrics.py` (the official scoring), `pipeline.py` (the run).
"""

from squeezemobile_jax.tasks import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "examples": (
            "HUB_DATASETS",
            "Answer",
            "SquadData",
            "SquadExample",
            "SquadFormatError",
            "load_hub_squad",
            "read_squad_file",
        ),
        "features": (
            "FeatureOptions",
            "SquadFeatures",
            "build_features",
            "max_context_owner",
            "window_starts",
        ),
        "losses": (
            "qa_loss",
            "span_loss",
        ),
        "metrics": (
            "evaluate",
            "evaluate_files",
            "normalize_answer",
        ),
        "postprocess": (
            "PostprocessOptions",
            "SquadPredictions",
            "postprocess",
        ),
        "predict": (
            "make_eval_fn",
            "predict_logits",
        ),
        "pipeline": (
            "HEAD",
            "build_qa_model",
            "run",
        ),
    },
)
