"""A transform's outputs, committed in input order so a killed run continues without a lost or doubled record.

Per batch: the `<key>.out` files (each a temp file renamed into place: whole or absent), then the batch's
lines appended to the predictions and rejected files, then a small checkpoint (written atomically) that
records how many inputs are done and how long each of those two files was at that point. A restarted run
truncates both files to the checkpoint's lengths (a torn last line, or lines of a batch that was not
checkpointed, go) and continues with the next input; `.out` files of that batch are rewritten with the same
bytes. Predictions are written in input order, so a resumed run's files equal an uninterrupted run's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vizsla.errors import UserError
from vizsla.infra.io import atomic_write_json

STATE_DIR = ".vizsla-transform"
CHECKPOINT_VERSION = 1
NAME_ERRORS = "surrogateescape"  # undecodable file names keep their bytes (vizsla.names)


@dataclass(frozen=True)
class Record:
    """One input's outcome: a JSON-able prediction row and the `.out` body, or the reason it was rejected."""

    key: str
    row: dict[str, Any] | None = None
    out: bytes | None = None
    reason: str | None = None


def suffix(shard: tuple[int, int]) -> str:
    """'' for a whole run, '-K-of-N' for a shard (shard workers share one output folder)."""
    return "" if shard[1] == 1 else f"-{shard[0]}-of-{shard[1]}"


