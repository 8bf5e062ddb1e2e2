"""The time_sequence_prediction-style sine waves (original.py) adapted to spotrun: the L-BFGS
optimizer's history (directions, steps, counters) is checkpointed with the model, and
ckpt.range resumes the loop of optimizer steps; no data loader is involved.
"""

import argparse
import random

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim

import spotrun


def generate_sine_waves(T=20, L=40, N=12):
    # N waves of L samples, each shifted by a random phase; period 2 * pi * T.
    x = np.empty((N, L), np.int64)
    x[:] = np.array(range(L)) + np.random.randint(-4 * T, 4 * T, N).reshape(N, 1)
    return np.sin(x / 1.0 / T).astype(np.float64)


class Sequence(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.hidden = hidden
        self.lstm1 = nn.LSTMCell(1, hidden)
        self.lstm2 = nn.LSTMCell(hidden, hidden)
        self.linear = nn.Linear(hidden, 1)

    def forward(self, input, future=0):
        outputs = []
        h_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        c_t = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        h_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)
        c_t2 = torch.zeros(input.size(0), self.hidden, dtype=torch.double)

        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):  # if we should predict the future
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


def draw(y, i, input_len, future):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.figure(figsize=(30, 10))
    plt.title("Predict future values for time sequences\n(Dashlines are predicted values)")
    for row, color in zip(y, ["r", "g", "b"], strict=True):
        plt.plot(np.arange(input_len), row[:input_len], color, linewidth=2.0)
        plt.plot(np.arange(input_len, input_len + future), row[input_len:], color + ":")
    plt.savefig(f"predict{i}.pdf")
    plt.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12, help="steps to run")
    parser.add_argument("--future", type=int, default=20, help="samples to predict")
    parser.add_argument("--plot", action="store_true", help="draw predict<step>.pdf")
    opt = parser.parse_args()
    # set random seed to 0
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    # load data and make training set
    data = generate_sine_waves()
    input = torch.from_numpy(data[3:, :-1])
    target = torch.from_numpy(data[3:, 1:])
    test_input = torch.from_numpy(data[:3, :-1])
    test_target = torch.from_numpy(data[:3, 1:])
    # build the model
    seq = Sequence()
    seq.double()
    criterion = nn.MSELoss()
    # use LBFGS as optimizer since we can load the whole data to train
    optimizer = optim.LBFGS(seq.parameters(), lr=0.8, max_iter=5)
    ckpt = spotrun.Checkpointer(model=seq, optimizer=optimizer, interval_steps=1)
    ckpt.restore()
    # begin to train
    for i in ckpt.range(opt.steps):
        print("STEP: ", i)

        def closure():
            optimizer.zero_grad()
            out = seq(input)
            loss = criterion(out, target)
            print("loss:", loss.item())
            loss.backward()
            return loss

        optimizer.step(closure)
        # begin to predict, no need to track gradient here
        with torch.no_grad():
            pred = seq(test_input, future=opt.future)
            loss = criterion(pred[:, : -opt.future], test_target)
            print("test loss:", loss.item())
            y = pred.detach().numpy()
        if opt.plot:
            draw(y, i, input.size(1), opt.future)
        ckpt.step()
    ckpt.close()
