"""Random acquisition: the passive baseline every AL strategy must beat.

Draws ``k`` unlabelled ids uniformly without replacement from the query generator of the round.
"""

from __future__ import annotations

from baselines.base import QueryContext, Strategy, register_strategy


@register_strategy("random")
class Random(Strategy):
    """Uniformly random ids (see the module docstring)."""

    paradigm = "passive"

    def select(self, ctx: QueryContext, k: int) -> list[str]:
        k = min(k, len(ctx.unlabelled))
        idx = ctx.rng.permutation(len(ctx.unlabelled))[:k]
        return [ctx.unlabelled[i].id for i in idx]
