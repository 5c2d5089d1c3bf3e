"""HF checkpoint interop: load `save_pretrained` directories and export back to them."""

from squeezemobile_jax.hub.convert import load_hf_state_dict, to_hf_state_dict
from squeezemobile_jax.hub.hf import from_hf_pretrained, save_hf_pretrained

__all__ = ["from_hf_pretrained", "load_hf_state_dict", "save_hf_pretrained", "to_hf_state_dict"]
