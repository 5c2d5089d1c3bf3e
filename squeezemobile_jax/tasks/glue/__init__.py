"""GLUE fine-tuning (`config.task = "glue"`, one task per run) and the whole benchmark
(`run_all_tasks`, behind `eval_glue.py`). See `configs/glue.py` for every field.

One run (`run(config, workdir)`):
  1. tokenizer: `workdir/tokenizer` when resuming, else `config.tokenizer.path`, else the one
     in `config.init` (a workdir's `tokenizer/`, an HF directory's tokenizer.json/vocab.txt);
  2. data (`sources.py`, `encoding.py`): train, every dev set and every test set, padded to
     `data.max_seq_length` (truncations counted and logged);
  3. model: `config.init` with a fresh classifier (the source's classifier is kept when its
     label count matches), or a fresh `config.model`;
  4. optional teacher: its logits on the training set are computed once, before training, in
     inference mode, with the teacher's own tokenizer, and served with each batch as
     `teacher_logits` (cached in `workdir/teacher_logits.npz`), so the loop trains only the
     student's parameters and resuming does not need the teacher again;
  5. the generic loop: AdamW, `finetune.warmup_proportion` warmup then linear decay over
     `finetune.epochs` epochs, a checkpoint and a dev evaluation after every epoch. The best
     epoch so far (by task score, the mean of the task's metrics over its dev sets) is exported
     to `workdir/best/` in HF format with the tokenizer and `dev_results.json`;
  6. the best model predicts every test set: `workdir/predictions/<CoLA|MNLI-m|AX|...>.tsv` in
     the leaderboard format; `workdir/results.json` sums the run up.
A run restarted on its workdir resumes from the newest checkpoint; the best export survives.

The benchmark (`run_all_tasks`) runs each task (and each point of the optional sweep over
`eval_glue.learning_rates x batch_sizes x epochs`) in its own sub-workdir, keeps the run with
the best dev score per task, writes `dev_results.{json,md}` and `submission.zip` (the 11
leaderboard files; AX comes from the MNLI run). Finished runs are not repeated.
With `eval_glue.start_from_mnli`, MNLI runs first and every other task starts from its best
model (SqueezeBERT's recipe).

Files under the workdir are written by process 0 (the workdir may be on an object store,
`gs://...`); every process reads the best model back, so with several hosts the workdir must
be one they share (an object store or a shared file system).

Files: `specs.py` (tasks, labels, splits), `examples.py` (reading rows), `sources.py` (where a
split comes from), `encoding.py` (token arrays), `submission.py` (leaderboard files),
`metrics.py`, `losses.py`, `predict.py`, `model.py` (classifier, HF export), `teacher.py`,
`pipeline.py` (one task's run), `benchmark.py` (every task).
"""

from squeezemobile_jax.tasks import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "benchmark": (
            "run_all_tasks",
            "sweep_points",
        ),
        "encoding": (
            "MODEL_INPUTS",
            "EncodedSplit",
            "encode_examples",
            "load_task_data",
        ),
        "examples": (
            "GlueExamples",
            "parse_label",
            "read_glue_tsv",
        ),
        "losses": (
            "finetune_loss",
            "make_loss_fn",
            "soft_cross_entropy",
        ),
        "metrics": (
            "compute_metrics",
            "dev_table_markdown",
            "glue_average",
            "task_score",
        ),
        "model": (
            "HEAD",
            "build_classifier",
            "export_model",
            "init_classifier",
        ),
        "predict": (
            "evaluate_dev",
            "predict_logits",
            "predict_test_sets",
        ),
        "pipeline": ("run",),
        "sources": (
            "DataSource",
            "load_split",
        ),
        "specs": (
            "DIAGNOSTIC_METRICS",
            "GLUE_TASKS",
            "GlueDataError",
            "GlueTask",
            "SplitSpec",
            "get_task",
        ),
        "submission": (
            "SUBMISSION_FILES",
            "format_prediction",
            "write_predictions",
            "write_submission_zip",
        ),
        "teacher": (
            "teacher_label_order",
            "teacher_logits",
        ),
    },
)
