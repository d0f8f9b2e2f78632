"""labelbudget's protocol: matrices, the round loop, detectors, metrics, results and leaderboards.

This package knows no domain and no method by name: both come from registries filled by
``domains`` and ``baselines`` (and by third-party entry points).
"""

__version__ = "0.1.0"
