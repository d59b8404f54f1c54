"""The numpy head of a head-only model computes what the torch MLPHead computes in eval mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vizsla.serving.composed import NumpyHead, find_model_dir


@pytest.mark.parametrize("activation", ["relu", "gelu", "silu", "tanh"])
@pytest.mark.parametrize("hidden", [[], [16, 8]])
def test_numpy_head_matches_the_torch_head(tmp_path, activation, hidden):
    import torch

    from vizsla.models.classifier import Classifier
    from vizsla.models.heads import MLPHead
    from vizsla.models.io import save_model

    torch.manual_seed(0)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 24))
    head = MLPHead(24, 3, hidden, dropout=0.3, activation=activation)
    pre = {"input_size": [3, 2, 2], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}
    model = Classifier("test_efficientnet", backbone, head, ["a", "b", "c"], pre)
    save_model(model, tmp_path / "model")
    model_dir = find_model_dir(tmp_path)
    assert model_dir == tmp_path / "model"
    config = json.loads((model_dir / "config.json").read_text())
    numpy_head = NumpyHead.from_model_dir(model_dir, config)
    features = torch.randn(5, 24) * 3
    with torch.inference_mode():
        expected = head.eval()(features).numpy()
    np.testing.assert_allclose(numpy_head(features.numpy()), expected, rtol=1e-5, atol=1e-5)
    assert (numpy_head.in_features, numpy_head.num_classes) == (24, 3)


def test_head_weights_that_do_not_fit_the_config_are_refused(tmp_path):
    import torch

    from vizsla.models.classifier import Classifier
    from vizsla.models.heads import MLPHead
    from vizsla.models.io import save_model

    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 24))
    pre = {"input_size": [3, 2, 2], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}
    save_model(Classifier("x", backbone, MLPHead(24, 2, [8]), ["a", "b"], pre), tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["head"]["hidden"] = [9]
    with pytest.raises(ValueError, match="do not fit"):
        NumpyHead.from_model_dir(tmp_path / "model", config)


def test_a_folder_without_a_model_is_no_model_dir(tmp_path):
    assert find_model_dir(tmp_path) is None
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert find_model_dir(tmp_path) is None  # no weights file


def _blas_threads() -> list[int]:
    """Threads of numpy's own BLAS (other libraries, e.g. scipy's copy, may be loaded beside it)."""
    from threadpoolctl import threadpool_info

    return [info["num_threads"] for info in threadpool_info()
            if info["user_api"] == "blas" and "numpy" in info["filepath"]]


def test_one_blas_thread_limits_numpy_products_and_gives_the_threads_back():
    from threadpoolctl import threadpool_limits

    from vizsla.infra.blas import one_blas_thread

    with threadpool_limits(2, "blas"):  # as on a 2-core machine, whatever this one has
        before = _blas_threads()
        assert before and all(n == 2 for n in before)
        with one_blas_thread():
            assert all(n == 1 for n in _blas_threads())
        assert _blas_threads() == before


def test_the_numpy_head_multiplies_on_one_blas_thread(monkeypatch):
    import vizsla.infra.blas as blas

    inside = []
    real = blas.one_blas_thread

    class Watched:
        def __enter__(self):
            self.limit = real()
            self.limit.__enter__()
            inside.append(_blas_threads())

        def __exit__(self, *exc):
            return self.limit.__exit__(*exc)

    monkeypatch.setattr(blas, "one_blas_thread", Watched)
    rng = np.random.default_rng(0)
    layers = [(rng.standard_normal((16, 32)).astype(np.float32), rng.standard_normal(16).astype(np.float32)),
              (rng.standard_normal((3, 16)).astype(np.float32), rng.standard_normal(3).astype(np.float32))]
    features = rng.standard_normal((8, 32)).astype(np.float32)
    logits = NumpyHead(layers, "relu")(features)
    expected = np.maximum(features @ layers[0][0].T + layers[0][1], 0) @ layers[1][0].T + layers[1][1]
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert inside and all(n == 1 for n in inside[0])
