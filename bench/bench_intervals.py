"""Calibration and power of the gate interval (issue 16), by simulation, run by hand.

    python bench/bench_intervals.py             # the table in bench/README.md (~15 min, 2 cores)
    python bench/bench_intervals.py --reps 300  # quick look

For three kinds of per-image scores, n in {10, 25, 50, 150, 1000} test images
and true means {0.5, 0.8, 0.95, 0.99}, it draws ``--reps`` test sets and
counts how often the interval's lower end lies above a threshold:

* false-fail: threshold at the true mean (the gate's promise: <= 2.5%);
* power: threshold 0.1 below the true mean (a trace 0.1 above its threshold).

Score models (each row of a test set is one image):

* ``0/1``: one Bernoulli(truth) hit per image (a probe with one seed, a
  retrieval hit); bounds (0, 1).
* ``mean of 6``: the image's own success probability p ~ Beta(10 truth,
  10 (1 - truth)) (images differ in difficulty: sd of p is 0.15 at truth 0.5,
  0.07 at 0.95), then the mean of 6 Bernoulli(p) draws (a probe under 6
  processing classes); bounds (0, 1).
* ``paired``: the difference a - b of two correlated 0/1 scores of the same
  image (a baseline change, a recall gap); with true mean difference d the
  pairs are discordant against (a=0, b=1) with probability 0.1 (1 - d),
  concordant (a = b) with 0.8 (1 - d), and (a=1, b=0) otherwise; bounds (-1, 1).

Methods: the gate (``gate_lower_ends``: Clopper-Pearson for samples whose
scores all sit at the bounds, betting otherwise) and the percentile bootstrap
(``bootstrap_mean``, 2000 resamples, seed 0, as the audits call it); for 0/1
scores also Clopper-Pearson (scipy.stats.beta), Wilson and the betting interval
applied to 0/1 data. Cells where n is below ``min_decidable_n`` for the
threshold are marked: there the gate reports "too few test images to decide".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import beta as beta_dist
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_metatrace.analysis.intervals import (
    _betting_lower,
    gate_interval,
    gate_lower_ends,
    min_decidable_n,
)
from pytest_metatrace.analysis.stats import bootstrap_mean

NS = (10, 25, 50, 150, 1000)
TRUTHS = (0.5, 0.8, 0.95, 0.99)
GAP = 0.1
ALPHA1 = 0.025
KINDS = ("0/1", "mean of 6", "paired")
BOUNDS = {"0/1": (0.0, 1.0), "mean of 6": (0.0, 1.0), "paired": (-1.0, 1.0)}


def draw(kind: str, truth: float, n: int, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``reps`` test sets of ``n`` per-image scores (see the module docstring)."""
    if kind == "0/1":
        return rng.binomial(1, truth, (reps, n)).astype(np.float64)
    if kind == "mean of 6":
        p = rng.beta(10 * truth, 10 * (1 - truth), (reps, n))
        return rng.binomial(6, p) / 6.0
    if kind == "paired":
        u = rng.random((reps, n))
        q_neg, q_tie = 0.1 * (1 - truth), 0.8 * (1 - truth)
        return np.where(u < q_neg, -1.0, np.where(u < q_neg + q_tie, 0.0, 1.0))
    raise ValueError(kind)


def cp_lower(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    k = x.sum(axis=1)
    return np.where(k > 0, beta_dist.ppf(ALPHA1, np.maximum(k, 1), n - k + 1), 0.0)


def wilson_lower(x: np.ndarray) -> np.ndarray:
    n = x.shape[1]
    p = x.mean(axis=1)
    z = norm.ppf(1 - ALPHA1)
    centre = p + z * z / (2 * n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n)


def bootstrap_lower(x: np.ndarray) -> np.ndarray:
    return np.array([bootstrap_mean(row).low for row in x])


def rate(lows: np.ndarray, threshold: float) -> float:
    # A hair of tolerance: a lower end equal to the threshold does not fail.
    return float(np.mean(lows > threshold + 1e-12))


def run_cell(
    kind: str, truth: float, n: int, reps: int, boot_reps: int, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, KINDS.index(kind), n, round(truth * 1000)])
    x = draw(kind, truth, n, reps, rng)
    lo, hi = BOUNDS[kind]
    binary_kind = kind == "0/1"
    t_ff, t_pow = truth, truth - GAP
    lows: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    lows["gate"] = gate_lower_ends(x, bounds=(lo, hi))
    gate_s = time.perf_counter() - t0
    lows["bootstrap"] = bootstrap_lower(x[:boot_reps])
    if binary_kind:
        lows["clopper-pearson"] = cp_lower(x)
        lows["wilson"] = wilson_lower(x)
        lows["betting"] = _betting_lower(x, ALPHA1)
    at_bounds = np.all((x == lo) | (x == hi), axis=1)
    cell: dict[str, Any] = {
        "kind": kind,
        "n": n,
        "truth": truth,
        "reps": reps,
        "bootstrap_reps": min(boot_reps, reps),
        "gate_seconds": gate_s,
        "share_at_bounds": float(at_bounds.mean()),
        "false_fail": {m: rate(v, t_ff) for m, v in lows.items()},
        "power": {m: rate(v, t_pow) for m, v in lows.items()},
    }
    for name, threshold in (("false_fail", t_ff), ("power", t_pow)):
        # what each sample's method needs (Clopper-Pearson when all scores sit at the bounds)
        need_cp = min_decidable_n(threshold, bounds=(lo, hi), binary=True)
        need_bet = min_decidable_n(threshold, bounds=(lo, hi), binary=False)
        need = np.where(at_bounds, need_cp or 10**9, need_bet or 10**9)
        cell[f"need_{name}"] = need_cp if binary_kind else need_bet
        cell[f"decided_{name}"] = float(np.mean(n >= need))
    return cell


