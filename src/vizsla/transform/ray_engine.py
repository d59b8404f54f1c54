"""`--engine ray`: the same per-batch work on a Ray cluster through Ray Data; the driver commits in order.

Each row of the Ray dataset is one batch (its position in the input list), so the batches are the local
engine's batches and the outputs are byte-identical to a local run's. Actors load the model once (the
same predictor the local engine uses) and decode each batch with their own threads; the driver receives
the records, commits them strictly in input order (a batch that arrives early waits for the ones before
it) and so keeps the same resumable checkpoint. Ray is an optional extra: pip install 'vizsla[ray]'.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from typing import Any

from vizsla.errors import UserError
from vizsla.transform.sources import InputFile, Source
from vizsla.transform.spec import TransformSpec
from vizsla.transform.store import OutputStore

log = logging.getLogger("vizsla.transform")


class BatchWorker:
    """A Ray Data actor: loads the predictor once, then turns a batch number into its pickled records."""

    def __init__(self, spec_json: str, files: list[InputFile], batch_size: int, threads: int) -> None:
        from vizsla.transform.runner import create_predictor

        self.spec = TransformSpec.model_validate_json(spec_json)
        self.files, self.batch_size, self.threads = files, batch_size, threads
        self.predictor = create_predictor(self.spec, threads)
        self.source = Source(self.spec.storage_options)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        from vizsla.transform.runner import run_local

        first = int(row["batch"]) * self.batch_size
        batch = self.files[first:first + self.batch_size]
        runs = run_local(self.predictor, self.source, batch, 0, len(batch), self.threads)
        ((records, seconds),) = list(runs)
        return {"batch": int(row["batch"]), "records": pickle.dumps(records), "seconds": seconds}


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--engine ray needs Ray Data", hint="pip install 'vizsla[ray]'") from None
    return ray


def run_ray(spec: TransformSpec, files: list[InputFile], start: int, batch_size: int, store: OutputStore,
            advance: Callable[[int], None]) -> None:
    """Batches from START on Ray (the running cluster, $RAY_ADDRESS, or a local one), committed in order."""
    from vizsla.infra.hardware import available_cores

    ray = _ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        threads = max(1, min(available_cores(), cpus))
        first = start // batch_size
        count = -(-len(files) // batch_size) - first
        if count <= 0:
            return
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        dataset = ray.data.from_items([{"batch": first + i} for i in range(count)]).map(
            BatchWorker,
            fn_constructor_args=(spec.model_dump_json(), files, batch_size, threads),
            concurrency=max(1, cpus // threads),
            num_cpus=threads,
        )
        _commit_in_order(dataset.iter_rows(), first, store, advance)
    finally:
        if started:
            ray.shutdown()


def _commit_in_order(rows: Any, first: int, store: OutputStore, advance: Callable[[int], None]) -> None:
    """Commit batch FIRST, FIRST+1, ... as they become available, whatever order the rows arrive in."""
    waiting: dict[int, tuple[list[Any], float]] = {}
    expected = first
    for row in rows:
        waiting[int(row["batch"])] = (pickle.loads(row["records"]), float(row["seconds"]))
        while expected in waiting:
            records, seconds = waiting.pop(expected)
            store.commit(records, seconds)
            advance(len(records))
            expected += 1
