"""Where a round's architectures are trained: this process, or a Ray cluster.

A trainer is `train(archs int32 (n, *enc), keys (n, 2) uint32) -> [(ArchResult, extra JSONL fields)]`,
in the order of `archs`, with architecture i trained from `keys[i]` alone, so its bits do not depend on
where it ran (given the same device and thread layout, which `worker_layout` records). `local_trainer`
trains in this process; `nasjax.distributed.ray_cluster.ray_trainer` (imported on its own: it imports
Ray) on a cluster's workers. nasjax.search never imports this layer: experiments/ wire it to the search.
"""

from nasjax.distributed.trainer import Trainer, WorkersLostError, local_trainer, worker_layout

__all__ = ["Trainer", "WorkersLostError", "local_trainer", "worker_layout"]
