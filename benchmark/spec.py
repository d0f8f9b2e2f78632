"""Benchmark matrices: TOML files that expand into cells (domain x method x seed), run ids and seeds.

A matrix (``benchmark/matrices/<name>.toml``)::

    name = "smoke"
    domains = ["dota"]
    methods = ["supervised+random", "supervised+entropy"]   # trainer[+strategy]
    # a trainer may carry hyper-parameters: "eucl[contrastive=false]+eucl_uncertainty" (ablations)
    seeds = [0, 1]
    budget_unit = "images"          # or "boxes"
    budgets = [40, 80, 160]         # cumulative label budgets, one AL round each
    # budgets = ["5%", "10%", "20%"]  # or fractions of the pool's labelling units (boxes with
    #                                 # budget_unit = "boxes"), resolved once the data is loaded
    threads = 1                     # torch threads per run (recorded; part of the run id)
    # real_data = true              # every domain needs a root (no synthetic fallback; `full`)
    [detector]
    name = "tiny_fcos_xs"
    # start = "pretrained"          # the shared pretrained start (default "random"; run id gets its sha256)
    [schedule]                      # benchmark.training.Schedule fields
    iterations = 300
    [domains.dota]                  # per-domain settings; anything else is an adapter option
    synthetic_size = "small"        # used when no root is given
    # root = "/data/DOTA"           # real data (or --data-root dota=PATH)
    # budgets = [...]               # per-domain override (counts or "N%" fractions)
    # dataset = "DOTA"              # the dataset's name in messages and real-data records
    # [domains.dota.schedule]       # per-domain override of [schedule] fields
    # iterations = 6000

A cell's run id is the sha256 of its canonical spec (no absolute paths, the dataset's content
version included), so re-running the same matrix finds its finished rounds.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmark.detectors import PRESETS
from benchmark.registry import METHODS, STRATEGIES
from benchmark.training import Schedule
from domains.base import DOMAINS, DatasetNotFoundError, SpecError

MATRICES_DIR = Path(__file__).parent / "matrices"
DOMAIN_KEYS = {
    "root",
    "synthetic_size",
    "synthetic_seed",
    "budgets",
    "budget_unit",
    "reference",
    "schedule",
    "dataset",
    "validation",
}
DATA_DOCS = "docs/data.md"  # how to arrange each real dataset (one section per domain)
SCHEMA_VERSION = 1


FULL_POOL = 0  # the budget of a reference cell: the whole pool (resolved once the data is loaded)


def seed_hash(*parts: Any) -> int:
    """A 63-bit seed derived from the parts (e.g. ``seed_hash(seed, "train", round)``)."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True)
class Seeds:
    """Every seed a run derives from its matrix seed, one per purpose -- the one place they are
    derived: ``init`` draws the initial labelled set, ``weights`` initialises the detector,
    ``source`` draws the source checkpoint's batches, ``train(r)`` / ``query(r)`` drive round r's
    training and acquisition."""

    seed: int

    @property
    def init(self) -> int:
        return seed_hash(self.seed, "init")

    @property
    def weights(self) -> int:
        return seed_hash(self.seed, "weights")

    @property
    def source(self) -> int:
        return seed_hash(self.seed, "source")

    def train(self, r: int) -> int:
        return seed_hash(self.seed, "train", r)

    def query(self, r: int) -> int:
        return seed_hash(self.seed, "query", r)

    def of_round(self, r: int) -> dict[str, int]:
        """Round r's seeds as its record lists them (``init``, ``weights``, ``train``, ``query``)."""
        return {"init": self.init, "weights": self.weights, "train": self.train(r), "query": self.query(r)}


