"""The ``ray`` launcher: each cell a Ray task that runs ``labelbudget run-cell`` (``pip install
'labelbudget[ray]'``).

``--ray-address auto|HOST:PORT`` joins a running Ray cluster; without it a local Ray instance is
started with ``--workers`` CPUs (and this machine's GPUs) and shut down afterwards. Each task asks
for ``--ray-num-cpus`` CPUs (default: the matrix's ``threads``) and ``--ray-num-gpus`` GPUs
(default 1 with ``--device cuda...``, else 0); Ray then sets ``CUDA_VISIBLE_DEVICES`` for it. The
task runs the cell in a child process, whose output goes to ``<out>/_logs/<run_id>.log``; a task
is never retried by Ray (a failed cell is a state in its run folder, retried with
``--retry-failed``). The runs folder must be visible, at the same path, to every node.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmark.launchers.base import STATUS_OF_EXIT, Job, Launcher, Outcome, register_launcher

PASS_ENV = (
    "LABELBUDGET_CACHE",
    "PYTHONPATH",
    "OMP_NUM_THREADS",
    "LABELBUDGET_HEARTBEAT_S",
    "LABELBUDGET_STALE_AFTER",
)


def run_cell_command(argv: list[str], log: str) -> int:
    """Run ``labelbudget run-cell ARGV`` in a child process (a Ray task's body); returns its exit code."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmark.cli", "run-cell", *argv], stdout=fh, stderr=subprocess.STDOUT
        )
    return proc.returncode


@register_launcher("ray")
class RayLauncher(Launcher):
    extra = "ray"
    module = "ray"

    def launch(self, jobs: list[Job]) -> list[Outcome]:
        import ray

        o, x = self.options, self.options.extra
        gpus = x.get("ray_num_gpus")
        if gpus is None:
            gpus = 1 if str(o.device).startswith("cuda") else 0
        env = {k: os.environ[k] for k in PASS_ENV if os.environ.get(k)}
        started = False
        if not ray.is_initialized():
            kw = {"include_dashboard": False, "log_to_driver": False, "runtime_env": {"env_vars": env}}
            if x.get("ray_address"):
                ray.init(address=x["ray_address"], **kw)
            else:  # a private local instance on this machine only
                ray.init(num_cpus=max(1, o.workers), _node_ip_address="127.0.0.1", **kw)
            started = True
        try:
            logs = Path(o.out).resolve() / "_logs"
            refs = []
            for j in jobs:
                cpus = x.get("ray_num_cpus") or j.threads
                task = ray.remote(run_cell_command).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
                refs.append(task.remote(self.run_cell_argv(j), str(logs / f"{j.cell_id}.log")))
            codes = ray.get(refs)
        finally:
            if started:
                ray.shutdown()
        return [
            Outcome(j.cell_id, STATUS_OF_EXIT.get(c, "error"), f"exit code {c}; log {logs / j.cell_id}.log")
            for j, c in zip(jobs, codes, strict=True)
        ]
