"""The word_language_model-style LSTM (original.py) adapted to spotrun in a few lines:
ckpt.state keeps the hidden state carried across batches, lr and best_val_loss; ckpt.range
resumes the hand-written epoch and batch loops; ckpt.updating() guards the SGD update.
"""

import argparse
import math
import random
import time

import numpy as np
import torch
import torch.nn as nn

import spotrun

parser = argparse.ArgumentParser(description="LSTM language model on a generated corpus")
parser.add_argument("--emsize", type=int, default=32, help="size of word embeddings")
parser.add_argument("--nhid", type=int, default=32, help="number of hidden units per layer")
parser.add_argument("--nlayers", type=int, default=2, help="number of layers")
parser.add_argument("--lr", type=float, default=20, help="initial learning rate")
parser.add_argument("--clip", type=float, default=0.25, help="gradient clipping")
parser.add_argument("--epochs", type=int, default=8, help="upper epoch limit")
parser.add_argument("--batch_size", type=int, default=16, help="batch size")
parser.add_argument("--bptt", type=int, default=20, help="sequence length")
parser.add_argument("--dropout", type=float, default=0.2, help="dropout applied to layers")
parser.add_argument("--sentences", type=int, default=600, help="training sentences to generate")
parser.add_argument("--seed", type=int, default=1111, help="random seed")
parser.add_argument("--log-interval", type=int, default=10, help="report interval")
parser.add_argument("--save", type=str, default="model.pt", help="where to save the best model")
args = parser.parse_args()

np.random.seed(args.seed)
torch.manual_seed(args.seed)
torch.set_num_threads(1)
device = torch.device("cpu")

###############################################################################
# Load data
###############################################################################

SUBJECTS = ["the cat", "a dog", "the old man", "my sister", "the children", "a small bird"]
VERBS = ["sees", "likes", "chases", "finds", "watches", "hears", "follows"]
OBJECTS = ["the ball", "a tree", "the river", "the house", "an apple", "the moon", "the road"]
ENDINGS = ["today", "at night", "again", "in the garden", "every morning", "slowly", ""]


def generate_text(sentences, seed):
    """Sentences from a small grammar: the same text for the same seed."""
    random.seed(seed)
    lines = []
    for _ in range(sentences):
        words = [random.choice(w) for w in (SUBJECTS, VERBS, OBJECTS, ENDINGS)]
        lines.append(" ".join(w for w in words if w) + " .")
    return lines


class Dictionary:
    def __init__(self):
        self.word2idx = {}
        self.idx2word = []

    def add_word(self, word):
        if word not in self.word2idx:
            self.idx2word.append(word)
            self.word2idx[word] = len(self.idx2word) - 1
        return self.word2idx[word]

    def __len__(self):
        return len(self.idx2word)


