"""The ``labelbudget`` command line.

labelbudget run [MATRIX] [--matrix NAME|PATH] [--domains a,b] [--methods m[+strategy],...]
                [--budgets 20,40,80] [--seeds 0,1,2] [--data-root DOMAIN=PATH]...
                [--set DOMAIN.OPTION=VALUE]... [--launcher serial|process|ray|slurm] [--workers N]
                [--shard i/n] [--retry-failed] [--out DIR] [--leaderboards DIR] [--dry-run]
                [--ray-address auto|HOST:PORT] [--ray-num-cpus N] [--ray-num-gpus N]
                [--slurm-partition P] [--slurm-gpus-per-task N] [--slurm-time T]
                [--slurm-array-parallelism N] [--slurm-option KEY=VALUE]... [--no-wait]
labelbudget run-cell RUNS_DIR CELL_ID | PLAN.json [--device D] [--retry-failed]
labelbudget leaderboard [--runs DIR] [--out DIR] [--no-version-check]
labelbudget status [--runs DIR] [--stale-after S]
labelbudget list
labelbudget data synth DOMAIN OUT [--seed N] [--size tiny|small|medium]
labelbudget data check DOMAIN ROOT [--lenient] [--set OPTION=VALUE]...
labelbudget data export-coco DOMAIN ROOT OUT.json [--split pool|test|source]
labelbudget pretrain [--out FILE.pt] [--seed N] [--iterations N] [--images N] [--threads 1] [--force]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmark.registry import UnknownNameError
from domains.base import LabelbudgetError, SpecError, cut

EPILOG = """examples:
  labelbudget run                       # the default matrix on the built-in synthetic data
  labelbudget run smoke                 # a fast check (72-83 s per domain on 2 cores)
  labelbudget run --domains dota --methods supervised+entropy --budgets 50,100 --seeds 0
  labelbudget run --data-root dota=/data/DOTA --set dota.version=1.5
  labelbudget run full --data-root dota=/data/DOTA ... --device cuda:0 --dry-run   # docs/data.md
  labelbudget leaderboard --runs runs/default --out leaderboards
  labelbudget run full --launcher ray --ray-address auto --device cuda --data-root dota=/data/DOTA
  labelbudget run full --launcher slurm --slurm-partition gpu --slurm-gpus-per-task 1 --device cuda ...
  labelbudget status --runs runs/full   # planned / running / done / failed / stale, per cell
