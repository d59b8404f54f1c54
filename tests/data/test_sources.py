"""Remote sources: a real S3-compatible server (moto server mode) and fsspec's memory filesystem."""

from __future__ import annotations

import io
import json
import threading
import uuid
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from vizsla.data.sources import default_cache_root, is_remote, materialize, mirror
from vizsla.errors import DataError

SPLITS = {"train": 3, "valid": 2, "test": 2}
CLASSES = ("ants", "bees")


def _png(seed: int) -> bytes:
    """A small real PNG whose bytes differ per seed."""
    from PIL import Image

    image = Image.new("RGB", (12, 10), ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    image.putpixel((seed % 12, seed % 10), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _image_folder() -> dict[str, bytes]:
    """Relative path -> bytes of a train/valid/test folder with two classes."""
    files = {}
    for split, n in SPLITS.items():
        for c, cls in enumerate(CLASSES):
            for i in range(n):
                files[f"{split}/{cls}/img_{i}.png"] = _png(100 * c + 10 * i + len(split))
    return files


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _stamps(root: Path) -> dict[str, tuple[int, int]]:
    """Inode and mtime of each file: a re-download (temp file + rename) changes both."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


# --- S3 through a real moto server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint):
    """A fresh bucket holding the image folder under data/: (boto3 client, bucket, storage_options)."""
    boto3 = pytest.importorskip("boto3")
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    bucket = f"vizsla-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    for rel, data in _image_folder().items():
        client.put_object(Bucket=bucket, Key=f"data/{rel}", Body=data)
    client.put_object(Bucket=bucket, Key="data/train/", Body=b"")  # a console-made "folder" marker
    client.put_object(Bucket=bucket, Key="other/unrelated.png", Body=_png(1))
    options = {
        "key": "test",
        "secret": "test",
        "client_kwargs": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
    }
    return client, bucket, options


@pytest.mark.integration  # a real S3-compatible server on a local port
def test_s3_prefix_is_copied_with_its_layout(s3, tmp_path, capsys):
    _, bucket, options = s3
    local = materialize(f"s3://{bucket}/data", options, tmp_path / "cache", progress=True)
    assert local.parent == (tmp_path / "cache").resolve()
    assert _tree(local) == _image_folder()
    assert "downloading" in capsys.readouterr().err


@pytest.mark.integration  # a real S3-compatible server on a local port
def test_s3_second_call_downloads_nothing(s3, tmp_path):
    _, bucket, options = s3
    local = materialize(f"s3://{bucket}/data/", options, tmp_path, progress=False)
    before = _stamps(local)
    again = materialize(f"s3://{bucket}/data", options, tmp_path, progress=False)
    assert again == local
    assert _stamps(local) == before
    result = mirror(
        f"s3://{bucket}/data", local, options, progress=False, manifest=local.with_suffix(".json")
    )
    assert (result.downloaded, result.unchanged, result.removed) == (0, len(_image_folder()), 0)


@pytest.mark.integration  # a real S3-compatible server on a local port
def test_s3_changed_object_is_downloaded_again_and_deleted_one_removed(s3, tmp_path):
    client, bucket, options = s3
    local = materialize(f"s3://{bucket}/data", options, tmp_path, progress=False)
    before = _stamps(local)
    changed, deleted = "train/ants/img_0.png", "valid/bees/img_1.png"
    new_bytes = bytes(reversed(_image_folder()[changed]))  # same size: only the ETag tells it changed
    client.put_object(Bucket=bucket, Key=f"data/{changed}", Body=new_bytes)
    client.delete_object(Bucket=bucket, Key=f"data/{deleted}")

    materialize(f"s3://{bucket}/data", options, tmp_path, progress=False)

    expected = _image_folder()
    expected[changed] = new_bytes
    del expected[deleted]
    assert _tree(local) == expected
    after = _stamps(local)
    assert after[changed] != before[changed]
    assert all(after[rel] == before[rel] for rel in expected if rel != changed)
    manifest = json.loads((tmp_path / f"{local.name}.json").read_text())
    assert sorted(manifest["files"]) == sorted(expected)


@pytest.mark.integration  # a real S3-compatible server on a local port
def test_s3_missing_bucket_is_a_data_error(s3, tmp_path):
    _, _, options = s3
    with pytest.raises(DataError, match=r"s3://no-such-bucket-vizsla/data.*not found"):
        materialize("s3://no-such-bucket-vizsla/data", options, tmp_path, progress=False)


@pytest.mark.integration  # a real S3-compatible server on a local port
def test_s3_empty_prefix_is_a_data_error(s3, tmp_path):
    _, bucket, options = s3
    with pytest.raises(DataError, match=rf"no files found under s3://{bucket}/nothing-here"):
        materialize(f"s3://{bucket}/nothing-here", options, tmp_path, progress=False)


# --- memory:// and local paths --------------------------------------------------------------------


@pytest.fixture
def memory_uri():
    """A memory:// prefix holding the image folder; removed afterwards (the store is process-global)."""
    fs = fsspec.filesystem("memory")
    root = f"/vizsla-test-{uuid.uuid4().hex[:8]}"
    for rel, data in _image_folder().items():
        fs.pipe_file(f"{root}/{rel}", data)
    yield f"memory://{root}", fs, root
    fs.rm(root, recursive=True)


def test_memory_uri_round_trip_and_sync(memory_uri, tmp_path):
    uri, fs, root = memory_uri
    local = materialize(uri, cache_root=tmp_path, progress=False)
    assert _tree(local) == _image_folder()
    fs.pipe_file(f"{root}/test/bees/img_9.png", _png(9))
    fs.rm(f"{root}/test/ants", recursive=True)
    materialize(uri, cache_root=tmp_path, progress=False)
    expected = {k: v for k, v in _image_folder().items() if not k.startswith("test/ants/")}
    expected["test/bees/img_9.png"] = _png(9)
    assert _tree(local) == expected
    assert not (local / "test" / "ants").exists()  # emptied folders go too


def test_leftover_partial_and_stray_files_are_removed(memory_uri, tmp_path):
    uri, _, _ = memory_uri
    local = materialize(uri, cache_root=tmp_path, progress=False)
    (local / "train" / "ants" / ".img_0.png.1234abcd.part").write_bytes(b"half")
    (local / "train" / "stray.txt").write_text("not remote")
    result = mirror(uri, local, progress=False, manifest=tmp_path / f"{local.name}.json")
    assert result.removed == 1 and result.downloaded == 0
    assert _tree(local) == _image_folder()


class _MemoryVariant(MemoryFileSystem):
    """The process-global memory store under another protocol name (MemoryFileSystem strips only memory://)."""

    @classmethod
    def _strip_protocol(cls, path):
        prefix = f"{cls.protocol}://"
        return super()._strip_protocol(path[len(prefix) :] if str(path).startswith(prefix) else path)


class _FailingMemoryFS(_MemoryVariant):
    """A memory filesystem whose copy of one file dies half-way, like a killed or dropped download."""

    protocol = "vizsla-failing"
    fail_name = "img_1.png"

    def get_file(self, rpath, lpath, callback=None, **kwargs):
        if rpath.endswith(self.fail_name):
            with open(lpath, "wb") as out:
                out.write(self.cat_file(rpath)[:10])
            raise ConnectionResetError("connection reset by peer")
        return super().get_file(rpath, lpath, callback=callback, **kwargs)


def test_interrupted_download_leaves_no_complete_looking_file(memory_uri, tmp_path):
    _, _, root = memory_uri
    fsspec.register_implementation(_FailingMemoryFS.protocol, _FailingMemoryFS, clobber=True)
    with pytest.raises(DataError, match=r"vizsla-failing://.*ConnectionResetError"):
        materialize(f"vizsla-failing://{root}", cache_root=tmp_path, progress=False)
    (local,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    names = [p.name for p in local.rglob("*") if p.is_file()]
    assert "img_1.png" not in names and not [n for n in names if n.endswith(".part")]
    assert len(names) == len(_image_folder()) - 6  # every other file was kept...
    manifest = json.loads((tmp_path / f"{local.name}.json").read_text())
    assert len(manifest["files"]) == len(names)  # ...and recorded, so the retry fetches only the rest
    before = _stamps(local)
    _FailingMemoryFS.fail_name = "no-such-file"
    try:
        materialize(f"vizsla-failing://{root}", cache_root=tmp_path, progress=False)
    finally:
        _FailingMemoryFS.fail_name = "img_1.png"
    assert _tree(local) == _image_folder()
    assert all(_stamps(local)[rel] == stamp for rel, stamp in before.items())


class _DeniedFS(_MemoryVariant):
    protocol = "vizsla-denied"

    def find(self, path, *args, **kwargs):
        raise PermissionError(f"AccessDenied: {path}")


def test_permission_error_names_the_uri_and_credentials(tmp_path):
    fsspec.register_implementation(_DeniedFS.protocol, _DeniedFS, clobber=True)
    with pytest.raises(DataError, match=r"vizsla-denied://bucket/x: access denied") as info:
        materialize("vizsla-denied://bucket/x", cache_root=tmp_path, progress=False)
    assert "credentials" in str(info.value)


def test_unknown_protocol_and_missing_backend(tmp_path):
    with pytest.raises(DataError, match=r"unknown protocol 'nosuchproto'"):
        materialize("nosuchproto://bucket/x", cache_root=tmp_path, progress=False)
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(DataError, match=r"gs://bucket/x") as info:
            materialize("gs://bucket/x", cache_root=tmp_path, progress=False)
        assert "pip install 'vizsla[gcs]'" in str(info.value)


def test_concurrent_syncs_of_one_uri_agree(memory_uri, tmp_path):
    uri, _, _ = memory_uri
    results, errors = [], []

    def run() -> None:
        try:
            results.append(materialize(uri, cache_root=tmp_path, progress=False))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(results)) == 1
    assert _tree(results[0]) == _image_folder()


def test_local_paths_are_returned_without_copy(tmp_path):
    (tmp_path / "data").mkdir()
    assert materialize(str(tmp_path / "data")) == (tmp_path / "data").resolve()
    assert materialize(f"file://{tmp_path}/data/../data") == (tmp_path / "data").resolve()
    assert list(tmp_path.iterdir()) == [tmp_path / "data"]


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("/data/images", False),
        ("relative/images", False),
        ("file:///data/images", False),
        ("s3://bucket/prefix", True),
        ("gs://bucket/prefix", True),
        ("az://container/prefix", True),
        ("memory://x", True),
        ("simplecache::s3://bucket/prefix", True),
    ],
)
def test_is_remote(uri, remote):
    assert is_remote(uri) is remote


def test_default_cache_root_follows_environment(monkeypatch, tmp_path, memory_uri):
    monkeypatch.setenv("VIZSLA_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_root() == tmp_path / "env-cache" / "datasets"
    local = materialize(memory_uri[0], progress=False)
    assert local.parent == (tmp_path / "env-cache" / "datasets").resolve()
    monkeypatch.delenv("VIZSLA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "xdg" / "vizsla" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_root() == Path.home() / ".cache" / "vizsla" / "datasets"
