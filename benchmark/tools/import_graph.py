"""The project's import graph, checked against its layers: ``python -m benchmark.tools.import_graph``.

Every module of ``domains``, ``benchmark`` and ``baselines`` belongs to one layer of ``LAYERS`` (the
longest matching prefix decides). A module may import modules of its own layer or of a lower one,
never of a higher one, and no chain of imports may lead back to where it started. Imports are read
from each module's syntax tree, anywhere in its body: a function-level (lazy) import counts like a
top-level one, and so does an import under ``if TYPE_CHECKING:``.

What does not count is a lookup by name: a ``Registry`` (``benchmark.registry``) imports the modules
of its ``builtin_packages`` through ``importlib`` with names built at run time, which is how the
protocol finds methods and strategies (``baselines``), launchers, metric protocols, and how a domain
finds its synthetic writer, without importing any of them.

The command prints the layers, the imports between layers (with counts) and, with ``--modules``, every
module-level edge grouped by layer; then each violation. It exits with status 1 when there is a cycle
or an upward import, 0 otherwise. ``--root`` checks another source tree (the tests plant violations
in a copy).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("domains", "benchmark", "baselines")

# Lowest first. A module's layer is that of the longest prefix (whole dotted components) naming it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # no project imports: named registries and the code hashes
    ("core", ("benchmark.registry", "benchmark.codehash")),
    # dataset formats, their samples, geometry and patching; where synthetic data is cached
    ("domains", ("domains", "domains.synthetic.cache")),
    # the synthetic writers: each writes one domain's format (a domain finds its writer by name)
    ("synthetic", ("domains.synthetic",)),
    # the detectors and what they are trained with
    ("detectors", ("benchmark.detectors", "benchmark.augment", "benchmark.fusion")),
    # the official metrics (each registers its protocol on ``benchmark.metrics.PROTOCOLS``)
    ("metrics", ("benchmark.metrics",)),
    # data, training, evaluation, the round loop, matrices, run state, launch
    ("protocol", ("benchmark",)),
    # records read back: leaderboards, rank statistics, ablations
    ("reports", ("benchmark.leaderboard", "benchmark.ranks", "benchmark.ablation")),
    # entry points: the command line, the launchers that call it back, the developer tools
    (
        "entry",
        (
            "benchmark.cli",
            "benchmark.launchers.local",
            "benchmark.launchers.ray_launcher",
            "benchmark.launchers.slurm_launcher",
            "benchmark.tools",
        ),
    ),
    # methods and strategies (found by the protocol through the METHODS / STRATEGIES registries)
    ("baselines", ("baselines",)),
)
LAYER_NAMES = tuple(name for name, _ in LAYERS)


def layer_of(module: str, layers: Sequence[tuple[str, Sequence[str]]] = LAYERS) -> int:
    """Index in ``layers`` of the layer owning ``module`` (longest prefix); ValueError if none."""
    best, best_len = -1, -1
    for i, (_, prefixes) in enumerate(layers):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best < 0:
        raise ValueError(f"module {module} is in no layer of benchmark/tools/import_graph.py LAYERS")
    return best


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    lazy: bool  # inside a function or method


@dataclass
class Graph:
    root: Path
    modules: dict[str, Path] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)

    def targets(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in self.modules}
        for e in self.edges:
            out[e.src].add(e.dst)
        return out


def discover(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` file of the packages under ``root``."""
    found: dict[str, Path] = {}
    for pkg in packages:
        base = root / pkg
        if not (base / "__init__.py").is_file():
            continue
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if "__pycache__" in parts:
                continue
            # only files reachable through packages (every folder on the way has an __init__.py)
            if any(not (root.joinpath(*parts[:k]) / "__init__.py").is_file() for k in range(1, len(parts))):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


