"""`run_transform(spec)`: list the inputs, load the model, run the batches, commit them in order, summarise.

The local engine decodes in a thread pool (Pillow and the eval transform's numpy release the GIL; so does
ONNX Runtime while it runs) one batch ahead of the forward pass, so decoding batch i+1 overlaps predicting
batch i. Batches start at fixed input positions (multiples of the batch size recorded in the checkpoint),
so a resumed run forms the same batches, and gets the same bytes, as an uninterrupted one.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vizsla.errors import UserError
from vizsla.transform.predictors import HandlerPredictor, ModelPredictor
from vizsla.transform.sources import InputFile, Source, inputs_digest, list_inputs, select_shard
from vizsla.transform.spec import JSON_TYPE, TransformSpec
from vizsla.transform.store import OutputStore

log = logging.getLogger("vizsla.transform")

# Images per core in one forward pass. Small on purpose: a big batch's activations outgrow the CPU caches
# (efficientnet_lite0, 224 px, ONNX Runtime on 2 loaded cores, images/s over 3 runs: batch 4: 87-105,
# 8: 55-84, 16: 49-73, 32: 49-58), and a resumed run redoes at most one batch.
BATCH_PER_CORE = 4
MIN_AUTO_BATCH, MAX_AUTO_BATCH = 8, 64
SUMMARY_REJECTED_MAX = 1000  # rejected files listed in summary.json (all of them are in rejected.csv)


def auto_batch_size(cores: int) -> int:
    """The batch size for CORES: 4 a core, 8 to 64."""
    return max(MIN_AUTO_BATCH, min(MAX_AUTO_BATCH, BATCH_PER_CORE * cores))


def resolve_model(spec: TransformSpec) -> tuple[Path, Path | None, Path | None]:
    """(model folder or job, entry point, source dir): `vizsla serve`'s resolution, and for a script job
    without --entry-point its training entry point (as the SageMaker SDK's estimator.transformer())."""
    from vizsla.jobhealth import resolve_target

    target = resolve_target(spec.model, best=spec.best, tracking_uri=spec.tracking_uri)
    if not target.exists():
        raise UserError(f"model not found: {target}", hint="pass a training job folder, a model folder, "
                        "or a tuning job folder with --best")
    entry = Path(spec.entry_point).expanduser() if spec.entry_point else None
    source_dir = Path(spec.source_dir).expanduser() if spec.source_dir else None
    if entry is None:
        entry, recorded_dir = _script_entry_point(target)
        source_dir = source_dir or recorded_dir
    return target, entry, source_dir


def _script_entry_point(target: Path) -> tuple[Path | None, Path | None]:
    """A script job's recorded entry point and source dir (spec.yaml), else (None, None)."""
    from vizsla.jobdir import JobDir
    from vizsla.jobhealth import read_spec_mapping

    spec, _ = read_spec_mapping(JobDir(target))
    if spec.get("kind") != "script" or not spec.get("entry_point"):
        return None, None
    source = spec.get("source_dir")
    return Path(str(spec["entry_point"])), Path(str(source)) if source else None


def create_predictor(spec: TransformSpec, threads: int,
                     resolved: tuple[Path, Path | None, Path | None] | None = None
                     ) -> ModelPredictor | HandlerPredictor:
    """The fast batched path for a vizsla model answering JSON; the handler path for anything else."""
    from vizsla.serving.toolkit import is_vizsla_model

    target, entry, source_dir = resolved or resolve_model(spec)
    if entry is None and is_vizsla_model(target) and spec.accept == JSON_TYPE and spec.content_type is None:
        return ModelPredictor(spec, target, threads)
    return HandlerPredictor(spec, target, entry, source_dir)


def settings_record(spec: TransformSpec) -> dict[str, Any]:
    """What must not change between a run and its resumption (the checkpoint refuses other settings)."""
    keep = ("model", "best", "data", "data_type", "runtime", "format", "top_k", "all_scores", "shard",
            "entry_point", "source_dir", "content_type", "accept", "name", "max_pixels")
    return {key: getattr(spec, key) for key in keep}


def plan(spec: TransformSpec) -> list[InputFile]:
    """This run's inputs: the source's files (the output folder excluded), this shard's only."""
    dest = Path(spec.output).expanduser()
    if "://" in spec.output:
        raise UserError(f"--output must be a local folder, got {spec.output}",
                        hint="write locally (or to a mounted bucket), then copy the folder")
    files = list_inputs(spec.data, spec.data_type, spec.storage_options, exclude=dest)
    return select_shard(files, *spec.shard_pair)


def run_transform(spec: TransformSpec, *, progress: bool = True) -> dict[str, Any]:
    """Transform every input of SPEC (continuing a killed run on the same output) and return the summary."""
    from rich.console import Console

    from vizsla.infra.hardware import available_cores
    from vizsla.transform.progress import TransformProgress

    resolved = resolve_model(spec)  # a missing model fails before a long listing
    files = plan(spec)
    cores = available_cores()
    if progress:
        Console(stderr=True, highlight=False).print(
            f"transform: {len(files)} files from {spec.data}; loading {resolved[0]} ({spec.runtime}; a first "
            "run with these weights exports and checks the ONNX model)", soft_wrap=True, markup=False)
    predictor = create_predictor(spec, cores, resolved)
    store = OutputStore(Path(spec.output).expanduser(), spec.format, spec.shard_pair,
                        predictor.csv_header(), predictor.csv_cells)
    state = store.open(settings_record(spec), len(files), inputs_digest(files),
                       spec.batch_size or auto_batch_size(cores))
    start, batch_size = int(state["done"]), int(state["batch_size"])
    if start < len(files) and spec.engine == "local":
        predictor.warm_up(batch_size)
    began = time.perf_counter()
    with TransformProgress(len(files), start, enabled=progress) as bar:
        if spec.engine == "ray":
            from vizsla.transform.ray_engine import run_ray

            run_ray(spec, files, start, batch_size, store, bar.advance)
        else:
            source = Source(spec.storage_options)
            workers = spec.decode_workers or cores
            for records, seconds in run_local(predictor, source, files, start, batch_size, workers):
                store.commit(records, seconds)
                bar.advance(len(records))
    return write_summary(spec, store, predictor.runtime, start, time.perf_counter() - began, len(files))


def run_local(predictor: Any, source: Source, files: list[InputFile], start: int, batch_size: int,
              workers: int) -> Iterator[tuple[list[Any], float]]:
    """(records, seconds) per batch from START, in order; the next batch decodes while one predicts."""
    batches = [files[i:i + batch_size] for i in range(start, len(files), batch_size)]
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="vizsla-transform") as pool:
        ahead: deque[list[Future[Any]]] = deque()
        for index, batch in enumerate(batches):
            began = time.perf_counter()
            while len(ahead) < 2 and index + len(ahead) < len(batches):
                upcoming = batches[index + len(ahead)]
                ahead.append([pool.submit(predictor.prepare, source, item) for item in upcoming])
            prepared = [future.result() for future in ahead.popleft()]
            yield predictor.finish(batch, prepared), time.perf_counter() - began


def write_summary(spec: TransformSpec, store: OutputStore, runtime: str, start: int, seconds: float,
                  total: int) -> dict[str, Any]:
    """summary.json: counts, this run's images/s, every rejected file with its reason."""
    from vizsla.infra.io import atomic_write_json

    state = store.state
    rejected = store.rejected_files()
    done_now = int(state["done"]) - start
    summary = {
        "model": spec.model, "runtime": runtime, "engine": spec.engine, "data": spec.data,
        "shard": spec.shard, "inputs": total, "predicted": state["predicted"], "rejected": state["rejected"],
        "resumed_at": start, "transformed_now": done_now, "seconds": round(seconds, 3),
        "images_per_s": round(done_now / seconds, 2) if seconds > 0 and done_now else 0.0,
        "batch_size": state["batch_size"], "predictions": store.predictions.name,
        "rejected_list": store.rejected.name,
        "rejected_files": rejected[:SUMMARY_REJECTED_MAX],
    }
    if len(rejected) > SUMMARY_REJECTED_MAX:
        summary["rejected_files_note"] = (
            f"first {SUMMARY_REJECTED_MAX} of {len(rejected)}; all in {store.rejected.name}"
        )
    atomic_write_json(store.summary, summary)
    return summary
