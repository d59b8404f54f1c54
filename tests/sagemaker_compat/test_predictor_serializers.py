"""Predictor, serializers and predictor_cls behave as the SageMaker SDK's (issue 17, items 8, 9, 10).

SDK sources matched: aws/sagemaker-python-sdk `src/sagemaker/base_serializers.py`,
`base_deserializers.py`, `base_predictor.py` (`Predictor.__init__`, `_create_request_args`), `model.py`
(`Model.deploy` with predictor_cls).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from vizsla.errors import UserError
from vizsla.sagemaker import Predictor, PyTorchModel
from vizsla.sagemaker.deserializers import (
    BytesDeserializer,
    CSVDeserializer,
    JSONDeserializer,
    NumpyDeserializer,
    StringDeserializer,
)
from vizsla.sagemaker.serializers import (
    CSVSerializer,
    IdentitySerializer,
    JSONSerializer,
    NumpySerializer,
)

# An inference.py that echoes what reached it: the body as input_fn got it, the types, the accept.
ECHO = """
import json

def model_fn(model_dir):
    return "model"

def input_fn(body, content_type):
    if content_type == "application/json":
        return {"json": json.loads(body), "content_type": content_type}
    return {"raw": body.decode("latin-1") if isinstance(body, bytes) else body, "content_type": content_type}

def predict_fn(data, model):
    return data

def output_fn(prediction, accept):
    if accept == "text/csv":
        return "1,2\\n3,4\\n", "text/csv"
    return json.dumps({**prediction, "accept": accept}), "application/json"
