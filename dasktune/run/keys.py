"""Dask task keys that read well on the dashboard."""

from __future__ import annotations

import re

__all__ = ["key_part"]


def key_part(name: str) -> str:
    """``name`` as it survives in a Dask task group's name.

    Dask names a task group by ``dask.utils.key_split``, which keeps the words of a
    key up to the first one that is not purely alphabetic: ``map-neg_loglike-...``
    would show as ``map``. Runs of other characters become one ``-``.

    >>> key_part("neg_loglike")
    'neg-loglike'
    >>> key_part("svm grid 2")
    'svm-grid'
    """
    return re.sub(r"[^A-Za-z]+", "-", name).strip("-") or "x"
