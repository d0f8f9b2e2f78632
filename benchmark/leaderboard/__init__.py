"""Records -> leaderboards people can trust: statistics over seeds, paired comparisons, ranks, curves.

Input: every ``results.jsonl`` under a runs folder (one self-describing record per run and round,
written by ``benchmark.protocol.run_cell``). Output, in the ``out`` folder:

* ``<domain>.csv``: one long, machine-readable table. Column ``kind`` says what a row is:
  ``cell`` (a metric at one budget over seeds), ``paired`` (the paired difference to the
  ``supervised+random`` baseline over the seeds both have), ``aubc`` / ``aubc_paired`` (area under the
  budget curve, ``benchmark.metrics.efficiency.aubc``, per seed then over seeds), ``pct_reference``
  (percent of a full-supervision reference run), ``compute`` (training/query seconds and images
  seen per run), ``rank`` (a method's rank on the AUBC of the primary metric: ``mean`` AUBC, ``rank``
  with ties, bootstrap ``rank_lo``/``rank_hi``, ``tied_with``; ``benchmark.leaderboard.ranks``),
  ``rank_stability`` (``mean``: Kendall τ between the rankings of the first and the second half of
  the seeds, named in ``seeds``) and ``rank_stability_cuts`` (the same τ over every cut of the seeds
  into halves: ``n`` cuts, ``mean`` τ, ``ci_lo``/``ci_hi`` its minimum and maximum);
* ``<domain>.md``: a provenance header, the coverage matrix, one table per official metric (primary
  first; budgets as columns; cells ``mean ± 95 % CI (n)``), the paired differences, AUBC, % of full
  supervision and compute;
* ``overall.md``: mean rank across domains (ties averaged; a method is ranked only on domains where it
  is complete), the same per track, and the pairwise win/loss matrix;
* ``curves/<domain>.png``: each metric vs labelled images (or boxes), one line per method with its
  95 % CI band.

Statistics: per (domain, metric, method, budget) over seeds, n, mean, sample standard deviation
(ddof = 1), standard error and the 95 % confidence interval from Student's t with n - 1 degrees of
freedom. Every method of a seed starts from the same initial labelled set as ``supervised+random``,
so the paired difference (per seed, then the same t machinery) is far tighter than comparing two
unpaired intervals. Directions come from each record's ``higher_is_better`` (MR⁻², MAE: lower first).
Raw metric values are never averaged across domains: the overall summary uses ranks only.

Trust rules: records are validated against the schema (``benchmark.records``; a bad line is
reported with file and line and skipped); records whose method/strategy version differs from the
current registered code, or whose dataset version is not the domain's newest in the folder, are
stale: dropped and reported, never mixed in; a (domain, method, seed) run by two different run ids
keeps the newest run and reports the other. Missing cells show ``—`` with ``n/N seeds``. The header
(commit, date, matrix, device, packages) comes from the records, never from the clock, so the same
runs give the same bytes.

Reference runs: a record with ``"reference": true`` is a full-supervision result of its domain; "%
of full supervision" appears where one exists and is stated as absent otherwise (no built-in matrix
declares one yet).

The package, one idea per module: ``load`` (records and staleness), ``stats`` (intervals and ranks
with ties), ``ranks`` (how far a ranking can be trusted), ``boards`` (a domain's statistics, the
CSV rows), ``markdown`` (the tables), ``plots`` (the curves) and ``write`` (``write_leaderboards``).
"""

from benchmark.leaderboard.boards import (
    BASELINE,
    CSV_COLUMNS,
    TRACKS,
    DomainBoard,
    build_domain,
    charged_timing,
    to_frame,
    track_of,
)
from benchmark.leaderboard.load import (
    VersionFn,
    drop_stale,
    load_records,
    load_specs,
    registered_versions,
    validate_record,
)
from benchmark.leaderboard.markdown import (
    coverage_lines,
    coverage_text,
    domain_markdown,
    header_lines,
    overall_markdown,
    rank_lines,
)
from benchmark.leaderboard.plots import plot_curves
from benchmark.leaderboard.ranks import rank_analysis
from benchmark.leaderboard.stats import ci_better, describe, rank_scores, t_halfwidth
from benchmark.leaderboard.write import write_leaderboards

__all__ = [
    "BASELINE",
    "CSV_COLUMNS",
    "TRACKS",
    "DomainBoard",
    "VersionFn",
    "build_domain",
    "charged_timing",
    "ci_better",
    "coverage_lines",
    "coverage_text",
    "describe",
    "domain_markdown",
    "drop_stale",
    "header_lines",
    "load_records",
    "load_specs",
    "overall_markdown",
    "plot_curves",
    "rank_analysis",
    "rank_lines",
    "rank_scores",
    "registered_versions",
    "t_halfwidth",
    "to_frame",
    "track_of",
    "validate_record",
    "write_leaderboards",
]