class _Imports(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[int, str | None, tuple[str, ...], int, bool]] = []
        self._depth = 0

    def _func(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _func

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.found.append((0, a.name, (), node.lineno, self._depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        names = tuple(a.name for a in node.names)
        self.found.append((node.level, node.module, names, node.lineno, self._depth > 0))


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if not level:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def _deepest(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if cand in modules:
            return cand
    return None


def build(root: Path, packages: Iterable[str] = PACKAGES) -> Graph:
    """The module-level import graph of the packages under ``root``: one edge per (importing module,
    imported project module, line), an imported name that is a submodule pointing at the submodule."""
    g = Graph(root=root, modules=discover(root, packages))
    for mod, path in g.modules.items():
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except SyntaxError as e:
            raise SystemExit(f"{path}:{e.lineno}: cannot parse: {e.msg}") from None
        v = _Imports()
        v.visit(tree)
        for level, target, names, line, lazy in v.found:
            base = _resolve(mod, path.name == "__init__.py", level, target)
            dsts = set()
            for n in names:
                if f"{base}.{n}" in g.modules:
                    dsts.add(f"{base}.{n}")
            if not dsts or len(dsts) < len(names):
                d = _deepest(base, g.modules)
                if d is not None:
                    dsts.add(d)
            for d in sorted(dsts):
                if d != mod:
                    g.edges.append(Edge(mod, d, line, lazy))
    return g


def cycles(g: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), each sorted."""
    adj = {m: sorted(t) for m, t in g.targets().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(adj):
        if start in index:
            continue
        work = [(start, iter(adj[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(adj[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return sorted(out)


def _cycle_path(g: Graph, comp: list[str]) -> list[Edge]:
    """One closed walk through a cycle of the component, as edges (for the message)."""
    inside = set(comp)
    first: dict[tuple[str, str], Edge] = {}
    for e in g.edges:
        if e.src in inside and e.dst in inside:
            first.setdefault((e.src, e.dst), e)
    adj: dict[str, list[str]] = defaultdict(list)
    for s, d in sorted(first):
        adj[s].append(d)
    # breadth-first from comp[0] back to itself
    start = comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for n in frontier:
            for d in adj[n]:
                if d == start:
                    path = [n]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    nodes = [*reversed(path), start]
                    return [first[(a, b)] for a, b in zip(nodes, nodes[1:], strict=False)]
                if d not in prev and d != start:
                    prev[d] = n
                    nxt.append(d)
        frontier = nxt
    return []


def upward(g: Graph, layers: Sequence[tuple[str, Sequence[str]]] = LAYERS) -> list[Edge]:
    return [e for e in g.edges if layer_of(e.src, layers) < layer_of(e.dst, layers)]


def _where(g: Graph, e: Edge) -> str:
    rel = g.modules[e.src].relative_to(g.root)
    return f"{rel}:{e.line}{' (lazy)' if e.lazy else ''}"


def report(
    g: Graph, layers: Sequence[tuple[str, Sequence[str]]] = LAYERS, modules: bool = False
) -> tuple[str, int]:
    """The printed report and the number of violations (cycles + upward imports)."""
    names = [n for n, _ in layers]
    lines = [f"import graph of {', '.join(PACKAGES)} under {g.root}", "", "layers (lowest first):"]
    by_layer: dict[int, list[str]] = defaultdict(list)
    for m in g.modules:
        by_layer[layer_of(m, layers)].append(m)
    for i, n in enumerate(names):
        lines.append(f"  {i} {n:<10} {len(by_layer[i]):3d} modules")
    between: dict[tuple[int, int], int] = defaultdict(int)
    for e in g.edges:
        between[(layer_of(e.src, layers), layer_of(e.dst, layers))] += 1
    lines += ["", "imports between layers (importer -> imported: import statements):"]
    for i, n in enumerate(names):
        outs = [f"{names[j]} {between[(i, j)]}" for j in range(len(names)) if j != i and between[(i, j)]]
        lines.append(f"  {n:<10} -> {', '.join(outs) if outs else '-'}   (within: {between[(i, i)]})")
    if modules:
        lines += ["", "module imports, grouped by layer (* = lazy, inside a function):"]
        for i, n in enumerate(names):
            lines.append(f"  [{n}]")
            for m in sorted(by_layer[i]):
                lazy: dict[str, bool] = {}
                for e in g.edges:
                    if e.src == m:
                        lazy[e.dst] = lazy.get(e.dst, True) and e.lazy
                deps = [f"{d}{'*' if lazy[d] else ''}" for d in sorted(lazy)]
                lines.append(f"    {m} -> {', '.join(deps) if deps else '-'}")
    bad = 0
    comps = cycles(g)
    ups = upward(g, layers)
    lines.append("")
    for comp in comps:
        bad += 1
        walk = _cycle_path(g, comp)
        lines.append(f"CYCLE among {len(comp)} modules ({', '.join(comp)}), for example:")
        lines.append(f"    {' -> '.join([e.src for e in walk] + [walk[0].src])}")
        lines += [f"    {_where(g, e)} imports {e.dst}" for e in walk]
    for e in ups:
        bad += 1
        lines.append(
            f"UPWARD IMPORT {_where(g, e)}: {e.src} ({names[layer_of(e.src, layers)]}) imports "
            f"{e.dst} ({names[layer_of(e.dst, layers)]})"
        )
    lazy = sum(e.lazy for e in g.edges)
    lines.append(
        f"{len(g.modules)} modules, {len(g.edges)} project imports ({lazy} lazy): "
        + (f"{len(comps)} cycle(s), {len(ups)} upward import(s)" if bad else "no cycle, no upward import")
    )
    return "\n".join(lines), bad


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmark.tools.import_graph", description=__doc__.split("\n")[0]
    )
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2], help="source tree")
    p.add_argument("--modules", action="store_true", help="also print every module's imports")
    args = p.parse_args(argv)
    text, bad = report(build(args.root.resolve()), modules=args.modules)
    print(text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
