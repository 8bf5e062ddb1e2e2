"""A data loader whose position inside the epoch is part of the checkpoint.

``ResumableLoader`` wraps ``torch.utils.data.DataLoader``. The order of epoch ``e`` depends only
on ``(seed, e)``, and the loader counts the batches the training loop has taken, so a resumed
epoch continues with the next unseen batch: nothing is replayed, nothing skipped.
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
        self.batches_taken = 0
        self.iterating = False  # inside an epoch: it holds the position (see ``positions``)
        # DataLoader draws a base seed for its workers from a generator at every iter();
        # from the global one that draw would shift the training RNG on resume mid-epoch.
        self._generator = loader_kwargs.pop("generator", None) or torch.Generator()
        self._loader: DataLoader[Any] = DataLoader(
            dataset, batch_sampler=_BatchesFrom(self), generator=self._generator, **loader_kwargs
        )

    def remaining_batches(self) -> list[list[int]]:
        order = epoch_order(len(self.dataset), self.seed, self.epoch, self.shuffle)
        return batches(order, self.batch_size, self.drop_last)[self.batches_taken :]

    def __len__(self) -> int:
        """Batches in a whole epoch."""
        order_len = len(self.dataset)
        full, rest = divmod(order_len, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[Any]:
        self._generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        self.iterating = True
        try:
            for batch in self._loader:
                self.batches_taken += 1
                yield batch
        finally:
            self.iterating = False
        self.epoch += 1
        self.batches_taken = 0

    def epochs(self, total: int) -> Iterator[int]:
        """``for epoch in loader.epochs(n)``: from the restored epoch up to ``n - 1``.

        When the body returns without exhausting the loader (a ``break``), the rest of that
        epoch is skipped and the next one starts.
        """
        while self.epoch < total:
            current = self.epoch
            yield current
            if self.epoch == current:
                self.epoch, self.batches_taken = current + 1, 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches_taken": self.batches_taken, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint's loader used seed {state['seed']}, this one seed {self.seed}: "
                "pass the same seed to ResumableLoader to resume the same sample order"
            )
        self.epoch = int(state["epoch"])
        self.batches_taken = int(state["batches_taken"])
