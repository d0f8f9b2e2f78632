"""The ``slurm`` launcher: the cells as one submitit job array (``pip install 'labelbudget[slurm]'``).

Each array task runs ``labelbudget run-cell OUT RUN_ID`` on a compute node. Flags:
``--slurm-partition``, ``--slurm-gpus-per-task``, ``--slurm-time`` (minutes, or SLURM's
``D-HH:MM:SS``), ``--slurm-array-parallelism`` (tasks at once), ``--slurm-option KEY=VALUE``
(any other ``sbatch`` option, repeatable, e.g. ``account=proj``, ``qos=high``, ``mem=32G``) and
``--slurm-cluster slurm|local|debug`` (``local`` runs the same submission path as processes on this
machine, without a cluster). submitit's scripts and logs go to ``<out>/_slurm/``. By default
``labelbudget run`` waits for the array and writes the leaderboards; with ``--no-wait`` it submits
and exits (``labelbudget status`` follows the cells, ``labelbudget leaderboard`` makes the tables).
The runs folder must be on a file system every node sees at the same path.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.launchers.base import STATUS_OF_EXIT, Job, Launcher, Outcome, register_launcher


def run_cell_job(argv: list[str]) -> int:
    """The body of one array task: ``labelbudget run-cell ARGV`` in this (the job's) process."""
    from benchmark.cli import main

    return main(["run-cell", *argv])


@register_launcher("slurm")
class SlurmLauncher(Launcher):
    extra = "slurm"
    module = "submitit"

    def executor(self, threads: int):
        import submitit

        o, x = self.options, self.options.extra
        cluster = x.get("slurm_cluster") or "slurm"
        ex = submitit.AutoExecutor(folder=Path(o.out).resolve() / "_slurm" / "%j", cluster=cluster)
        params: dict = {"name": "labelbudget", "cpus_per_task": threads, "tasks_per_node": 1, "nodes": 1}
        t = x.get("slurm_time")
        if t:
            params["slurm_time"] = int(t) if str(t).isdigit() else str(t)
        if x.get("slurm_partition"):
            params["slurm_partition"] = x["slurm_partition"]
        gpus = x.get("slurm_gpus_per_task")
        if gpus is None and str(o.device).startswith("cuda"):
            gpus = 1
        if gpus:
            params["slurm_gpus_per_task"] = int(gpus)
        if x.get("slurm_array_parallelism"):
            params["slurm_array_parallelism"] = int(x["slurm_array_parallelism"])
        if x.get("slurm_options"):
            params["slurm_additional_parameters"] = dict(x["slurm_options"])
        ex.update_parameters(**params)
        return ex

    def launch(self, jobs: list[Job]) -> list[Outcome]:
        if not jobs:
            return []
        ex = self.executor(max(j.threads for j in jobs))
        submitted = ex.map_array(run_cell_job, [self.run_cell_argv(j) for j in jobs])
        if not self.options.wait:
            pairs = zip(jobs, submitted, strict=True)
            return [Outcome(j.cell_id, "submitted", f"job {s.job_id}") for j, s in pairs]
        out = []
        for j, s in zip(jobs, submitted, strict=True):
            try:
                code = int(s.result())
                status = STATUS_OF_EXIT.get(code, "error")
                out.append(Outcome(j.cell_id, status, f"job {s.job_id}, exit {code}"))
            except Exception as exc:  # the job itself died (time limit, node failure): a stale lease remains
                last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
                out.append(Outcome(j.cell_id, "error", f"job {s.job_id}: {last[0]}"))
        return out
