"""SqueezeBERT, IB-BERT and MobileBERT in JAX/Flax NNX."""
