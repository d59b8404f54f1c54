"""A SageMaker-style PyTorch training script (the dog-breed project's shape) on sklearn digits arrays.

Reads train.npz / test.npz from the channels, trains a small MLP, prints the metric lines a tuning job's
regexes read, and saves model.pth into SM_MODEL_DIR, exactly as it would on SageMaker.
"""

import argparse
import logging
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)
logger.setLevel(logging.DEBUG)
logger.addHandler(logging.StreamHandler(sys.stdout))


class Net(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def load(channel, name):
    arrays = np.load(os.path.join(channel, name))
    return torch.tensor(arrays["x"], dtype=torch.float32) / 16.0, torch.tensor(arrays["y"], dtype=torch.long)


def train(model, x, y, optimizer, batch_size, epoch):
    model.train()
    order = torch.randperm(len(x))
    for batch, start in enumerate(range(0, len(x), batch_size)):
        idx = order[start : start + batch_size]
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        if batch % 10 == 0:
            logger.info(f"Train Epoch: {epoch} [{start}/{len(x)}]\tLoss: {loss.item():.6f}")


def test(model, x, y):
    model.eval()
    with torch.no_grad():
        output = model(x)
        loss = F.cross_entropy(output, y).item()
        correct = (output.argmax(1) == y).sum().item()
    percent = 100.0 * correct / len(x)
    logger.info(f"Test set: Average loss: {loss:.4f}, Accuracy: {correct}/{len(x)} ({percent:.0f}%)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning_rate", type=float, default=0.01)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--model-dir", type=str, default=os.environ["SM_MODEL_DIR"])
    parser.add_argument("--data-dir", type=str, default=os.environ["SM_CHANNEL_TRAINING"])
    parser.add_argument("--test", type=str, default=os.environ.get("SM_CHANNEL_TEST"))
    args = parser.parse_args()
    torch.manual_seed(0)
    x_train, y_train = load(args.data_dir, "train.npz")
    x_test, y_test = load(args.test or args.data_dir, "test.npz")
    model = Net(args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    for epoch in range(1, args.epochs + 1):
        train(model, x_train, y_train, optimizer, args.batch_size, epoch)
        test(model, x_test, y_test)
    torch.save(model.state_dict(), os.path.join(args.model_dir, "model.pth"))


if __name__ == "__main__":
    main()
