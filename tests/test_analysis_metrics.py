"""analysis.metrics against sklearn's definitions (WILDS macro F1 over the true labels' classes)."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from analysis.metrics import accuracy, macro_f1


def wilds_f1(y_true, y_pred):
    return f1_score(y_true, y_pred, average="macro", labels=np.unique(y_true), zero_division=0)


@pytest.mark.parametrize("seed", range(20))
def test_macro_f1_matches_sklearn_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 400)), int(rng.integers(1, 30))
    y_true = rng.integers(0, k, n)
    # Predictions drawn from a wider range: some predicted classes never occur in y_true.
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k + 5, n))
    assert macro_f1(y_true, y_pred) == pytest.approx(wilds_f1(y_true, y_pred), abs=1e-12)
    assert accuracy(y_true, y_pred) == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)


def test_predicted_class_absent_from_truth_counts_against_recall_only():
    y_true = np.array([0, 0, 1, 1])
    y_pred = np.array([0, 7, 1, 7])  # class 7 is not averaged over
    assert macro_f1(y_true, y_pred) == pytest.approx(wilds_f1(y_true, y_pred))
    assert macro_f1(y_true, y_pred) == pytest.approx(2 / 3)


def test_never_predicted_true_class_scores_zero():
    y_true = np.array([0, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1])
    assert macro_f1(y_true, y_pred) == pytest.approx(wilds_f1(y_true, y_pred))


def test_single_class_and_perfect_predictions():
    assert macro_f1([3, 3, 3], [3, 3, 3]) == 1.0
    assert macro_f1([3, 3, 3], [1, 2, 0]) == 0.0
    y = np.arange(50) % 7
    assert macro_f1(y, y) == 1.0


def test_sparse_large_and_negative_and_string_labels():
    y_true = np.array([10**9, -5, 10**9, 42, 42])
    y_pred = np.array([10**9, 42, -5, 42, 3])
    assert macro_f1(y_true, y_pred) == pytest.approx(wilds_f1(y_true, y_pred))
    s_true, s_pred = np.array(["cat", "dog", "dog", "emu"]), np.array(["cat", "cat", "dog", "yak"])
    assert macro_f1(s_true, s_pred) == pytest.approx(wilds_f1(s_true, s_pred))


def test_accepts_lists_and_returns_plain_float():
    out = macro_f1([0, 1, 1], [0, 1, 0])
    assert type(out) is float and type(accuracy([0, 1], [0, 0])) is float


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        macro_f1([], [])
    with pytest.raises(ValueError, match="empty"):
        accuracy(np.array([], dtype=int), np.array([], dtype=int))
    with pytest.raises(ValueError, match="length"):
        macro_f1([0, 1], [0])
    with pytest.raises(ValueError, match="1-D"):
        macro_f1([0, 1], np.zeros((2, 3)))


def test_fast_on_a_large_split():
    import time

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 182, 200_000), rng.integers(0, 182, 200_000)
    start = time.perf_counter()
    macro_f1(y_true, y_pred)
    assert time.perf_counter() - start < 0.5
