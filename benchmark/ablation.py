"""Component ablations of a method: ``labelbudget ablate METHOD``.

A method declares its components as boolean hyper-parameters (``Method.components``: display name ->
switch). The ablation runs, on one domain (by default the one the method was designed for,
``Method.designed_for``) at one label budget (by default the matrix's smallest) over several seeds:
the supervised baseline, the full method, and the method with each component switched off
(``method[switch=false]``), all from the same initial labelled sets with the matrix's detector and
schedule. Each variant is an ordinary run under ``runs/ablation`` (resumable, round-0 cache
included). The table reports the primary metric per variant (mean ± sd), and the paired
differences (same seeds) to the full method and to the supervised baseline with their 95 % t
intervals; it is written into the method's doc between ``<!-- ablation:begin -->`` and
``<!-- ablation:end -->`` together with the command that made it, so the docs never carry
hand-written numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from domains.base import SpecError

BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"


@dataclass(frozen=True)
class Variant:
    label: str  # what the table shows
    trainer: str  # trainer spec, e.g. "eucl[contrastive=false]"
    off: str | None  # the component switched off (None: full method or baseline)


def variants(method: str) -> list[Variant]:
    """Supervised baseline, the full method, then one variant per component switched off."""
    from benchmark.registry import METHODS

    cls = METHODS.get(method)
    comps: dict[str, str] = dict(getattr(cls, "components", {}) or {})
    if not comps:
        raise SpecError(f"method {method!r} declares no components (Method.components) to ablate")
    for name, switch in comps.items():
        if not isinstance(cls.hparams.get(switch), bool):
            raise SpecError(f"{method}: component {name!r}: switch {switch!r} is not a boolean hparam")
    out = [Variant("supervised", "supervised", None), Variant(f"{method} (all components)", method, None)]
    for name, switch in comps.items():
        out.append(Variant(f"without {name}", f"{method}[{switch}=false]", name))
    return out


def run_ablation(
    method: str,
    domain: str | None = None,
    seeds: list[int] | None = None,
    budget: int | None = None,
    matrix: str = "default",
    out: Path | str = Path("runs") / "ablation",
    launcher: str = "process",
    workers: int = 2,
    device: str = "cpu",
    progress: bool = True,
    share_with: Path | str | None = None,
) -> dict[str, Any]:
    """Run the ablation and return its table (``rows``) and what it ran (``setup``).

    ``share_with``: a runs folder (e.g. ``runs/default``) whose caches (round-0 models, source
    checkpoints) this ablation shares: its supervised and full-method rounds are the matrix's round 0,
    keyed by content, so whichever runs first trains them once."""
    from benchmark.registry import METHODS
    from benchmark.runner import run_matrix
    from benchmark.spec import load_matrix

    cls = METHODS.get(method)
    domain = domain or getattr(cls, "designed_for", None)
    if not domain:
        raise SpecError(f"{method!r} names no designed_for domain; pass --domain")
    seeds = list(seeds) if seeds else [0, 1, 2]
    if len(seeds) < 2:
        raise SpecError("an ablation needs at least 2 seeds for its intervals (3 or more recommended)")
    vs = variants(method)
    base = load_matrix(matrix, domains=[domain], methods=["supervised+random"], seeds=seeds)
    setup = base.domains[domain]
    if budget is None and not setup.budgets:  # budgets given as fractions of a pool not loaded yet
        pct = ", ".join(f"{100 * f:g}%" for f in setup.budget_fractions)
        raise SpecError(f"matrix {matrix!r} gives {domain}'s budgets as fractions ({pct}): pass --budget N")
    b = budget or setup.budgets[0]
    m = load_matrix(
        matrix,
        domains=[domain],
        methods=[f"{v.trainer}+random" for v in vs],
        budgets=[b],
        seeds=seeds,
    )
    # the matrix's full-supervision reference runs are not part of an ablation
    m = replace(m, cells=tuple(c for c in m.cells if not c.reference))
    if share_with is not None:
        share_cache(Path(out), Path(share_with))
    res = run_matrix(m, Path(out), launcher=launcher, workers=workers, device=device, progress=progress)
    return summarise(Path(out), res.cells, vs)


def share_cache(out: Path, other: Path) -> None:
    """Make ``out/_cache`` a link to ``other/_cache`` (content-keyed caches are safe to share)."""
    import os

    out.mkdir(parents=True, exist_ok=True)
    target = other / "_cache"
    link = out / "_cache"
    if link.is_symlink() or link.exists():
        return
    target.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target.resolve(), out.resolve()), link)


def summarise(out: Path, cells: list, vs: list[Variant]) -> dict[str, Any]:
    """The ablation table from the records of ``cells`` (dataset versions stamped) under ``out``."""
    from benchmark.leaderboard.stats import describe
    from benchmark.records import load_results

    wanted = {c.run_id: c for c in cells}
    values: dict[str, dict[int, float]] = {v.trainer: {} for v in vs}
    metric, hib, version = None, True, None
    records, problems = load_results(out)  # records that do not follow the schema are not used
    for r in records:
        c = wanted.get(r.get("run_id"))
        if c is None or r["round"] != 0:
            continue
        metric, version = r["primary_metric"], r["dataset_version"]
        hib = bool(r["higher_is_better"][metric])  # per metric: MR-2 is lower-is-better
        values[c.trainer][c.seed] = float(r["metrics"][metric])
    seeds = sorted({c.seed for c in cells})
    missing = [(t, s) for t in values for s in seeds if s not in values[t]]
    if missing:
        skipped = f"; skipped: {'; '.join(problems[:4])}" if problems else ""
        raise SpecError(f"ablation incomplete under {out}: no record for {missing[:4]}{skipped}")
    full = vs[1].trainer
    rows = []
    for v in vs:
        vals = [values[v.trainer][s] for s in seeds]
        st = describe(vals)
        d_full = describe([values[v.trainer][s] - values[full][s] for s in seeds])
        d_sup = describe([values[v.trainer][s] - values["supervised"][s] for s in seeds])
        rows.append(
            {
                "variant": v.label,
                "trainer": v.trainer,
                "per_seed": dict(zip(seeds, vals, strict=True)),
                "mean": st["mean"],
                "std": st["std"],
                "vs_full": d_full,
                "vs_supervised": d_sup,
            }
        )
    c0 = cells[0]
    setup = {
        "domain": c0.domain.name,
        "budget": c0.budgets[0],
        "budget_unit": c0.budget_unit,
        "seeds": seeds,
        "metric": metric,
        "higher_is_better": hib,
        "dataset_version": version,
        "matrix": c0.matrix,
        "detector": c0.detector,
        "schedule": c0.canonical()["schedule"],
    }
    return {"setup": setup, "rows": rows}


def _f(x: float, sign: bool = False) -> str:
    if x != x:  # NaN
        return "–"
    return f"{x:+.3f}" if sign else f"{x:.3f}"


def _diff(d: dict[str, Any]) -> str:
    if d["mean"] == 0 and (d["std"] == 0 or d["std"] != d["std"]):
        return "–"
    return f"{_f(d['mean'], True)} [{_f(d['ci_lo'], True)}, {_f(d['ci_hi'], True)}]"


def markdown(result: dict[str, Any], command: str) -> str:
    s = result["setup"]
    arrow = "higher is better" if s["higher_is_better"] else "lower is better"
    lines = [
        f"Ablation on `{s['domain']}` at {s['budget']} labelled {s['budget_unit']}, seeds "
        f"{', '.join(map(str, s['seeds']))}; primary metric `{s['metric']}` ({arrow}); matrix "
        f"`{s['matrix']}` schedule ({s['schedule']['iterations']} iterations, batch "
        f"{s['schedule']['batch_size']}), detector `{s['detector']}`, dataset version "
        f"`{s['dataset_version']}`. Differences are paired by seed (same initial labelled set), with "
        "95 % t intervals. Made by:",
        "",
        f"    {command}",
        "",
        "| variant | mean ± sd | per seed | Δ vs full method [95 % CI] | Δ vs supervised [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        per = " / ".join(_f(v) for v in r["per_seed"].values())
        lines.append(
            f"| {r['variant']} | {_f(r['mean'])} ± {_f(r['std'])} | {per} | {_diff(r['vs_full'])} | "
            f"{_diff(r['vs_supervised'])} |"
        )
    return "\n".join(lines) + "\n"


def write_into_doc(doc: Path, table: str) -> None:
    """Replace what lies between the ablation markers of ``doc`` (atomically)."""
    from benchmark.results import atomic_write_text

    text = doc.read_text()
    pat = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pat.search(text):
        raise SpecError(f"{doc}: no '{BEGIN}' ... '{END}' markers to write the ablation table between")
    atomic_write_text(doc, pat.sub(lambda _: f"{BEGIN}\n{table}{END}", text, count=1))
