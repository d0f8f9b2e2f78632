"""Core-set acquisition: greedy k-centre on the detector's image embeddings.

Paper: O. Sener and S. Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
Approach", ICLR 2018 (arXiv 1708.00489; PPAL's ``k_centroid_greedy`` is the same
procedure). Confirmed: embed every image (penultimate features), then repeatedly add the
unlabelled point that maximises its distance to the nearest already chosen or labelled point,
until the budget is used. Ours: the embeddings are ``model.embed`` (pooled deepest backbone
features), optionally L2-normalised; the robust (MIP, outlier) variant is not implemented.

Memory is O(N): the N x N distance matrix is never built. One vector of each unlabelled point's
distance to its nearest centre is kept and updated after each pick with the distances to the new
centre; the distances to the labelled set are computed in chunks of ``chunk`` rows. Time is
O(N (M + k) D). With an empty labelled set the first centre is drawn by the query generator.

Hyper-parameters (defaults): ``normalize = True`` (L2-normalise embeddings), ``chunk = 4096``.
"""

from __future__ import annotations

import numpy as np

from baselines.base import QueryContext, Strategy, register_strategy


def k_center_greedy(
    pool: np.ndarray,
    centres: np.ndarray | None,
    k: int,
    rng: np.random.Generator,
    chunk: int = 4096,
) -> list[int]:
    """Indices of ``k`` pool rows chosen by greedy k-centre, most distant first.

    ``pool`` (N, D) and ``centres`` (M, D) float features. Extra memory O(N + chunk * M): per pick
    only the pool's distances to the new centre (one matrix-vector product) are computed."""
    x = np.ascontiguousarray(pool, dtype=np.float32)
    n = len(x)
    k = min(k, n)
    if k <= 0:
        return []
    xx = np.einsum("ij,ij->i", x, x)
    mind = np.full(n, np.inf, dtype=np.float32)
    if centres is not None and len(centres):
        c = np.ascontiguousarray(centres, dtype=np.float32)
        cc = np.einsum("ij,ij->i", c, c)
        for a in range(0, n, chunk):
            d = x[a : a + chunk] @ c.T  # the only (chunk, M) buffer
            d *= -2.0
            d += xx[a : a + chunk, None]
            d += cc[None]
            mind[a : a + chunk] = d.min(1)
        np.maximum(mind, 0.0, out=mind)
    nxt = int(rng.integers(n)) if not np.isfinite(mind).any() else int(np.argmax(mind))
    picks: list[int] = []
    chosen = np.zeros(n, dtype=bool)
    for _ in range(k):
        picks.append(nxt)
        chosen[nxt] = True
        d = x @ x[nxt]  # (N,)
        d *= -2.0
        d += xx
        d += xx[nxt]
        np.minimum(mind, d, out=mind)
        mind[chosen] = -1.0
        nxt = int(np.argmax(mind))
    return picks


@register_strategy("core_set")
class CoreSet(Strategy):
    """Greedy k-centre on ``embed`` features (see the module docstring)."""

    hparams = {"normalize": True, "chunk": 4096}

    def select(self, ctx: QueryContext, k: int) -> list[str]:
        k = min(k, len(ctx.unlabelled))
        if k <= 0:
            return []
        u = ctx.embeddings(ctx.unlabelled)
        lab = ctx.embeddings(ctx.labelled) if ctx.labelled else None
        if self.hp["normalize"]:
            u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
            if lab is not None:
                lab = lab / np.maximum(np.linalg.norm(lab, axis=1, keepdims=True), 1e-12)
        idx = k_center_greedy(u, lab, k, ctx.rng, self.hp["chunk"])
        return [ctx.unlabelled[i].id for i in idx]
