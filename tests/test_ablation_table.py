"""The ablation's statistics against hand computations, and its grid and table."""

from __future__ import annotations

import csv
import io
import math

import pytest

from sakdn import ablation, stats
from sakdn.config import ExperimentConfig
from sakdn.errors import ConfigError

T_975_4 = 2.7764451051977987  # t quantile 0.975 with 4 degrees of freedom (tables)


def test_paired_statistics_by_hand():
    a = [0.60, 0.55, 0.70, 0.52, 0.63]
    b = [0.50, 0.50, 0.52, 0.48, 0.55]
    d = [0.10, 0.05, 0.18, 0.04, 0.08]  # every seed better: 5 wins
    mean = sum(d) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 4)
    p = stats.paired(a, b)
    assert p.n == 5 and p.wins == 5 and p.ties == 0
    assert p.mean == pytest.approx(mean) and p.sd == pytest.approx(sd)
    half = T_975_4 * sd / math.sqrt(5)
    assert (p.ci_low, p.ci_high) == pytest.approx((mean - half, mean + half))
    # Wilcoxon signed-rank, exact: all 5 ranks positive, the most extreme of 2^5 sign patterns
    assert p.p_wilcoxon == pytest.approx(2 / 32)


def test_paired_statistics_with_mixed_signs_ties_and_scipy():
    from scipy.stats import wilcoxon

    a = [0.5, 0.4, 0.7, 0.6, 0.5, 0.45]
    b = [0.5, 0.5, 0.6, 0.4, 0.55, 0.3]
    p = stats.paired(a, b)
    assert p.wins == 3 and p.ties == 1 and p.n == 6
    d = [x - y for x, y in zip(a, b)]
    assert p.p_wilcoxon == pytest.approx(wilcoxon(d).pvalue)
    assert p.ci_low < p.mean < p.ci_high
    same = stats.paired([0.3, 0.4], [0.3, 0.4])
    assert same.mean == 0 and math.isnan(same.p_wilcoxon) and same.ties == 2
    with pytest.raises(ValueError, match="equal 1-D"):
        stats.paired([1.0], [1.0, 2.0])


def test_noise_floor_and_verdicts():
    control = stats.paired([0.51, 0.49, 0.50, 0.53, 0.47], [0.50] * 5)
    floor = stats.noise_floor(control)
    assert floor == pytest.approx(T_975_4 * control.sd / math.sqrt(5))
    big = stats.paired([0.7] * 4 + [0.72], [0.5] * 5)
    small = stats.paired([0.505, 0.51, 0.50, 0.515, 0.505], [0.5] * 5)
    worse = stats.paired([0.3, 0.32, 0.28, 0.31, 0.3], [0.5] * 5)
    assert stats.verdict(big, floor) == "above"
    assert stats.verdict(small, floor) == "within"  # CI excludes 0 but the mean is below F
    assert stats.verdict(worse, floor) == "below"



Z_975 = 1.959963984540054  # normal quantile 0.975 (tables)


def test_spearman_by_hand_with_its_fisher_z_interval():
    # ranks of b: 2 1 4 3 5; d = -1 1 -1 1 0, sum d^2 = 4: rho = 1 - 6*4 / (5 * 24) = 0.8
    r = stats.spearman([1.0, 2.0, 3.0, 4.0, 5.0], [0.2, 0.1, 0.4, 0.3, 0.5])
    assert r.n == 5 and r.rho == pytest.approx(0.8)
    half = Z_975 * math.sqrt((1 + 0.8**2 / 2) / (5 - 3))  # Bonett & Wright's variance
    assert (r.low, r.high) == pytest.approx((math.tanh(math.atanh(0.8) - half),
                                             math.tanh(math.atanh(0.8) + half)))
    assert r.low < 0 < r.high  # five items: even 0.8 is not told from no agreement


