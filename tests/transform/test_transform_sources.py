"""Transform inputs: SageMaker manifests, CSVs of paths and an S3 prefix on a real S3-compatible server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from vizsla.errors import DataError
from vizsla.transform import TransformSpec, list_inputs, run_transform


def test_a_manifest_in_either_spelling_and_a_csv_of_paths(photos, tmp_path):
    rel = ["dog/dog_001.png", "cat/cat_000.jpg"]
    array = tmp_path / "input.manifest"
    array.write_text(json.dumps([{"prefix": f"{photos}/"}, *rel]))
    lines = tmp_path / "lines.manifest"
    lines.write_text("\n".join(json.dumps(x) for x in [{"prefix": str(photos)}, *rel]) + "\n")
    for manifest in (array, lines):
        files = list_inputs(str(manifest))
        assert [f.key for f in files] == sorted(rel)
        assert [Path(f.location) for f in files] == [photos / r for r in sorted(rel)]
    listing = tmp_path / "paths.csv"
    listing.write_text("path\n" + "".join(f"{photos / r}\n" for r in rel))
    assert [f.key for f in list_inputs(str(listing))] == sorted(rel)
    escape = tmp_path / "escape.manifest"
    escape.write_text(json.dumps([{"prefix": str(photos)}, "../secrets.jpg"]))
    with pytest.raises(DataError, match="no safe output name"):
        list_inputs(str(escape))
    with pytest.raises(DataError, match="no input files"):
        (tmp_path / "empty").mkdir()
        list_inputs(str(tmp_path / "empty"))


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.mark.integration  # a real S3-compatible server on a local port
def test_an_s3_prefix_and_an_s3_manifest_are_transformed(head_job, photos, tmp_path, s3_endpoint):
    boto3 = pytest.importorskip("boto3")
    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
    bucket = f"vizsla-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    keys = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*") if p.is_file())
    for key in keys:
        client.put_object(Bucket=bucket, Key=f"in/{key}", Body=(photos / key).read_bytes())
    client.put_object(Bucket=bucket, Key="in/broken.jpg", Body=b"\xff\xd8\xff not really")
    chosen = keys[::5]
    manifest = [{"prefix": f"s3://{bucket}/in/"}, *chosen]
    client.put_object(Bucket=bucket, Key="lists/batch.manifest", Body=json.dumps(manifest).encode())
    options = {"key": "test", "secret": "test",
               "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}

    out = tmp_path / "prefix"
    summary = run_transform(TransformSpec(model=str(head_job), data=f"s3://{bucket}/in",
                                          output=str(out), storage_options=options), progress=False)
    assert summary["predicted"] == len(keys)
    assert [item["path"] for item in summary["rejected_files"]] == ["broken.jpg"]
    local = tmp_path / "local"
    run_transform(TransformSpec(model=str(head_job), data=str(photos), output=str(local)), progress=False)
    for key in keys:  # the same bytes through S3 give the same answers
        assert (out / f"{key}.out").read_bytes() == (local / f"{key}.out").read_bytes()

    listed = tmp_path / "manifest"
    summary = run_transform(TransformSpec(model=str(head_job), data=f"s3://{bucket}/lists/batch.manifest",
                                          output=str(listed), storage_options=options,
                                          data_type="ManifestFile"), progress=False)
    assert summary["predicted"] == len(chosen) and summary["rejected"] == 0
    rows = [json.loads(line)["path"] for line in (listed / "predictions.jsonl").read_text().splitlines()]
    assert rows == sorted(chosen)
