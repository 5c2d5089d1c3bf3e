"""The built-in offline corpus: English text that ships with every CPython.

Documents are (1) each help topic of `pydoc_data.topics` (the text behind `help("topic")`) and
(2) each standard-library module's docstrings (module, classes, functions, in source order),
read with `ast` from the installed sources without importing them. Text is split into
sentences (`sentences.text_to_sentences`). The result is a few MB, needs no download, and is
identical on every run with the same Python installation.
"""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import sys
import sysconfig
import warnings
from pathlib import Path

from squeezemobile_jax.data.sentences import text_to_sentences

logger = logging.getLogger(__name__)

# Bump when the extraction rules change, so cached copies are rebuilt.
BUILTIN_CORPUS_VERSION = 1
# Folders of the standard library whose docstrings are tests or fixtures, not prose.
_SKIP_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)


def stdlib_source_files(root: Path | None = None) -> list[Path]:
    """Standard-library `.py` files in a fixed order (sorted relative paths), tests excluded."""
    root = Path(root or sysconfig.get_paths()["stdlib"])
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        files.extend(Path(dirpath, f) for f in filenames if f.endswith(".py"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def module_docstrings(source: bytes) -> list[str]:
    """Docstrings of a module, its classes and functions, in source order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old sources
        tree = ast.parse(source)
    docs: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                docs.append(doc)
            for child in node.body:
                visit(child)

    visit(tree)
    return docs


def pydoc_topic_documents() -> list[list[str]]:
    """One document (list of sentences) per `pydoc_data.topics` entry, sorted by topic name."""
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some minimal Python builds leave pydoc_data out
        logger.warning("pydoc_data.topics is not available; the built-in corpus omits it")
        return []
    docs = [text_to_sentences(topics[name]) for name in sorted(topics)]
    return [d for d in docs if d]


def stdlib_docstring_documents(files: list[Path] | None = None) -> list[list[str]]:
    """One document per standard-library module with docstrings (sentences of all of them)."""
    files = stdlib_source_files() if files is None else files
    documents, failed = [], []
    for path in files:
        try:
            docstrings = module_docstrings(path.read_bytes())
        except (SyntaxError, ValueError, OSError) as e:
            failed.append(f"{path}: {e}")
            continue
        sentences = [s for doc in docstrings for s in text_to_sentences(doc)]
        if sentences:
            documents.append(sentences)
    if failed:
        logger.warning(
            "built-in corpus: skipped %d standard-library file(s) that could not be parsed, "
            "first: %s",
            len(failed),
            failed[0],
        )
    return documents


def builtin_documents() -> list[list[str]]:
    """All documents of the built-in corpus: pydoc topics, then module docstrings."""
    return pydoc_topic_documents() + stdlib_docstring_documents()


def builtin_fingerprint() -> str:
    """Identifies the corpus text without building it: Python version and stdlib file sizes."""
    root = Path(sysconfig.get_paths()["stdlib"])
    h = hashlib.sha256(f"v{BUILTIN_CORPUS_VERSION}|{sys.version}|{root}".encode())
    for path in stdlib_source_files(root):
        h.update(f"|{path.relative_to(root).as_posix()}:{path.stat().st_size}".encode())
    return h.hexdigest()[:16]


def write_bert_format(documents: list[list[str]], path: Path) -> None:
    """Writes documents as one sentence per line with a blank line between documents."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for doc in documents:
            f.write("\n".join(doc))
            f.write("\n\n")
    os.replace(tmp, path)


def builtin_corpus_file(cache_dir: str | os.PathLike) -> Path:
    """Path of the built-in corpus as a BERT-format text file, building it once per cache_dir."""
    cache_dir = Path(cache_dir)
    path = cache_dir / f"builtin-corpus-{builtin_fingerprint()}.txt"
    if not path.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        logger.info("building the built-in corpus (pydoc topics + stdlib docstrings) at %s", path)
        documents = builtin_documents()
        write_bert_format(documents, path)
        logger.info(
            "built-in corpus: %d documents, %d sentences, %.1f MB",
            len(documents),
            sum(len(d) for d in documents),
            path.stat().st_size / 1e6,
        )
    return path