"""


def _csv(s: str) -> list[str]:
    """Comma-separated items; commas inside ``[...]`` (trainer hyper-parameters) do not split."""
    out, depth, cur = [], 0, ""
    for ch in s:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [x.strip() for x in out if x.strip()]


def _kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for it in items:
        k, sep, v = it.partition("=")
        if not sep or not k or not v:
            raise SpecError(f"{what} expects KEY=VALUE, got {it!r}")
        out[k.strip()] = v.strip()
    return out


def _ints(s: str, what: str, minimum: int | None = None) -> list[int]:
    """A comma-separated list of integers (``--budgets 20,40``); anything else is a ``SpecError``."""
    out = []
    for x in _csv(s):
        try:
            v = int(x)
        except ValueError:
            raise SpecError(
                f"{what} expects comma-separated integers, got {cut(x, 80)!r} in {cut(s, 80)!r}"
            ) from None
        if minimum is not None and v < minimum:
            raise SpecError(f"{what} must be at least {minimum}, got {v}")
        out.append(v)
    if not out:
        raise SpecError(f"{what} is empty")
    return out


def _positive(v: int, what: str) -> int:
    if v < 1:
        raise SpecError(f"{what} must be a positive integer, got {v}")
    return v


def check_device(device: str, on_this_machine: bool = True) -> str:
    """``device`` when torch knows it and (with ``on_this_machine``) this machine has it; else a
    ``SpecError`` saying why. A dry run, or cells sent to other machines, check the name only."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise SpecError(
            f"--device {cut(device, 80)!r} is not a torch device (cpu, cuda, cuda:N, mps)"
        ) from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise SpecError(f"--device {device}: only cpu, cuda[:N] and mps are supported")
    if not on_this_machine:
        return device
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise SpecError(f"--device {device}: no CUDA GPU is available on this machine (use --device cpu)")
        if dev.index is not None and dev.index >= n:
            raise SpecError(f"--device {device}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}")
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise SpecError(f"--device {device}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise SpecError(f"--device {device}: only cpu, cuda[:N] and mps are supported")
    return device


def _sets(items: list[str]) -> dict[str, dict[str, Any]]:
    from benchmark.spec import parse_value

    out: dict[str, dict[str, Any]] = {}
    for k, v in _kv(items, "--set").items():
        dom, dot, opt = k.partition(".")
        if not dot or not opt:
            raise SpecError(f"--set expects DOMAIN.OPTION=VALUE, got {k}={v}")
        out.setdefault(dom, {})[opt] = parse_value(v)
    return out


def cmd_run(a: argparse.Namespace) -> int:
    from benchmark.leaderboard import write_leaderboards
    from benchmark.runner import parse_shard, run_matrix
    from benchmark.spec import load_matrix

    name = a.matrix_opt or a.matrix or "default"
    # cells sent to other machines (ray, slurm) or only sized (--dry-run) need the device there, not here
    check_device(a.device, on_this_machine=not a.dry_run and a.launcher in ("serial", "process"))
    _positive(a.workers, "--workers")
    matrix = load_matrix(
        name,
        domains=_csv(a.domains) if a.domains else None,
        methods=_csv(a.methods) if a.methods else None,
        budgets=_csv(a.budgets) if a.budgets is not None else None,  # counts or percentages ("10%")
        seeds=_ints(a.seeds, "--seeds", 0) if a.seeds is not None else None,
        data_roots=_kv(a.data_root, "--data-root"),
        sets=_sets(a.set),
    )
    if a.dry_run:  # check the data and size the matrix; nothing is trained or written
        from benchmark.dryrun import dry_run, rerun_command

        return dry_run(matrix, rerun_command(a, name), workers=a.workers, device=a.device)
    out = Path(a.out) if a.out else Path("runs") / safe_name(matrix.name, "matrix name")
    lb = Path(a.leaderboards) if a.leaderboards else out / "leaderboards"
    if lb.resolve() == (Path.cwd() / "leaderboards").resolve() and not a.leaderboards_force:
        raise SpecError(
            "the committed leaderboards/ change only through `labelbudget leaderboard --runs runs/study "
            "--out leaderboards`; choose another --leaderboards folder"
        )
    shard = parse_shard(a.shard)
    _configure_runstate(a)
    n_runs = len(matrix.cells)
    what = f", shard {shard[0]}/{shard[1]}" if shard else ""
    print(f"matrix {matrix.name} ({matrix.source}): {n_runs} runs{what} -> {out}", flush=True)
    t0 = time.perf_counter()
    res = run_matrix(
        matrix,
        out,
        launcher=a.launcher,
        workers=a.workers,
        device=a.device,
        progress=not a.quiet,
        retry_failed=a.retry_failed,
        shard=shard,
        launcher_options=_launcher_options(a),
        wait=not a.no_wait,
    )
    dt = time.perf_counter() - t0
    if a.no_wait:
        sub = [o for o in res.outcomes if o.status == "submitted"]
        print(f"submitted {len(sub)} cell(s) in {dt:.1f} s; follow them: labelbudget status --runs {out}")
        return 0
    written = write_leaderboards(out, lb, quiet=a.quiet)
    states = [res.states.get(c.run_id, "planned") for c in res.cells]
    counts = ", ".join(f"{states.count(s)} {s}" for s in ("done", "failed", "running", "stale", "planned"))
    print(f"{len(res.cells)} runs ({counts}); {res.records} round records, in {dt:.1f} s")
    for d, p in written.items():
        print(f"leaderboard {d}: {p} and {p.with_suffix('.csv')}")
    unfinished = [c for c in res.cells if res.states.get(c.run_id) != "done"]
    if unfinished:
        from benchmark.protocol import run_path
        from benchmark.runstate import cell_state

        said = {o.cell_id: f"{o.status}: {o.message}" for o in res.outcomes}
        for c in unfinished:
            root = run_path(out, c)
            st = cell_state(root)
            extra = f" (traceback: {root / 'traceback.txt'})" if st.state == "failed" else ""
            print(f"{st.state}: {root}: {st.detail() or said.get(c.run_id, '')}{extra}")
        hint = " (--retry-failed runs the failed ones again)" if res.failed else ""
        print(
            f"{len(unfinished)} run(s) did not finish; re-run the same command to resume{hint}",
            file=sys.stderr,
        )
        return 1
    return 0


def _configure_runstate(a: argparse.Namespace) -> None:
    from benchmark.runstate import configure

    try:
        configure(getattr(a, "heartbeat", None), getattr(a, "stale_after", None))
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def _launcher_options(a: argparse.Namespace) -> dict[str, Any]:
    return {
        "ray_address": a.ray_address,
        "ray_num_cpus": a.ray_num_cpus,
        "ray_num_gpus": a.ray_num_gpus,
        "slurm_partition": a.slurm_partition,
        "slurm_gpus_per_task": a.slurm_gpus_per_task,
        "slurm_time": a.slurm_time,
        "slurm_array_parallelism": a.slurm_array_parallelism,
        "slurm_options": _kv(a.slurm_option, "--slurm-option"),
        "slurm_cluster": a.slurm_cluster,
    }


def cmd_run_cell(a: argparse.Namespace) -> int:
    from benchmark.launchers.base import EXIT_DONE, EXIT_FAILED, EXIT_LOST, EXIT_NOT_RUN, execute_job

    _configure_runstate(a)
    res = execute_job(a.target, a.cell_id, a.device, a.retry_failed, a.launcher_name, verbose=True)
    print(f"cell {res.cell_id}: {res.status}: {res.message}", flush=True)
    return {"done": EXIT_DONE, "failed": EXIT_FAILED, "not run": EXIT_NOT_RUN, "lost": EXIT_LOST}[res.status]


def cmd_leaderboard(a: argparse.Namespace) -> int:
    from benchmark.leaderboard import write_leaderboards

    try:
        written = write_leaderboards(
            Path(a.runs), Path(a.out), check_versions=not a.no_version_check, split=a.split
        )
    except FileNotFoundError as exc:
        print(f"labelbudget: error: {exc}", file=sys.stderr)
        return 2
    for d, p in written.items():
        print(f"{d}: {p}, {p.with_suffix('.csv')}, {Path(a.out) / 'curves' / f'{d}.png'}")
    print(f"overall: {Path(a.out) / 'overall.md'}")
    return 0


def cmd_ablate(a: argparse.Namespace) -> int:
    import shlex

    from benchmark.ablation import markdown, run_ablation, write_into_doc

    check_device(a.device)
    _positive(a.workers, "--workers")
    res = run_ablation(
        a.method,
        domain=a.domain,
        seeds=_ints(a.seeds, "--seeds", 0),
        budget=a.budget,
        matrix=a.matrix,
        out=Path(a.out),
        launcher=a.launcher,
        workers=a.workers,
        device=a.device,
        progress=not a.quiet,
        share_with=None if a.no_share else Path("runs") / a.matrix,
    )
    cmd = "labelbudget ablate " + " ".join(shlex.quote(x) for x in sys.argv[2:])
    table = markdown(res, cmd.strip())
    print(table)
    doc = Path(a.doc) if a.doc else Path("docs") / "methods" / f"{a.method}.md"
    if not a.no_doc:
        write_into_doc(doc, table)
        print(f"written into {doc}")
    return 0


def cmd_status(a: argparse.Namespace) -> int:
    from benchmark.runstate import Summary, cell_state

    if a.stale_after is not None and a.stale_after <= 0:
        raise SpecError("--stale-after must be positive")
    runs = Path(a.runs)
    if not runs.is_dir():
        raise SpecError(f"runs folder {runs} does not exist")
    cells: dict[Path, int | None] = {}  # run folder -> number of rounds (None: unknown)
    for plan in sorted(runs.rglob("_plan/*.json")):
        try:
            entry = json.loads(plan.read_text())
            cells[plan.parent.parent / entry["run_dir"]] = int(entry["n_rounds"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, OSError):
            print(f"  invalid plan entry: {plan}")
    for sp in sorted(runs.rglob("spec.json")):
        try:
            n = len(json.loads(sp.read_text())["budgets"])
        except (json.JSONDecodeError, KeyError, TypeError, OSError):
            n = None
        cells[sp.parent] = n if cells.get(sp.parent) is None else cells[sp.parent]
    if not cells:
        print(f"no runs under {runs}")
        return 0
    summary = Summary()
    for root in sorted(cells):
        st = cell_state(root, cells[root], a.stale_after)
        summary.add(st.state)
        rounds = f"{st.rounds_done}/{st.n_rounds if st.n_rounds is not None else '?'}"
        detail = st.detail()
        line = f"{st.state:8s} {rounds:>6s} rounds  {root.relative_to(runs)}"
        print(line + (f"  {detail}" if detail else ""))
    total = sum(summary.counts.values())
    print(f"{summary.line()}; {summary.counts['done']}/{total} runs finished")
    from benchmark.leaderboard import drop_stale, load_records

    records, problems = load_records(runs)
    fresh, dropped = drop_stale(records)
    print(f"{len(records)} records: {len(fresh)} current, {len(records) - len(fresh)} stale or superseded")
    for line in dropped:
        print(f"  stale: {line}")
    for line in problems:
        print(f"  invalid: {line}")
    return 0


def cmd_list(a: argparse.Namespace) -> int:
    from benchmark.detectors import PRESETS
    from benchmark.registry import METHODS, STRATEGIES
    from benchmark.spec import MATRICES_DIR
    from domains.base import DOMAINS

    print("domains:")
    for n in DOMAINS.names():
        d = DOMAINS.get(n)
        metrics = ", ".join(m.name for m in d.metrics)
        print(f"  {n:18s} {d.box_type}, unit {d.label_unit}, splits {'/'.join(d.splits)}; metrics: {metrics}")
    print("methods (trainers):")
    for n in METHODS.names():
        m = METHODS.get(n)
        print(f"  {n:18s} paradigm {m.paradigm}, default strategy {m.default_strategy}")
    print("acquisition strategies:")
    for n in STRATEGIES.names():
        print(f"  {n:18s} {STRATEGIES.get(n).paradigm}")
    print("detectors: " + ", ".join(PRESETS))
    from benchmark.launchers.base import LAUNCHERS

    launchers = []
    for n in LAUNCHERS.names():
        cls = LAUNCHERS.get(n)
        launchers.append(n if not cls.extra else f"{n} (pip install 'labelbudget[{cls.extra}]')")
    print("launchers: " + ", ".join(launchers))
    print("matrices: " + ", ".join(sorted(p.stem for p in MATRICES_DIR.glob("*.toml"))))
    return 0


def cmd_data(a: argparse.Namespace) -> int:
    from domains.base import get_domain

    if a.data_cmd == "synth":
        from domains.base import DOMAINS
        from domains.synthetic.cache import check_synth_target

        cls = DOMAINS.get(a.domain)
        check_synth_target(Path(a.out), a.domain, force=a.force)
        root = cls.synthesize(Path(a.out), seed=a.seed, size=a.size, progress=True)
        print(f"wrote synthetic {a.domain} ({a.size}, seed {a.seed}) to {root}")
        return 0
    opts = {k: v for k, v in _sets([f"x.{s}" for s in a.set]).get("x", {}).items()}
    if getattr(a, "format", None):  # --format F is --set format=F (e.g. pedestrian citypersons)
        opts["format"] = a.format
    dom = get_domain(a.domain, **opts)
    if a.data_cmd == "check":
        from domains.base import check_images

        dom.verify(a.root)
        bad = 0
        present = dom.available_splits(a.root)
        for split in dom.splits:
            if split not in present:
                print(f"{split}: not present under {a.root} (skipped; only a run that reads it needs it)")
                continue
            try:
                ds = dom.load(a.root, split, lenient=a.lenient)
                check_images(ds, deep=a.deep, lenient=a.lenient)
            except LabelbudgetError as exc:
                if not a.lenient:
                    raise
                print(f"{split}: unusable: {exc}")  # --lenient: every problem listed, exit 1
                for p in getattr(exc, "problems", None) or [exc]:
                    print(f"  problem: {p}")
                bad += 1
                continue
            counts = ds.class_counts()
            n_obj = sum(s.num_objects for s in ds)
            print(f"{split}: {len(ds)} samples, {n_obj} objects; {ds.report.summary()}")
            for k, c in enumerate(counts):
                if c:
                    print(f"    {dom.classes[k]:24s} {c}")
            for p in ds.report.problems:
                print(f"  problem: {p}")
            bad += len(ds.report.problems)
        return 1 if bad else 0
    if a.data_cmd == "export-coco":
        from benchmark.metrics.coco import coco_category_ids, gt_to_coco
        from benchmark.results import atomic_write_json

        # scenes; patches only on request (docs/protocol.md#dataset-layouts)
        if "label_unit" in dom.options and not a.patches:
            dom = get_domain(a.domain, **{**opts, "label_unit": "image"})
        ds = dom.load(a.root, a.split)
        coco = gt_to_coco(list(ds), ds.classes, category_ids=coco_category_ids(dom, len(ds.classes)))
        n_frames = _export_video_frames(ds, coco, Path(a.out))
        atomic_write_json(a.out, coco)
        extra = f" ({n_frames} video frames as JPEG files in {_frames_dir(Path(a.out))})" if n_frames else ""
        print(f"wrote {len(ds)} images of {a.domain}/{a.split} to {a.out}{extra}")
        return 0
    raise SpecError(f"unknown data command {a.data_cmd!r}")


def _frames_dir(out: Path) -> Path:
    return out.with_name(out.stem + "_frames")


def _export_video_frames(ds, coco: dict, out: Path) -> int:
    """Samples whose pixels live inside a video (Caltech ``.seq`` frames) have no image file a COCO
    reader could open: write each frame's JPEG bytes, unchanged, to ``<OUT stem>_frames/`` and point
    the image entry's ``path`` there. Returns the number of frames written."""
    from benchmark.results import atomic_write_bytes

    n = 0
    for s, im in zip(ds, coco["images"], strict=True):
        frame = getattr(s, "frame_bytes", None)
        if frame is None:
            continue
        dest = _frames_dir(out) / (s.id.replace("/", "__") + ".jpg")
        atomic_write_bytes(dest, frame())
        im["path"] = f"{dest.parent.name}/{dest.name}"  # relative to the JSON's folder: the tree moves as one
        n += 1
    return n


def cmd_evaluate(a: argparse.Namespace) -> int:
    from benchmark.external import evaluate_external
    from benchmark.results import atomic_write_json
    from domains.base import get_domain

    opts = dict(_sets([f"x.{s}" for s in a.set]).get("x", {}))
    if a.format:
        opts["format"] = a.format
    dom = get_domain(a.domain, **opts)
    if "label_unit" in dom.options and not a.patches:  # whole scenes, as `data export-coco` writes them
        dom = get_domain(a.domain, **{**opts, "label_unit": "image"})
    dom.verify(a.root)
    test = dom.load(a.root, a.split)
    res = evaluate_external(dom, test, a.predictions, a.pred_format, a.saliency_maps)
    width = max(len(k) for k in res["metrics"])
    print(f"{a.domain} / {a.split}: {len(test)} samples, predictions {a.predictions}")
    for name, v in res["metrics"].items():
        arrow = "higher" if res["higher_is_better"][name] else "lower"
        tag = "  (primary)" if name == res["primary"] else ""
        print(f"  {name:{width}s} {v:.4f}   {arrow} is better; {res['impl'][name]}{tag}")
    for name, why in res.get("skipped", {}).items():
        print(f"  {name:{width}s} skipped: {why}")
    if a.json:
        atomic_write_json(a.json, {"domain": a.domain, "split": a.split, **res})
        print(f"wrote {a.json}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``labelbudget: error: ...``, exit 2), like every other error."""

    def error(self, message: str):  # type: ignore[override]
        msg = " ".join(message.split())
        self.exit(2, f"labelbudget: error: {cut(msg, 400)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="labelbudget",
        description="labelbudget: active learning x semi-supervised object detection under fixed label "
        "budgets, on remote sensing, sonar, foggy street scenes and pedestrians.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    r = sub.add_parser(
        "run",
        help="run a benchmark matrix and write its leaderboards",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    r.add_argument(
        "matrix", nargs="?", help="built-in matrix name (tiny, smoke, default, full) or a .toml path"
    )
    r.add_argument("--matrix", dest="matrix_opt", help="same as the positional MATRIX")
    r.add_argument("--domains", help="comma-separated subset of the matrix's domains (or others)")
    r.add_argument("--methods", help="comma-separated trainer[+strategy] list, e.g. supervised+entropy")
    r.add_argument("--budgets", help="cumulative label budgets, e.g. 20,40,80 (overrides the matrix)")
    r.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    r.add_argument(
        "--data-root",
        action="append",
        default=[],
        metavar="DOMAIN=PATH",
        help="real data for a domain (default: the built-in synthetic data)",
    )
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="DOMAIN.OPTION=VALUE",
        help="a domain option, e.g. dota.version=1.5",
    )
    r.add_argument(
        "--launcher",
        default="process",
        metavar="serial|process|ray|slurm",
        help="serial: one process; process: --workers processes with one torch thread each; ray: Ray "
        "tasks (pip install 'labelbudget[ray]'); slurm: a submitit job array (pip install "
        "'labelbudget[slurm]'). Default process",
    )
    r.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes for --launcher process, CPUs of a local Ray instance (default 2)",
    )
    r.add_argument("--shard", metavar="i/n", help="run only the i-th of n deterministic slices of the cells")
    r.add_argument(
        "--retry-failed", action="store_true", help="run failed cells again (default: leave them failed)"
    )
    _runstate_args(r)
    ray = r.add_argument_group("ray launcher")
    ray.add_argument("--ray-address", help="auto or HOST:PORT of a Ray cluster (default: a local instance)")
    ray.add_argument("--ray-num-cpus", type=float, help="CPUs per cell task (default: the matrix's threads)")
    ray.add_argument("--ray-num-gpus", type=float, help="GPUs per cell task (default 1 with --device cuda)")
    sl = r.add_argument_group("slurm launcher")
    sl.add_argument("--slurm-partition", help="SLURM partition")
    sl.add_argument("--slurm-gpus-per-task", type=int, help="GPUs per cell (default 1 with --device cuda)")
    sl.add_argument("--slurm-time", help="time limit per cell: minutes or D-HH:MM:SS")
    sl.add_argument("--slurm-array-parallelism", type=int, help="array tasks running at once")
    sl.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other sbatch option, e.g. account=proj (repeatable)",
    )
    sl.add_argument(
        "--slurm-cluster",
        choices=["slurm", "local", "debug"],
        default="slurm",
        help="local: submitit's local executor (the same submission path, on this machine)",
    )
    sl.add_argument("--no-wait", action="store_true", help="submit the array and exit (slurm)")
    r.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0 (default cpu)")
    r.add_argument("--out", help="runs folder (default runs/<matrix>)")
    r.add_argument("--leaderboards", help="tables folder (default <out>/leaderboards)")
    r.add_argument("--leaderboards-force", action="store_true", help=argparse.SUPPRESS)
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="check every data root, annotation and option, print per domain the runs, rounds, images "
        "per round and estimated GPU-hours, and the command for each launcher; train nothing",
    )
    r.set_defaults(func=cmd_run)

    lb = sub.add_parser("leaderboard", help="aggregate the records of a runs folder into tables")
    lb.add_argument("--runs", default="runs/default", help="runs folder (default runs/default)")
    lb.add_argument("--out", default="leaderboards", help="output folder (default leaderboards)")
    lb.add_argument(
        "--no-version-check",
        action="store_true",
        help="keep records whose method/strategy version differs from the registered code (archived runs)",
    )
    lb.add_argument(
        "--split",
        choices=("test", "validation"),
        default="test",
        help="score on the test split (default) or on the pool's held-out validation part (matrices with "
        "`validation`): choose defaults on validation, never on test",
    )
    lb.set_defaults(func=cmd_leaderboard)

    ab = sub.add_parser(
        "ablate",
        help="switch each component of a method off in turn and write the table into its doc",
        description="Run supervised, the full method and the method with each component switched off "
        "(Method.components) at one budget over several seeds, paired by seed; print the table and write it "
        "into docs/methods/METHOD.md between the ablation markers.",
    )
    ab.add_argument("method", help="a registered method that declares components")
    ab.add_argument("--domain", help="domain (default: the domain the method was designed for)")
    ab.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    ab.add_argument("--budget", type=int, help="label budget (default: the matrix's smallest)")
    ab.add_argument("--matrix", default="default", help="matrix whose schedule and detector to use")
    ab.add_argument("--out", default="runs/ablation", help="runs folder (default runs/ablation)")
    ab.add_argument("--doc", help="markdown file with the markers (default docs/methods/METHOD.md)")
    ab.add_argument("--no-doc", action="store_true", help="print the table only")
    ab.add_argument(
        "--no-share",
        action="store_true",
        help="do not share runs/MATRIX/_cache (round-0 models, source checkpoints) with the matrix's runs",
    )
    ab.add_argument("--launcher", choices=["serial", "process"], default="process")
    ab.add_argument("--workers", type=int, default=2)
    ab.add_argument("--device", default="cpu")
    ab.add_argument("--quiet", action="store_true", help="no progress bars")
    ab.set_defaults(func=cmd_ablate)

    st = sub.add_parser(
        "status", help="show each run's state: planned, running, done, failed or stale, and a summary"
    )
    st.add_argument("--runs", default="runs", help="runs folder (default runs)")
    st.add_argument(
        "--stale-after",
        type=float,
        help="seconds without a heartbeat after which a running cell counts as stale (default 300)",
    )
    st.set_defaults(func=cmd_status)

    rc = sub.add_parser(
        "run-cell",
        help="run one planned cell to completion (what every launcher runs)",
        description="Claim and run one cell that `labelbudget run` planned (OUT/_plan/<run_id>.json). "
        "Exit codes: 0 done (now or before), 1 the cell failed (traceback in its run folder), 2 usage "
        "error, 3 not run (a live worker has it, or it failed before and --retry-failed was not given), "
        "4 taken over by another worker.",
    )
    rc.add_argument("target", help="the runs folder (with CELL_ID), or a plan file OUT/_plan/<run_id>.json")
    rc.add_argument("cell_id", nargs="?", help="the cell's run id (see `labelbudget status`)")
    rc.add_argument("--device", default="cpu", help="torch device (default cpu)")
    rc.add_argument("--retry-failed", action="store_true", help="run it even if it failed before")
    rc.add_argument("--launcher-name", default="run-cell", help=argparse.SUPPRESS)
    _runstate_args(rc)
    rc.set_defaults(func=cmd_run_cell)

    ev = sub.add_parser("evaluate", help="score external predictions with a domain's official metrics")
    ev.add_argument("domain")
    ev.add_argument("root", help="the dataset root (the ground truth)")
    ev.add_argument(
        "predictions", help="COCO results JSON, or a folder of DOTA Task1_/Task2_<class>.txt files"
    )
    ev.add_argument("--split", default="test")
    ev.add_argument("--format", help="dataset format option of the domain (e.g. pedestrian citypersons)")
    ev.add_argument("--pred-format", choices=["coco", "dota"], help="predictions format (default: detected)")
    ev.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="adapter option")
    ev.add_argument(
        "--saliency-maps", help="folder of <sample id>.png foreground maps (sonar saliency metrics)"
    )
    ev.add_argument(
        "--patches",
        action="store_true",
        help="COCO results on patches (DOTA; the ids of `data export-coco --patches`), not whole scenes",
    )
    ev.add_argument("--json", help="also write the results as JSON here")
    ev.set_defaults(func=cmd_evaluate)

    ls = sub.add_parser("list", help="list registered domains, methods, strategies, detectors, matrices")
    ls.set_defaults(func=cmd_list)

    d = sub.add_parser("data", help="synthesize, check or export datasets")
    dsub = d.add_subparsers(dest="data_cmd", required=True, metavar="DATA_COMMAND")
    s = dsub.add_parser("synth", help="write a synthetic dataset in the domain's native format")
    s.add_argument("domain")
    s.add_argument("out")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", default="small", choices=["tiny", "small", "medium"])
    s.add_argument(
        "--force",
        action="store_true",
        help="replace a synthetic dataset of another domain written here before (never a folder of yours)",
    )
    c = dsub.add_parser(
        "check", help="validate a dataset; prints counts and every problem with file and line"
    )
    c.add_argument("domain")
    c.add_argument("root")
    c.add_argument("--lenient", action="store_true", help="skip and report bad entries instead of stopping")
    c.add_argument("--deep", action="store_true", help="decode every image (default: every image header)")
    c.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="adapter option")
    c.add_argument("--format", help="dataset format (pedestrian: citypersons, crowdhuman, caltech)")
    e = dsub.add_parser("export-coco", help="write one split as COCO JSON")
    e.add_argument("domain")
    e.add_argument("root")
    e.add_argument("out")
    e.add_argument("--split", default="test")
    e.add_argument("--patches", action="store_true", help="export patches, not whole scenes (DOTA)")
    e.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="adapter option")
    e.add_argument("--format", help="dataset format (pedestrian: citypersons, crowdhuman, caltech)")
    d.set_defaults(func=cmd_data)

    pt = sub.add_parser(
        "pretrain",
        help="train the shared pretrained start on a synthetic corpus disjoint from every domain",
        description="Pretrain a tiny detector on generic synthetic shapes (benchmark/pretrain.py); a "
        'matrix uses the result with [detector] start = "pretrained" (the shipped file) or '
        'start = "FILE.pt". '
        "Seeded and deterministic: the same command gives the same weights.",
    )
    pt.add_argument("--out", help="checkpoint to write (.pt; a .json sidecar goes beside it); default "
                    "runs/pretrain/tiny_fcos_xs_synthetic.pt")  # fmt: skip
    pt.add_argument("--detector", default="tiny_fcos_xs", help="detector preset (default tiny_fcos_xs)")
    pt.add_argument("--seed", type=int, default=0, help="corpus, initialisation and batch seed (default 0)")
    pt.add_argument("--iterations", type=int, default=6000, help="training iterations (default 6000)")
    pt.add_argument("--images", type=int, default=2000, help="corpus images (default 2000)")
    pt.add_argument("--batch-size", type=int, default=8, help="batch size (default 8)")
    pt.add_argument("--lr", type=float, default=0.01, help="peak learning rate (default 0.01)")
    pt.add_argument("--threads", type=int, default=1, help="torch threads (default 1; recorded)")
    pt.add_argument("--force", action="store_true", help="replace an existing checkpoint")
    pt.add_argument("--quiet", action="store_true", help="no progress bar")
    pt.set_defaults(func=_cmd_pretrain)
    return p


