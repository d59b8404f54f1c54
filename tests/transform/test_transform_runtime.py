"""Which model a transform runs: auto takes the int8 backbone the job's features came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vizsla.transform import TransformSpec, run_transform


def _cache_precision(job: Path) -> str:
    return json.loads((job / "result.json").read_text())["feature_cache"]["precision"]


def test_auto_runs_the_backbone_the_jobs_features_came_from_and_scores_its_test_split_alike(head_job,
                                                                                           tmp_path):
    """The tiny job's metrics were measured on features of its cached backbone (int8 when quantisation
    passed its check, else fp32): transform at `auto` runs that very backbone, so its top-1 on the job's
    test photos is the job's test accuracy."""
    precision = _cache_precision(head_job)
    test_photos = head_job.parent / "data" / "test"
    spec = TransformSpec(model=str(head_job), data=str(test_photos), output=str(tmp_path / "a"))
    summary = run_transform(spec, progress=False)
    assert summary["runtime"] == ("onnx-int8" if precision == "int8" else "onnx")
    rows = [json.loads(line) for line in (tmp_path / "a" / "predictions.jsonl").read_text().splitlines()]
    correct = sum(row["label"] == row["path"].split("/")[0] for row in rows)
    job_accuracy = json.loads((head_job / "result.json").read_text())["metrics"]["test_accuracy"]
    assert correct / len(rows) == pytest.approx(job_accuracy, abs=1e-6)

    fp32 = run_transform(TransformSpec(model=str(head_job), data=str(test_photos), output=str(tmp_path / "b"),
                                       runtime="onnx"), progress=False)
    assert fp32["runtime"] == "onnx" and fp32["predicted"] == summary["predicted"]


def test_a_served_head_job_at_runtime_auto_reports_the_int8_backbone(head_job):
    if _cache_precision(head_job) != "int8":
        pytest.skip("this machine's int8 quantisation of the tiny backbone failed its check: fp32 features")
    from vizsla.serving.runtime import has_feature_int8, load_served_model

    served = load_served_model(head_job, runtime="auto")
    assert served.runtime == "onnx-int8" and ".int8-" in served.check["reused_backbone"]
    assert has_feature_int8(head_job)
    assert load_served_model(head_job, runtime="onnx").runtime == "onnx"
