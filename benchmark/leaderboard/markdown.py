"""The markdown of the leaderboards: a provenance header taken from the records, the coverage
matrix, one table per metric, paired differences, ranks, % of full supervision and compute per
domain (``<domain>.md``), and the cross-domain ranks and pairwise wins (``overall.md``)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from benchmark.leaderboard.boards import BASELINE, TRACKS, DomainBoard
from benchmark.leaderboard.ranks import N_BOOT, TAU_GOAL
from benchmark.leaderboard.stats import ci_better, describe, rank_scores
from benchmark.metrics.efficiency import labels_to_reach

PM = "±"

LONG_TAIL_NOTE = (
    "Mean per-class AP of the head / middle / tail classes (terciles of the pool's class frequency, "
    "benchmark.metrics.dota.class_groups), from the primary metric's per-class values."
)


def _fmt(x: Any, digits: int = 3, sign: bool = False) -> str:
    """Fixed decimals (``n/a`` when undefined); a value that rounds to zero never shows a minus."""
    if x is None or x == "" or not math.isfinite(float(x)):
        return "n/a"
    text = f"{float(x):{'+' if sign else ''}.{digits}f}"
    if float(text) == 0:
        text = text.replace("-", "+" if sign else "")
    return text


def _fmt_num(x: Any) -> str:
    """Large counts and seconds: no needless decimals."""
    if x is None or x == "" or not math.isfinite(float(x)):
        return "n/a"
    x = float(x)
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.1f}"


def _real_data(r: dict[str, Any]) -> str:
    """A real dataset as the records name it: the matrix's label, the adapter options (DOTA version,
    fog beta, ...), the root's folder name and the content hash."""
    d = r["data"]
    opts = ", ".join(f"{k}={v}" for k, v in sorted((r.get("domain_options") or {}).items()) if v is not None)
    where = f"folder {d['root']}; version {r['dataset_version']}"
    return f"{d.get('dataset', r['domain'])} ({opts + '; ' if opts else ''}{where})"


def header_lines(records: list[dict[str, Any]]) -> list[str]:
    """Provenance from the records themselves: commit, date, matrix, device and packages."""
    commits = sorted({str(r["provenance"].get("git_commit", "unknown")) for r in records})
    matrices = sorted({r["matrix"] for r in records})
    devices = sorted({str(r["provenance"].get("device", "unknown")) for r in records})
    launchers = sorted({str(r["provenance"].get("launcher", "unknown")) for r in records})
    finished = sorted(
        str(r["provenance"].get("finished_at", "")) for r in records if r["provenance"].get("finished_at")
    )
    versions = sorted({r["dataset_version"] for r in records})
    packages: dict[str, set[str]] = defaultdict(set)
    for r in records:
        for k, v in (r["provenance"].get("packages") or {}).items():
            packages[k].add(str(v))
    pk = ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(packages.items()))
    date = f"{finished[0]} … {finished[-1]}" if finished else "unknown"
    real = sorted({_real_data(r) for r in records if "root" in (r.get("data") or {})})
    return [
        f"- matrix: {', '.join(matrices)}; dataset version: {', '.join(versions)}",
        *([f"- real data: {'; '.join(real)}"] if real else []),
        f"- commit: {', '.join(commits)}",
        f"- runs finished: {date} (from the records)",
        f"- device: {', '.join(devices)}; launcher: {', '.join(launchers)}",
        f"- packages: {pk}",
    ]


def _cell_text(r: dict[str, Any] | None, n_expected: int, bold: bool = False) -> str:
    if r is None:
        return f"— (0/{n_expected} seeds)"
    n = int(r["n"])
    count = f"({n})" if n >= n_expected else f"({n}/{n_expected} seeds)"
    mean = _fmt(r["mean"])
    if bold:
        mean = f"**{mean}**"
    return f"{mean} {PM} {_fmt(r['ci95'])} {count}"


def _best(cands: list[dict[str, Any]], hib: bool) -> dict[str, Any] | None:
    """The best cell by mean if its CI does not overlap the runner-up's, else None."""
    cands = [c for c in cands if math.isfinite(float(c["mean"]))]
    if len(cands) < 2:
        return None
    order = sorted(cands, key=lambda c: (-c["mean"] if hib else c["mean"], c["method"]))
    best, second = order[0], order[1]
    return best if ci_better(best, second, hib) else None


