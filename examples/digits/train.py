"""Train a small CNN on scikit-learn's bundled digits with spotrun checkpoints.

    python examples/digits/train.py --epochs 20          # resumes from SPOTRUN_CHECKPOINT_DIR

Kill it at any instant (SIGTERM saves and exits 0; SIGKILL loses at most the steps since the
last checkpoint) and start it again: it carries on from the newest valid checkpoint, and on
CPU the final model is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import logging
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

import spotrun


class DigitsCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits (images 8x8, labels), as ``sklearn.datasets.load_digits``
    returns them, read straight from its data file: importing scikit-learn (and scipy) would
    cost 1.5-2 s of CPU at every start, i.e. at every resume after a preemption."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    origin = spec.origin if spec is not None else None
    path = Path(origin).parent / "datasets" / "data" / "digits.csv.gz" if origin else None
    if path is None or not path.is_file():  # another layout: let scikit-learn find it
        from sklearn.datasets import load_digits as sklearn_digits

        digits = sklearn_digits()
        return digits.images, digits.target
    with gzip.open(path, "rt", encoding="utf-8") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def datasets() -> tuple[TensorDataset, TensorDataset]:
    pixels, targets = load_digits()
    images = torch.tensor(pixels, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(targets, dtype=torch.int64)
    split = int(0.8 * len(labels))
    return (
        TensorDataset(images[:split], labels[:split]),
        TensorDataset(images[split:], labels[split:]),
    )


def evaluate(model: nn.Module, data: TensorDataset, device: torch.device) -> float:
    model.eval()
    with torch.no_grad():
        images, labels = data.tensors
        accuracy = (model(images.to(device)).argmax(1) == labels.to(device)).float().mean()
    model.train()
    return float(accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1 is fastest here)")
    parser.add_argument("--save-every", type=int, default=25, help="checkpoint every N steps")
    parser.add_argument("--log-every", type=int, default=10, help="log the loss every N steps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    device = spotrun.device()

    train, test = datasets()
    model = DigitsCNN().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    loader = spotrun.ResumableLoader(train, args.batch_size, shuffle=True, seed=args.seed)

    with spotrun.Checkpointer(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        loader=loader,
        interval_steps=args.save_every,
        keep=3,
        keep_best=spotrun.KeepBest("accuracy", "max"),
    ) as ckpt:
        ckpt.restore()
        for epoch in loader.epochs(args.epochs):
            for images, labels in loader:
                with torch.autocast(device.type, enabled=device.type == "cuda"):
                    loss = nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                value = loss.item()
                ckpt.step(metrics={"loss": value})
                if ckpt.global_step % args.log_every == 0:
                    logging.info("step %d: loss %.4f", ckpt.global_step, value)
            scheduler.step()
            accuracy = evaluate(model, test, device)
            ckpt.record(accuracy=accuracy)
            logging.info("epoch %d: step %d, test accuracy %.3f", epoch, ckpt.global_step, accuracy)


if __name__ == "__main__":
    main()
