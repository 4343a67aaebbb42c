"""The learning benchmark's report: the sweep chooses on the dev split only, and the paired interval is Student's t."""

import math

import pytest
from bench_import import import_benchmark

report = import_benchmark("learning_report")
choose, interval, setting_name, summarise = report.choose, report.interval, report.setting_name, report.summarise


def run(label, seed, lr, dev, test, knobs=None, start=0.3):
    return {"label": label, "seed": seed, "lr": lr, "knobs": knobs or {}, "final_dev_accuracy": dev,
            "final_accuracy": test, "start_accuracy": start, "train_seconds": 10.0, "generation_seconds": 4.0,
            "steps": 5, "completions": 320, "n_eval": 1000,
            "curve": {"completions": [0, 320], "accuracy": [start, test]}}


def test_setting_name_lists_lr_then_sorted_knobs():
    assert setting_name(run("x", 0, 1e-4, 0, 0)) == "lr=0.0001"
    assert setting_name(run("x", 0, 2e-4, 0, 0, {"b": 1, "a": "grpo"})) == "lr=0.0002,a=grpo,b=1"


def test_choose_uses_dev_not_test():
    # The 2e-4 setting is better on test but worse on dev: dev decides.
    settings = {"lr=0.0001": {0: run("g", 0, 1e-4, 0.50, 0.40), 1: run("g", 1, 1e-4, 0.52, 0.41)},
                "lr=0.0002": {0: run("g", 0, 2e-4, 0.45, 0.60), 1: run("g", 1, 2e-4, 0.46, 0.61)}}
    best, sweep = choose(settings)
    assert best == "lr=0.0001"
    assert sweep["sweep_seeds"] == [0, 1]
    assert sweep["dev"]["lr=0.0002"] == pytest.approx(45.5)


def test_choose_compares_settings_only_on_seeds_they_all_ran():
    # Seed 2 ran only the default; counting it would favour the default (0.9 on dev).
    settings = {"lr=0.0001": {0: run("g", 0, 1e-4, 0.40, 0.4), 2: run("g", 2, 1e-4, 0.90, 0.4)},
                "lr=0.0002": {0: run("g", 0, 2e-4, 0.50, 0.4)}}
    best, sweep = choose(settings)
    assert best == "lr=0.0002" and sweep["sweep_seeds"] == [0]


def test_choose_breaks_ties_towards_the_default():
    settings = {"lr=0.0002": {0: run("g", 0, 2e-4, 0.5, 0.4)}, "lr=0.0001": {0: run("g", 0, 1e-4, 0.5, 0.4)}}
    assert choose(settings)[0] == "lr=0.0001"


def test_interval_is_the_t_interval():
    m, lo, hi = interval([1.0, 3.0])  # mean 2, sd sqrt(2), t(1) = 12.706
    assert m == 2.0
    assert hi - m == pytest.approx(12.706 * 2 ** 0.5 / 2 ** 0.5)
    assert m - lo == pytest.approx(hi - m)
    m, lo, hi = interval([5.0])
    assert m == 5.0 and math.isnan(lo) and math.isnan(hi)  # one seed gives no interval


@pytest.mark.parametrize("diffs, verdict", [([2.0, 2.2, 1.8], "better"), ([-2.0, -2.2, -1.8], "worse"),
                                            ([3.0, -2.0, 1.0], "within noise"), ([5.0], "too few seeds")])
def test_verdict_against_grpo_follows_the_interval(diffs, verdict):
    runs = {"grpo": {"lr=0.0001": {s: run("grpo", s, 1e-4, 0.5, 0.5) for s in range(len(diffs))}},
            "remax": {"lr=0.0001": {s: run("remax", s, 1e-4, 0.5, 0.5 + d / 100) for s, d in enumerate(diffs)}}}
    summary, _ = summarise(runs)
    assert summary["remax"]["verdict"] == verdict
    assert summary["remax"]["vs_grpo"] == pytest.approx(sum(diffs) / len(diffs))


def test_full_budget_pairs_each_seed_with_the_sweep_s_grpo_setting(tmp_path, monkeypatch):
    import json

    def full_run(label, seed, final, at_3200, knobs=None):
        r = run(label, seed, 1e-4, 0.5, final, knobs)
        r.update(budget=19200, curve={"completions": [0, 1600, 3200, 19200], "accuracy": [0.3, 0.35, at_3200, final]})
        return r

    for seed, (chosen, other, x) in enumerate([(0.60, 0.70, 0.62), (0.50, 0.40, 0.56)]):
        folder = tmp_path / "full" / f"seed{seed}"
        folder.mkdir(parents=True)
        (folder / "sft.json").write_text(json.dumps({"sft_steps": 1}))
        (folder / "grpo@loss_type=grpo.json").write_text(
            json.dumps(full_run("grpo", seed, chosen, 0.4, {"loss_type": "grpo"})))
        (folder / "grpo.json").write_text(json.dumps(full_run("grpo", seed, other, 0.4)))
        (folder / "rahf.json").write_text(json.dumps(full_run("rahf", seed, x, 0.45)))
    monkeypatch.setattr(report, "RAW", tmp_path)
    table = report.full_budget("addition", "lr=0.0001,loss_type=grpo")
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): [c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines()[2:]}
    rahf = rows[("rahf", "lr=0.0001")]
    assert rahf[5] == "45.0"  # accuracy at the first evaluation at or past 3,200 completions
    assert rahf[6] == "59.0"
    m, lo, hi = interval([2.0, 6.0])
    assert rahf[7] == f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}] (+2.0, +6.0)"
    assert rows[("grpo", "lr=0.0001,loss_type=grpo")][7] == "— (baseline)"
    m, lo, hi = interval([10.0, -10.0])  # the other GRPO setting is paired against the chosen one
    assert rows[("grpo", "lr=0.0001")][7] == f"{m:+.1f} [{lo:+.1f}, {hi:+.1f}] (+10.0, -10.0)"
