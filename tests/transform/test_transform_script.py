"""Script mode: a script job's own model through its inference.py, from the CLI spec and the SDK's API."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vizsla.errors import UserError
from vizsla.transform import TransformSpec, run_transform

SCRIPTS = Path(__file__).resolve().parents[1] / "scriptmode" / "scripts"


@pytest.fixture(scope="module")
def script_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hpo.py run under SageMaker's training contract: a job folder whose model/ holds model.pth."""
    from vizsla.testing.images import make_image_folder

    root = tmp_path_factory.mktemp("transform-script")
    data = make_image_folder(root / "data", classes=("cat", "dog"), per_class=8, seed=0)
    job = root / "job"
    (job / "model").mkdir(parents=True)
    (job / "output").mkdir()
    env = {**os.environ, "SM_CHANNEL_TRAINING": str(data / "train"), "SM_CHANNEL_TEST": str(data / "valid"),
           "SM_MODEL_DIR": str(job / "model")}
    done = subprocess.run([sys.executable, "hpo.py", "--epochs", "1", "--lr", "0.01"], cwd=SCRIPTS, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return job


def _inference_py_answer(job: Path, body: bytes) -> dict:
    """What the script's own functions answer in-process for a JPEG."""
    sys.path.insert(0, str(SCRIPTS))
    try:
        inference = importlib.import_module("inference")
        model = inference.model_fn(str(job / "model"))
        text, _ = inference.output_fn(inference.predict_fn(inference.input_fn(body, "image/jpeg"), model))
    finally:
        sys.path.remove(str(SCRIPTS))
    return json.loads(text)


def test_each_file_goes_through_the_scripts_inference_py(script_job, photos, tmp_path):
    out = tmp_path / "out"
    spec = TransformSpec(model=str(script_job), data=str(photos), output=str(out),
                         entry_point="inference.py", source_dir=str(SCRIPTS))
    summary = run_transform(spec, progress=False)

    keys = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*") if p.is_file())
    jpegs = [k for k in keys if k.endswith(".jpg")]
    pngs = [k for k in keys if k.endswith(".png")]  # inference.py raises for image/png: listed, not fatal
    assert summary["runtime"] == "custom" and summary["predicted"] == len(jpegs)
    assert [r["path"] for r in summary["rejected_files"]] == pngs
    assert all("unsupported ContentType" in r["reason"] for r in summary["rejected_files"])
    for key in jpegs[:3]:
        answer = json.loads((out / f"{key}.out").read_bytes())
        expected = _inference_py_answer(script_job, (photos / key).read_bytes())
        assert answer["label"] == expected["label"]
        assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == jpegs and rows[0]["content_type"] == "application/json"
    assert rows[0]["output"] == json.loads((out / f"{jpegs[0]}.out").read_bytes())


def test_estimator_transformer_transform_and_wait_as_the_sdk_spells_them(script_job, photos, tmp_path):
    from vizsla.sagemaker.pytorch import PyTorch, TrainingJob

    estimator = PyTorch(entry_point="hpo.py", source_dir=str(SCRIPTS), role="local:test",
                        instance_type="ml.m5.xlarge", framework_version="2.1", tracking=False)
    estimator.latest_training_job = TrainingJob("dogbreeds", script_job)  # what fit() or attach() sets
    output = tmp_path / "batch-out"
    transformer = estimator.transformer(
        instance_count=1, instance_type="ml.m5.xlarge", output_path=str(output), strategy="SingleRecord",
        assemble_with="Line", accept="application/json", entry_point="inference.py",
    )
    jpegs = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg"))
    manifest = tmp_path / "input.manifest"
    manifest.write_text(json.dumps([{"prefix": f"{photos}/"}, *jpegs]))

    transformer.transform(str(manifest), data_type="ManifestFile", content_type="image/jpeg",
                          split_type=None, wait=False)
    transformer.wait()

    assert transformer.output_path == str(output)
    described = transformer.latest_transform_job.describe()
    assert described["TransformJobStatus"] == "Completed", described
    assert described["Summary"]["predicted"] == len(jpegs)
    written = sorted(p.relative_to(output).as_posix() for p in output.rglob("*.out"))
    assert written == [f"{k}.out" for k in jpegs]
    with pytest.raises(UserError, match="one record per file"):
        transformer.transform(str(photos), content_type="image/jpeg", split_type="Line")
