"""The smallest matrix a test can run: one method, synthetic DOTA (tiny), 2 rounds of 2 iterations."""

from __future__ import annotations


def mini_matrix(name: str = "m") -> str:
    """The matrix's TOML text (tests derive broken variants from it with ``str.replace``)."""
    return f"""
name = "{name}"
methods = ["supervised+random"]
seeds = [0]
budgets = [8, 16]
[detector]
name = "tiny_fcos_xs"
[schedule]
iterations = 2
batch_size = 2
[domains.dota]
synthetic_size = "tiny"
"""
