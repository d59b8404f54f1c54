"""File names that are not valid UTF-8, and how Vizsla writes them where only text fits.

A POSIX file name is bytes. One that is not valid UTF-8 (a Latin-1 "caf\\xe9.jpg" from an old archive)
reaches Python as a str with surrogate escapes ("caf\\udce9.jpg", see os.fsdecode), which opens the file
but cannot be encoded as UTF-8. Where a name must find its file again (CSV manifests: see
`vizsla.data.validate.write_csv_text`; JSON, which escapes the surrogate) it is kept exactly; where it is
only shown (logs, HTML reports, plots, MLflow params and tags) `printable` spells each undecodable byte as
\\xNN.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """TEXT with every undecodable file-name byte spelled \\xNN: valid UTF-8 whatever the name was."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that escapes no byte (from JSON, say): \udXXX
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")