def coverage_lines(board: DomainBoard) -> list[str]:
    n = board.n_expected
    lines = [
        f"Seeds with a record / expected seeds ({', '.join(str(s) for s in board.seeds)}) per budget.",
        "",
        "| method | track | " + " | ".join(f"{b} {board.unit}" for b in board.budgets) + " | complete |",
        "|---|---|" + "---|" * len(board.budgets) + "---|",
    ]
    for m in board.methods:
        cells = [f"{len(board.present.get((m, b), []))}/{n}" for b in board.budgets]
        lines.append(
            f"| {m} | {board.tracks.get(m, '?')} | "
            + " | ".join(cells)
            + f" | {'yes' if board.complete[m] else 'no'} |"
        )
    return lines


def coverage_text(boards: list[DomainBoard]) -> str:
    return "\n".join("\n".join([f"{b.domain}:", *coverage_lines(b)]) for b in boards)


def domain_markdown(board: DomainBoard, records: list[dict[str, Any]], dropped: list[str]) -> str:
    b_cols = " | ".join(f"{b} {board.unit}" for b in board.budgets)
    n = board.n_expected
    lines = [f"# {board.domain}", "", *header_lines(records), ""]
    lines.append(
        f"Cells: mean {PM} half-width of the 95 % confidence interval of the mean (Student's t, n - 1 "
        f"degrees of freedom, from the sample standard deviation with ddof = 1) over seeds; (n) = seeds; "
        f"`—` marks a missing cell, `n/N seeds` an incomplete one. **Bold**: the best method of a column, "
        f"only where its CI does not overlap the runner-up's. The CSV beside this file has std and SE too."
    )
    lines += ["", "## Coverage", "", *coverage_lines(board)]
    if dropped:
        lines += ["", "Dropped or skipped (stale, superseded or invalid records, never mixed in):", ""]
        lines += [f"- {d}" for d in dropped]
    for metric in board.metrics:
        hib = board.hib[metric]
        tag = " (primary)" if metric == board.metrics[0] else ""
        lines += ["", f"## {metric}{tag} — {'higher' if hib else 'lower'} is better", ""]
        if metric == "MAE":
            lines += ["MAE is in [0, 1] here; papers often print MAE x 100.", ""]
        if metric.endswith(" classes"):
            lines += [LONG_TAIL_NOTE, ""]
        lines += [f"mean {PM} 95 % CI half-width (Student's t) (seeds); AUBC per seed, then the same.", ""]
        lines.append(f"| method | track | {b_cols} | AUBC |")
        lines.append("|---|---|" + "---|" * (len(board.budgets) + 1))
        best = {
            b: _best([r for r in (board.get("cell", m, metric, b) for m in board.methods) if r], hib)
            for b in board.budgets
        }
        aubc_best = _best([r for r in (board.get("aubc", m, metric) for m in board.methods) if r], hib)
        for m in board.methods:
            cells = []
            for b in board.budgets:
                r = board.get("cell", m, metric, b)
                cells.append(_cell_text(r, n, bold=r is not None and best[b] is r))
            a = board.get("aubc", m, metric)
            cells.append(_cell_text(a, n, bold=a is not None and aubc_best is a) if a else f"— (0/{n} seeds)")
            lines.append(f"| {m} | {board.tracks.get(m, '?')} | " + " | ".join(cells) + " |")
    # paired differences, primary metric
    primary = board.metrics[0]
    others = [m for m in board.methods if m != BASELINE]
    lines += ["", f"## Paired difference to {BASELINE} ({primary})", ""]
    if not others or not any(board.get("paired", m, primary) for m in others):
        lines.append(f"No paired comparison: {BASELINE} or the other methods are missing.")
    else:
        lines.append(
            f"Per seed, method − {BASELINE} (both start from the seed's initial labelled set); "
            f"mean {PM} 95 % t-CI of the differences, (n) = seed pairs; "
            f"{'positive' if board.hib[primary] else 'negative'} is better. `*` marks a CI that excludes 0."
        )
        lines += ["", f"| method | {b_cols} | AUBC |", "|---|" + "---|" * (len(board.budgets) + 1)]
        for m in others:
            cells = []
            for r in [board.get("paired", m, primary, b) for b in board.budgets] + [
                board.get("aubc_paired", m, primary)
            ]:
                if r is None:
                    cells.append(f"— (0/{n} seeds)")
                    continue
                sig = math.isfinite(r["ci_lo"]) and (r["ci_lo"] > 0 or r["ci_hi"] < 0)
                cells.append(
                    f"{_fmt(r['mean'], sign=True)} {PM} {_fmt(r['ci95'])} ({int(r['n'])}){'*' if sig else ''}"
                )
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", *rank_lines(board)]
    # percent of full supervision
    lines += ["", "## % of full supervision", ""]
    if not board.reference:
        lines.append("No full-supervision reference run in this matrix (a domain's `reference = true`).")
    else:
        refp = board.reference.get(primary) or describe([])
        lines.append(
            f"Mean of each cell as % of the reference mean ({primary} = {_fmt(refp['mean'])}, "
            f"{int(refp['n'])} seed(s), {_fmt_num(refp.get('n_labelled'))} labelled {board.unit}); labels "
            f"to reach 90 % of it (linear interpolation of the mean curve; for a lower-is-better metric "
            f"the target is the reference / 0.9)."
        )
        lines += ["", f"| method | {b_cols} | labels to 90 % |", "|---|" + "---|" * (len(board.budgets) + 1)]
        for m in board.methods:
            cells = []
            for b in board.budgets:
                r = board.get("pct_reference", m, primary, b)
                cells.append(f"{float(r['mean']):.1f} %" if r else "—")
            curve = [board.get("cell", m, primary, b) for b in board.budgets]
            reach = "—"
            if refp["n"] and all(curve):
                target = 0.9 * refp["mean"] if board.hib[primary] else refp["mean"] / 0.9
                got = labels_to_reach(board.budgets, [c["mean"] for c in curve], target, board.hib[primary])
                reach = "not reached" if got is None else f"{got:.0f}"
            lines.append(f"| {m} | " + " | ".join(cells) + f" | {reach} |")
    # compute
    lines += ["", "## Compute per run (all rounds)", ""]
    lines.append(
        "Mean over seeds of each complete run's total on the recorded device (n = complete runs); images "
        "seen = iterations × batch size. "
        "A round 0 shared through the round-0 cache is charged at the cost of the run that trained it."
    )
    lines += ["", "| method | train s | query s | eval s | images seen | runs |", "|---|---|---|---|---|---|"]
    cols = ("train_s", "query_s", "eval_s", "images_seen")
    for m in board.methods:
        vals = [board.get("compute", m, f"{c}_per_run") for c in cols]
        runs = f"{int(vals[0]['n'])}/{n}" if vals[0] else f"0/{n}"
        lines.append(
            f"| {m} | " + " | ".join(_fmt_num(v["mean"]) if v else "—" for v in vals) + f" | {runs} |"
        )
    return "\n".join(lines) + "\n"


