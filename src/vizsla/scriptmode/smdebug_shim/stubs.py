"""smdebug's public names that Vizsla's stand-in cannot provide: importable, NotImplementedError when used.

A script that only imports them (`from smdebug.trials import S3Trial`) runs; one that uses them learns why.
"""

from __future__ import annotations

from typing import Any, NoReturn


def _message(qualname: str, why: str) -> str:
    return f"{qualname} is not provided by Vizsla's smdebug stand-in: {why}"


def unavailable_class(qualname: str, why: str) -> type:
    """A class named like smdebug's whose instantiation raises NotImplementedError(why)."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(_message(qualname, why))

    name = qualname.rpartition(".")[2]
    return type(
        name,
        (),
        {"__init__": __init__, "__doc__": _message(qualname, why), "__module__": qualname.rpartition(".")[0]},
    )


def unavailable_function(qualname: str, why: str) -> Any:
    """A function named like smdebug's that raises NotImplementedError(why) when called."""

    def function(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(_message(qualname, why))

    function.__name__ = function.__qualname__ = qualname.rpartition(".")[2]
    function.__module__ = qualname.rpartition(".")[0]
    function.__doc__ = _message(qualname, why)
    return function
