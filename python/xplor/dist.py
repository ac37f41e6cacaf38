"""Statistics and rollout budgets over ranks, equal to one process (C++: xplor/dist/).

Every call is a collective: each rank passes its slice of the global batch (rank 0's first) and a
communicator, and gets back its slice of exactly what one process computes for the whole batch.

A communicator is any object with ``rank`` and ``size`` (ints) and
``all_gather_bytes(data: bytes) -> list[bytes]`` (every rank's data in rank order):
TorchCommunicator wraps torch.distributed; with mpi4py, ``comm.allgather`` is the gather.

    comm = xplor.dist.TorchCommunicator()               # after torch.distributed.init_process_group
    counts = xplor.dist.allocate_rollouts(comm, my_p_hat, total_budget=8 * global_prompts)
    adv, report = xplor.dist.advantages(comm, my_rewards, offsets=my_group_offsets)
"""
from ._xplor import _dist_advantages as advantages
from ._xplor import _dist_allocate_rollouts as allocate_rollouts


class SingleProcess:
    """The one-rank communicator."""

    rank = 0
    size = 1

    def all_gather_bytes(self, data):
        return [bytes(data)]


class TorchCommunicator:
    """The communicator over torch.distributed (any backend; the gather uses all_gather_object)."""

    def __init__(self, group=None):
        import torch.distributed as torch_dist

        if not torch_dist.is_initialized():
            raise ValueError("xplor.dist.TorchCommunicator: torch.distributed is not initialised "
                             "(call torch.distributed.init_process_group first)")
        self._dist = torch_dist
        self._group = group
        self.rank = torch_dist.get_rank(group)
        self.size = torch_dist.get_world_size(group)

    def all_gather_bytes(self, data):
        out = [None] * self.size
        self._dist.all_gather_object(out, bytes(data), group=self._group)
        return out


__all__ = ["SingleProcess", "TorchCommunicator", "advantages", "allocate_rollouts"]
