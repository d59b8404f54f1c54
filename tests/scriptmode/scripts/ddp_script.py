"""A script written for SageMaker's torch_distributed launcher: torchrun sets RANK, WORLD_SIZE, MASTER_*."""

import argparse
import json
import os

import torch
import torch.distributed as dist

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=1)
args = parser.parse_args()

dist.init_process_group("gloo")  # env:// from torchrun's variables
rank, world = dist.get_rank(), dist.get_world_size()
total = torch.tensor([float(rank + 1)])
dist.all_reduce(total)
print(f"rank {rank}/{world} local_rank {os.environ['LOCAL_RANK']} sum {total.item():.1f}", flush=True)
if rank == 0:
    torch.save({"total": total}, os.path.join(os.environ["SM_MODEL_DIR"], "model.pth"))
    env = json.loads(os.environ["SM_TRAINING_ENV"])
    print(f"framework params {json.dumps(env['additional_framework_parameters'])}", flush=True)
    print(f"world_size={world};", flush=True)
dist.barrier()
dist.destroy_process_group()
