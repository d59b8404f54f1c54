"""File and folder names that are not valid UTF-8 (Latin-1 bytes from an old archive) are trained on, and
every file the job writes survives them: split.csv and bad_files.csv keep the exact bytes (read back with
errors="surrogateescape" they name the same files), JSON escapes them, logs, reports and MLflow show \\xNN."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

from vizsla.callbacks import Callback
from vizsla.testing.images import make_image_folder
from vizsla.testing.jobs import tiny_spec_dict

CAFE = b"caf\xe9.jpg"  # Latin-1: \xe9 alone is not UTF-8
FOX = b"r\xe9nard"  # a class folder named in Latin-1
BROKEN = b"\xff\xfebroken.jpg"


def _latin1_folder(root: Path) -> Path:
    """A tiny three-class folder under a Latin-1 named root, with a Latin-1 image, class and broken file."""
    plain = make_image_folder(root / "plain", classes=("cat", "dog", "fox"), per_class=10, seed=0)
    base = os.path.join(os.fsencode(root), b"d\xe9p\xf4t")  # the data root's own name is Latin-1 too
    os.rename(os.fsencode(plain), base)
    for split in (b"train", b"valid", b"test"):
        os.rename(os.path.join(base, split, b"fox"), os.path.join(base, split, FOX))
    cats = os.path.join(base, b"train", b"cat")
    shutil.copy(os.path.join(cats, b"cat_000.jpg"), os.path.join(cats, CAFE))
    with open(os.path.join(base, b"train", b"dog", BROKEN), "wb") as handle:
        handle.write(b"not an image")
    return Path(os.fsdecode(base))


class StopAfterFirstEpoch(Callback):
    def epoch_end(self, state):
        if state.epoch == 0:
            state.request_stop("stop after one epoch")


def _rows(path: Path) -> list[list[str]]:
    """A job's CSV as Vizsla writes it: UTF-8, undecodable file-name bytes as they are."""
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8", "surrogateescape"))))


def test_latin1_names_are_trained_on_and_survive_every_output(tmp_path):
    from vizsla.jobdir import JobDir
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    data = _latin1_folder(tmp_path)
    spec = tiny_spec_dict(data, tmp_path / "job", epochs=2)
    spec["tracking"] = {"enabled": True, "uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "experiment": "latin1"}
    first = run_job(build_spec(spec), callbacks=[StopAfterFirstEpoch()], progress=False)
    assert first["status"] == "Stopped"
    job = JobDir(tmp_path / "job")
    split_before = job.split_manifest.read_bytes()
    second = run_job(build_spec(spec), resume=True, progress=False)  # prepares the data again
    assert second["status"] == "Completed", second.get("failure_reason")

    assert job.split_manifest.read_bytes() == split_before, "the resumed job found the same files"
    rows = _rows(job.split_manifest)
    cafe = [r for r in rows if r[1] == os.fsdecode(b"train/cat/" + CAFE)]
    assert cafe == [["train", os.fsdecode(b"train/cat/" + CAFE), "cat"]], "the Latin-1 image is trained on"
    assert (data / cafe[0][1]).is_file(), "split.csv names the file exactly"
    assert any(r[2] == os.fsdecode(FOX) for r in rows[1:]), "the Latin-1 class is used"
    bad = _rows(job.bad_files)
    assert [row[:2] for row in bad[1:]] == [["train", os.fsdecode(b"train/dog/" + BROKEN)]]
    assert second["data"]["images"]["train"] == 31 and second["data"]["bad_files"] == 1

    report = json.loads(job.data_report.read_text(encoding="utf-8"))
    assert report["root"] == str(data) and os.fsdecode(FOX) in report["classes"]
    assert os.fsdecode(FOX) in second["per_class"]["labels"]
    for text_file in (job.log, job.training_report, job.result, job.spec):
        text_file.read_text(encoding="utf-8")  # valid UTF-8 throughout
    assert "r\\xe9nard" in job.training_report.read_text(encoding="utf-8")
    assert job.confusion_matrix_plot.is_file() and (job.root / "model" / "model.safetensors").is_file()

    from mlflow import MlflowClient

    run = MlflowClient(spec["tracking"]["uri"]).get_run(second["mlflow"]["run_id"])
    assert run.data.params["data.root"].endswith("d\\xe9p\\xf4t")
    assert run.data.tags["vizsla.status"] == "Completed"
    assert "Traceback" not in job.log.read_text(encoding="utf-8")
