"""Workdir file access, including the object-store code path (appends rewrite the file)."""

from __future__ import annotations

import json

from test_pretrain import read_metrics, tiny_config

from squeezemobile_jax import fileio
from squeezemobile_jax.tasks import pretrain


def test_append_only_file_local_and_object_store_paths(tmp_path, monkeypatch):
    local = tmp_path / "local.jsonl"
    for text in ("a\n", "b\n"):
        f = fileio.AppendOnlyFile(local)
        f.write(text)
        f.close()
    assert local.read_text() == "a\nb\n"
    monkeypatch.setattr(fileio, "is_remote", lambda path: True)
    remote = tmp_path / "remote.jsonl"
    for text in ("a\n", "b\n"):
        f = fileio.AppendOnlyFile(remote)
        f.write(text)
        f.flush()
        f.write("c\n")
        f.close()
    assert remote.read_text() == "a\nc\nb\nc\n"
    fileio.upload_dir(tmp_path, tmp_path / "up")
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["local.jsonl", "remote.jsonl"]
    with fileio.local_copy(tmp_path / "up") as copy, open(f"{copy}/remote.jsonl") as f:
        assert f.read() == "a\nc\nb\nc\n"


def test_pretraining_through_the_object_store_code_path(tmp_path, monkeypatch):
    """A workdir treated as remote (no appends, tokenizer staged through local copies)."""
    monkeypatch.setattr(fileio, "is_remote", lambda path: "workdir" in str(path))
    workdir = str(tmp_path / "workdir")
    config = tiny_config(num_steps=4, eval_every=2)
    pretrain.run(config, workdir)
    config.train.num_steps = 6
    result = pretrain.run(config, workdir)
    assert result.restored_step == 4 and result.step == 6
    steps = [r["step"] for r in read_metrics(workdir)]
    assert {2, 4, 6} <= set(steps)
    assert json.loads((tmp_path / "workdir" / "model.json").read_text())["head"] == "pretraining"
    assert (tmp_path / "workdir" / "tokenizer" / "vocab.txt").exists()
