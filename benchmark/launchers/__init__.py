"""Launchers: how the cells of a prepared matrix reach CPUs and GPUs (serial, process, ray, slurm).

See ``base.py`` for the contract; every launcher runs ``labelbudget run-cell`` jobs and resumes the
same way, because the run folders decide what is done (``benchmark.runstate``).
"""

from benchmark.launchers.base import (
    LAUNCHERS,
    Job,
    LaunchOptions,
    Outcome,
    execute_job,
    get_launcher,
    register_launcher,
)

__all__ = ["LAUNCHERS", "Job", "LaunchOptions", "Outcome", "execute_job", "get_launcher", "register_launcher"]