def rank_lines(board: DomainBoard) -> list[str]:
    """The ranks section of a domain's markdown (``benchmark.leaderboard.ranks``)."""
    primary = board.metrics[0]
    rk = board.ranking
    lines = [f"## Ranks (AUBC of {primary})", ""]
    if not rk.get("methods"):
        return [*lines, "No complete method to rank."]
    h1, h2 = rk["halves"]
    tau = rk["kendall_tau"]
    lines.append(
        "Methods complete on every seed and budget, over the seeds all of them have "
        f"({', '.join(map(str, rk['seeds']))}). Rank = 1 + the number of methods significantly better "
        "(paired 95 % t-CI of the per-seed AUBC difference excludes 0): methods no interval separates "
        "share a rank. Bootstrap: 95 % interval of the rank over resampled seeds "
        f"({N_BOOT} resamples, seeds paired across methods)."
    )
    lines.append("")
    if math.isfinite(tau):
        lines.append(
            f"Kendall τ between the rankings of seed halves ({' '.join(map(str, h1))} vs "
            f"{' '.join(map(str, h2))}): **{tau:.2f}** over {len(rk['methods'])} methods."
        )
        sp = rk.get("tau_splits") or {}
        if sp:
            lines.append(
                f"Over every cut of the seeds into halves ({sp['n']} cuts): mean τ **{sp['mean']:.2f}**, "
                f"range {sp['min']:.2f} to {sp['max']:.2f}; τ ≥ {TAU_GOAL} in "
                f"{100 * sp['share_ge_goal']:.0f} % of the cuts."
            )
    else:
        lines.append(f"Kendall τ between seed halves: n/a ({rk.get('note', '')}).")
    lines += [
        "",
        "| rank | method | mean AUBC | bootstrap rank 95 % | not separated from |",
        "|---|---|---|---|---|",
    ]
    order = sorted(
        rk["methods"].items(),
        key=lambda kv: (kv[1]["rank"], -kv[1]["mean"] if board.hib[primary] else kv[1]["mean"]),
    )
    ranks = [r["rank"] for _, r in order]
    for m, r in order:
        shared = "=" if ranks.count(r["rank"]) > 1 else ""
        tied = ", ".join(r["tied_with"]) or "—"
        lines.append(
            f"| {shared}{r['rank']} | {m} | {_fmt(r['mean'])} | "
            f"{r['rank_lo']:.1f}–{r['rank_hi']:.1f} | {tied} |"
        )
    return lines


