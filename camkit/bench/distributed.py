"""The benchmark on several processes: joining ``torchrun``'s process group, hearing of a failed
peer between batches, and adding up every process's counts and records at the end."""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from camkit.bench.state import ShardState
from camkit.errors import InputError, RunError

__all__ = ["BenchError", "Group", "PeerFailed", "launched_by_torchrun", "setup_distributed", "combine"]

_FAILURES = "camkit_bench/failures"


class BenchError(RunError):
    """The benchmark could not finish (e.g. a process of a distributed run failed)."""


class PeerFailed(Exception):
    """Another process of the run reported a failure: stop and let it report."""


@dataclass
class Group:
    """This process's place in a (possibly distributed) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False
    owns_group: bool = False
    store: Any = None

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes the files."""
        return self.rank == 0

    def failed_peers(self) -> int:
        """How many processes reported a failure so far (0 when not distributed)."""
        if self.store is None:
            return 0
        try:
            return int(self.store.add(_FAILURES, 0))
        except Exception:
            return 0

    def report_failure(self) -> None:
        """Tell the other processes that this one failed (they stop at their next batch)."""
        if self.store is not None:
            try:
                self.store.add(_FAILURES, 1)
            except Exception:
                pass

    def close(self) -> None:
        """Leave the process group if this run created it."""
        if self.owns_group:
            dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    """True when ``torchrun``'s variables (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``) are set
    (also for one process: the same code path, collectives included)."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def setup_distributed(device: str | torch.device, timeout_s: float) -> tuple[Group, torch.device]:
    """Join the ``torchrun`` process group (gloo on CPU, NCCL on CUDA, with ``timeout_s``) and
    pick this process's device (``cuda:LOCAL_RANK``); a plain process gets ``Group()``."""
    device = torch.device(device)
    if dist.is_available() and dist.is_initialized():
        group = Group(dist.get_rank(), dist.get_world_size(),
                      int(os.environ.get("LOCAL_RANK", 0)), True, False, _default_store())
    elif launched_by_torchrun():
        if not dist.is_available():
            raise BenchError("torchrun launch detected but torch.distributed is not available")
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise InputError("--device cuda was asked for but CUDA is not available")
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        if backend == "nccl":
            dist.init_process_group(backend, timeout=timeout, device_id=device)
        else:
            dist.init_process_group(backend, timeout=timeout)
        group = Group(dist.get_rank(), dist.get_world_size(), local_rank, True, True,
                      _default_store())
    else:
        return Group(), device
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", group.local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return group, device


def _default_store() -> Any:
    try:
        from torch.distributed import distributed_c10d

        return distributed_c10d._get_default_store()
    except Exception:  # fail-fast between batches is a convenience; timeouts still apply
        return None


def combine(group: Group, total: ShardState | None, failure: str | None) -> ShardState:
    """All-reduce the counts and gather records and errors of every process (a no-op for one);
    raise :class:`BenchError` naming the failures when any process failed (``failure`` is this
    process's: ``None`` when it finished, ``total`` may then be ``None``)."""
    statuses: list[str | None] = [failure]
    if group.distributed:
        statuses = [None] * group.world_size
        dist.all_gather_object(statuses, failure)
    if any(status is not None for status in statuses) or total is None:
        reasons = [s for s in statuses if s] or ["a process stopped"]
        raise BenchError("distributed benchmark failed: " + "; ".join(reasons))
    if not group.distributed:
        return total
    counts = total.counts()
    if dist.get_backend() == "nccl":
        counts = counts.cuda()
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    total.load_counts(counts.cpu())
    gathered: list[Any] = [None] * group.world_size
    dist.all_gather_object(gathered, (total.records, total.errors))
    total.records = [r for records, _ in gathered for r in records]
    total.errors = [e for _, errors in gathered for e in errors]
    return total
