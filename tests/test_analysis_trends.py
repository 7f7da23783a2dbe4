"""analysis.trends against scipy: OLS in transformed space, ER, and the bootstrap band."""

import time
import warnings

import numpy as np
import pytest
from scipy import special, stats

from analysis.trends import Trend, bootstrap_band, effective_robustness, fit_trend

TRANSFORMS = {
    "probit": (stats.norm.ppf, stats.norm.cdf),
    "logit": (special.logit, special.expit),
    "linear": (lambda x: x, lambda x: x),
}


def points(n=40, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 0.9, n)
    y = stats.norm.cdf(0.8 * stats.norm.ppf(x) - 0.4 + rng.normal(0, noise, n))
    return x, y


@pytest.mark.parametrize("name", TRANSFORMS)
def test_fit_equals_linregress_on_transformed_points(name):
    fwd, inv = TRANSFORMS[name]
    x, y = points()
    t = fit_trend(x, y, transform=name)
    ref = stats.linregress(fwd(x), fwd(y))
    assert isinstance(t, Trend) and t.transform == name and t.n == len(x)
    assert t.slope == pytest.approx(ref.slope)
    assert t.intercept == pytest.approx(ref.intercept)
    assert t.r2 == pytest.approx(ref.rvalue**2)
    grid = np.linspace(0.1, 0.95, 7)
    np.testing.assert_allclose(t.predict(grid), inv(ref.intercept + ref.slope * fwd(grid)))


def test_effective_robustness_is_ood_minus_prediction():
    x, y = points()
    t = fit_trend(x, y)
    np.testing.assert_allclose(effective_robustness(t, x, y), y - t.predict(x))
    on_line = t.predict(x)
    np.testing.assert_allclose(effective_robustness(t, x, on_line), 0, atol=1e-12)


def test_scores_of_zero_or_one_are_dropped_with_a_warning():
    x, y = points(20)
    t_ref = fit_trend(x, y)
    with pytest.warns(UserWarning, match="dropped 2 of 22 points"):
        t = fit_trend(np.append(x, [0.0, 0.5]), np.append(y, [0.3, 1.0]))
    assert t.n == 20 and t.slope == pytest.approx(t_ref.slope)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # linear keeps 0 and 1 silently
        assert fit_trend([0.0, 1.0, 0.5], [0.0, 1.0, 0.4], transform="linear").n == 3


def test_too_few_points_and_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        fit_trend([0.5], [0.4])
    with pytest.raises(ValueError, match="at least 2"), pytest.warns(UserWarning):
        fit_trend([0.5, 1.0], [0.4, 0.9])
    with pytest.raises(ValueError, match="distinct"):
        fit_trend([0.5, 0.5], [0.4, 0.3])
    with pytest.raises(ValueError, match="fractions"):
        fit_trend([50.0, 60.0], [40.0, 45.0])
    with pytest.raises(ValueError, match="unknown transform"):
        fit_trend([0.5, 0.6], [0.4, 0.5], transform="log")


@pytest.mark.parametrize("name", TRANSFORMS)
def test_bootstrap_band_contains_fit_and_is_reproducible(name):
    x, y = points(60, seed=3)
    grid, lo, hi = bootstrap_band(x, y, transform=name, n_boot=1000, seed=7)
    assert grid.shape == lo.shape == hi.shape == (100,)
    assert grid.min() == pytest.approx(x.min()) and grid.max() == pytest.approx(x.max())
    fit = fit_trend(x, y, transform=name).predict(grid)
    assert np.all(lo <= fit) and np.all(fit <= hi) and np.all(lo < hi)
    assert np.all((lo >= 0) & (hi <= 1))
    again = bootstrap_band(x, y, transform=name, n_boot=1000, seed=7)
    for a, b in zip((grid, lo, hi), again):
        np.testing.assert_array_equal(a, b)
    other = bootstrap_band(x, y, transform=name, n_boot=1000, seed=8)
    assert not np.array_equal(lo, other[1])


