"""Parameter paths: name every leaf of a parameter tree and build masks from regexes.

A path is the '/'-joined chain of dict keys, attribute names and sequence indices that
leads to a leaf, e.g. ``encoder/layers/attention/query/kernel``. The ``value`` attribute of
an ``nnx.Variable`` wrapper is not part of the path, so an ``nnx.State`` and its
``to_pure_dict()`` give the same names.

Stacked parameters: a model that scans over its layers stores one array per parameter with
the layers along leading axes (``[num_layers, ...]``). ``stacked_axes`` gives, per leaf, how
many leading axes are such stack axes (0 for an ordinary parameter), so per-layer quantities
(trust ratios, learning-rate scales, "is this 1-D") can be computed per slice.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax

PyTree = Any


def _key_name(key: Any) -> str | None:
    if isinstance(key, jax.tree_util.DictKey):
        return str(key.key)
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return None if key.name == "value" else key.name
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return str(key.key)
    return str(key)


def path_to_str(keypath: Sequence[Any]) -> str:
    """'/'-joined name of a `jax.tree_util` key path (nnx ``.value`` wrappers are dropped)."""
    names = (_key_name(k) for k in keypath)
    return "/".join(n for n in names if n is not None)


def tree_paths(tree: PyTree) -> PyTree:
    """A tree with the same structure as `tree` whose leaves are their path strings."""
    return jax.tree_util.tree_map_with_path(lambda kp, _: path_to_str(kp), tree)


def map_with_path(fn: Callable[[str, Any], Any], tree: PyTree) -> PyTree:
    """`jax.tree.map` where `fn(path_str, leaf)` also receives the leaf's path string."""
    return jax.tree_util.tree_map_with_path(lambda kp, x: fn(path_to_str(kp), x), tree)


def matches_any(path: str, patterns: Iterable[str]) -> bool:
    """True if any regex in `patterns` is found (``re.search``, case-insensitive) in `path`."""
    return any(re.search(p, path, flags=re.IGNORECASE) for p in patterns if p)


def stacked_axes(tree: PyTree, rules: Sequence[tuple[str, int]] = ()) -> PyTree:
    """Number of leading stack axes per leaf from ``(regex, num_axes)`` rules (first match wins).

    Leaves that match no rule get 0. The count is clipped to the leaf's rank.
    """

    def count(path: str, leaf: Any) -> int:
        ndim = len(getattr(leaf, "shape", ()))
        for pattern, n in rules:
            if re.search(pattern, path, flags=re.IGNORECASE):
                return min(int(n), ndim)
        return 0

    return map_with_path(count, tree)


def weight_decay_mask(
    tree: PyTree,
    exclude: Sequence[str] = ("bias", "norm"),
    exclude_1d: bool = True,
    num_stacked_axes: PyTree | None = None,
) -> PyTree:
    """Boolean tree: True where weight decay (and LAMB's trust ratio) applies.

    A leaf is excluded when its path matches a regex in `exclude` (case-insensitive, so the
    default catches ``bias``, ``LayerNorm``, ``layer_norm``, ``NoNorm``...) or, with
    `exclude_1d`, when its per-layer rank (rank minus stack axes) is at most 1.
    """
    if num_stacked_axes is None:
        num_stacked_axes = jax.tree.map(lambda _: 0, tree)

    def keep(path: str, leaf: Any, n_stack: int) -> bool:
        if matches_any(path, exclude):
            return False
        per_layer_rank = len(getattr(leaf, "shape", ())) - n_stack
        return not (exclude_1d and per_layer_rank <= 1)

    return jax.tree_util.tree_map_with_path(
        lambda kp, x, n: keep(path_to_str(kp), x, n), tree, num_stacked_axes
    )
