"""The SageMaker SDK's (v2) serializers: what `Predictor.predict(data)` turns DATA into before sending it.

Matched to aws/sagemaker-python-sdk `src/sagemaker/base_serializers.py` (re-exported by
`sagemaker/serializers.py`): each has CONTENT_TYPE (settable through `content_type=`) and `serialize(data)`.
As in the SDK, IdentitySerializer sends str/bytes as they are, while JSONSerializer json.dumps anything that
is not a dict, ndarray or file-like, a str included (so `JSONSerializer().serialize(json.dumps(x))` is
encoded twice there too; send such a string with IdentitySerializer("application/json")).
"""

from __future__ import annotations

import abc
import csv
import io
import json
from collections.abc import Iterable
from typing import Any

__all__ = [
    "BaseSerializer",
    "CSVSerializer",
    "DataSerializer",
    "IdentitySerializer",
    "JSONLinesSerializer",
    "JSONSerializer",
    "NumpySerializer",
    "SimpleBaseSerializer",
]


class BaseSerializer(abc.ABC):
    """Turns a Python object into a request body of type CONTENT_TYPE."""

    @abc.abstractmethod
    def serialize(self, data: Any) -> Any:
        """The request body for DATA (bytes or str)."""

    @property
    @abc.abstractmethod
    def CONTENT_TYPE(self) -> str:  # noqa: N802 - the SDK's name
        """The MIME type sent as Content-Type."""


class SimpleBaseSerializer(BaseSerializer):
    """A serializer whose Content-Type is given at init (the SDK's SimpleBaseSerializer)."""

    def __init__(self, content_type: str = "application/json") -> None:
        if not isinstance(content_type, str):
            raise ValueError(
                "content_type must be a string specifying the MIME type of the data sent in requests: "
                f"e.g. 'application/json', 'text/csv', etc. Got {content_type}"
            )
        self.content_type = content_type

    @property
    def CONTENT_TYPE(self) -> str:  # noqa: N802
        return self.content_type


class CSVSerializer(SimpleBaseSerializer):
    """Lists, arrays, DataFrames or file-likes as CSV text (rows joined by newlines)."""

    def __init__(self, content_type: str = "text/csv") -> None:
        super().__init__(content_type=content_type)

    def serialize(self, data: Any) -> Any:
        if hasattr(data, "read"):
            return data.read()
        if hasattr(data, "to_csv") and hasattr(data, "columns"):  # a pandas DataFrame
            return data.to_csv(header=False, index=False)
        mutable_sequence = _sequence_like(data) and hasattr(data, "__setitem__")
        multiple_rows = len(data) > 0 and _sequence_like(data[0])
        if mutable_sequence and multiple_rows:
            return "\n".join(self._row(row) for row in data)
        return self._row(data)

    @staticmethod
    def _row(data: Any) -> str:
        if isinstance(data, str):
            return data
        if hasattr(data, "flatten") and hasattr(data, "dtype"):  # numpy array
            data = data.flatten()
        if hasattr(data, "__len__"):
            if len(data) == 0:
                raise ValueError("Cannot serialize empty array")
            buffer = io.StringIO()
            csv.writer(buffer, delimiter=",").writerow(data)
            return buffer.getvalue().rstrip("\r\n")
        raise ValueError(f"Unable to handle input format: {type(data)}")


def _sequence_like(data: Any) -> bool:
    return hasattr(data, "__iter__") and hasattr(data, "__getitem__")


class NumpySerializer(SimpleBaseSerializer):
    """Arrays and lists as .npy bytes; file-likes are assumed to hold .npy data already."""

    def __init__(self, dtype: Any = None, content_type: str = "application/x-npy") -> None:
        super().__init__(content_type=content_type)
        self.dtype = dtype

    def serialize(self, data: Any) -> Any:
        import numpy as np

        if isinstance(data, np.ndarray):
            if data.size == 0:
                raise ValueError("Cannot serialize empty array.")
            return self._array(data)
        if isinstance(data, list):
            if len(data) == 0:
                raise ValueError("Cannot serialize empty array.")
            return self._array(np.array(data, self.dtype))
        if hasattr(data, "read"):
            return data.read()
        return self._array(np.array(data))

    @staticmethod
    def _array(array: Any) -> bytes:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, array)
        return buffer.getvalue()


class JSONSerializer(SimpleBaseSerializer):
    """Python objects as JSON text (dict values that are arrays become lists)."""

    def serialize(self, data: Any) -> Any:
        if isinstance(data, dict):
            return json.dumps({key: _tolist(value) for key, value in data.items()})
        if hasattr(data, "read"):
            return data.read()
        if hasattr(data, "tolist") and hasattr(data, "dtype"):
            return json.dumps(data.tolist())
        return json.dumps(data)


def _tolist(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") and hasattr(value, "dtype") else value


class IdentitySerializer(SimpleBaseSerializer):
    """DATA unchanged (bytes of an image file, a JSON string already encoded, ...)."""

    def __init__(self, content_type: str = "application/octet-stream") -> None:
        super().__init__(content_type=content_type)

    def serialize(self, data: Any) -> Any:
        return data


class JSONLinesSerializer(SimpleBaseSerializer):
    """An iterable of JSON values as one JSON document a line; str and file-likes unchanged."""

    def __init__(self, content_type: str = "application/jsonlines") -> None:
        super().__init__(content_type=content_type)

    def serialize(self, data: Any) -> Any:
        if isinstance(data, str):
            return data
        if hasattr(data, "read"):
            return data.read()
        if isinstance(data, Iterable):
            return "\n".join(json.dumps(element) for element in data)
        raise ValueError(f"Object of type {type(data)} is not JSON Lines serializable.")


class DataSerializer(SimpleBaseSerializer):
    """A file path (str) as the file's bytes, or bytes unchanged."""

    def __init__(self, content_type: str = "file-path/raw-bytes") -> None:
        super().__init__(content_type=content_type)

    def serialize(self, data: Any) -> Any:
        if isinstance(data, str):
            try:
                with open(data, "rb") as handle:
                    return handle.read()
            except OSError as exc:
                raise ValueError(f"Could not open/read file: {data}. {exc}") from None
        if isinstance(data, bytes):
            return data
        raise ValueError(f"Object of type {type(data)} is not Data serializable.")
