"""Batch transform on this machine: junk never stops a run, outputs in SageMaker's layout, shards, reruns."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from vizsla.errors import UserError
from vizsla.transform import TransformSpec, list_inputs, run_transform, select_shard


def _spec(model: Path, data: Path, output: Path, **options: object) -> TransformSpec:
    return TransformSpec(model=str(model), data=str(data), output=str(output), **options)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_junk_salted_folder_completes_with_every_good_file_scored_and_every_bad_one_listed(
    head_job, photos, tmp_path
):
    from vizsla.testing.images import READABLE, add_broken_files

    data = Path(shutil.copytree(photos, tmp_path / "data"))
    expected = add_broken_files(data / "junk")  # corrupt, truncated, zero-byte, text, bomb + odd modes
    latin1 = os.path.join(os.fsencode(data / "cat"), b"caf\xe9.jpg")  # a name that is not UTF-8
    shutil.copy(data / "cat" / "cat_000.jpg", latin1)
    out = tmp_path / "out"

    summary = run_transform(_spec(head_job, data, out, top_k=2), progress=False)

    bad = {f"junk/{name}": word for name, word in expected.items() if word != READABLE}
    rejected = {item["path"]: item["reason"] for item in summary["rejected_files"]}
    assert set(rejected) == set(bad)
    for key, word in bad.items():
        assert word in rejected[key], (key, rejected[key])
        assert not (out / f"{key}.out").exists()
    keys = [f.key for f in list_inputs(str(data))]
    good = [key for key in keys if key not in bad]
    assert os.fsdecode(b"cat/caf\xe9.jpg") in good and "junk/float.tif" in good and "junk/cmyk.jpg" in good
    rows = _jsonl(out / "predictions.jsonl")
    assert [row["path"] for row in rows] == good  # every good file, in input order
    assert summary["predicted"] == len(good) and summary["rejected"] == len(bad)
    assert summary["inputs"] == len(keys) and summary["images_per_s"] > 0
    for row in rows:
        answer = json.loads((out / f"{row['path']}.out").read_bytes())
        assert answer["predictions"][0]["label"] == row["label"] and len(row["topk"]) == 2
    text = (out / "rejected.csv").read_bytes().decode("utf-8", "surrogateescape")
    listed = list(csv.reader(io.StringIO(text)))
    assert listed[0] == ["path", "reason"] and {r[0] for r in listed[1:]} == set(bad)
    assert json.loads((out / "summary.json").read_text())["rejected_files"] == summary["rejected_files"]


def test_each_out_file_holds_what_the_endpoint_answers_for_that_image(head_job, photos, tmp_path):
    import httpx

    from vizsla.serving.settings import ServeSettings
    from vizsla.serving.testing import running_server

    out = tmp_path / "out"
    run_transform(_spec(head_job, photos, out, top_k=3, all_scores=True), progress=False)
    settings = ServeSettings(model_path=head_job, default_topk=3, runtime="auto")  # the transform's default
    with running_server(settings) as (url, _app):
        for key in ("cat/cat_000.jpg", "dog/dog_001.png", "fox/fox_004.jpg"):
            served = httpx.post(
                f"{url}/invocations?verbose=full", content=(photos / key).read_bytes(),
                headers={"content-type": "application/octet-stream", "accept": "application/json"},
            ).json()
            ours = json.loads((out / f"{key}.out").read_bytes())
            assert set(ours) == set(served) == {"model", "predictions", "labels"}
            assert ours["model"] == served["model"] and ours["labels"] == served["labels"]
            (mine,), (theirs,) = ours["predictions"], served["predictions"]
            assert [t["label"] for t in mine["topk"]] == [t["label"] for t in theirs["topk"]]
            assert mine["scores"] == pytest.approx(theirs["scores"], abs=1e-5)  # other batch, same pixels


def test_csv_predictions_with_every_score(head_job, photos, tmp_path):
    out = tmp_path / "out"
    run_transform(_spec(head_job, photos, out, format="csv", top_k=2, all_scores=True), progress=False)
    rows = list(csv.reader(io.StringIO((out / "predictions.csv").read_text())))
    ranks = ["label_1", "score_1", "label_2", "score_2"]
    assert rows[0] == ["path", *ranks, "score:cat", "score:dog", "score:fox"]
    assert len(rows) == 1 + 24 and not (out / "predictions.jsonl").exists()
    for row in rows[1:]:
        scores = [float(v) for v in row[5:]]
        assert sum(scores) == pytest.approx(1.0, abs=1e-4)
        assert float(row[2]) == max(scores) and row[1] in ("cat", "dog", "fox")


def test_shards_partition_the_inputs_exactly_and_share_one_output_folder(head_job, photos, tmp_path):
    files = list_inputs(str(photos))
    shards = [select_shard(files, k, 3) for k in range(3)]
    assert sorted(f.key for shard in shards for f in shard) == sorted(f.key for f in files)
    assert all(shards) and sum(len(s) for s in shards) == len(files)
    assert select_shard(files, 1, 3) == shards[1]  # deterministic
    out = tmp_path / "out"
    for k in range(3):
        summary = run_transform(_spec(head_job, photos, out, shard=f"{k}/3"), progress=False)
        assert summary["inputs"] == len(shards[k])
        rows = _jsonl(out / f"predictions-{k}-of-3.jsonl")
        assert [row["path"] for row in rows] == [f.key for f in shards[k]]
    outs = sorted(p.relative_to(out).as_posix()[: -len(".out")] for p in out.rglob("*.out"))
    assert outs == sorted(f.key for f in files)
    whole = tmp_path / "whole"
    run_transform(_spec(head_job, photos, whole), progress=False)
    assert all((out / f"{f.key}.out").read_bytes() == (whole / f"{f.key}.out").read_bytes() for f in files)


def test_a_rerun_continues_a_finished_run_and_refuses_other_settings_or_inputs(
    head_job, photos, tmp_path, tree
):
    out, reference = tmp_path / "out", tmp_path / "reference"
    spec = _spec(head_job, photos, out, batch_size=4)
    run_transform(_spec(head_job, photos, reference, batch_size=4), progress=False)
    run_transform(spec, progress=False)
    assert tree(out) == tree(reference)
    again = run_transform(spec, progress=False)  # nothing left to do
    assert again["transformed_now"] == 0 and tree(out) == tree(reference)
    with pytest.raises(UserError, match=r"other settings \(top_k=5\)"):
        run_transform(_spec(head_job, photos, out, batch_size=4, top_k=2), progress=False)
    more = Path(shutil.copytree(photos, tmp_path / "more"))
    more_spec = _spec(head_job, more, tmp_path / "more-out", batch_size=4)
    run_transform(more_spec, progress=False)
    shutil.copy(more / "cat" / "cat_000.jpg", more / "cat" / "new.jpg")
    with pytest.raises(UserError, match="inputs changed"):
        run_transform(more_spec, progress=False)
