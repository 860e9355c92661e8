"""scikit-learn's search estimators, their fits run on Dask and recorded.

- :class:`GridSearchCV`, :class:`RandomizedSearchCV`: scikit-learn's own, with
  ``client``, ``store`` and ``name``;
- :class:`SearchCV`: candidates asked from any dasktune source (Optuna,
  Nevergrad, scipy's methods, a space sampled at random);
- :class:`SuccessiveHalvingSearchCV`, :class:`HyperbandSearchCV`: adaptive
  searches over ``partial_fit`` calls, stopped by dasktune's pruners.
"""

from __future__ import annotations

from dasktune.sklearn.grid import GridSearchCV, RandomizedSearchCV
from dasktune.sklearn.hyperband import HyperbandSearchCV, SuccessiveHalvingSearchCV
from dasktune.sklearn.source import SearchCV

__all__ = [
    "GridSearchCV",
    "HyperbandSearchCV",
    "RandomizedSearchCV",
    "SearchCV",
    "SuccessiveHalvingSearchCV",
]
