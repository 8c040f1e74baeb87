"""The blob stores, local and S3, behave the same: streamed in, streamed out, atomic."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from imagegate.blobs import BlobNotFound, BlobStore, LocalBlobStore, blob_store
from imagegate.blobs.s3 import S3BlobStore
from imagegate.config import Settings
from tests.blob_fixtures import BACKENDS, S3_CREDENTIALS, s3_endpoint  # noqa: F401


async def _bucket(endpoint: str, name: str, prefix: str = "") -> S3BlobStore:
    """An S3 store on a new bucket of the test server."""
    s3 = S3BlobStore(
        f"{name}-{secrets.token_hex(6)}",
        prefix=prefix,
        endpoint_url=endpoint,
        region="us-east-1",
        access_key_id="testing",
        secret_access_key="testing",
    )
    await s3.create_bucket()
    return s3


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    s3 = await _bucket(request.getfixturevalue("s3_endpoint"), "blobs", prefix="p/")
    try:
        yield s3
    finally:
        await s3.close()


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_put_read_open_delete(store: BlobStore) -> None:
    # put answers with the SHA-256 of what it stored (a file's sha256 comes from it).
    assert (
        await store.put("ws/a.png", b"hello", "image/png") == hashlib.sha256(b"hello").hexdigest()
    )
    assert await store.read("ws/a.png") == b"hello"
    assert b"".join([c async for c in await store.open("ws/a.png", chunk_size=2)]) == b"hello"
    assert b"".join([c async for c in store.stream("ws/a.png")]) == b"hello"
    await store.delete("ws/a.png")
    await store.delete("ws/a.png")  # deleting what is gone is fine
    with pytest.raises(BlobNotFound):
        await store.read("ws/a.png")


async def test_open_of_a_missing_blob_fails_before_the_first_chunk(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await store.open("nope/missing.png")


async def test_put_stream_small_and_multipart(store: BlobStore) -> None:
    # put_stream answers with the size and SHA-256 of what it stored (an upload's sha256).
    small = os.urandom(100_000)
    assert await store.put_stream("s.bin", chunks_of(small, 7_000), "application/octet-stream") == (
        len(small),
        hashlib.sha256(small).hexdigest(),
    )
    assert await store.read("s.bin") == small
    # Over one S3 part (8 MiB): goes up as a multipart upload, one part in memory at a time.
    large = os.urandom(9 * 1024 * 1024 + 123)
    stored = await store.put_stream(
        "l.bin", chunks_of(large, 1024 * 1024), "application/octet-stream"
    )
    assert stored == (len(large), hashlib.sha256(large).hexdigest())
    assert await store.read("l.bin") == large


async def test_a_failed_stream_leaves_no_blob(store: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(9 * 1024 * 1024)
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        await store.put_stream("broken.bin", broken(), "application/octet-stream")
    with pytest.raises(BlobNotFound):
        await store.read("broken.bin")


async def test_local_blobs_are_on_disk_before_put_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's data is flushed before the rename; the rename, and every directory
    created for the blob, before put returns."""
    events: list[object] = []

    def recording(real, kind):  # type: ignore[no-untyped-def]
        def sync(fd: int) -> None:
            found = os.fstat(fd)
            events.append(found.st_ino if stat.S_ISDIR(found.st_mode) else kind)
            real(fd)

        return sync

    real_replace = os.replace

    def replace(src: object, dst: object) -> None:
        events.append("rename")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "fsync", recording(os.fsync, "file"))
    if hasattr(os, "fdatasync"):
        monkeypatch.setattr(os, "fdatasync", recording(os.fdatasync, "file"))
    monkeypatch.setattr(os, "replace", replace)
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    data = secrets.token_bytes(300_000)
    await store.put("a/b/one.png", data, "image/png")
    inode = {name: (root / name).stat().st_ino for name in ("", "a", "a/b")}
    # a/b gets the file, a gets b, the root gets a.
    assert events == ["file", "rename", inode["a/b"], inode["a"], inode[""]]
    events.clear()
    await store.put_stream("a/b/two.png", chunks_of(data, 70_000), "image/png")
    assert events == ["file", "rename", inode["a/b"]]
    assert await store.read("a/b/one.png") == await store.read("a/b/two.png") == data
    assert sorted(p.name for p in (root / "a" / "b").iterdir()) == ["one.png", "two.png"]


async def test_local_store_makes_a_missing_directory_again(tmp_path: Path) -> None:
    """Directories are made when creating the temp file in them fails, not looked up
    before each write: one removed behind the store's back is made again."""
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    await store.put("ws/outputs/one.png", b"one", "image/png")
    (root / "ws" / "outputs" / "one.png").unlink()
    (root / "ws" / "outputs").rmdir()
    await store.put("ws/outputs/two.png", b"two", "image/png")
    await store.put_stream("ws/other/three.png", chunks_of(b"three", 2), "image/png")
    assert await store.read("ws/outputs/two.png") == b"two"
    assert await store.read("ws/other/three.png") == b"three"
    assert sorted(p.name for p in (root / "ws").iterdir()) == ["other", "outputs"]
    assert not [p for p in root.rglob("*.tmp")]


async def test_local_keys_cannot_escape_the_directory(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    for key in ("../outside", "a/../../outside", "/etc/passwd", ""):
        with pytest.raises(ValueError):
            await store.put(key, b"x", "text/plain")
    assert not (tmp_path / "outside").exists()
    assert await store.presigned_url("a", 60) is None


@pytest.mark.parametrize("calculation", ["when_supported", "when_required"])
async def test_s3_put_sends_the_digest_for_the_store_to_check(
    s3_endpoint: str,  # noqa: F811
    calculation: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An operator whose store refuses checksums turns the SDK's off; the digest then
    # stays home too.
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", calculation)
    store = await _bucket(s3_endpoint, "digest")
    try:
        digest = await store.put("k.png", b"bytes", "image/png")
        assert digest == hashlib.sha256(b"bytes").hexdigest()
        client = await store.client()
        head = await client.head_object(Bucket=store.bucket, Key="k.png", ChecksumMode="ENABLED")
        if calculation == "when_supported":
            assert base64.b64decode(head["ChecksumSHA256"]).hex() == digest
        else:
            assert "ChecksumSHA256" not in head
    finally:
        await store.close()


async def test_s3_presigned_urls_are_served_by_the_store(s3_endpoint: str) -> None:  # noqa: F811
    store = await _bucket(s3_endpoint, "presign")
    try:
        await store.put("k.png", b"bytes", "image/png")
        url = await store.presigned_url("k.png", 60)
        assert url is not None and url.startswith(s3_endpoint)
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        assert response.status_code == 200
        assert response.content == b"bytes"
    finally:
        await store.close()


def test_settings_choose_the_store(tmp_path: Path) -> None:
    local = blob_store(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalBlobStore)
    assert local.root == (tmp_path / "blobs").resolve()
    s3 = blob_store(
        Settings(
            data_dir=tmp_path, blob_backend="s3", s3_bucket="b", s3_prefix="x/", **S3_CREDENTIALS
        )  # type: ignore[arg-type]
    )
    assert isinstance(s3, S3BlobStore)
    assert (s3.bucket, s3.object_key("k")) == ("b", "x/k")
    with pytest.raises(ValueError, match="IMAGEGATE_S3_BUCKET"):
        Settings(data_dir=tmp_path, blob_backend="s3")
