"""`--engine ray`: the same batches on a local Ray instance (Ray Data), outputs equal to a local run's."""

from __future__ import annotations

import pytest

from vizsla.transform import TransformSpec, run_transform


@pytest.mark.slow  # starts a local Ray instance (a few seconds)
def test_the_ray_engine_gives_the_local_engines_outputs(head_job, photos, tmp_path, tree):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ours = tmp_path / "ray"
        spec = TransformSpec(model=str(head_job), data=str(photos), output=str(ours), engine="ray",
                             batch_size=8)
        summary = run_transform(spec, progress=False)
    finally:
        ray.shutdown()
    assert summary["engine"] == "ray" and summary["predicted"] == 24
    local = tmp_path / "local"
    run_transform(TransformSpec(model=str(head_job), data=str(photos), output=str(local), batch_size=8),
                  progress=False)
    assert tree(ours) == tree(local)
