"""A data loader whose position inside the epoch is part of the checkpoint.

``ResumableLoader`` wraps ``torch.utils.data.DataLoader``. The order of epoch ``e`` depends only
on ``(seed, e)``, and the loader counts the batches the training loop has taken, so a resumed
epoch continues with the next unseen batch: nothing is replayed, nothing skipped.

Under torch.distributed each step takes one *global* batch of ``batch_size x world_size``
samples of the epoch's order, and rank r trains on its r-th slice of it (``batch_size`` is
per rank, as with DistributedSampler). The saved position counts the epoch's samples taken by
the whole gang, so a resume at another world size continues at the same sample of the order:
no sample of the epoch is skipped or seen twice. The last global batch of an epoch may be
shorter; it is split as evenly as possible (sizes differ by at most one), and must hold at
least one sample per rank (else ``drop_last=True``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def epoch_order(length: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """The sample order of one epoch: a pure function of (length, seed, epoch)."""
    if not shuffle:
        return list(range(length))
    generator = torch.Generator()
    generator.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(length, generator=generator).tolist()


def batches(order: list[int], batch_size: int, drop_last: bool) -> list[list[int]]:
    out = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and out and len(out[-1]) < batch_size:
        out.pop()
    return out


def rank_slice(chunk: list[int], world_size: int, rank: int) -> list[int]:
    """Rank ``rank``'s contiguous share of one global batch: ``batch_size`` each for a full
    one, sizes differing by at most one for a short last one (pure)."""
    base, extra = divmod(len(chunk), world_size)
    start = rank * base + min(rank, extra)
    return chunk[start : start + base + (1 if rank < extra else 0)]


def rank_batches(
    order: list[int], position: int, batch_size: int, world_size: int, rank: int, drop_last: bool
) -> list[tuple[list[int], int]]:
    """From global ``position`` on: (this rank's batch, its global batch's size) per step.

    ValueError when the epoch's short last global batch holds fewer samples than ranks (a rank
    would get an empty batch and DDP would hang)."""
    rest = order[position:]
    size = batch_size * world_size
    out = []
    for start in range(0, len(rest), size):
        chunk = rest[start : start + size]
        if len(chunk) < size and drop_last:
            break
        if len(chunk) < world_size:
            raise ValueError(
                f"the epoch's last global batch holds {len(chunk)} samples for {world_size} "
                f"ranks (from position {position + start} of {len(order)}); pass drop_last=True "
                "to ResumableLoader, or a batch size that leaves one sample per rank"
            )
        out.append((rank_slice(chunk, world_size, rank), len(chunk)))
    return out


def _world() -> tuple[int, int]:
    """(world size, rank) of torch.distributed, (1, 0) without it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class _BatchesFrom(Sampler[list[int]]):
    def __init__(self, owner: ResumableLoader) -> None:
        self._owner = owner

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._owner.remaining_batches())

    def __len__(self) -> int:
        return len(self._owner.remaining_batches())


class ResumableLoader:
    """Iterate the rest of the current epoch; ``state_dict`` records (epoch, batches taken).

    Extra keyword arguments go to DataLoader (``num_workers``, ``collate_fn``, ...).
    """

    def __init__(
        self,
        dataset: Dataset[Any],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        **loader_kwargs: Any,
    ) -> None:
        if not isinstance(dataset, Sized):
            raise TypeError("ResumableLoader needs a dataset with __len__ (a map-style dataset)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.batches_taken = 0  # global batches (steps) taken in this epoch
        self.position = 0  # samples of this epoch's order the whole gang has taken
        self._sizes: list[int] = []  # each remaining global batch's size (see ``__iter__``)
        self.iterating = False  # inside an epoch: it holds the position (see ``positions``)
        # DataLoader draws a base seed for its workers from a generator at every iter();
        # from the global one that draw would shift the training RNG on resume mid-epoch.
        self._generator = loader_kwargs.pop("generator", None) or torch.Generator()
        self._loader: DataLoader[Any] = DataLoader(
            dataset, batch_sampler=_BatchesFrom(self), generator=self._generator, **loader_kwargs
        )

    def _plan(self) -> list[tuple[list[int], int]]:
        order = epoch_order(len(self.dataset), self.seed, self.epoch, self.shuffle)
        world_size, rank = _world()
        return rank_batches(order, self.position, self.batch_size, world_size, rank, self.drop_last)

    def remaining_batches(self) -> list[list[int]]:
        """This rank's batches of the rest of the epoch."""
        return [mine for mine, _ in self._plan()]

    def __len__(self) -> int:
        """Steps (global batches) in a whole epoch."""
        full, rest = divmod(len(self.dataset), self.batch_size * _world()[0])
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[Any]:
        self._generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        self._sizes = [size for _, size in self._plan()]
        self.iterating = True
        try:
            for taken, batch in enumerate(self._loader):
                self.batches_taken += 1
                self.position += self._sizes[taken]
                yield batch
        finally:
            self.iterating = False
        self.epoch += 1
        self.batches_taken = self.position = 0

    def epochs(self, total: int) -> Iterator[int]:
        """``for epoch in loader.epochs(n)``: from the restored epoch up to ``n - 1``.

        When the body returns without exhausting the loader (a ``break``), the rest of that
        epoch is skipped and the next one starts.
        """
        while self.epoch < total:
            current = self.epoch
            yield current
            if self.epoch == current:
                self.epoch, self.batches_taken, self.position = current + 1, 0, 0

    def state_dict(self) -> dict[str, int]:
        """``position`` is global (samples the whole gang took this epoch); ``batches_taken``
        counts steps, for people reading a checkpoint."""
        return {
            "epoch": self.epoch,
            "batches_taken": self.batches_taken,
            "seed": self.seed,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint's loader used seed {state['seed']}, this one seed {self.seed}: "
                "pass the same seed to ResumableLoader to resume the same sample order"
            )
        self.epoch = int(state["epoch"])
        self.batches_taken = int(state["batches_taken"])
        # a checkpoint of an earlier spotrun counted single-process batches only
        position = int(state.get("position", self.batches_taken * self.batch_size))
        if not 0 <= position <= len(self.dataset):
            raise ValueError(
                f"the checkpoint's loader position {position} is outside this dataset of "
                f"{len(self.dataset)} samples: resume with the dataset that wrote it"
            )
        self.position = position
