"""The SageMaker SDK's (v2) deserializers: what `Predictor.predict` turns the response body into.

Matched to aws/sagemaker-python-sdk `src/sagemaker/base_deserializers.py` (re-exported by
`sagemaker/deserializers.py`): each has ACCEPT (a tuple, from `accept=`) and `deserialize(stream,
content_type)`, which reads and closes STREAM. One deliberate difference: NumpyDeserializer defaults to
`allow_pickle=False` (the SDK flipped its default too, aws/sagemaker-python-sdk PR #4557): an endpoint's
answer is not trusted to unpickle.
"""

from __future__ import annotations

import abc
import codecs
import csv
import io
import json
from typing import Any

__all__ = [
    "BaseDeserializer",
    "BytesDeserializer",
    "CSVDeserializer",
    "JSONDeserializer",
    "JSONLinesDeserializer",
    "NumpyDeserializer",
    "PandasDeserializer",
    "SimpleBaseDeserializer",
    "StreamDeserializer",
    "StringDeserializer",
]


class BaseDeserializer(abc.ABC):
    """Turns a response body of one of the ACCEPT types into a Python object."""

    @abc.abstractmethod
    def deserialize(self, stream: Any, content_type: str) -> Any:
        """The object for the bytes in STREAM (a file-like with read() and close())."""

    @property
    @abc.abstractmethod
    def ACCEPT(self) -> tuple[str, ...]:  # noqa: N802 - the SDK's name
        """The MIME types asked for with Accept."""


class SimpleBaseDeserializer(BaseDeserializer):
    """A deserializer whose Accept is given at init (the SDK's SimpleBaseDeserializer)."""

    def __init__(self, accept: str | tuple[str, ...] = "*/*") -> None:
        self.accept = accept

    @property
    def ACCEPT(self) -> tuple[str, ...]:  # noqa: N802
        return (self.accept,) if isinstance(self.accept, str) else tuple(self.accept)


class StringDeserializer(SimpleBaseDeserializer):
    """The body decoded to str."""

    def __init__(self, encoding: str = "UTF-8", accept: str | tuple[str, ...] = "application/json") -> None:
        super().__init__(accept=accept)
        self.encoding = encoding

    def deserialize(self, stream: Any, content_type: str) -> str:
        try:
            return stream.read().decode(self.encoding)
        finally:
            stream.close()


class BytesDeserializer(SimpleBaseDeserializer):
    """The body as bytes (the SDK's Predictor default)."""

    def deserialize(self, stream: Any, content_type: str) -> bytes:
        try:
            return stream.read()
        finally:
            stream.close()


class CSVDeserializer(SimpleBaseDeserializer):
    """CSV text as a list of rows (lists of str)."""

    def __init__(self, encoding: str = "utf-8", accept: str | tuple[str, ...] = "text/csv") -> None:
        super().__init__(accept=accept)
        self.encoding = encoding

    def deserialize(self, stream: Any, content_type: str) -> list[list[str]]:
        try:
            return list(csv.reader(stream.read().decode(self.encoding).splitlines()))
        finally:
            stream.close()


class StreamDeserializer(SimpleBaseDeserializer):
    """(stream, content_type) unread: the caller reads and closes the stream."""

    def deserialize(self, stream: Any, content_type: str) -> tuple[Any, str]:
        return stream, content_type


class NumpyDeserializer(SimpleBaseDeserializer):
    """.npy, CSV or JSON bodies as a numpy array (by the response's content type)."""

    def __init__(
        self,
        dtype: Any = None,
        accept: str | tuple[str, ...] = "application/x-npy",
        allow_pickle: bool = False,
    ) -> None:
        super().__init__(accept=accept)
        self.dtype = dtype
        self.allow_pickle = allow_pickle

    def deserialize(self, stream: Any, content_type: str) -> Any:
        import numpy as np

        try:
            if content_type == "text/csv":
                return np.genfromtxt(codecs.getreader("utf-8")(stream), delimiter=",", dtype=self.dtype)
            if content_type == "application/json":
                return np.array(json.load(codecs.getreader("utf-8")(stream)), dtype=self.dtype)
            if content_type == "application/x-npy":
                return np.load(io.BytesIO(stream.read()), allow_pickle=self.allow_pickle)
        finally:
            stream.close()
        raise ValueError(f"{type(self).__name__} cannot read content type {content_type}.")


class JSONDeserializer(SimpleBaseDeserializer):
    """A JSON body as the Python object."""

    def __init__(self, accept: str | tuple[str, ...] = "application/json") -> None:
        super().__init__(accept=accept)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        try:
            return json.load(codecs.getreader("utf-8")(stream))
        finally:
            stream.close()


class PandasDeserializer(SimpleBaseDeserializer):
    """CSV or JSON (columns orient) bodies as a pandas DataFrame."""

    def __init__(self, accept: str | tuple[str, ...] = ("text/csv", "application/json")) -> None:
        super().__init__(accept=accept)

    def deserialize(self, stream: Any, content_type: str) -> Any:
        import pandas

        if content_type == "text/csv":
            return pandas.read_csv(stream)
        if content_type == "application/json":
            return pandas.read_json(stream)
        raise ValueError(f"{type(self).__name__} cannot read content type {content_type}.")


class JSONLinesDeserializer(SimpleBaseDeserializer):
    """JSON Lines as a list of objects."""

    def __init__(self, accept: str | tuple[str, ...] = "application/jsonlines") -> None:
        super().__init__(accept=accept)

    def deserialize(self, stream: Any, content_type: str) -> list[Any]:
        try:
            lines = stream.read().decode("utf-8").rstrip().split("\n")
            return [json.loads(line) for line in lines]
        finally:
            stream.close()
