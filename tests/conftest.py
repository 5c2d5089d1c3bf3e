import os
import shutil
import sys
import tempfile

# Tests import small shared helpers (e.g. hf_reference) from this folder.
sys.path.insert(0, os.path.dirname(__file__))

# Many tests compile the same programs (a tiny config's train step, in-process and in the
# entry points the tests start) and read the same built-in corpus: one persistent compilation
# cache and one data cache (the corpus, its vocabularies and token files) for the whole
# session build each once. The first process to import this file (pytest itself, before its
# workers start) makes the folders; the workers and every subprocess inherit the variables.
# Tests of the caches themselves use folders of their own.
_OWN_CACHES = []
for _variable, _prefix in (
    ("JAX_COMPILATION_CACHE_DIR", "jax-compile-cache-"),
    ("SQUEEZEMOBILE_CACHE", "squeezemobile-cache-"),
):
    if _variable not in os.environ:
        os.environ[_variable] = tempfile.mkdtemp(prefix=_prefix)
        _OWN_CACHES.append(os.environ[_variable])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")


def pytest_unconfigure(config):
    for folder in _OWN_CACHES:  # only the process that made them (workers inherit them)
        shutil.rmtree(folder, ignore_errors=True)
