"""Torch dataset and loaders over validated samples, reproducible per (seed, epoch) for exact resumes.

Augmentation randomness comes from a seed the sampler draws for every sample, not from the global or
per-worker RNG, so a batch is the same whatever the number of workers and whatever else used the RNG.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate

from vizsla.data.decode import BadImageError, read_and_decode
from vizsla.data.layout import Sample
from vizsla.infra.hardware import available_cores

log = logging.getLogger("vizsla.data")

_MAX_SEED = 2**62


class ImageFolderDataset(Dataset):
    """Decodes and transforms (path, label) samples; a file that fails to decode yields None, never raises."""

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable[[Any], torch.Tensor],
        *,
        max_pixels: int,
        draft_size: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.max_pixels = max_pixels
        self.draft_size = draft_size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int] | None:
        """Item INDEX, or (index, seed) from SeededSampler to make its augmentation reproducible."""
        index, seed = index if isinstance(index, tuple) else (index, None)
        path, label = self.samples[index]
        try:
            image = read_and_decode(Path(path), max_pixels=self.max_pixels, draft_size=self.draft_size)
        except BadImageError as exc:
            log.warning("skipping unreadable image %s: %s", path, exc.reason)
            return None
        if seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image), label


class SeededSampler(Sampler[tuple[int, int]]):
    """Yields (index, augmentation seed) in an order and with seeds fixed by SEED alone.

    `select` picks this process's part of the full sequence (a slice for sharded feature extraction, a
    rank's share of each global batch in a distributed job); the seeds stay those of the full sequence, so
    every sample is transformed the same way whichever process handles it.
    """

    def __init__(
        self, length: int, *, shuffle: bool, seed: int, select: Callable[[list[Any]], list[Any]] | None = None
    ) -> None:
        self.length, self.shuffle, self.seed, self.select = length, shuffle, seed, select

    def __len__(self) -> int:
        return self.length if self.select is None else len(self.select(list(range(self.length))))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed)
        if self.shuffle:
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        seeds = torch.randint(0, _MAX_SEED, (self.length,), generator=generator).tolist()
        pairs = list(zip(order, seeds, strict=True))
        return iter(pairs if self.select is None else self.select(pairs))


def collate_skip_bad(batch: list[tuple[torch.Tensor, int] | None]) -> Any:
    """Stack a batch without the samples that failed to decode; None when none is left."""
    items = [item for item in batch if item is not None]
    return default_collate(items) if items else None


def default_num_workers() -> int:
    """Loader worker processes: min(4, cores), and 0 (decode in the main process) on a single core."""
    cores = available_cores()
    return 0 if cores <= 1 else min(4, cores)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """`worker_init_fn` of loader workers: SIGINT, SIGTERM and SIGHUP are the main process's to handle.

    Ctrl-C and a closed terminal signal the whole process group; a worker killed by it would fail the job
    ("DataLoader worker exited unexpectedly") where the main process stops it cleanly at its next step.
    The main process shuts its workers down when it stops; a worker whose main process died exits by itself
    (the loader's watchdog)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def loader_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's order and augmentation: a resumed epoch replays the same batches."""
    return seed * 1000 + epoch


def create_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int,
    seed: int,
    epoch: int,
    drop_last: bool = False,
    pin_memory: bool = False,
    select: Callable[[list[Any]], list[Any]] | None = None,
) -> DataLoader:
    """A DataLoader whose batches (order and augmentation) depend only on (seed, epoch).

    Batches may be smaller than batch_size when files fail to decode, and None when all of them do.
    """
    epoch_seed = loader_seed(seed, epoch)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=SeededSampler(
            len(dataset),
            shuffle=shuffle,
            seed=epoch_seed,  # type: ignore[arg-type]
            select=select,
        ),
        num_workers=num_workers,
        collate_fn=collate_skip_bad,
        pin_memory=pin_memory,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(epoch_seed),
        persistent_workers=False,
        prefetch_factor=2 if num_workers > 0 else None,
        worker_init_fn=ignore_stop_signals if num_workers > 0 else None,
    )
