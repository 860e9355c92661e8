"""scikit-learn's own tests of its search estimators, run against dasktune's.

Each test below is a test function of scikit-learn's
``sklearn/model_selection/tests/test_search.py`` (the installed one), run with
that module's ``GridSearchCV`` and ``RandomizedSearchCV`` replaced by
dasktune's, and its parametrizations expanded with the same swap. Left out:
the tests of joblib and of scikit-learn internals dasktune does not go
through (``n_jobs``, ``verbose`` output printed by each fit, callbacks, custom
``_run_search`` subclasses, array API, the HTML repr), and the pure
``ParameterGrid`` / ``ParameterSampler`` tests (scikit-learn's own classes).
The fits run on one in-process cluster for the module, the current client.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
from clusters import local_client
from sklearn import model_selection as skms

from dasktune import sklearn as dsk

sk_tests = pytest.importorskip("sklearn.model_selection.tests.test_search")

pytestmark = pytest.mark.timeout(300)

PORTED = [
    "test_grid_search",
    "test_grid_search_pipeline_steps",
    "test_SearchCV_with_fit_params",
    "test_grid_search_no_score",
    "test_grid_search_score_method",
    "test_grid_search_groups",
    "test_classes__property",
    "test_trivial_cv_results_attr",
    "test_no_refit",
    "test_grid_search_error",
    "test_grid_search_one_grid_point",
    "test_grid_search_when_param_grid_includes_range",
    "test_grid_search_bad_param_grid",
    "test_grid_search_sparse",
    "test_grid_search_sparse_scoring",
    "test_grid_search_precomputed_kernel",
    "test_grid_search_precomputed_kernel_error_nonsquare",
    "test_refit",
    "test_refit_callable",
    "test_refit_callable_invalid_type",
    "test_refit_callable_out_bound",
    "test_refit_callable_multi_metric",
    "test_gridsearch_nd",
    "test_X_as_list",
    "test_y_as_list",
    "test_pandas_input",
    "test_unsupervised_grid_search",
    "test_gridsearch_no_predict",
    "test_grid_search_cv_results",
    "test_random_search_cv_results",
    "test_search_default_iid",
    "test_grid_search_cv_results_multimetric",
    "test_random_search_cv_results_multimetric",
    "test_search_cv_score_samples_error",
    "test_search_cv_score_samples_method",
    "test_search_cv_results_rank_tie_breaking",
    "test_search_cv_results_none_param",
    "test_search_cv_timing",
    "test_grid_search_correct_score_results",
    "test_pickle",
    "test_grid_search_with_multioutput_data",
    "test_predict_proba_disabled",
    "test_grid_search_allows_nans",
    "test_grid_search_failing_classifier",
    "test_grid_search_classifier_all_fits_fail",
    "test_grid_search_failing_classifier_raise",
    "test_stochastic_gradient_loss_param",
    "test_search_train_scores_set_to_false",
    "test_grid_search_cv_splits_consistency",
    "test_transform_inverse_transform_round_trip",
    "test_empty_cv_iterator_error",
    "test_random_search_bad_cv",
    "test_searchcv_raise_warning_with_non_finite_score",
    "test_callable_multimetric_confusion_matrix",
    "test_callable_multimetric_same_as_list_of_strings",
    "test_callable_single_metric_same_as_single_string",
    "test_callable_multimetric_error_on_invalid_key",
    "test_callable_multimetric_error_failing_clf",
    "test_callable_multimetric_clf_all_fits_fail",
    "test_n_features_in",
    "test_search_cv_pairwise_property_delegated_to_base_estimator",
    "test_search_cv_pairwise_property_equivalence_of_precomputed",
    "test_scalar_fit_param",
    "test_scalar_fit_param_compat",
    "test_search_cv_using_minimal_compatible_estimator",
    "test_search_estimator_param",
    "test_search_with_2d_array",
    "test_cv_results_dtype_issue_29074",
    "test_search_with_estimators_issue_29157",
    "test_cv_results_multi_size_array",
]
SWAP = {
    skms.GridSearchCV: dsk.GridSearchCV,
    skms.RandomizedSearchCV: dsk.RandomizedSearchCV,
}
#: scikit-learn's fixtures these tests take
FIXTURES = {"global_random_seed": 42, "global_dtype": None}


def _swapped(value):
    if isinstance(value, tuple):
        return tuple(_swapped(v) for v in value)
    if isinstance(value, list):
        return [_swapped(v) for v in value]
    try:
        return SWAP.get(value, value)
    except TypeError:  # unhashable
        return value


def _cases():
    for name in PORTED:
        fn = getattr(sk_tests, name, None)
        if fn is None:  # not in this scikit-learn's tests
            continue
        axes = []
        for mark in getattr(fn, "pytestmark", []):
            if mark.name != "parametrize":
                continue
            names, values = mark.args[0], mark.args[1]
            names = (
                [n.strip() for n in names.split(",")]
                if isinstance(names, str)
                else list(names)
            )
            rows = []
            for v in values:
                v = v.values if hasattr(v, "values") and not isinstance(v, dict) else v
                v = v if len(names) > 1 else (v,)
                rows.append(dict(zip(names, _swapped(tuple(v)), strict=True)))
            axes.append(rows)
        for i, combo in enumerate(itertools.product(*axes)):
            kwargs = {k: v for row in combo for k, v in row.items()}
            yield pytest.param(name, kwargs, id=f"{name}[{i}]")


@pytest.fixture(scope="module")
def client():
    with local_client(2, 1, processes=False) as c, c.as_current():
        yield c


@pytest.mark.parametrize(("name", "kwargs"), list(_cases()))
def test_scikit_learns_test(client, monkeypatch, name, kwargs):
    for theirs, ours in SWAP.items():
        monkeypatch.setattr(sk_tests, theirs.__name__, ours)
    fn = getattr(sk_tests, name)
    code = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    for arg in code:
        if arg not in kwargs and arg in FIXTURES:
            kwargs[arg] = FIXTURES[arg]
    if FIXTURES["global_dtype"] is None and "global_dtype" in code:
        import numpy as np

        kwargs["global_dtype"] = np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fn(**kwargs)
