"""Data-parallel mask learning on ``torch.distributed`` (TinySR §A.3 runs its search on 8 GPUs).

The search is written so that N processes with a global batch of B do *exactly* what one process with
batch B does, up to the order of floating-point sums:

- every rank reads the same global batch and keeps its own contiguous shard of ``B / N`` samples
  (:meth:`DataParallel.shard`): the global batch is split, never repeated;
- every rank draws the Gumbel noise of the *whole* global batch from the same seeded generator and keeps
  the rows of its shard, so each sample gets the mask it would get in one process and no two ranks
  draw the same sample's noise;
- each rank's loss is the mean over its shard; gradients of the weights / LoRA and of every gate are
  averaged over ranks (``all_reduce``), so every rank applies the same update and all ranks hold
  identical gates after every step (checked with :meth:`DataParallel.same_on_all_ranks`);
- the NaN guard's decision and the logged loss are reduced too, so ranks never diverge on a skipped step.

nccl on GPU, gloo on CPU; only rank 0 writes files. ``torchrun --nproc-per-node N -m pruneseek search …``
sets the environment this reads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch

from pruneseek.errors import EngineError


@dataclass(frozen=True)
class DataParallel:
    """Rank and world size of an initialised process group (``world == 1`` is a plain single process)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def current(cls) -> "DataParallel":
        """The process group's rank/world if one is initialised, else a single process."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    # ------------------------------------------------------------------------------------------ data
    def shard_rows(self, total: int) -> slice:
        """The rows of a global batch of ``total`` samples this rank owns."""
        if total % self.world:
            raise EngineError(
                f"the global batch of {total} samples does not split over {self.world} processes; "
                f"use a batch size divisible by {self.world}"
            )
        per = total // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def shard(self, batch: Any, total: int) -> Any:
        """This rank's shard of every tensor (leading dim ``total``) in a tensor / mapping / sequence batch."""
        if not self.active:
            return batch
        rows = self.shard_rows(total)

        def cut(x):
            if isinstance(x, torch.Tensor):
                return x[rows] if x.dim() and x.shape[0] == total else x
            if isinstance(x, Mapping):
                return type(x)((k, cut(v)) for k, v in x.items())
            if isinstance(x, (list, tuple)):
                return type(x)(cut(v) for v in x)
            return x

        return cut(batch)

    # ----------------------------------------------------------------------------------- reductions
    def average_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Mean of each gradient over ranks, as one process with the whole global batch would have it.

        A parameter with no gradient on any rank keeps none (the optimiser skips it, as in one process);
        one with a gradient on some ranks only (e.g. LoRA of a block those ranks' masks skipped) counts
        zero on the others. One flat ``all_reduce`` for all gradients.
        """
        if not self.active:
            return
        import torch.distributed as dist

        params = list(params)
        if not params:
            return
        device = params[0].device
        present = torch.tensor([float(p.grad is not None) for p in params], device=device)
        dist.all_reduce(present, op=dist.ReduceOp.MAX)
        used = [p for p, flag in zip(params, present.tolist()) if flag > 0]
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if not used:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in used])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(self.world)
        offset = 0
        for p in used:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n

    def mean(self, value: float, device) -> float:
        """Mean of a Python float over ranks (the logged loss)."""
        if not self.active:
            return value
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world

    def all_true(self, flag: bool, device) -> bool:
        """True only if ``flag`` holds on every rank (the NaN guard must decide the same everywhere)."""
        if not self.active:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item() > 0.5)

    def same_on_all_ranks(self, tensors: Iterable[torch.Tensor]) -> bool:
        """Whether these tensors are bit-identical on every rank (compares rank 0's copy)."""
        if not self.active:
            return True
        import torch.distributed as dist

        ok, device = True, "cpu"
        for t in tensors:
            ref = t.detach().clone()
            dist.broadcast(ref, src=0)
            ok = ok and bool(torch.equal(ref, t.detach()))
            device = t.device
        return self.all_true(ok, device)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()


def init_from_env(device: str = "cpu") -> DataParallel:
    """Initialise the process group from torchrun's environment (``WORLD_SIZE`` > 1), else a single process.

    gloo for CPU, nccl for CUDA; on CUDA each rank takes ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DataParallel()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return DataParallel.current()


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
