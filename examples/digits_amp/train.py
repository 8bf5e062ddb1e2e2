"""The mnist-style digits classifier with AMP (original.py) adapted to spotrun: the GradScaler
and the per-epoch StepLR are checkpointed at each step boundary with the model and optimizer;
a ResumableLoader continues the shuffled epoch mid-way, ckpt.range the epoch loop.
"""

import argparse
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from sklearn.datasets import load_digits
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset

import spotrun


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1)
        self.conv2 = nn.Conv2d(8, 16, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def train(args, model, device, train_loader, optimizer, scaler, epoch, ckpt):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            output = model(data)
            loss = F.nll_loss(output.float(), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        ckpt.step()
        if batch_idx % args.log_interval == 0:
            print(
                f"Train Epoch: {epoch} [{batch_idx * len(data)}/{len(train_loader.dataset)}]"
                f"\tLoss: {loss.item():.6f}\tscale: {scaler.get_scale():g}"
            )


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()

    test_loss /= len(test_loader.dataset)
    print(
        f"\nTest set: Average loss: {test_loss:.4f}, "
        f"Accuracy: {correct}/{len(test_loader.dataset)} "
        f"({100.0 * correct / len(test_loader.dataset):.0f}%)\n"
    )


def digits_datasets():
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.int64)
    split = int(0.8 * len(labels))
    train_set = TensorDataset(images[:split], labels[:split])
    test_set = TensorDataset(images[split:], labels[split:])
    return train_set, test_set


def main():
    parser = argparse.ArgumentParser(description="PyTorch digits example with AMP")
    parser.add_argument("--batch-size", type=int, default=64, help="input batch size")
    parser.add_argument("--test-batch-size", type=int, default=500, help="test batch size")
    parser.add_argument("--epochs", type=int, default=6, help="number of epochs to train")
    parser.add_argument("--lr", type=float, default=1.0, help="learning rate")
    parser.add_argument("--gamma", type=float, default=0.7, help="learning rate step gamma")
    parser.add_argument("--growth-interval", type=int, default=20, help="GradScaler growth")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument("--log-interval", type=int, default=10, help="batches between logs")
    parser.add_argument("--save-model", action="store_true", help="save the trained model")
    args = parser.parse_args()

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    device = torch.device("cpu")

    train_set, test_set = digits_datasets()
    train_loader = spotrun.ResumableLoader(train_set, args.batch_size, seed=args.seed)
    test_loader = DataLoader(test_set, batch_size=args.test_batch_size)

    model = Net().to(device)
    optimizer = optim.Adadelta(model.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, growth_interval=args.growth_interval)

    scheduler = StepLR(optimizer, step_size=1, gamma=args.gamma)
    ckpt = spotrun.Checkpointer(model=model, optimizer=optimizer, scheduler=scheduler,
                                scaler=scaler, loader=train_loader, interval_steps=10)
    ckpt.restore()
    for epoch in ckpt.range(1, args.epochs + 1):
        train(args, model, device, train_loader, optimizer, scaler, epoch, ckpt)
        test(model, device, test_loader)
        scheduler.step()
    ckpt.close()

    if args.save_model:
        torch.save(model.state_dict(), "digits_cnn.pt")


if __name__ == "__main__":
    main()
