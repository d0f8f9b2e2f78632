"""The study's two headline figures per domain, read from leaderboard CSVs (docs/experiments/study.md):

* rank stability: Kendall τ between the rankings of the two seed halves (the fixed cut, and the mean
  and range over every cut);
* at the smallest budget, the semi-supervised methods' paired difference to supervised+random on the
  test split (mean and 95 % t-interval over seeds), with the best one marked twice: best on the test
  split (what the issue asks; a maximum over five methods, so biased upwards) and best on the
  validation part (chosen without the test split, then read on it).

    labelbudget leaderboard --runs runs/study --out leaderboards
    labelbudget leaderboard --runs runs/study --out runs/study/leaderboards-validation --split validation
    python docs/experiments/study/summary.py leaderboards runs/study/leaderboards-validation
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

SSL_TRACKS = {"SSL-only", "AL+SSL", "SFDA"}


def paired_at_smallest(df: pd.DataFrame) -> pd.DataFrame:
    p = df[(df["kind"] == "paired") & (df["primary"] == True) & df["track"].isin(SSL_TRACKS)]  # noqa: E712
    p = p.assign(budget=pd.to_numeric(p["budget"]))
    p = p[p["budget"] == p["budget"].min()].copy()
    sign = p["higher_is_better"].map(lambda h: 1.0 if str(h) == "True" else -1.0)
    p["better_by"] = sign * p["mean"]  # > 0: better than supervised+random
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("test", type=Path, help="leaderboards folder built on the test split")
    ap.add_argument("validation", type=Path, help="the same runs' leaderboards on the validation part")
    args = ap.parse_args()
    for csv in sorted(args.test.glob("*.csv")):
        dom = csv.stem
        df = pd.read_csv(csv, dtype={"budget": str})
        val = pd.read_csv(args.validation / csv.name, dtype={"budget": str})
        fixed = df[df["kind"] == "rank_stability"]
        cuts = df[df["kind"] == "rank_stability_cuts"]
        metric = fixed["metric"].iloc[0] if len(fixed) else "?"
        print(f"## {dom} ({metric})")
        if len(fixed):
            print(f"Kendall tau, seed halves {fixed['seeds'].iloc[0]}: {fixed['mean'].iloc[0]:.2f}")
        if len(cuts):
            c = cuts.iloc[0]
            print(
                f"Kendall tau over {int(c['n'])} cuts: mean {c['mean']:.2f}, "
                f"range {c['ci_lo']:.2f} to {c['ci_hi']:.2f}"
            )
        t, v = paired_at_smallest(df), paired_at_smallest(val)
        if t.empty:
            print("no paired rows")
            continue
        best_t = t.loc[t["better_by"].idxmax(), "method"]
        best_v = v.loc[v["better_by"].idxmax(), "method"] if not v.empty else None
        print(f"budget {t['budget'].iloc[0]}, test split, minus supervised+random (n seeds):")
        for _, r in t.sort_values("better_by", ascending=False).iterrows():
            mark = (" <- best on test" if r["method"] == best_t else "") + (
                " <- best on validation" if r["method"] == best_v else ""
            )
            vr = v[v["method"] == r["method"]]
            vtxt = f"; validation {vr['mean'].iloc[0]:+.3f}" if len(vr) else ""
            print(
                f"  {r['method']:32s} {r['mean']:+.3f} [{r['ci_lo']:+.3f}, {r['ci_hi']:+.3f}] "
                f"(n={int(r['n'])}){vtxt}{mark}"
            )
        print()


if __name__ == "__main__":
    main()