class Corpus:
    def __init__(self, sentences):
        self.dictionary = Dictionary()
        self.train = self.tokenize(generate_text(sentences, seed=1))
        self.valid = self.tokenize(generate_text(sentences // 10, seed=2))
        self.test = self.tokenize(generate_text(sentences // 10, seed=3))

    def tokenize(self, lines):
        ids = []
        for line in lines:
            for word in line.split() + ["<eos>"]:
                ids.append(self.dictionary.add_word(word))
        return torch.tensor(ids, dtype=torch.int64)


corpus = Corpus(args.sentences)


def batchify(data, bsz):
    # Work out how cleanly we can divide the dataset into bsz parts, trim off the remainder
    # and lay the parts out as columns.
    nbatch = data.size(0) // bsz
    data = data.narrow(0, 0, nbatch * bsz)
    return data.view(bsz, -1).t().contiguous().to(device)


eval_batch_size = 10
train_data = batchify(corpus.train, args.batch_size)
val_data = batchify(corpus.valid, eval_batch_size)
test_data = batchify(corpus.test, eval_batch_size)

###############################################################################
# Build the model
###############################################################################


class RNNModel(nn.Module):
    """Container module with an encoder, a recurrent module, and a decoder."""

    def __init__(self, ntoken, ninp, nhid, nlayers, dropout=0.5):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nhid = nhid
        self.nlayers = nlayers
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.decoder.out_features)
        return nn.functional.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (
            weight.new_zeros(self.nlayers, bsz, self.nhid),
            weight.new_zeros(self.nlayers, bsz, self.nhid),
        )


ntokens = len(corpus.dictionary)
model = RNNModel(ntokens, args.emsize, args.nhid, args.nlayers, args.dropout).to(device)
criterion = nn.NLLLoss()
ckpt = spotrun.Checkpointer(model=model, interval_steps=10, on_interrupt="raise")

###############################################################################
# Training code
###############################################################################


def repackage_hidden(h):
    """Wraps hidden states in new Tensors, to detach them from their history."""
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


def get_batch(source, i):
    # Rows i..i+bptt are the input; the same rows shifted by one word are the target.
    seq_len = min(args.bptt, len(source) - 1 - i)
    data = source[i : i + seq_len]
    target = source[i + 1 : i + 1 + seq_len].view(-1)
    return data, target


def evaluate(data_source):
    model.eval()
    total_loss = 0.0
    hidden = model.init_hidden(eval_batch_size)
    with torch.no_grad():
        for i in range(0, data_source.size(0) - 1, args.bptt):
            data, targets = get_batch(data_source, i)
            output, hidden = model(data, hidden)
            hidden = repackage_hidden(hidden)
            total_loss += len(data) * criterion(output, targets).item()
    return total_loss / (len(data_source) - 1)


def train():
    model.train()
    total_loss = 0.0
    start_time = time.time()
    hidden = ckpt.state.get("hidden") or model.init_hidden(args.batch_size)
    for batch, i in enumerate(ckpt.range(0, train_data.size(0) - 1, args.bptt)):
        data, targets = get_batch(train_data, i)
        # Starting each batch, we detach the hidden state from how it was previously produced.
        hidden = repackage_hidden(hidden)
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        # `clip_grad_norm` helps prevent the exploding gradient problem in RNNs.
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        with torch.no_grad(), ckpt.updating():
            for p in model.parameters():
                p.add_(p.grad, alpha=-lr)
        ckpt.state.hidden = hidden
        ckpt.step()

        total_loss += loss.item()
        if batch % args.log_interval == 0 and batch > 0:
            cur_loss = total_loss / args.log_interval
            elapsed = time.time() - start_time
            print(
                f"| epoch {epoch:3d} | {batch:5d}/{len(train_data) // args.bptt:5d} batches "
                f"| lr {lr:02.2f} | ms/batch {elapsed * 1000 / args.log_interval:5.2f} "
                f"| loss {cur_loss:5.2f} | ppl {math.exp(cur_loss):8.2f}"
            )
            total_loss = 0
            start_time = time.time()


# Loop over epochs.
ckpt.restore()
lr, best_val_loss = ckpt.state.get("lr", args.lr), ckpt.state.get("best_val_loss")

# At any point you can hit Ctrl + C to break out of training early.
try:
    for epoch in ckpt.range(1, args.epochs + 1):
        epoch_start_time = time.time()
        train()
        val_loss = evaluate(val_data)
        print("-" * 89)
        print(
            f"| end of epoch {epoch:3d} | time: {time.time() - epoch_start_time:5.2f}s "
            f"| valid loss {val_loss:5.2f} | valid ppl {math.exp(val_loss):8.2f}"
        )
        print("-" * 89)
        # Save the model if the validation loss is the best we've seen so far.
        if not best_val_loss or val_loss < best_val_loss:
            with open(args.save, "wb") as f:
                torch.save(model.state_dict(), f)
            best_val_loss = val_loss
        else:
            # Anneal the learning rate if no improvement has been seen in the validation dataset.
            lr /= 4.0
        ckpt.state.update(lr=lr, best_val_loss=best_val_loss, hidden=None)
except KeyboardInterrupt:
    print("-" * 89)
    print("Exiting from training early")
ckpt.close()

# Load the best saved model.
with open(args.save, "rb") as f:
    model.load_state_dict(torch.load(f))

# Run on test data.
test_loss = evaluate(test_data)
print("=" * 89)
print(f"| End of training | test loss {test_loss:5.2f} | test ppl {math.exp(test_loss):8.2f}")
print("=" * 89)
