"""The notebook API on managed endpoints: deploy(endpoint_name=) registers one, Predictor(name) finds it
from its name, update_endpoint swaps its model, delete_endpoint drains it and frees its port."""

from __future__ import annotations

from pathlib import Path

import pytest

from vizsla.endpoints import read_record
from vizsla.endpoints.lifecycle import port_free
from vizsla.errors import UserError
from vizsla.sagemaker import Predictor, PyTorchModel

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# an inference.py whose model is the text of name.txt in the model folder: the answer names the model
NAMED = """
import json
from pathlib import Path

def model_fn(model_dir):
    return (Path(model_dir) / "name.txt").read_text()

def input_fn(body, content_type):
    return body

def predict_fn(data, model):
    return {"model": model, "size": len(data)}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def _model(root: Path, name: str) -> Path:
    folder = root / name / "model"
    folder.mkdir(parents=True)
    (folder / "name.txt").write_text(name)
    return folder


def test_deploy_by_name_find_update_delete(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(NAMED)
    first, second = _model(tmp_path, "first"), _model(tmp_path, "second")
    model = PyTorchModel(model_data=str(first), entry_point="inference.py", source_dir=str(code))
    predictor = model.deploy(initial_instance_count=1, instance_type="local", endpoint_name="named")
    try:
        record = read_record("named")
        assert record["status"] == "InService"
        assert predictor.predict(b"abcd") == {"model": "first", "size": 4}
        found = Predictor("named")  # another Predictor, from the name alone, as the SDK's
        assert b'"model": "first"' in found.predict(b"xy")

        predictor.update_endpoint(model_name=str(second))
        assert predictor.predict(b"abc") == {"model": "second", "size": 3}
    finally:
        predictor.delete_endpoint()
    assert port_free("127.0.0.1", int(record["port"]))
    with pytest.raises(UserError, match="deleted"):
        predictor.predict(b"x")
    with pytest.raises(UserError, match="no local endpoint named 'named'"):
        Predictor("named").predict(b"x")