def test_spearman_leaves_out_nan_pairs_and_has_no_rho_for_a_constant_side():
    full = stats.spearman([1.0, 2.0, float("nan"), 3.0, 4.0], [1.0, 2.0, 9.0, 3.0, float("nan")])
    assert full.n == 3 and full.rho == pytest.approx(1.0)
    assert math.isnan(full.low) and math.isnan(full.high)  # n - 3 = 0: no interval
    perfect = stats.spearman([1.0, 2.0, 3.0, 4.0, 5.0], [5.0, 4.0, 3.0, 2.0, 1.0])
    assert perfect.rho == pytest.approx(-1.0) and perfect.low == pytest.approx(-1.0)
    tied = stats.spearman([0.125] * 5, [0.1, 0.2, 0.3, 0.4, 0.5])  # every trial at chance
    assert tied.n == 5 and math.isnan(tied.rho)
    with pytest.raises(ValueError, match="equal 1-D"):
        stats.spearman([1.0], [1.0, 2.0])

def test_the_grid_is_variants_times_seeds_with_every_varying_key_set():
    config = ExperimentConfig().replace({"distill.lambda_st": 0.5, "distill.lambda_sp": 2.0})
    names = ablation.choose_variants(config, ["CE + SP", "full SAKDN"])
    assert names == ["CE only", "CE + SP", "full SAKDN", "control"]  # table order
    points = ablation.grid(config, names, seeds=[3, 4])
    assert len(points) == 8 and [p["train.seed"] for p in points[:4]] == [3, 3, 3, 3]
    by = {(p["train.label"], p["train.seed"]): p for p in points}
    assert by[("CE only", 3)]["distill.lambda_sp"] == 0.0
    assert by[("CE + SP", 3)]["distill.lambda_sp"] == 2.0
    assert by[("CE + SP", 3)]["distill.lambda_st"] == 0.0
    assert by[("full SAKDN", 4)]["distill.lambda_st"] == 0.5
    assert by[("control", 4)]["distill.lambda_st"] == ablation.CONTROL_LAMBDA_ST
    assert {frozenset(p) for p in points} == {frozenset(points[0])}  # the same keys everywhere
    full = ablation.grid(config, ablation.choose_variants(config, None), seeds=[0])
    assert {p["train.label"] for p in full} == set(ablation.variant_overrides(config))
    spamfm = next(p for p in full if p["train.label"] == "full − SPAMFM")
    assert spamfm["teacher.spamfm_stages"] == "none"
    assert next(p for p in full if p["train.label"] == "CE only")["teacher.spamfm_stages"] == "all"
    with pytest.raises(ConfigError, match="unknown variant"):
        ablation.choose_variants(config, ["CE + KD"])


def _results():
    ref = [0.50, 0.52, 0.48, 0.55, 0.51]
    rows = {"CE only": ref,
            "CE + ST": [0.60, 0.61, 0.58, 0.66, 0.60],
            "control": [0.51, 0.50, 0.49, 0.56, 0.50],
            "full SAKDN": [0.49, 0.53, 0.47, 0.55, 0.52]}
    out = {}
    for name, values in rows.items():
        for seed, v in enumerate(values):
            out[(name, seed)] = {"student/test_acc": v, "student/best_val_acc": v + 0.1,
                                 "student/val_acc_last5": v + 0.05}
    del out[("full SAKDN", 4)]  # a variant that did not finish every seed
    out[("CE + ST", 7)] = {"student/test_acc": 0.9}  # a seed without a reference: unpaired
    return out


