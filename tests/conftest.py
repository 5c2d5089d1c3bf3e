import os
import shutil
import sys
import tempfile

# Tests import small shared helpers (e.g. hf_reference) from this folder.
sys.path.insert(0, os.path.dirname(__file__))

# Many tests compile the same programs (a tiny config's train step, in-process and in the
# entry points the tests start): one persistent compilation cache for the whole session
# compiles each once. The first process to import this file (pytest itself, before its
# workers start) makes the folder; the workers and every subprocess inherit the variables.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jax-compile-cache-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "1"
    _OWN_CACHE = os.environ["JAX_COMPILATION_CACHE_DIR"]
else:
    _OWN_CACHE = None


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:  # only the process that made it (workers inherit the folder)
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)