class OutputStore:
    """DEST's files for one run (or one shard): `.out` files, predictions, rejected list, checkpoint."""

    def __init__(
        self,
        dest: Path,
        fmt: str,
        shard: tuple[int, int],
        csv_columns: Sequence[str],
        csv_cells: Callable[[dict[str, Any]], list[Any]],
    ) -> None:
        """CSV_COLUMNS: the CSV header (path first); CSV_CELLS: a record's row -> the cells after path."""
        self.dest = Path(dest)
        tag = suffix(shard)
        self.predictions = self.dest / f"predictions{tag}.{fmt}"
        self.rejected = self.dest / f"rejected{tag}.csv"
        self.summary = self.dest / f"summary{tag}.json"
        self.checkpoint = self.dest / STATE_DIR / f"checkpoint{tag}.json"
        self.fmt = fmt
        self.csv_columns = list(csv_columns)
        self.csv_cells = csv_cells
        self.state: dict[str, Any] = {}

    # ------------------------------------------------------------------ start and resume

    def open(self, settings: dict[str, Any], inputs: int, digest: str, batch_size: int) -> dict[str, Any]:
        """The run's state: a fresh one, or the checkpoint of an earlier run of the same settings and
        inputs (its files cut back to what it committed). UserError when DEST holds another transform."""
        try:
            self.dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create the output folder {self.dest}: {exc.strerror or exc}") from None
        saved = self._read_checkpoint()
        if saved is None:
            self._start_files()
            self.state = {
                "version": CHECKPOINT_VERSION, "settings": settings, "inputs": inputs,
                "inputs_digest": digest, "batch_size": batch_size,
                "done": 0, "predicted": 0, "rejected": 0, "seconds": 0.0,
                "predictions_bytes": self.predictions.stat().st_size,
                "rejected_bytes": self.rejected.stat().st_size,
            }
            atomic_write_json(self.checkpoint, self.state)
            return self.state
        self._check_same(saved, settings, inputs, digest)
        _truncate(self.predictions, int(saved["predictions_bytes"]))
        _truncate(self.rejected, int(saved["rejected_bytes"]))
        self.state = saved
        return saved

    def _read_checkpoint(self) -> dict[str, Any] | None:
        if not self.checkpoint.is_file():
            return None
        try:
            saved = json.loads(self.checkpoint.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read the transform checkpoint {self.checkpoint}: {exc}",
                            hint=f"remove {self.checkpoint.parent} to start over") from None
        if not isinstance(saved, dict) or saved.get("version") != CHECKPOINT_VERSION:
            raise UserError(f"{self.checkpoint} is not a checkpoint this vizsla writes",
                            hint=f"remove {self.checkpoint.parent} to start over")
        return saved

    def _check_same(self, saved: dict[str, Any], settings: dict[str, Any], inputs: int, digest: str) -> None:
        changed = sorted(k for k in set(settings) | set(saved["settings"])
                         if settings.get(k) != saved["settings"].get(k))
        if changed:
            was = ", ".join(f"{k}={saved['settings'].get(k)!r}" for k in changed)
            raise UserError(f"{self.dest} holds a transform with other settings ({was})",
                            hint="use another --output, or the same options to continue that one")
        if saved["inputs"] != inputs or saved["inputs_digest"] != digest:
            raise UserError(f"the inputs changed since {self.dest} was started ({saved['inputs']} files "
                            f"then, {inputs} now)", hint="use another --output to transform the new set")

    def _start_files(self) -> None:
        """Empty predictions (a CSV header) and rejected list; a `.out` file of a previous run stays."""
        header = _csv_line(self.csv_columns) if self.fmt == "csv" else b""
        for path, data in ((self.predictions, header), (self.rejected, _csv_line(["path", "reason"]))):
            _write_replace(path, data)

    # ------------------------------------------------------------------ commit

    def commit(self, records: Sequence[Record], seconds: float) -> None:
        """Write RECORDS (the next inputs, in order) and then the checkpoint that counts them done."""
        lines, rejected = [], []
        for record in records:
            if record.reason is not None:
                rejected.append(_csv_line([record.key, record.reason]))
                continue
            if record.out is not None:
                _write_replace(self.dest / (record.key + ".out"), record.out)
            lines.append(self._line(record))
        self.state["predictions_bytes"] = _append(self.predictions, b"".join(lines))
        self.state["rejected_bytes"] = _append(self.rejected, b"".join(rejected))
        self.state["done"] += len(records)
        self.state["predicted"] += len(records) - len(rejected)
        self.state["rejected"] += len(rejected)
        self.state["seconds"] = round(self.state["seconds"] + seconds, 6)
        atomic_write_json(self.checkpoint, self.state)

    def _line(self, record: Record) -> bytes:
        """One predictions line: {"path": key, **row} in JSON, or the CSV cells."""
        if self.fmt == "jsonl":
            return (json.dumps({"path": record.key, **(record.row or {})}) + "\n").encode("utf-8")
        return _csv_line([record.key, *(_csv_cell(v) for v in self.csv_cells(record.row or {}))])

    def rejected_files(self) -> list[dict[str, str]]:
        """Every rejected input with its reason, in input order."""
        text = self.rejected.read_bytes().decode("utf-8", NAME_ERRORS)
        rows = list(csv.reader(io.StringIO(text)))[1:]
        return [{"path": row[0], "reason": row[1]} for row in rows if len(row) >= 2]


def _csv_cell(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return value if isinstance(value, str) else json.dumps(value)


def _csv_line(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue().encode("utf-8", NAME_ERRORS)


def _write_replace(path: Path, data: bytes) -> None:
    """PATH whole or absent after a kill (temp file + rename; no fsync: a killed process loses nothing
    the kernel has, and a resumed run rewrites every `.out` of the batch it redoes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:100]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append(path: Path, data: bytes) -> int:
    """Append DATA durably (fsync: the checkpoint written next counts these bytes); the new length."""
    with open(path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
        return handle.tell()


def _truncate(path: Path, size: int) -> None:
    """Cut PATH back to SIZE bytes (what the checkpoint counted); UserError if it is shorter or gone."""
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        actual = -1
    if actual < size:
        raise UserError(f"{path} is shorter than the transform's checkpoint says (edited or removed?)",
                        hint=f"remove {path.parent / STATE_DIR} and the outputs to start over")
    if actual > size:
        with open(path, "r+b") as handle:
            handle.truncate(size)
