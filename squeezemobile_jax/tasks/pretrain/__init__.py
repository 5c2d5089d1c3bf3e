"""MLM + NSP/SOP pretraining (`config.task = "pretrain"`).

Config sections beyond `training_defaults()`:
  model      `model_section(preset, ...)`; vocab_size defaults to the tokenizer's.
  tokenizer  path: a vocab.txt / tokenizer.json / directory, or "" to train a WordPiece
             vocabulary of `vocab_size` on the corpus. A run reuses `workdir/tokenizer`.
  data       `PretrainingLoader` arguments (corpus, max_seq_length, max_predictions_per_seq,
             masked_lm_prob, short_seq_prob, task 'nsp'|'sop', whole_word_masking,
             global_batch_size, eval_documents, eval_batch_size, ...).
  phases     optional list of {num_steps, and data fields such as max_seq_length,
             global_batch_size, max_predictions_per_seq}: run one after another in the same
             workdir (e.g. 56k steps at length 128, then 6k at 512). Without phases the run is
             one phase of `train.num_steps`. The learning-rate schedule spans all phases.
  init       optional workdir or HF directory to start from (continued pretraining).

Modules: `config` (fields, recipes, phase plan), `losses` (MLM / NSP terms, metrics, the
loop's `Task`), `pipeline` (tokenizer, model, phases).
"""

from squeezemobile_jax.tasks import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "config": (
            "PHASE_DATA_FIELDS",
            "corpus_section",
            "default_config",
            "phase_plan",
            "use_mobilebert_recipe",
        ),
        "losses": (
            "HEAD",
            "make_task",
            "masked_lm_terms",
            "next_sentence_terms",
            "pretraining_forward",
            "pretraining_loss",
            "pretraining_metrics",
        ),
        "pipeline": (
            "build_pretraining_model",
            "build_tokenizer",
            "run",
        ),
    },
)
