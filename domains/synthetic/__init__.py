"""Synthetic dataset generators, one per domain, each writing that domain's native on-disk format.

``ensure_synthetic(domain, size, seed)`` generates a dataset on first use into the cache folder
(``$LABELBUDGET_CACHE`` or ``~/.cache/labelbudget``) and returns its root.
"""

from domains.synthetic.cache import cache_dir, ensure_synthetic

__all__ = ["cache_dir", "ensure_synthetic"]
