import os
import sys

# Tests import small shared helpers (e.g. hf_reference) from this folder.
sys.path.insert(0, os.path.dirname(__file__))
