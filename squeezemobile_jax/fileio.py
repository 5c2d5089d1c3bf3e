"""File access that works for local workdirs and for object stores (`gs://...`).

Paths go through `etils.epath` (GCS needs `gcsfs` installed). Object stores cannot append,
so `AppendOnlyFile` rewrites a remote file whole on each flush; local files are appended.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from etils import epath


def is_remote(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def join(path: str | os.PathLike, *parts: str) -> str:
    return os.fspath(epath.Path(path).joinpath(*parts))


def exists(path: str | os.PathLike) -> bool:
    return epath.Path(path).exists()


def makedirs(path: str | os.PathLike) -> None:
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def read_text(path: str | os.PathLike) -> str:
    return epath.Path(path).read_text()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path`; a local file is replaced atomically (never left half-written)."""
    if is_remote(path):
        target = epath.Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_bytes(path: str | os.PathLike) -> bytes:
    return epath.Path(path).read_bytes()


def write_json(path: str | os.PathLike, data: Any, sort_keys: bool = True) -> None:
    """Writes `data` as indented UTF-8 JSON (replaced atomically when local)."""
    text = json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    write_bytes(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(read_text(path))


def upload_dir(local_dir: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Copies the files of `local_dir` (not recursive) into `destination`."""
    makedirs(destination)
    for name in sorted(os.listdir(local_dir)):
        source = os.path.join(local_dir, name)
        if os.path.isfile(source):
            with open(source, "rb") as f:
                epath.Path(destination).joinpath(name).write_bytes(f.read())


@contextlib.contextmanager
def local_copy(path: str | os.PathLike) -> Iterator[str]:
    """`path` itself when local; else a temporary local copy of its files, removed after."""
    if not is_remote(path):
        yield os.fspath(path)
        return
    copy = tempfile.mkdtemp(prefix="squeezemobile-")
    try:
        for entry in epath.Path(path).iterdir():
            if entry.is_file():
                with open(os.path.join(copy, entry.name), "wb") as f:
                    f.write(entry.read_bytes())
        yield copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)


class AppendOnlyFile:
    """A text file that is only appended to (e.g. metrics.jsonl), local or remote."""

    def __init__(self, path: str | os.PathLike):
        self.path = epath.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remote = is_remote(path)
        if self._remote:
            self._text = self.path.read_text() if self.path.exists() else ""
            self._file = None
        else:
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, text: str) -> None:
        if self._remote:
            self._text += text
        else:
            self._file.write(text)

    def flush(self) -> None:
        if self._remote:
            self.path.write_text(self._text)
        else:
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
