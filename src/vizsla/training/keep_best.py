"""Keep-best-K checkpoints: the weights of the K best epochs by the watched valid metric, beside last.pt.

model/ holds the single best epoch; `--keep-best K` also keeps checkpoints/best-epochNNN.pt for each of
the K best epochs (NNN 0-based, as metrics.jsonl and result.json's best_epoch number epochs), for
ensembling or for going back to a runner-up. checkpoints/best.json lists them best first with their
metric value. The weights are those validated: with EMA on, the averaged ones.

Epochs rank by `train.early_stopping_metric` (a loss: lower is better, as in `bookkeeping.track_best`);
a tie keeps the earlier epoch. A resumed job forgets the kept epochs its checkpoint had not reached (they
are trained again), and deletes files best.json does not list (a kill between the two writes). Only rank 0
of a distributed job writes.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from vizsla.disk import writing
from vizsla.infra.io import atomic_write_json
from vizsla.training.checkpoint import save_checkpoint

if TYPE_CHECKING:
    from vizsla.jobdir import JobDir
    from vizsla.training.setup import Job

log = logging.getLogger("vizsla.train")


def lower_is_better(metric: str) -> bool:
    """Loss metrics improve downwards, the others (accuracies) upwards (the rule of track_best)."""
    return "loss" in metric


class NoBestCheckpoints:
    """--keep-best 0: only last.pt and model/."""

    def consider(self, job: Job, record: dict[str, Any]) -> None:
        """Nothing to keep."""


class BestCheckpoints(NoBestCheckpoints):
    """The K best epochs' weights in checkpoints/, listed in checkpoints/best.json."""

    def __init__(self, job_dir: JobDir, k: int, metric: str, *, resumed_at: int) -> None:
        """RESUMED_AT: the first epoch the job trains now (0 for a new job); kept epochs from there on are
        forgotten, as the job trains them again."""
        self.job_dir, self.k, self.metric = job_dir, k, metric
        self.kept: list[dict[str, Any]] = [e for e in self._read() if e["epoch"] < resumed_at]
        self._delete_unlisted()
        if self.kept or job_dir.best_checkpoints.is_file():
            self._write_index()

    def consider(self, job: Job, record: dict[str, Any]) -> None:
        """Keep RECORD's epoch when it ranks among the K best (the model holds its validated weights);
        the epoch it pushes out of the K best is deleted."""
        from vizsla.training.bookkeeping import trained_state

        if self.metric not in record:  # track_best has named the problem already
            return
        epoch, value = int(record["epoch"]), float(record[self.metric])
        entry = {"epoch": epoch, "value": value, "path": self._relative(epoch)}
        ranked = self._ranked([e for e in self.kept if e["epoch"] != epoch] + [entry])
        kept, dropped = ranked[: self.k], ranked[self.k :]
        if entry not in kept:
            return
        payload = {
            "model": trained_state(job),
            "epoch": epoch,
            "metric": {"name": self.metric, "value": value},
            "weight_average": bool(job.spec.train.ema_decay),
            "spec": job.spec.model_dump(mode="json"),
        }
        save_checkpoint(self.job_dir.best_checkpoint(epoch), payload)
        self.kept = kept
        self._write_index()
        for gone in dropped:
            self.job_dir.best_checkpoint(gone["epoch"]).unlink(missing_ok=True)
        log.info("kept %s (%s %.4f, rank %d of %d)", entry["path"], self.metric, value,
                 kept.index(entry) + 1, self.k)

    def _ranked(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sign = 1.0 if lower_is_better(self.metric) else -1.0
        return sorted(entries, key=lambda e: (sign * e["value"], e["epoch"]))

    def _relative(self, epoch: int) -> str:
        return self.job_dir.best_checkpoint(epoch).relative_to(self.job_dir.root).as_posix()

    def _read(self) -> list[dict[str, Any]]:
        path = self.job_dir.best_checkpoints
        if not path.is_file():
            return []
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("%s is unreadable: the best checkpoints are ranked again from here on", path)
            return []
        if index.get("metric") != self.metric:
            return []  # a spec whose metric changed: the old ranking does not apply
        return [e for e in index.get("checkpoints", []) if self.job_dir.best_checkpoint(e["epoch"]).is_file()]

    def _delete_unlisted(self) -> None:
        listed = {self.job_dir.best_checkpoint(e["epoch"]).name for e in self.kept}
        for path in self.job_dir.checkpoints.glob("best-epoch*.pt"):
            if path.name not in listed:
                path.unlink(missing_ok=True)

    def _write_index(self) -> None:
        index = {
            "metric": self.metric,
            "mode": "min" if lower_is_better(self.metric) else "max",
            "k": self.k,
            "checkpoints": self._ranked(self.kept),
        }
        path = self.job_dir.best_checkpoints
        with writing(path, what=path.name):
            atomic_write_json(path, index)


def create_best_checkpoints(job: Job, resumed_at: int) -> NoBestCheckpoints:
    """BestCheckpoints on rank 0 of a job with keep_best_checkpoints > 0, else the no-op."""
    k = job.spec.train.keep_best_checkpoints
    if k <= 0 or not job.dist.is_main:
        return NoBestCheckpoints()
    return BestCheckpoints(job.job_dir, k, job.spec.train.early_stopping_metric, resumed_at=resumed_at)