def _cmd_pretrain(a: argparse.Namespace) -> int:
    from benchmark.pretrain import cmd_pretrain

    _positive(a.threads, "--threads")
    return cmd_pretrain(a)


def safe_name(name: str, what: str) -> str:
    """A name read from a file or a matrix that becomes a file or folder name: ``[A-Za-z0-9_.-]+``, no
    leading dot (so never ``..`` nor a path)."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", str(name)):
        raise SpecError(f"{what} {cut(str(name), 80)!r} must match [A-Za-z0-9_.-]+ without a leading dot")
    return str(name)


def _os_error(exc: OSError) -> str:
    """One line for an OSError (read-only folder, full disk, missing file, ...)."""
    import errno

    what = exc.strerror or str(exc) or exc.__class__.__name__
    where = exc.filename if exc.filename is not None else ""
    hint = ""
    if exc.errno == errno.ENOSPC:
        hint = "; free some space and re-run the same command (finished work is kept)"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "; choose a folder you can write to (--out)"
    return cut(f"{where}: {what}{hint}" if where else f"{what}{hint}", 400)


def _runstate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--heartbeat", type=float, help="seconds between a running cell's heartbeats (default 30)")
    p.add_argument(
        "--stale-after",
        type=float,
        help="seconds without a heartbeat after which a running cell is stale and taken over (default 300)",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (LabelbudgetError, UnknownNameError) as exc:
        print(f"labelbudget: error: {cut(' '.join(str(exc).split()), 2000)}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"labelbudget: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("labelbudget: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
