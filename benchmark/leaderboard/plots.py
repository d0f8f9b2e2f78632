"""The budget curves of a domain (``curves/<domain>.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.leaderboard.boards import BASELINE, DomainBoard


def plot_curves(board: DomainBoard, path: Path) -> None:
    """Each metric (up to four, primary first) vs mean labelled images (or boxes): one line per
    method, its 95 % CI band; the full-supervision reference as a dashed line where one exists.
    Drawn on a bare Agg ``Figure`` (no pyplot, so no global matplotlib state is touched)."""
    import matplotlib
    from matplotlib.figure import Figure

    metrics = board.metrics[:4]
    fig = Figure(figsize=(5.2 * len(metrics), 4.6), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    cmap = matplotlib.colormaps["tab10"]
    xkey = "mean_n_labelled_boxes" if board.unit == "boxes" else "mean_n_labelled"
    for ax, metric in zip(axes, metrics, strict=False):
        for i, m in enumerate(board.methods):
            rows = [r for r in (board.get("cell", m, metric, b) for b in board.budgets) if r]
            if not rows:
                continue
            x = np.array([r[xkey] for r in rows], dtype=float)
            y = np.array([r["mean"] for r in rows], dtype=float)
            hw = np.nan_to_num(np.array([r["ci95"] for r in rows], dtype=float))
            ns = sorted({int(r["n"]) for r in rows})
            seeds = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"
            color = "black" if m == BASELINE else cmap(i % 10)
            style = "--" if m == BASELINE or i >= 10 else "-"
            ax.plot(x, y, style, marker="o", lw=1.8, color=color, label=f"{m} ({seeds} seeds)")
            ax.fill_between(x, y - hw, y + hw, color=color, alpha=0.15, lw=0)
        ref = board.reference.get(metric)
        if ref:
            ax.axhline(ref["mean"], color="k", ls=":", lw=1.2, label="full supervision")
        ax.set_xlabel(f"labelled {'boxes' if board.unit == 'boxes' else 'images'} (mean over seeds)")
        ax.set_ylabel(f"{metric} ({'higher' if board.hib[metric] else 'lower'} is better)")
        ax.set_title(f"{board.domain}: {metric}{' (primary)' if metric == board.metrics[0] else ''}")
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(4, max(1, len(labels))), fontsize=8)
    fig.suptitle(f"{board.domain}: mean over seeds; band = 95 % t confidence interval", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    import io

    from benchmark.results import atomic_write_bytes

    buf = io.BytesIO()  # rendered in memory, written through a unique temp file: two writers never race
    fig.savefig(buf, dpi=110, format="png")
    atomic_write_bytes(path, buf.getvalue())
