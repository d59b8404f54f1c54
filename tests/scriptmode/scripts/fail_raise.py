import sys


def load_data(path):
    raise ValueError(f"no images under {path}")


print("loading data")
print("warming up", file=sys.stderr)
load_data("/data/train")