def overall_markdown(boards: list[DomainBoard], records: list[dict[str, Any]]) -> str:
    lines = ["# Overall", "", *header_lines(records), ""]
    lines.append(
        "Raw metrics are never averaged across domains (their primary metrics differ). Per domain, methods "
        "are ranked by the mean over seeds of the AUBC of the domain's primary metric (1 = best, respecting "
        "its direction; ties share the average rank); a method is ranked only on domains where every seed "
        "and budget is present. Mean rank is over the domains where the method is ranked."
    )
    lines += [
        "",
        "Tracks: baseline = supervised trainer + passive (random) acquisition; AL-only = supervised + an "
        "active strategy; SSL-only = semi-supervised trainer + passive; AL+SSL = semi-supervised + active; "
        "SFDA = source-free domain adaptation.",
    ]
    ranks: dict[str, dict[str, float]] = defaultdict(dict)  # method -> domain -> rank
    track: dict[str, str] = {}
    for b in boards:
        track.update(b.tracks)
        scores = {}
        for m in b.methods:
            r = b.get("aubc", m, b.metrics[0])
            if b.complete.get(m) and r is not None:
                scores[m] = float(r["mean"])
        for m, rk in rank_scores(scores, b.hib[b.metrics[0]]).items():
            ranks[m][b.domain] = rk
    methods = sorted({m for b in boards for m in b.methods})
    doms = [b.domain for b in boards]

    def rank_table(members: list[str], title: str) -> list[str]:
        out = ["", title, ""]
        sub_ranks: dict[str, dict[str, float]] = defaultdict(dict)
        for b in boards:
            scores = {}
            for m in members:
                r = b.get("aubc", m, b.metrics[0])
                if b.complete.get(m) and r is not None:
                    scores[m] = float(r["mean"])
            for m, rk in rank_scores(scores, b.hib[b.metrics[0]]).items():
                sub_ranks[m][b.domain] = rk
        hdr = " | ".join(f"{b.domain} ({b.metrics[0]})" for b in boards)
        out += [
            f"| method | track | mean rank | ranked on | {hdr} |",
            "|---|---|---|---|" + "---|" * len(boards),
        ]
        rows = []
        for m in members:
            rr = sub_ranks.get(m, {})
            mean = float(np.mean(list(rr.values()))) if rr else float("nan")
            cells = [f"{rr[d]:g}" if d in rr else "— (incomplete)" for d in doms]
            rows.append((math.isnan(mean), mean, m, cells, len(rr)))
        for _, mean, m, cells, k in sorted(rows):
            mr = f"{mean:.2f}" if math.isfinite(mean) else "—"
            out.append(f"| {m} | {track.get(m, '?')} | {mr} | {k}/{len(doms)} | " + " | ".join(cells) + " |")
        return out

    lines += rank_table(methods, "## Mean rank, all methods")
    for t in TRACKS[1:]:
        members = [m for m in methods if track.get(m) == t]
        if members:
            base = [m for m in methods if m == BASELINE]
            lines += rank_table(base + members, f"## Track {t} (with the {BASELINE} baseline)")
    absent = [t for t in TRACKS[1:] if not any(track.get(m) == t for m in methods)]
    if absent:
        lines += ["", f"No method in track(s): {', '.join(absent)}."]
    # pairwise win/loss
    wins: dict[tuple[str, str], int] = defaultdict(int)
    n_cells = 0
    for b in boards:
        p = b.metrics[0]
        for budget in b.budgets:
            n_cells += 1
            cells = {m: b.get("cell", m, p, budget) for m in b.methods}
            for a in methods:
                for c in methods:
                    ra, rc = cells.get(a), cells.get(c)
                    if a != c and ra and rc and ci_better(ra, rc, b.hib[p]):
                        wins[(a, c)] += 1
    lines += [
        "",
        "## Pairwise wins",
        "",
        f"Row beats column in a (domain, budget) cell when the row's 95 % CI of the primary metric lies "
        f"wholly on the better side of the column's; {n_cells} cells in all.",
        "",
        "| row beats column | " + " | ".join(methods) + " | total wins |",
        "|---|" + "---|" * (len(methods) + 1),
    ]
    for a in methods:
        cells = ["·" if a == c else str(wins[(a, c)]) for c in methods]
        lines.append(f"| {a} | " + " | ".join(cells) + f" | {sum(wins[(a, c)] for c in methods)} |")
    # compute summary
    lines += ["", "## Compute", "", "Mean training seconds per run (all rounds) and images seen per run.", ""]
    lines += ["| method | " + " | ".join(doms) + " |", "|---|" + "---|" * len(doms)]
    for m in methods:
        cells = []
        for b in boards:
            t_s, im = b.get("compute", m, "train_s_per_run"), b.get("compute", m, "images_seen_per_run")
            cells.append(f"{_fmt_num(t_s['mean'])} s, {_fmt_num(im['mean'])} img" if t_s and im else "—")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
