"""The ``ray`` launcher: each cell a Ray task that runs ``labelbudget run-cell`` (``pip install
'labelbudget[ray]'``).

``--ray-address auto|HOST:PORT`` joins a running Ray cluster; without it a local Ray instance is
started with ``--workers`` CPUs (and this machine's GPUs) and shut down afterwards. Each task asks
for ``--ray-num-cpus`` CPUs (default: the matrix's ``threads``) and ``--ray-num-gpus`` GPUs
(default 1 with ``--device cuda...``, else 0); Ray then sets ``CUDA_VISIBLE_DEVICES`` for it. The
task calls ``labelbudget run-cell`` in its Ray worker (CPU workers are reused, so a worker loads a
dataset once; a GPU task gets a fresh worker). Ray never retries a task: a failed cell is a state
in its run folder, run again with ``--retry-failed``. The runs folder must be visible, at the same
path, to every node.
"""

from __future__ import annotations

import os

from benchmark.launchers.base import STATUS_OF_EXIT, Job, Launcher, Outcome, register_launcher

PASS_ENV = (
    "LABELBUDGET_CACHE",
    "PYTHONPATH",
    "OMP_NUM_THREADS",
    "LABELBUDGET_HEARTBEAT_S",
    "LABELBUDGET_STALE_AFTER",
)


def run_cell_task(argv: list[str]) -> int:
    """A Ray task's body: ``labelbudget run-cell ARGV`` in the Ray worker; returns its exit code."""
    from benchmark.cli import main

    return main(["run-cell", *argv])


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
            else:  # a private local instance, bound to this machine only
                try:
                    ray.init(num_cpus=max(1, o.workers), _node_ip_address="127.0.0.1", **kw)
                except (TypeError, RuntimeError) as exc:  # a Ray without that (private) argument
                    if "_node_ip_address" not in str(exc):
                        raise
                    ray.init(num_cpus=max(1, o.workers), **kw)
            started = True
        try:
            refs = []
            for j in jobs:
                cpus = x.get("ray_num_cpus") or j.threads
                # a GPU task gets a fresh worker (max_calls=1): its CUDA context and memory go with it
                task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0, max_calls=1 if gpus else 0)(
                    run_cell_task
                )
                refs.append(task.remote(self.run_cell_argv(j)))
            codes = []
            for j, ref in zip(jobs, refs, strict=True):
                try:
                    codes.append(int(ray.get(ref)))
                except Exception as exc:  # the worker died (out of memory, a crash): its lease goes stale
                    codes.append(-1)
                    print(f"ray: cell {j.cell_id}: {type(exc).__name__}: {str(exc).strip()[-300:]}")
        finally:
            if started:
                ray.shutdown()
        return [
            Outcome(j.cell_id, STATUS_OF_EXIT.get(c, "error"), f"run-cell exit code {c}")
            for j, c in zip(jobs, codes, strict=True)
        ]
