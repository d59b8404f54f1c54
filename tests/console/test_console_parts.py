"""The console's parts that need no browser: the command's errors, the path guard, the form parser and the
objective history chart."""

from __future__ import annotations

from pathlib import Path

from vizsla.console.app import parse_upload, safe_path
from vizsla.console.charts import history_svg
from vizsla.testing.cli import invoke_cli


def test_a_missing_runs_folder_is_named(tmp_path: Path) -> None:
    code, message = invoke_cli("console", "--runs", str(tmp_path / "nowhere"))
    assert code == 2 and "runs folder not found" in message and "nowhere" in message


def test_safe_path_keeps_to_the_runs_folder(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (runs / "job").mkdir(parents=True)
    (runs / "out").symlink_to(tmp_path)
    assert safe_path(runs, "job/spec.yaml") == (runs / "job" / "spec.yaml").resolve()
    for escape in ("../secret", "job/../../secret", "out/secret", "/etc/passwd"):
        assert safe_path(runs, escape) is None, escape


def test_the_form_parser_reads_a_browsers_multipart_body() -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="endpoint"\r\n\r\nshop\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="dog.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\x00\xff\r\n--XyZ--\r\n"
    )
    fields = parse_upload("multipart/form-data; boundary=XyZ", body)
    assert fields["endpoint"][2] == b"shop"
    assert fields["image"] == ("dog.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\xff")


def test_history_chart_marks_the_best_trial_and_skips_trials_without_a_value() -> None:
    trials = [{"trial": 0, "objective": 0.5}, {"trial": 1, "objective": None}, {"trial": 2, "objective": 0.9}]
    svg = history_svg(trials, "valid_accuracy", best=2)
    assert svg.count("<circle") == 2 and svg.count('class="best"') == 1
    assert "trial 2: 0.9000" in svg and "valid_accuracy" in svg
    assert history_svg([{"trial": 0, "objective": None}], "loss", best=None) == ""