def test_bootstrap_band_matches_a_loop_over_linregress():
    x, y = points(15, seed=1)
    fx, fy = stats.norm.ppf(x), stats.norm.ppf(y)
    grid = np.array([0.3, 0.5, 0.8])
    _, lo, hi = bootstrap_band(x, y, n_boot=200, seed=0, grid=grid)
    idx = np.random.default_rng(0).integers(0, len(x), size=(200, len(x)))
    preds = []
    for i in idx:
        r = stats.linregress(fx[i], fy[i])
        preds.append(r.intercept + r.slope * stats.norm.ppf(grid))
    ref_lo, ref_hi = stats.norm.cdf(np.percentile(preds, [2.5, 97.5], axis=0))
    np.testing.assert_allclose(lo, ref_lo, rtol=1e-9)
    np.testing.assert_allclose(hi, ref_hi, rtol=1e-9)


def test_bootstrap_band_is_fast():
    x, y = points(300)
    bootstrap_band(x, y, n_boot=50)  # warm up
    start = time.perf_counter()
    bootstrap_band(x, y, n_boot=1000)
    assert time.perf_counter() - start < 0.5


def test_bootstrap_band_narrows_with_more_points():
    x1, y1 = points(10, seed=2)
    x2, y2 = points(400, seed=2)
    grid = np.linspace(0.3, 0.8, 20)
    _, lo1, hi1 = bootstrap_band(x1, y1, grid=grid)
    _, lo2, hi2 = bootstrap_band(x2, y2, grid=grid)
    assert np.mean(hi2 - lo2) < np.mean(hi1 - lo1)


def test_bootstrap_mean_ci_matches_a_loop_and_is_reproducible():
    from analysis.trends import bootstrap_mean_ci

    v = np.random.default_rng(4).normal(0.03, 0.02, 50)
    lo, hi = bootstrap_mean_ci(v, n_boot=500, seed=3)
    idx = np.random.default_rng(3).integers(0, v.size, size=(500, v.size))
    ref = np.percentile([v[i].mean() for i in idx], [2.5, 97.5])
    assert (lo, hi) == pytest.approx(tuple(ref), rel=1e-12)
    assert lo < v.mean() < hi
    assert bootstrap_mean_ci(v, n_boot=500, seed=3) == (lo, hi)
    big = np.random.default_rng(4).normal(0.03, 0.02, 2000)
    lo2, hi2 = bootstrap_mean_ci(big, n_boot=500, seed=3)
    assert hi2 - lo2 < (hi - lo) / 3  # ~ 1/sqrt(n)
    assert np.isnan(bootstrap_mean_ci([np.nan])[0])
    assert bootstrap_mean_ci([0.1]) == (0.1, 0.1)


def looped_cluster_ci(values, clusters, n_boot=1000, seed=0):
    """The trial bootstrap written as a loop: draw trials with replacement, pool their values, average."""
    ids = sorted(set(clusters))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ids), size=(n_boot, len(ids)))
    means = [np.concatenate([values[clusters == ids[k]] for k in row]).mean() for row in draws]
    return tuple(np.percentile(means, [2.5, 97.5]))


def test_cluster_bootstrap_resamples_trials():
    from analysis.trends import bootstrap_cluster_mean_ci

    rng = np.random.default_rng(0)
    clusters = np.repeat([f"t{i}" for i in range(8)], rng.integers(1, 6, size=8))
    values = rng.normal(0, 1, len(clusters)) + np.array([int(c[1:]) for c in clusters]) * 0.3
    assert bootstrap_cluster_mean_ci(values, clusters, seed=4) == pytest.approx(looped_cluster_ci(values, clusters, seed=4))
    # epochs of one trial move together: resampling trials gives a wider interval than resampling points
    per_trial = np.repeat(rng.normal(0, 1, 10), 12) + rng.normal(0, 0.05, 120)
    trials = np.repeat(np.arange(10), 12)
    lo, hi = bootstrap_cluster_mean_ci(per_trial, trials, seed=1)
    from analysis.trends import bootstrap_mean_ci

    plo, phi = bootstrap_mean_ci(per_trial, seed=1)
    assert hi - lo > 2.5 * (phi - plo)
    assert bootstrap_cluster_mean_ci([0.2, 0.4], ["a", "a"]) == pytest.approx((0.3, 0.3))
    assert np.isnan(bootstrap_cluster_mean_ci([np.nan], ["a"])[0])


