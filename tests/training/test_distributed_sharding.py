"""Sharding of a distributed job: ranks together see the single-process batches; eval has no padding."""

from __future__ import annotations

import numpy as np
import pytest

from vizsla.training.distributed import (
    DistContext,
    eval_indices,
    keeps_last_batch,
    per_process_batch_size,
    shard_batches,
)
from vizsla.training.setup import eval_selector, train_selector


@pytest.mark.parametrize(("n", "batch", "world"), [(100, 8, 2), (101, 8, 2), (37, 12, 3), (64, 16, 4)])
def test_ranks_together_make_the_single_process_batches(n, batch, world):
    order = list(np.random.default_rng(0).permutation(n))
    single = train_selector(n, batch, DistContext(), min_per_rank=1)(order)
    shares = [
        train_selector(n, batch, DistContext(rank=r, world_size=world), min_per_rank=1)(order)
        for r in range(world)
    ]
    per_rank = batch // world
    steps = {len(range(0, len(s), per_rank)) for s in shares}
    assert len(steps) == 1, "every rank must take the same number of steps (or the all-reduce hangs)"
    for step in range(steps.pop()):
        union = [x for s in shares for x in s[step * per_rank : (step + 1) * per_rank]]
        assert sorted(union) == sorted(single[step * batch : (step + 1) * batch])


def test_last_batch_dropped_when_a_rank_would_get_too_few():
    assert keeps_last_batch(100, 8, 2, min_per_rank=2)  # remainder 4: 2 each
    assert not keeps_last_batch(99, 8, 2, min_per_rank=2)  # remainder 3: one rank would train BN on 1
    assert not keeps_last_batch(97, 8, 1, min_per_rank=2)  # single process, remainder 1 (BatchNorm)
    order = list(range(99))
    shares = [train_selector(99, 8, DistContext(rank=r, world_size=2), min_per_rank=2)(order) for r in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 48


def test_eval_covers_every_sample_once():
    n, world = 23, 3
    seen = sorted(i for r in range(world) for i in eval_indices(n, DistContext(rank=r, world_size=world)))
    assert seen == list(range(n))
    selected = sorted(
        x for r in range(world) for x in eval_selector(DistContext(rank=r, world_size=world))(list(range(n)))
    )
    assert selected == list(range(n))
    assert eval_selector(DistContext()) is None


def test_shard_is_identity_for_one_process():
    assert shard_batches([3, 1, 2], 2, DistContext()) == [3, 1, 2]


def test_global_batch_must_divide():
    from vizsla.errors import SpecError

    assert per_process_batch_size(32, 4) == 8
    with pytest.raises(SpecError, match="divisible"):
        per_process_batch_size(30, 4)


def test_sampler_selection_keeps_the_full_sequence_seeds():
    from vizsla.data.dataset import SeededSampler

    full = list(SeededSampler(20, shuffle=True, seed=5))
    part = list(SeededSampler(20, shuffle=True, seed=5, select=lambda pairs: pairs[5:9]))
    assert part == full[5:9]
    assert len(SeededSampler(20, shuffle=True, seed=5, select=lambda pairs: pairs[5:9])) == 4


def test_feature_loader_shards_and_matches_single_process():
    import torch

    from vizsla.data.features import FeatureLoader

    rng = np.random.default_rng(1)
    features = rng.standard_normal((3, 50, 4)).astype(np.float16)
    labels = rng.integers(0, 5, 50)
    single = FeatureLoader(features, labels, batch_size=10, shuffle=True, seed=3, epoch=2)
    ranks = [
        FeatureLoader(
            features,
            labels,
            batch_size=5,
            shuffle=True,
            seed=3,
            epoch=2,
            select=train_selector(50, 10, DistContext(rank=r, world_size=2), min_per_rank=1),
        )
        for r in (0, 1)
    ]
    for (x, y), (x0, y0), (x1, y1) in zip(single, *ranks, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_lr_scaling_rules():
    from vizsla.spec import DistributedSpec

    assert DistributedSpec().lr_scale(256) == 1.0
    assert DistributedSpec(lr_scaling="linear", lr_base_batch_size=32).lr_scale(128) == 4.0
    assert DistributedSpec(lr_scaling="sqrt", lr_base_batch_size=32).lr_scale(128) == 2.0
    with pytest.raises(ValueError, match="lr_base_batch_size"):
        DistributedSpec(lr_scaling="linear")