def test_the_table_pairs_each_variant_with_ce_only_on_shared_seeds(tmp_path):
    names = ["CE only", "CE + ST", "full SAKDN", "control"]
    t = ablation.table(_results(), names)
    assert t.seeds == [0, 1, 2, 3, 4]
    rows = {r.variant: r for r in t.rows}
    st = rows["CE + ST"].comparison
    assert st.n == 5 and st.wins == 5
    assert st.mean == pytest.approx(stats.paired([0.60, 0.61, 0.58, 0.66, 0.60],
                                                 [0.50, 0.52, 0.48, 0.55, 0.51]).mean)
    assert rows["full SAKDN"].comparison.n == 4 and rows["full SAKDN"].seeds == [0, 1, 2, 3]
    control = stats.paired([0.51, 0.50, 0.49, 0.56, 0.50], [0.50, 0.52, 0.48, 0.55, 0.51])
    assert t.floor == pytest.approx(stats.noise_floor(control))
    assert rows["CE + ST"].verdict == "above" and rows["full SAKDN"].verdict == "within"
    assert rows["CE only"].comparison is None and rows["CE only"].verdict == ""
    text = ablation.to_text(t)
    assert "noise floor" in text and "CE + ST" in text and "5/5" in text and "above" in text
    lines = list(csv.reader(io.StringIO(ablation.to_csv(t))))
    assert lines[0] == ["variant", "seed", *ablation.METRICS]
    assert ["CE + ST", "0", "0.6", "0.7", "0.65"] == lines[1 + 5][:5]
    assert all(len(line) == len(lines[0]) for line in lines)  # one table, one header
    summary = list(csv.DictReader(io.StringIO(ablation.to_summary_csv(t))))
    assert [r["variant"] for r in summary] == names
    assert float(summary[1]["delta"]) == pytest.approx(st.mean)
    assert float(summary[1]["ci_low"]) == pytest.approx(st.ci_low)
    assert summary[1]["verdict"] == "above" and summary[0]["verdict"] == "reference"
    assert all(float(r["noise_floor"]) == pytest.approx(t.floor) for r in summary)
    page = ablation.to_html(t, "ablation.png")
    assert "<table>" in page and "ablation.png" in page and "class='above'" in page
    png = ablation.figure(t, tmp_path / "ablation.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_results_from_runs_reads_label_and_seed():
    runs = [{"params": {"train.label": "CE only", "train.seed": "3"},
             "metrics": {"student/test_acc": 0.5}},
            {"params": {"train.seed": "4"}, "metrics": {}}]  # not an ablation run
    assert ablation.results_from_runs(runs) == {("CE only", 3): {"student/test_acc": 0.5}}


def test_a_table_of_an_interrupted_ablation_shows_what_finished():
    results = {("CE only", 0): {"student/test_acc": 0.5}, ("control", 0): {"student/test_acc": 0.5},
               ("CE only", 1): {"student/test_acc": 0.4}, ("control", 1): {"student/test_acc": 0.6}}
    t = ablation.table(results, ["CE only", "CE + ST", "control"])
    rows = {r.variant: r for r in t.rows}
    assert rows["CE + ST"].comparison is None and rows["CE + ST"].verdict == ""
    assert "no paired runs" in ablation.to_text(t)
    assert rows["control"].comparison.n == 2
    empty = ablation.table({}, ["CE only", "control"])
    assert empty.seeds == [] and "no paired runs" in ablation.to_text(empty)


def test_spearman_difference_is_paired_over_the_same_items():
    from sakdn import stats

    a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    same = stats.spearman_difference(a, a, a, a, draws=200)
    assert same.difference == 0.0 and same.low == 0.0 and same.high == 0.0
    flipped = stats.spearman_difference(a, a, a, a[::-1], draws=200)
    assert flipped.difference == pytest.approx(2.0)  # ρ = 1 against ρ = −1 on every resample
    assert flipped.low == pytest.approx(2.0) and flipped.high == pytest.approx(2.0)
    noisy = [2.0, 1.0, 4.0, 3.0, 6.0, 5.0, 8.0, 7.0]  # ρ = 1 − 6·8/(8·63) = 0.905
    d = stats.spearman_difference(a, a, a, noisy, draws=500)
    assert d.difference == pytest.approx(48 / 504)  # 1 − 0.905
    assert 0.0 <= d.low <= d.difference <= d.high
    nan = stats.spearman_difference([*a, float("nan")], [*a, 1.0], [*a, 2.0], [*noisy, 3.0])
    assert nan.n == 8 and nan.difference == pytest.approx(d.difference)
    with pytest.raises(ValueError, match="four equally long sequences"):
        stats.spearman_difference(a, a, a, a[:-1])