def canonical_hash(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class DomainSetup:
    """How one domain is run in a matrix: where its data is and its adapter options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    root: str | None = None  # None = the built-in synthetic dataset
    synthetic_size: str = "small"
    synthetic_seed: int = 0
    budgets: tuple[int, ...] = ()
    budget_unit: str = "images"
    reference: bool = False  # also run the full-supervision reference (every pool image labelled)
    # budgets given as fractions of the pool ("10%" -> 0.1): ``budgets`` stays empty until
    # ``resolve_budgets`` turns them into counts once the pool is loaded
    budget_fractions: tuple[float, ...] = ()
    schedule: Schedule | None = None  # this domain's schedule (None: the matrix's [schedule])
    dataset: str = ""  # the dataset's name for messages (e.g. "DOTA"); the domain name if empty
    # the share of the pool's groups held out as a labelled validation part (``benchmark.data``): no
    # method or strategy sees it; every round is also scored on it (the record's ``validation``)
    validation: float = 0.0

    @property
    def n_rounds(self) -> int:
        return len(self.budget_fractions) or len(self.budgets)

    def data_label(self) -> dict[str, Any]:
        """What identifies the data in a run id (never an absolute path)."""
        if self.root is None:
            out: dict[str, Any] = {"synthetic": self.synthetic_size, "synthetic_seed": self.synthetic_seed}
        elif self.dataset:  # the matrix names the dataset (only then: other run ids do not change)
            out = {"root": Path(self.root).name, "dataset": self.dataset}
        else:
            out = {"root": Path(self.root).name}
        if self.validation:  # likewise: only with a validation part
            out["validation"] = self.validation
        return out


@dataclass(frozen=True)
class Cell:
    """One run: a domain, a trainer + acquisition strategy, a seed, the budgets and the schedule."""

    matrix: str
    domain: DomainSetup
    trainer: str
    strategy: str
    seed: int
    schedule: Schedule
    detector: str
    detector_options: dict[str, Any]
    threads: int = 1
    warm_start: bool = False
    dataset_version: str = ""  # filled in once the data is loaded
    # the full-supervision reference of its domain: one round with the whole pool labelled
    reference: bool = False

    @property
    def method(self) -> str:
        return f"{self.trainer}+{self.strategy}"

    @property
    def budgets(self) -> tuple[int, ...]:
        """The cumulative budgets; a reference cell has one round, ``FULL_POOL`` (every unit)."""
        return (FULL_POOL,) if self.reference else self.domain.budgets

    @property
    def budget_unit(self) -> str:
        return self.domain.budget_unit

    def canonical(self) -> dict[str, Any]:
        out = self._canonical()
        if self.reference:  # only then: the run ids of ordinary cells do not change
            out["reference"] = True
        if self.domain.budget_fractions:  # likewise: only for budgets given as fractions
            out["budget_fractions"] = list(self.domain.budget_fractions)
        return out

    def _canonical(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "domain": self.domain.name,
            "domain_options": self.domain.options,
            "data": self.domain.data_label(),
            "dataset_version": self.dataset_version,
            "trainer": self.trainer,
            "strategy": self.strategy,
            "seed": self.seed,
            "budgets": list(self.budgets),
            "budget_unit": self.budget_unit,
            "schedule": asdict(self.schedule),
            "detector": self.detector,
            # a weights or start file is named by its file name (no absolute path; the start's sha256
            # is beside it); `download` does not change it
            "detector_options": {
                k: (Path(v).name if k in ("weights", "start") else v)
                for k, v in self.detector_options.items()
                if k != "download"
            },
            "threads": self.threads,
            "warm_start": self.warm_start,
            # the code that produced the run: a changed method or strategy gets a new run id, so a
            # resumed matrix recomputes it instead of keeping rounds of the old code
            "versions": self.code_versions(),
        }

    def code_versions(self) -> dict[str, str]:
        base, opts = parse_trainer(self.trainer)
        return {
            "trainer": METHODS.get(base)(**opts).version(),
            "strategy": STRATEGIES.get(self.strategy)().version(),
        }

    @property
    def run_id(self) -> str:
        return canonical_hash(self.canonical())

    @property
    def seeds(self) -> Seeds:
        """The run's seeds by purpose (``Seeds``)."""
        return Seeds(self.seed)


@dataclass(frozen=True)
class Matrix:
    name: str
    cells: tuple[Cell, ...]
    domains: dict[str, DomainSetup]
    source: str  # path or name it came from
    description: str = ""
    real_data: bool = False  # every domain must have a root (no built-in synthetic fallback)


def find_matrix(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise SpecError(f"matrix file {p} does not exist")
        return p
    p = MATRICES_DIR / f"{name_or_path}.toml"
    if not p.is_file():
        known = ", ".join(sorted(x.stem for x in MATRICES_DIR.glob("*.toml")))
        raise SpecError(
            f"no matrix named {name_or_path!r}; built-in matrices: {known} (or give a .toml path)"
        )
    return p


def _bool(v: Any, what: str) -> bool:
    if not isinstance(v, bool):
        raise SpecError(f"{what} must be true or false, got {v!r}")
    return v


def _int_list(v: Any, what: str) -> tuple[int, ...]:
    if isinstance(v, str):
        v = [x for x in v.split(",") if x.strip()]
    try:
        out = tuple(int(x) for x in v)
    except (TypeError, ValueError):
        raise SpecError(f"{what} must be a list of integers, got {v!r}") from None
    if not out:
        raise SpecError(f"{what} is empty")
    return out


def parse_budgets(v: Any, what: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Cumulative budgets: counts (``[25, 100, 300]``) or fractions of the pool written as
    percentages (``["5%", "10%"]``; on the command line ``--budgets 5%,10%``). Returns
    ``(counts, ())`` or ``((), fractions)``; the two forms do not mix."""
    if isinstance(v, str):
        v = [x.strip() for x in v.split(",") if x.strip()]
    if not isinstance(v, list | tuple) or not v:
        raise SpecError(f"{what} must be a non-empty list of counts or percentages, got {v!r}")
    pct = [isinstance(x, str) and x.strip().endswith("%") for x in v]
    if not any(pct):
        b = _int_list(v, what)
        if any(x <= 0 for x in b) or list(b) != sorted(set(b)):
            raise SpecError(f"{what} must be positive and strictly increasing, got {list(b)}")
        return b, ()
    if not all(pct):
        raise SpecError(f'{what}: give either counts or percentages such as "10%", not both: {list(v)}')
    try:
        f = tuple(float(x.strip()[:-1]) / 100.0 for x in v)
    except ValueError:
        raise SpecError(f'{what}: {list(v)} are not percentages such as "10%" or "2.5%"') from None
    if any(not 0.0 < x <= 1.0 for x in f) or list(f) != sorted(set(f)):
        raise SpecError(f"{what} must be percentages in (0%, 100%], strictly increasing, got {list(v)}")
    return (), f


def resolve_budgets(setup: DomainSetup, n_units: int, n_boxes: int) -> DomainSetup:
    """Turn fraction budgets into counts of the loaded pool: of its labelling units
    (``budget_unit = "images"``) or of its boxes (``"boxes"``), rounded to the nearest integer.
    A setup with count budgets comes back unchanged."""
    if not setup.budget_fractions:
        return setup
    total = n_units if setup.budget_unit == "images" else n_boxes
    counts = tuple(max(1, math.floor(f * total + 0.5)) for f in setup.budget_fractions)
    pcts = ", ".join(f"{100 * f:g}%" for f in setup.budget_fractions)
    if list(counts) != sorted(set(counts)):
        raise SpecError(
            f"budgets of {setup.name} ({pcts}) of a pool of {total} {setup.budget_unit} give "
            f"{list(counts)}, which is not strictly increasing; use fewer or larger fractions"
        )
    return replace(setup, budgets=counts)


def parse_value(text: str) -> Any:
    """A ``--set`` value: a TOML literal (number, bool, list, quoted string) or a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_trainer(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` or ``"name[k=v,k2=v2]"`` (values are TOML literals) -> (name, hyper-parameters)."""
    name, sep, rest = spec.partition("[")
    if not sep:
        return spec, {}
    if not rest.endswith("]"):
        raise SpecError(f"method {spec!r}: expected 'name[key=value,...]'")
    opts: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest[:-1].split(","))):
        k, eq, v = part.partition("=")
        if not eq or not k.strip():
            raise SpecError(f"method {spec!r}: option {part!r} is not key=value")
        opts[k.strip()] = parse_value(v.strip())
    return name.strip(), opts


def load_matrix(
    name_or_path: str,
    domains: list[str] | None = None,
    methods: list[str] | None = None,
    budgets: list[int] | list[str] | str | None = None,
    seeds: list[int] | None = None,
    data_roots: dict[str, str] | None = None,
    sets: dict[str, dict[str, Any]] | None = None,
) -> Matrix:
    """Read a matrix and apply the CLI overrides; validate everything against the registries."""
    path = find_matrix(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML ({exc})") from None
    known_top = {
        "name",
        "description",
        "domains",
        "methods",
        "seeds",
        "budgets",
        "budget_unit",
        "threads",
        "warm_start",
        "reference",
        "detector",
        "schedule",
        "real_data",
        "validation",
    }
    unknown = set(raw) - known_top
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {sorted(unknown)}; known: {', '.join(sorted(known_top))}")
    name = str(raw.get("name", path.stem))
    import re

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):  # it names the runs/<name> folder
        raise SpecError(f"{path}: matrix name {name[:80]!r} must match [A-Za-z0-9_.-]+ without a leading dot")
    dom_tables = raw.get("domains", {})
    if isinstance(dom_tables, list):
        dom_tables = {d: {} for d in dom_tables}
    if not isinstance(dom_tables, dict) or not all(isinstance(v, dict) for v in dom_tables.values()):
        raise SpecError(f"{path}: 'domains' must be a list of names or [domains.NAME] tables")
    dom_names = list(domains) if domains else list(dom_tables)
    for d in dict.fromkeys([*dom_names, *dom_tables]):
        if d not in DOMAINS:
            raise SpecError(f"unknown domain {d!r}; registered: {', '.join(DOMAINS.names())}")
    for d in sets or {}:
        if d not in dom_names:
            raise SpecError(
                f"--set names domain {d!r}, which is not in this run's domains ({', '.join(dom_names)})"
            )
    if not dom_names:
        raise SpecError(f"{path}: no domains")
    meth = list(methods) if methods else list(raw.get("methods", []))
    if not meth:
        raise SpecError(f"{path}: no methods")
    seed_list = _int_list(seeds if seeds else raw.get("seeds", [0]), "seeds")
    top_budgets = budgets if budgets else raw.get("budgets")
    unit = str(raw.get("budget_unit", "images"))
    threads = raw.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise SpecError(f"{path}: threads must be a positive integer, got {threads!r}")
    warm = _bool(raw.get("warm_start", False), f"{path}: warm_start")
    top_reference = raw.get("reference", False)
    real_data = _bool(raw.get("real_data", False), f"{path}: real_data")
    top_validation = raw.get("validation", 0.0)
    det_table = raw.get("detector", {"name": "tiny_fcos"})
    if not isinstance(det_table, dict):
        raise SpecError(f"{path}: [detector] must be a table")
    det = dict(det_table)
    det_name = str(det.pop("name", "tiny_fcos"))
    if det_name not in PRESETS:
        raise SpecError(f"{path}: unknown detector {det_name!r}; presets: {', '.join(PRESETS)}")
    from benchmark.detectors import check_weights
    from benchmark.detectors.start import resolve_start

    try:
        check_weights(det_name, det)  # unknown options, and a missing weights file, before any training
        det = resolve_start(det_name, det)  # a pretrained start gains its sha256 (run id, records)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None
    sched_table = raw.get("schedule", {})
    known_sched = sorted(Schedule.__dataclass_fields__)
    if not isinstance(sched_table, dict) or set(sched_table) - set(known_sched):
        bad = sorted(set(sched_table) - set(known_sched)) if isinstance(sched_table, dict) else sched_table
        raise SpecError(f"{path}: unknown [schedule] key(s) {bad}; known: {', '.join(known_sched)}")
    top_schedule = dict(sched_table)
    try:
        schedule = Schedule(**top_schedule)
    except (TypeError, ValueError) as exc:
        raise SpecError(f"{path}: bad [schedule] table ({exc})") from None

    setups: dict[str, DomainSetup] = {}
    for d in dom_names:
        if d not in DOMAINS:
            raise SpecError(f"unknown domain {d!r}; registered: {', '.join(DOMAINS.names())}")
        table = dict(dom_tables.get(d, {}))
        table.update((sets or {}).get(d, {}))
        opts = {k: v for k, v in table.items() if k not in DOMAIN_KEYS}
        try:
            DOMAINS.get(d)(**opts)  # validates the options
        except SpecError as exc:
            raise SpecError(f"{exc} (and the matrix keys {', '.join(sorted(DOMAIN_KEYS))})") from None
        root = (data_roots or {}).get(d, table.get("root"))
        dataset = str(table.get("dataset", ""))
        if real_data and root is None:
            raise DatasetNotFoundError(
                f"{d} ({dataset or d}): the {name} matrix runs on real data, and no root is given: add "
                f"--data-root {d}=PATH (layout: {DATA_DOCS}#{d})"
            )
        b, fracs = parse_budgets(
            top_budgets if budgets else table.get("budgets", top_budgets), f"budgets of {d}"
        )
        size, sseed = table.get("synthetic_size", "small"), table.get("synthetic_seed", 0)
        if size not in DOMAINS.get(d).synthetic_sizes:
            sizes = ", ".join(DOMAINS.get(d).synthetic_sizes)
            raise SpecError(f"synthetic_size of {d} must be one of {sizes}, got {size!r}")
        if not isinstance(sseed, int) or isinstance(sseed, bool) or sseed < 0:
            raise SpecError(f"synthetic_seed of {d} must be a non-negative integer, got {sseed!r}")
        if table.get("root") is not None and not isinstance(table.get("root"), str):
            raise SpecError(f"root of {d} must be a path (a string), got {table.get('root')!r}")
        dom_schedule = None
        if "schedule" in table:
            if not isinstance(table["schedule"], dict):
                raise SpecError(f"{path}: [domains.{d}.schedule] must be a table of [schedule] fields")
            bad = sorted(set(table["schedule"]) - set(known_sched))
            if bad:
                raise SpecError(
                    f"{path}: unknown [domains.{d}.schedule] key(s) {bad}; known: {', '.join(known_sched)}"
                )
            try:
                dom_schedule = Schedule(**{**top_schedule, **table["schedule"]})
            except (TypeError, ValueError) as exc:
                raise SpecError(f"{path}: bad [domains.{d}.schedule] table ({exc})") from None
        val = table.get("validation", top_validation)
        if not isinstance(val, int | float) or isinstance(val, bool) or not 0.0 <= float(val) < 0.5:
            raise SpecError(
                f"{path}: validation of {d} must be a share of the pool's groups in [0, 0.5), got {val!r}"
            )
        u = str(table.get("budget_unit", unit))
        if u not in ("images", "boxes"):
            raise SpecError(f"budget_unit must be 'images' or 'boxes', got {u!r}")
        setups[d] = DomainSetup(
            d,
            opts,
            None if root is None else str(root),
            str(table.get("synthetic_size", "small")),
            int(table.get("synthetic_seed", 0)),
            b,
            u,
            _bool(table.get("reference", top_reference), f"reference of {d}"),
            fracs,
            dom_schedule,
            dataset,
            float(val),
        )
    for extra in set(data_roots or {}) - set(setups):
        raise SpecError(f"--data-root names domain {extra!r}, which is not in this run's domains")
    cells = []
    for m in meth:  # a method names a folder of runs/<matrix>/<domain>/: no path in it
        if not isinstance(m, str) or not m or m.startswith(".") or any(c in m for c in "/\\\0"):
            raise SpecError(f"method {str(m)[:80]!r} must not be empty, start with a dot or hold / or \\")
    for setup in setups.values():
        sched = setup.schedule or schedule
        for m in meth:
            trainer, _, strategy = m.partition("+")
            base, opts = parse_trainer(trainer)
            if base not in METHODS:
                raise SpecError(f"unknown method {base!r}; registered: {', '.join(METHODS.names())}")
            METHODS.get(base)(**opts)  # validates the hyper-parameters
            strategy = strategy or METHODS.get(base).default_strategy
            if strategy not in STRATEGIES:
                raise SpecError(f"unknown strategy {strategy!r}; registered: {', '.join(STRATEGIES.names())}")
            for s in seed_list:
                cells.append(Cell(name, setup, trainer, strategy, s, sched, det_name, det, threads, warm))
        if setup.reference:  # one full-supervision run per seed, the "% of reference" denominator
            for s in seed_list:
                cells.append(
                    Cell(
                        name,
                        setup,
                        "supervised",
                        "random",
                        s,
                        sched,
                        det_name,
                        det,
                        threads,
                        reference=True,
                    )
                )
    return Matrix(name, tuple(cells), setups, str(path), str(raw.get("description", "")), real_data)


def with_version(cell: Cell, version: str) -> Cell:
    return replace(cell, dataset_version=version)
