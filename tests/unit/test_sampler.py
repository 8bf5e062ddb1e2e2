import pytest
import torch
from torch.utils.data import TensorDataset

from spotrun import ResumableLoader
from spotrun.sampler import epoch_order

pytestmark = pytest.mark.unit

DATA = TensorDataset(torch.arange(23))


def _ids(batch: list[torch.Tensor]) -> list[int]:
    return batch[0].tolist()


def test_resumed_epoch_neither_replays_nor_skips_samples() -> None:
    full = ResumableLoader(DATA, 4, seed=5)
    reference = [_ids(b) for b in full]
    first = ResumableLoader(DATA, 4, seed=5)
    taken = []
    for batch in first:
        taken.append(_ids(batch))
        if len(taken) == 3:
            break
    resumed = ResumableLoader(DATA, 4, seed=5)
    resumed.load_state_dict(first.state_dict())
    taken += [_ids(b) for b in resumed]
    assert taken == reference
    assert sorted(i for b in taken for i in b) == list(range(23))
    assert resumed.epoch == 1 and resumed.batches_taken == 0


def test_each_epoch_has_its_own_order_and_epochs_counts_from_restored() -> None:
    assert epoch_order(23, 5, 0, True) != epoch_order(23, 5, 1, True)
    assert epoch_order(23, 5, 1, True) == epoch_order(23, 5, 1, True)
    loader = ResumableLoader(DATA, 4, seed=5)
    loader.load_state_dict({"epoch": 2, "batches_taken": 0, "seed": 5})
    seen = []
    for epoch in loader.epochs(4):
        seen.append((epoch, len(list(loader))))
    assert seen == [(2, 6), (3, 6)]
    partial = []
    for epoch in loader.epochs(6):
        for i, _ in enumerate(loader):  # a body that stops early moves on to the next epoch
            if i == 1:
                break
        partial.append(epoch)
    assert partial == [4, 5] and loader.epoch == 6


def test_a_different_seed_is_refused_with_the_fix() -> None:
    loader = ResumableLoader(DATA, 4, seed=1)
    with pytest.raises(ValueError, match="pass the same seed"):
        loader.load_state_dict({"epoch": 0, "batches_taken": 1, "seed": 2})


def test_iterating_does_not_consume_the_global_torch_rng() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    list(ResumableLoader(DATA, 4, seed=1))
    assert torch.equal(before, torch.get_rng_state())