def se(p: float, reps: int) -> float:
    return math.sqrt(p * (1 - p) / reps)


def pct(v: float) -> str:
    return f"{100 * v:.1f}"


def table(cells: list[dict[str, Any]], kind: str) -> list[str]:
    methods = ["gate", "bootstrap"] + (
        ["clopper-pearson", "wilson", "betting"] if kind == "0/1" else []
    )
    short = {
        "gate": "gate",
        "bootstrap": "pct boot",
        "clopper-pearson": "CP",
        "wilson": "Wilson",
        "betting": "betting",
    }
    head = (
        ["n", "true"]
        + [f"false-fail {short[m]}" for m in methods]
        + [f"power {short[m]}" for m in methods]
        + ["n needed (thr = true / true-0.1)"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        if c["kind"] != kind:
            continue
        row = [str(c["n"]), f"{c['truth']:.2f}"]
        for what in ("false_fail", "power"):
            decided = c[f"decided_{what}"]
            for m in methods:
                v = pct(c[what][m])
                if m == "gate" and decided == 0.0:
                    v = f"({v})"
                elif m == "gate" and decided < 1.0:
                    v += "*"
                row.append(v)
        row.append(" / ".join(str(c[f"need_{w}"] or "never") for w in ("false_fail", "power")))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def acceptance(cells: list[dict[str, Any]]) -> list[str]:
    out = []
    worst = 0.0
    for c in cells:
        limit = ALPHA1 + 3 * se(ALPHA1, c["reps"])
        ff = c["false_fail"]["gate"]
        worst = max(worst, ff)
        if ff > limit:
            out.append(f"FAIL false-fail {c['kind']} n={c['n']} true={c['truth']}: {pct(ff)}%")
        if c["kind"] == "0/1" and c["n"] >= 50:
            cp = c["power"]["clopper-pearson"]
            if c["power"]["gate"] < cp - 0.05:
                out.append(f"FAIL power {c['kind']} n={c['n']} true={c['truth']}")
    out.insert(
        0,
        f"gate false-fail: worst cell {pct(worst)}%, limit 2.5% + 3 SE = "
        f"{pct(ALPHA1 + 3 * se(ALPHA1, cells[0]['reps']))}%; "
        + ("all cells within" if not out else f"{len(out)} violation(s)"),
    )
    return out


def _cp_lower_counts(k: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    return np.where(k > 0, beta_dist.ppf(alpha, np.maximum(k, 1), n - k + 1), 0.0)


def paired_exact_alternatives(d: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Two exact lower ends for the mean of paired 0/1 differences d in {-1, 0, 1}.

    * ``rounded CP``: each tie (d = 0, i.e. 1/2 on the unit scale) replaced by
      a fair coin, then Clopper-Pearson: exact, but randomized.
    * ``McNemar x CP``: the discordant share p_d (Clopper-Pearson at 1.25%)
      times 2 pi - 1, pi the share of (1, 0) among discordant pairs (exact
      conditional binomial at 1.25%); Bonferroni makes the product a 2.5% bound.
    """
    n = d.shape[1]
    unit = np.where(d == 0, rng.integers(0, 2, d.shape), (d + 1) / 2)
    rounded = 2 * _cp_lower_counts(unit.sum(axis=1), np.full(d.shape[0], n), ALPHA1) - 1
    pos = (d == 1).sum(axis=1)
    disc = pos + (d == -1).sum(axis=1)
    pd_low = _cp_lower_counts(disc, np.full(d.shape[0], n), ALPHA1 / 2)
    pd_high = 1 - _cp_lower_counts(n - disc, np.full(d.shape[0], n), ALPHA1 / 2)
    pi_low = np.where(disc > 0, _cp_lower_counts(pos, np.maximum(disc, 1), ALPHA1 / 2), 0.0)
    coef = 2 * pi_low - 1
    mcnemar = np.where(coef >= 0, coef * pd_low, coef * pd_high)
    return {"rounded CP": rounded, "McNemar x CP": mcnemar}


def alternatives_section(reps: int, seed: int) -> list[str]:
    """Paired 0/1 differences: the gate's betting end next to two exact alternatives."""
    models = [("bench model", t, 0.1 * (1 - t)) for t in (0.5, 0.8, 0.95)] + [
        ("tie-heavy", t, 0.05) for t in (0.1, 0.15, 0.2)
    ]
    methods = ["gate", "rounded CP", "McNemar x CP"]
    head = ["model", "n", "true", *[f"false-fail {m}" for m in methods]]
    head += [f"power {m}" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, truth, q_neg in models:
        for n in (25, 50, 150, 1000):
            rng = np.random.default_rng([seed, 99, n, round(truth * 1000)])
            u = rng.random((reps, n))
            q_pos = truth + q_neg
            d = np.where(u < q_neg, -1.0, np.where(u < q_neg + q_pos, 1.0, 0.0))
            lows = {"gate": gate_lower_ends(d, bounds=(-1.0, 1.0))}
            lows.update(paired_exact_alternatives(d, rng))
            row = [name, str(n), f"{truth:.2f}"]
            row += [pct(rate(lows[m], truth)) for m in methods]
            row += [pct(rate(lows[m], truth - GAP)) for m in methods]
            lines.append("| " + " | ".join(row) + " |")
    return lines


def timings() -> list[str]:
    rng = np.random.default_rng(0)
    lines = []
    for n in (100, 1000, 10_000):
        x = rng.binomial(6, rng.beta(8, 2, n)) / 6
        gate_interval(x)
        t0 = time.perf_counter()
        for _ in range(5):
            gate_interval(x)
        per = (time.perf_counter() - t0) / 5
        lines.append(f"gate_interval, betting, n={n}: {1000 * per:.1f} ms per call")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=4000, help="test sets per cell")
    ap.add_argument(
        "--boot-reps-1000",
        type=int,
        default=1000,
        help="test sets per cell for the (slow, per-set) percentile bootstrap at n=1000",
    )
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "intervals")
    ap.add_argument(
        "--alternatives-only",
        action="store_true",
        help="only the paired-difference comparison with exact alternatives (~1 min)",
    )
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    alt_lines = [
        f"Paired 0/1 differences, {args.reps} test sets per cell; 'tie-heavy': "
        "P(d = -1) = 0.05, P(d = 1) = true + 0.05, ties otherwise (a kNN or recall gap).",
        "",
        *alternatives_section(args.reps, args.seed),
        "",
    ]
    args.out.with_name(args.out.name + "_paired_alternatives.md").write_text("\n".join(alt_lines))
    print("\n".join(alt_lines), flush=True)
    if args.alternatives_only:
        return
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    cells = []
    for kind in KINDS:
        for n in NS:
            for truth in TRUTHS:
                boot = args.boot_reps_1000 if n >= 1000 else args.reps
                cell = run_cell(kind, truth, n, args.reps, boot, args.seed)
                cells.append(cell)
                print(
                    f"{kind:10s} n={n:5d} true={truth:.2f}  false-fail "
                    + " ".join(f"{m}={pct(v)}" for m, v in cell["false_fail"].items())
                    + "  power "
                    + " ".join(f"{m}={pct(v)}" for m, v in cell["power"].items()),
                    flush=True,
                )
    wall = time.perf_counter() - t_start
    time_lines = timings()
    load_after = os.getloadavg()
    reps = args.reps
    lines = [
        f"Simulated with {reps} test sets per cell (percentile bootstrap: {reps}, "
        f"{args.boot_reps_1000} at n = 1000); rates in %. Simulation SE at 2.5%: "
        f"{pct(se(ALPHA1, reps))} points ({pct(se(ALPHA1, args.boot_reps_1000))} for the "
        f"bootstrap at n = 1000); at a power p: sqrt(p(1-p)/{reps}) <= "
        f"{pct(se(0.5, reps))} points. Parenthesized gate values: n is below the "
        "gate's minimum for that threshold (last column; for means of 6 and paired "
        "scores the betting minimum, a sample whose scores all sit at the bounds gets "
        "Clopper-Pearson and needs fewer), so the gate reports 'too few test images "
        "to decide' there instead of passing or failing; * marks cells where only some "
        "samples were decidable.",
        "",
    ]
    for kind in KINDS:
        lines += [f"**{kind}** (bounds {BOUNDS[kind]})", "", *table(cells, kind), ""]
    lines += ["Acceptance (issue 16):", ""] + [f"- {s}" for s in acceptance(cells)] + [""]
    lines += [f"- {s}" for s in time_lines]
    lines += [
        f"- whole run {wall / 60:.1f} min; load average before {load_before[0]:.2f}, after "
        f"{load_after[0]:.2f} (1 min), {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}, "
        f"numpy {np.__version__}"
    ]
    text = "\n".join(lines) + "\n"
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(
        json.dumps({"cells": cells, "timings": time_lines, "wall_s": wall}, indent=1)
    )
    print(text)


if __name__ == "__main__":
    main()
