"""hpo.py as the dog-breed project writes it for SageMaker: SM_* channels in, test loss printed, weights out.

Run by examples/notebook_dog_breeds.py through the SageMaker-shaped API; nothing here knows about Vizsla.
"""

import argparse
import json
import logging
import os
import sys

import torch
import torch.nn as nn
import torch.optim as optim
from net import Net
from torchvision import datasets, transforms

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)
logger.addHandler(logging.StreamHandler(sys.stdout))


def test(model, test_loader, criterion):
    model.eval()
    test_loss, correct = 0.0, 0
    with torch.no_grad():
        for data, target in test_loader:
            output = model(data)
            test_loss += criterion(output, target).item() * data.size(0)
            correct += output.argmax(dim=1).eq(target).sum().item()
    total = len(test_loader.dataset)
    test_loss /= total
    accuracy = 100.0 * correct / total
    print(f"Test set: Average loss: {test_loss:.4f}, Accuracy: {correct}/{total} ({accuracy:.0f}%)")


def train(model, train_loader, criterion, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        optimizer.zero_grad()
        loss = criterion(model(data), target)
        loss.backward()
        optimizer.step()
        if batch_idx % 10 == 0:
            seen = batch_idx * len(data)
            logger.info(f"Train Epoch: {epoch} [{seen}/{len(train_loader.dataset)}]\tLoss: {loss.item():.6f}")


def create_data_loaders(data_dir, batch_size, shuffle):
    transform = transforms.Compose(
        [transforms.Resize((32, 32)), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    )
    dataset = datasets.ImageFolder(data_dir, transform=transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle), dataset.classes


def main(args):
    torch.manual_seed(args.seed)
    train_loader, classes = create_data_loaders(args.data_dir, args.batch_size, True)
    test_loader, _ = create_data_loaders(args.test_dir, args.test_batch_size, False)
    model = Net(num_classes=len(classes))
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(1, args.epochs + 1):
        train(model, train_loader, criterion, optimizer, epoch)
        test(model, test_loader, criterion)
    logger.info("Saving the model.")
    torch.save(model.state_dict(), os.path.join(args.model_dir, "model.pth"))
    with open(os.path.join(args.model_dir, "classes.json"), "w") as f:
        json.dump(classes, f)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64, metavar="N")
    parser.add_argument("--test-batch-size", type=int, default=256, metavar="N")
    parser.add_argument("--epochs", type=int, default=1, metavar="N")
    parser.add_argument("--lr", type=float, default=0.01, metavar="LR")
    parser.add_argument("--seed", type=int, default=1, metavar="S")
    parser.add_argument("--data-dir", type=str, default=os.environ["SM_CHANNEL_TRAINING"])
    parser.add_argument("--test-dir", type=str, default=os.environ["SM_CHANNEL_TEST"])
    parser.add_argument("--model-dir", type=str, default=os.environ["SM_MODEL_DIR"])
    main(parser.parse_args())
