"""Pure functions that build launch specs for a job; nothing here starts a process.

- ``local``: the command line and environment for a subprocess (torchrun when distributed);
- ``slurm``: the sbatch script (multi-node torchrun rendezvous from Slurm's environment, requeue);
- ``k8s``: the batch/v1 Job manifest (GPU limits, shared volume, secrets by reference).
"""
