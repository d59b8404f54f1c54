"""Real photos: a head-only efficientnet_lite0 job on ants vs bees, served and queried with boto3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vizsla.serving.settings import ServeSettings
from vizsla.serving.testing import running_server

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_served_lite0_answers_like_the_model_in_process(hymenoptera: Path, tmp_path: Path):
    import boto3
    import torch

    import vizsla
    from vizsla.data.decode import decode_image
    from vizsla.data.transforms import create_transform, draft_size_for
    from vizsla.jobs import run_job
    from vizsla.spec import build_spec

    spec = {
        "output": str(tmp_path / "ants"),
        "data": {"root": str(hymenoptera)},
        "model": {"name": "efficientnet_lite0", "weights": "auto"},
        "train": {"finetune": "head", "epochs": 1, "lr": 3e-3, "batch_size": 32, "seed": 0},
        "tracking": {"enabled": False},
    }
    assert run_job(build_spec(spec), progress=False)["status"] == "Completed"
    photos = (
        sorted((hymenoptera / "val" / "ants").glob("*.jpg"))[:4]
        + sorted((hymenoptera / "val" / "bees").glob("*.jpg"))[:4]
    )
    model = vizsla.load_model(tmp_path / "ants")
    transform = create_transform(model.preprocessing, train=False, augment=False, hflip=False)
    draft = draft_size_for(model.preprocessing)
    batch = torch.stack(
        [transform(decode_image(p.read_bytes(), max_pixels=10**8, draft_size=draft)) for p in photos]
    )
    with torch.inference_mode():
        expected = [model.labels[i] for i in model(batch).argmax(1).tolist()]
    settings = ServeSettings(model_path=tmp_path / "ants", model_name="ants-bees")
    with running_server(settings) as (url, app):
        assert app.state.vizsla.runtime == "onnx", app.state.vizsla.model.check
        client = boto3.client(
            "sagemaker-runtime",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="y",
        )
        got = [
            json.loads(
                client.invoke_endpoint(
                    EndpointName="ants-bees", Body=p.read_bytes(), ContentType="image/jpeg"
                )["Body"].read()
            )["predictions"][0]["label"]
            for p in photos
        ]
    assert got == expected
    assert sum(label == p.parent.name for label, p in zip(got, photos, strict=True)) >= 6