def test_group_summary_against_independent_computation():
    import pandas as pd

    from analysis.summary import TREND_COLUMNS, fit_groups, summarize_groups

    xs, ys = points(30, seed=5)
    xb, yb = points(30, seed=6)
    yb = stats.norm.cdf(stats.norm.ppf(yb) + 0.3)  # a more robust group
    df = pd.DataFrame({
        "id_f1": np.r_[xs, xb], "ood_f1": np.r_[ys, yb],
        "group": ["scratch"] * 30 + ["full"] * 30, "trial_id": [f"t{i // 3}" for i in range(60)],
    })
    trends = fit_groups(df, "probit")
    baselines = {g: ("scratch", trends["scratch"]) for g in ("scratch", "full")}
    table = summarize_groups(df, trends, baselines, seed=0).set_index("group")
    assert list(table.reset_index().columns) == TREND_COLUMNS
    assert list(table.index) == ["scratch", "full"]
    ref = stats.linregress(stats.norm.ppf(xb), stats.norm.ppf(yb))
    row = table.loc["full"]
    assert row["slope"] == pytest.approx(ref.slope) and row["r2"] == pytest.approx(ref.rvalue**2)
    assert row["intercept"] == pytest.approx(ref.intercept) and row["n"] == 30
    er = yb - stats.norm.cdf(trends["scratch"].intercept + trends["scratch"].slope * stats.norm.ppf(xb))
    assert row["mean_er"] == pytest.approx(er.mean())
    # the CI resamples the group's 10 trials (3 epochs each), as a loop over trial draws computes it
    trial_of = np.array([f"t{i // 3}" for i in range(30, 60)])
    assert (row["er_ci_lo"], row["er_ci_hi"]) == pytest.approx(looped_cluster_ci(er, trial_of, seed=1))
    assert row["er_ci_lo"] > 0.05 and row["n_trials"] == 10 and not row["few_trials"]
    assert row["baseline"] == "scratch" and row["trend_origin"] == "fit"
    assert abs(table.loc["scratch", "mean_er"]) < 0.01
    no_base = summarize_groups(df, trends, {})
    assert no_base["mean_er"].isna().all() and no_base["er_ci_lo"].isna().all()


def test_epoch_residuals_per_architecture():
    import pandas as pd

    from analysis.residuals import epoch_residuals, residual_subject

    trend = Trend(slope=1.0, intercept=-0.5, r2=1.0, n=10, transform="probit")
    rows = []
    for arch, offset in (("resnet18", 0.02), ("alexnet", -0.01)):
        for seed in range(3):
            for epoch in range(1, 13):
                x = 0.3 + 0.03 * epoch
                rows.append({"arch": arch, "epoch": epoch, "id_f1": x,
                             "ood_f1": float(trend.predict(x)) + offset + 0.001 * seed})
    res = epoch_residuals(pd.DataFrame(rows), trend)
    assert len(res) == 24 and set(res["n"]) == {3}
    r18 = res[res["arch"] == "resnet18"]
    np.testing.assert_allclose(r18["mean"], 0.021, atol=1e-12)
    np.testing.assert_allclose(r18["std"], 0.001, atol=1e-12)
    np.testing.assert_allclose(res[res["arch"] == "alexnet"]["min"], -0.01, atol=1e-12)
    assert residual_subject(["scratch", "inat2017/full", "imagenet/full"], "scratch") == "imagenet/full"
    assert residual_subject(["scratch", "x/quantity=5"], "scratch") == "scratch"
    assert residual_subject(["x/quantity=5"], "scratch") is None


