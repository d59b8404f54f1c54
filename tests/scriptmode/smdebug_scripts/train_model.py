"""A training script in the shape of the dog-breed project's train_model.py, written for SageMaker + smdebug.

Arguments default to SM_* variables; the hook comes from the debughookconfig.json SageMaker (here Vizsla)
writes; every batch loss is printed as "TRAIN <step> loss=<value>" / "EVAL <step> loss=<value>" so a test can
compare the values the hook recorded. The data are tiny random images whose class sets the mean brightness.
"""

import argparse
import os

import smdebug.pytorch as smd
import torch
import torch.nn as nn
import torch.optim as optim
from smdebug import modes
from smdebug.profiler.utils import str2bool


class Net(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc1(self.pool(self.relu(self.conv1(x))).flatten(1))


def make_data(n, generator):
    labels = torch.randint(0, 3, (n,), generator=generator)
    images = torch.randn(n, 3, 8, 8, generator=generator) * 0.5 + labels.view(-1, 1, 1, 1).float()
    return images, labels


def train(model, data, criterion, optimizer, hook, batch_size):
    model.train()
    if hook:
        hook.set_mode(smd.modes.TRAIN)
    images, labels = data
    for i in range(0, len(images), batch_size):
        optimizer.zero_grad()
        loss = criterion(model(images[i : i + batch_size]), labels[i : i + batch_size])
        loss.backward()
        optimizer.step()
        print(f"TRAIN loss={loss.item():.6f}", flush=True)


def test(model, data, criterion, hook, batch_size):
    model.eval()
    if hook:
        hook.set_mode(modes.EVAL)
    images, labels = data
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            loss = criterion(model(images[i : i + batch_size]), labels[i : i + batch_size])
            print(f"EVAL loss={loss.item():.6f}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--freeze", type=str2bool, default=False)
    parser.add_argument("--wrong-calls", type=str2bool, default=False)
    parser.add_argument("--hook", choices=["json", "get_hook"], default="json")
    parser.add_argument("--set-mode", type=str2bool, default=True)  # false: every step stays GLOBAL
    parser.add_argument("--model-dir", type=str, default=os.environ.get("SM_MODEL_DIR", "model"))
    args = parser.parse_args()

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    train_data, test_data = make_data(160, generator), make_data(48, generator)
    model = Net()
    if args.freeze:
        for param in model.parameters():
            param.requires_grad = False
        model.fc1.bias.requires_grad = True  # the optimizer needs something; the loss cannot fall much
        with torch.no_grad():
            model.fc1.bias.zero_()
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD([p for p in model.parameters() if p.requires_grad], lr=args.lr, momentum=0.9)

    if args.hook == "json":
        hook = smd.Hook.create_from_json_file()
    else:
        hook = smd.get_hook(create_if_not_exists=True)
    if hook:
        hook.register_hook(model)
        hook.register_loss(criterion)
    if args.wrong_calls:
        hook.record_tensor_value(1, 2, 3, 4)
        hook.save_tensor("x", "not a tensor")
        hook.record_tensor_value("mse_loss", torch.tensor(0.5))  # disabled after the wrong call: not saved

    mode_hook = hook if args.set_mode else None
    for _ in range(args.epochs):
        train(model, train_data, criterion, optimizer, mode_hook, args.batch_size)
        test(model, test_data, criterion, mode_hook, args.batch_size)
    if hook:
        hook.save_scalar("final_lr", args.lr)

    os.makedirs(args.model_dir, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(args.model_dir, "model.pth"))


if __name__ == "__main__":
    main()
