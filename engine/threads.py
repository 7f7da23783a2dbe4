"""Thread counts of a trial: torch, numba (FFCV's JIT), BLAS and OpenMP all follow the trial's CPUs.

Each of these libraries defaults to every core of the node. Two trials of one CPU each on a
two-core node would then run four compute pools on two cores, and a trial of 8 CPUs on a 64-core
node would use 64. `set_trial_threads(cpus)` caps them all at the trial's share.

FFCV's loader sets torch's and numba's thread counts to its `num_workers` on every epoch
(`ffcv.pipeline.compiler.Compiler.set_num_threads`), so the loaders of a trial must be built with
`num_workers == cpus` (the engine always does) or they undo this.

Needs neither Ray nor FFCV.
"""
from __future__ import annotations

import os

import torch

# Read by OpenMP, MKL, OpenBLAS and numexpr when a process starts: what a subprocess of the trial
# (FFCV's writer pool, a DataLoader worker) inherits.
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def set_trial_threads(cpus: int) -> dict[str, int]:
    """Cap every compute thread pool of this process (and its future subprocesses) at `cpus`.

    Returns what each pool was set to, for the trial's provenance.
    """
    cpus = max(1, int(cpus))
    for name in THREAD_ENV:
        os.environ[name] = str(cpus)
    torch.set_num_threads(cpus)
    applied = {"torch": torch.get_num_threads()}
    try:
        import numba
    except ImportError:  # numba comes with FFCV; the GPU benchmark runs without it
        pass
    else:
        applied["numba"] = min(cpus, numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(applied["numba"])
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # comes with scikit-learn; without it only the environment caps BLAS
        pass
    else:
        threadpool_limits(cpus)  # BLAS and OpenMP libraries already loaded (numpy's OpenBLAS, MKL)
        applied["blas"] = cpus
    return applied