def test_leave_one_architecture_out_residuals_are_not_circular():
    """Each architecture is checked against a fit of the others: an architecture that sits 5 pp above
    the shared line shows +5 pp (a fit on all points would absorb part of it)."""
    import pandas as pd
    from scipy import stats

    from analysis.residuals import loao_residuals

    rows = []
    for arch, shift in (("a", 0.0), ("b", 0.0), ("c", 0.05)):
        for epoch in range(1, 7):
            x = 0.2 + 0.05 * epoch + (0.01 if arch == "b" else 0.0)
            line = stats.norm.cdf(0.9 * stats.norm.ppf(x) - 0.3)
            rows.append({"arch": arch, "epoch": epoch, "id_f1": x, "ood_f1": line + shift})
    res, unfit = loao_residuals(pd.DataFrame(rows), "probit")
    assert unfit == []
    np.testing.assert_allclose(res[res["arch"] == "c"]["mean"], 0.05, atol=1e-9)
    # a and b lie on the line that b and c's fit does not match exactly: their residuals are small, not 0 by construction
    assert (res[res["arch"] != "c"]["mean"].abs() < 0.05).all()
    one = pd.DataFrame([r for r in rows if r["arch"] == "a"])
    assert loao_residuals(one, "probit")[1] == ["a"]  # nothing left to fit


def test_paper_claims_are_checked_against_the_numbers():
    import pandas as pd

    from analysis.claims import Claim, compare, higher, only_pair_separates, overlap

    table = pd.DataFrame({
        "group": ["scratch", "imagenet/full", "imagenet/quantity=5000", "imagenet/quantity=25000", "fractaldb/full",
                  "imagenet/semantics=animal", "imagenet/semantics=object"],
        "trend_origin": ["fit"] * 7,
        "mean_er": [0.0, 0.04, 0.001, 0.02, -0.01, 0.02, 0.03],
        "er_ci_lo": [-0.01, 0.03, -0.01, 0.01, -0.02, 0.01, 0.025],
        "er_ci_hi": [0.01, 0.05, 0.01, 0.03, 0.0, 0.03, 0.04],
        "few_trials": [False] * 6 + [True],
    })
    claims = [Claim("a", higher("full|synthnet/full", "quantity=min")),       # 0.04 > 0.001 (the smallest size)
              Claim("b", higher("quantity=max", "quantity=min")),               # 25000's 0.02 > 5000's 0.001
              Claim("c", higher("fractaldb/full")),                              # -0.01 > 0 is false
              Claim("d", overlap("semantics=animal", "imagenet/quantity=25000")),  # [.01,.03] and [.01,.03] overlap
              Claim("e", overlap("quantity=min", "imagenet/full")),              # [-.01,.01] vs [.03,.05]: apart
              Claim("f", higher("depth=min")),                                   # no such group
              Claim("h", higher("semantics=object"))]                            # only 2 trials: no verdict
    grid = pd.DataFrame({"id_domain": ["infograph", "infograph", "real"], "ood_domain": ["sketch", "real", "sketch"],
                         "er_ci_lo": [0.01, -0.01, -0.02], "er_ci_hi": [0.03, 0.01, 0.01]})
    claims.append(Claim("g", only_pair_separates("infograph", "sketch")))
    assert compare(claims, table, grid) == [
        "reproduced: a", "reproduced: b", "NOT reproduced: c", "reproduced: d", "NOT reproduced: e",
        "not checked (no depth=min group in this run): f", "not checked (semantics=object has fewer than 3 "
        "trials): h", "reproduced: g"]