"""


@pytest.fixture()
def model(tmp_path: Path) -> PyTorchModel:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(ECHO)
    return PyTorchModel(model_data=str(folder), entry_point="inference.py", source_dir=str(tmp_path / "code"))


def test_serializers_match_the_sdk():
    assert IdentitySerializer().CONTENT_TYPE == "application/octet-stream"
    assert IdentitySerializer("image/jpeg").CONTENT_TYPE == "image/jpeg"
    text = json.dumps({"url": "x"})
    assert IdentitySerializer("application/json").serialize(text) is text
    assert JSONSerializer().CONTENT_TYPE == "application/json"
    assert JSONSerializer().serialize({"a": np.arange(2)}) == '{"a": [0, 1]}'
    assert JSONSerializer().serialize(np.ones(2)) == "[1.0, 1.0]"
    assert JSONSerializer().serialize(io.StringIO("[1]")) == "[1]"
    assert CSVSerializer().serialize([[1, 2], [3, 4]]) == "1,2\n3,4"
    assert CSVSerializer().serialize(np.array([1, 2])) == "1,2"
    npy = NumpySerializer().serialize([[1.0, 2.0]])
    assert NumpySerializer().CONTENT_TYPE == "application/x-npy"
    assert np.load(io.BytesIO(npy)).tolist() == [[1.0, 2.0]]
    with pytest.raises(ValueError):
        NumpySerializer().serialize([])


def test_deserializers_match_the_sdk():
    assert BytesDeserializer().ACCEPT == ("*/*",)
    assert JSONDeserializer().ACCEPT == ("application/json",)
    assert NumpyDeserializer().ACCEPT == ("application/x-npy",)
    assert CSVDeserializer().ACCEPT == ("text/csv",)
    assert StringDeserializer().deserialize(io.BytesIO(b"hi"), "text/plain") == "hi"
    assert JSONDeserializer().deserialize(io.BytesIO(b'{"a": 1}'), "application/json") == {"a": 1}
    assert CSVDeserializer().deserialize(io.BytesIO(b"1,2\n3,4\n"), "text/csv") == [["1", "2"], ["3", "4"]]
    buffer = io.BytesIO()
    np.save(buffer, np.eye(2))
    assert NumpyDeserializer().deserialize(io.BytesIO(buffer.getvalue()), "application/x-npy").shape == (2, 2)
    assert NumpyDeserializer().deserialize(io.BytesIO(b"[[1, 2]]"), "application/json").tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="cannot read content type"):
        NumpyDeserializer().deserialize(io.BytesIO(b"x"), "image/png")
    # an endpoint's answer is not unpickled by default
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError):
        NumpyDeserializer().deserialize(io.BytesIO(pickled.getvalue()), "application/x-npy")


def test_predict_sends_a_json_string_as_it_is(model):
    """Item 10: predict(json.dumps({...})) is not JSON-encoded a second time."""
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large")
    try:
        payload = {"url": "https://example.com/dog.jpg"}
        answer = predictor.predict(json.dumps(payload), initial_args={"ContentType": "application/json"})
        assert answer["json"] == payload
        # a JSON string without initial_args goes out as application/json too
        assert predictor.predict(json.dumps(payload))["json"] == payload
        raw = predictor.predict(b"\x01\x02", initial_args={"ContentType": "application/octet-stream"})
        assert raw["raw"] == "\x01\x02"
    finally:
        predictor.delete_endpoint()


def test_predictor_cls_and_predictor_by_name(model):
    """Item 9: PyTorchModel(predictor_cls=...) builds deploy()'s predictor; Predictor(name, session) works."""
    from vizsla.sagemaker import Session

    built: list[tuple[str, object]] = []

    class ImagePredictor(Predictor):
        def __init__(self, endpoint_name, sagemaker_session):
            built.append((endpoint_name, sagemaker_session))
            super().__init__(
                endpoint_name,
                sagemaker_session=sagemaker_session,
                serializer=IdentitySerializer("image/jpeg"),
                deserializer=JSONDeserializer(),
            )

    session = Session()
    model.predictor_cls = ImagePredictor
    model.sagemaker_session = session
    predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="dogs")
    try:
        assert isinstance(predictor, ImagePredictor)
        assert built == [("dogs", session)] and predictor.endpoint_name == "dogs"
        answer = predictor.predict(b"\xff\xd8jpeg")
        assert answer["content_type"] == "image/jpeg" and answer["accept"] == "application/json"
        # json.dumps payload with the notebooks' initial_args: sent as it is
        answer = predictor.predict(json.dumps({"a": 1}), initial_args={"ContentType": "application/json"})
        assert answer["json"] == {"a": 1}
        # a second Predictor over the same endpoint, by name, as the SDK's constructor takes it
        plain = Predictor("dogs", sagemaker_session=session)
        assert isinstance(plain.serializer, IdentitySerializer)
        body = plain.predict(b"abc", initial_args={"ContentType": "text/plain"})
        assert isinstance(body, bytes) and json.loads(body)["raw"] == "abc"
        assert json.loads(body)["accept"] == "application/json"  # BytesDeserializer asks */*
        csv = Predictor("dogs", serializer=CSVSerializer(), deserializer=CSVDeserializer())
        assert csv.predict([1, 2]) == [["1", "2"], ["3", "4"]]
        numbers = Predictor("dogs", deserializer=NumpyDeserializer(accept="text/csv"))
        assert numbers.predict(b"x").tolist() == [[1.0, 2.0], [3.0, 4.0]]
        # deploy(serializer=...) is set on the predictor_cls instance, as Model.deploy does
        other = model.deploy(serializer=JSONSerializer(), endpoint_name="dogs-json")
        try:
            assert isinstance(other, ImagePredictor) and isinstance(other.serializer, JSONSerializer)
            assert other.predict({"b": 2})["json"] == {"b": 2}
        finally:
            other.delete_endpoint()
        session.delete_endpoint("dogs")
        with pytest.raises(UserError, match="deleted"):
            predictor.predict(b"x")
    finally:
        if predictor._endpoint is not None and predictor._endpoint.running:
            predictor.delete_endpoint()
    with pytest.raises(UserError, match="no local endpoint named 'nowhere'"):
        Predictor("nowhere").predict(b"x")
