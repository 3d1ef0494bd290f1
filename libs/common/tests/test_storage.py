"""The file storage: one behaviour for local disk and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from libs.common.storage import (
    FileMissing,
    FileStorage,
    FileTooLarge,
    InvalidKey,
    LocalStorage,
    S3Storage,
    StorageError,
    StorageSettings,
    build_storage,
    check_key,
    new_key,
)
from libs.common.testing.seaweedfs import SeaweedS3

WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(range(256)) * 40  # any bytes do; a webp head


def test_the_s3_server_answers_boto3_put_and_get(s3_server: SeaweedS3) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="boto3/check", Body=b"hello",
                      ContentType="text/plain")
    got = client.get_object(Bucket=s3_server.bucket, Key="boto3/check")
    assert got["Body"].read() == b"hello"
    assert got["ContentType"] == "text/plain"
    client.delete_object(Bucket=s3_server.bucket, Key="boto3/check")


def _s3(server: SeaweedS3, **options: object) -> S3Storage:
    return S3Storage(
        server.bucket,
        endpoint_url=server.endpoint_url,
        access_key_id=server.access_key,
        secret_access_key=server.secret_key,
        prefix=f"t-{uuid.uuid4().hex[:8]}/",
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", "s3"])
async def storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[FileStorage]:
    store: FileStorage
    if request.param == "local":
        store = LocalStorage(tmp_path / "files", max_bytes=64 * 1024)
    else:
        store = _s3(request.getfixturevalue("s3_server"), max_bytes=64 * 1024)
    yield store
    await store.aclose()


async def test_put_then_read_stat_exists_and_delete(storage: FileStorage) -> None:
    key = new_key(7, "images", "image/webp")
    assert key.startswith("accounts/7/images/")
    assert key.endswith(".webp")
    stored = await storage.put(key, WEBP, account_id=7, content_type="image/webp")
    assert stored.key == key
    assert stored.size == len(WEBP)
    assert stored.content_type == "image/webp"
    assert stored.sha256 == hashlib.sha256(WEBP).hexdigest()
    assert await storage.read(key, account_id=7) == WEBP
    info = await storage.stat(key, account_id=7)
    assert (info.key, info.size, info.content_type) == (key, len(WEBP), "image/webp")
    assert await storage.exists(key, account_id=7)
    await storage.delete(key, account_id=7)
    assert not await storage.exists(key, account_id=7)
    await storage.delete(key, account_id=7)  # deleting what is gone is fine
    with pytest.raises(FileMissing):
        await storage.read(key, account_id=7)
    with pytest.raises(FileMissing):
        await storage.stat(key, account_id=7)
    with pytest.raises(FileMissing):
        await storage.open(key, account_id=7)


async def test_a_stream_gives_the_bytes_in_chunks(storage: FileStorage) -> None:
    key = new_key(3, "images", "image/webp")
    await storage.put(key, WEBP, account_id=3, content_type="image/webp")
    async with await storage.open(key, account_id=3, chunk_size=1000) as stream:
        assert stream.info.size == len(WEBP)
        assert stream.info.content_type == "image/webp"
        chunks = [chunk async for chunk in stream]
    assert b"".join(chunks) == WEBP
    assert len(chunks) == -(-len(WEBP) // 1000)
    # Stopping early and closing releases the file.
    stream = await storage.open(key, account_id=3, chunk_size=100)
    async for first in stream:
        assert first == WEBP[:100]
        break
    await stream.aclose()
    assert (await (await storage.open(key, account_id=3)).read_all()) == WEBP


async def test_a_second_put_replaces_the_file(storage: FileStorage) -> None:
    key = new_key(3, "images", "image/png")
    await storage.put(key, b"first", account_id=3, content_type="image/png")
    stored = await storage.put(key, b"second!", account_id=3, content_type="image/png")
    assert await storage.read(key, account_id=3) == b"second!"
    assert stored.size == 7


async def test_a_key_never_crosses_tenants(storage: FileStorage) -> None:
    key = new_key(1, "images", "image/webp")
    await storage.put(key, WEBP, account_id=1, content_type="image/webp")
    for call in (
        storage.read(key, account_id=2),
        storage.stat(key, account_id=2),
        storage.exists(key, account_id=2),
        storage.open(key, account_id=2),
        storage.delete(key, account_id=2),
        storage.put(key, b"evil", account_id=2, content_type="image/webp"),
        storage.signed_url(key, account_id=2),
    ):
        with pytest.raises(InvalidKey, match="not in account 2"):
            await call
    assert await storage.read(key, account_id=1) == WEBP


@pytest.mark.parametrize("key", [
    "../accounts/1/images/x.webp",
    "accounts/1/images/../../2/images/x.webp",
    "accounts/1/../2/images/x.webp",
    "/accounts/1/images/x.webp",
    "accounts/01/images/x.webp",
    "accounts/1/images/sub/x.webp",
    "accounts/1/images/.hidden.webp",
    "accounts/1/images/x.webp/",
    "accounts/1/images/x",
    "accounts/1/Images/x.webp",
    "accounts/1/images/x.svg",
    "accounts/1/images/x.webp\x00.png",
    "accounts/1/images/x y.webp",
    "",
])
async def test_malformed_keys_are_refused_before_any_io(storage: FileStorage, key: str) -> None:
    with pytest.raises(InvalidKey):
        await storage.put(key, b"x", account_id=1, content_type="image/webp")
    with pytest.raises(InvalidKey):
        await storage.read(key, account_id=1)
    with pytest.raises(InvalidKey):
        await storage.delete(key, account_id=1)


async def test_the_extension_must_agree_with_the_content_type(storage: FileStorage) -> None:
    key = new_key(1, "images", "image/webp")
    with pytest.raises(InvalidKey, match="holds image/webp, not image/png"):
        await storage.put(key, b"x", account_id=1, content_type="image/png")
    assert not await storage.exists(key, account_id=1)


async def test_data_over_the_limit_is_refused_and_nothing_is_written(
    storage: FileStorage,
) -> None:
    key = new_key(1, "images", "image/webp")
    with pytest.raises(FileTooLarge):
        await storage.put(key, b"x" * (64 * 1024 + 1), account_id=1, content_type="image/webp")
    assert not await storage.exists(key, account_id=1)


async def test_parallel_puts_all_land(storage: FileStorage) -> None:
    keys = [new_key(5, "images", "image/webp") for _ in range(12)]
    await asyncio.gather(*(
        storage.put(k, f"image {i}".encode(), account_id=5, content_type="image/webp")
        for i, k in enumerate(keys)
    ))
    assert [await storage.read(k, account_id=5) for k in keys] == [
        f"image {i}".encode() for i in range(len(keys))
    ]


def test_new_key_checks_its_inputs() -> None:
    with pytest.raises(InvalidKey):
        new_key(0, "images", "image/webp")
    with pytest.raises(InvalidKey):
        new_key(True, "images", "image/webp")
    with pytest.raises(InvalidKey):
        new_key(1, "../images", "image/webp")
    with pytest.raises(InvalidKey, match="image/svg"):
        new_key(1, "images", "image/svg+xml")
    assert check_key(new_key(9, "invoices", "application/pdf"), 9) == "application/pdf"


# --- local disk only ---------------------------------------------------------------------------


async def test_local_writes_are_atomic_and_leave_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalStorage(tmp_path)
    key = new_key(1, "images", "image/webp")
    await store.put(key, b"old", account_id=1, content_type="image/webp")

    def crash(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        await store.put(key, b"new", account_id=1, content_type="image/webp")
    monkeypatch.undo()
    assert await store.read(key, account_id=1) == b"old"
    folder = tmp_path / "accounts" / "1" / "images"
    assert [p.name for p in folder.iterdir()] == [key.rsplit("/", 1)[1]]
    assert (folder / key.rsplit("/", 1)[1]).stat().st_mode & 0o777 == 0o640


async def test_local_never_follows_a_symlink_planted_under_a_key(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    store = LocalStorage(tmp_path / "files")
    key = new_key(1, "images", "image/png")
    link = tmp_path / "files" / key
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)
    with pytest.raises(StorageError) as caught:
        await store.read(key, account_id=1)
    assert not isinstance(caught.value, FileMissing)
    with pytest.raises(StorageError):
        await store.open(key, account_id=1)
    # A put replaces the link itself, never writes through it.
    await store.put(key, b"mine", account_id=1, content_type="image/png")
    assert secret.read_text() == "not yours"
    assert await store.read(key, account_id=1) == b"mine"


async def test_local_has_no_signed_url(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path)
    assert await store.signed_url(new_key(1, "images", "image/webp"), account_id=1) is None


# --- S3 only -----------------------------------------------------------------------------------


async def test_s3_keeps_the_sha256_and_content_type_on_the_object(s3_server: SeaweedS3) -> None:
    store = _s3(s3_server)
    key = new_key(4, "images", "image/webp")
    stored = await store.put(key, WEBP, account_id=4, content_type="image/webp")
    head = s3_server.client().head_object(Bucket=s3_server.bucket, Key=store.prefix + key)
    assert head["ContentType"] == "image/webp"
    assert head["Metadata"] == {"sha256": stored.sha256}
    await store.aclose()


async def test_s3_signed_url_serves_the_bytes(s3_server: SeaweedS3) -> None:
    store = _s3(s3_server)
    key = new_key(4, "images", "image/webp")
    await store.put(key, WEBP, account_id=4, content_type="image/webp")
    url = await store.signed_url(key, account_id=4, expires_in=60)
    assert url is not None
    assert url.startswith(s3_server.endpoint_url)
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == WEBP
    await store.aclose()


async def test_s3_wrong_secret_is_a_storage_error(s3_server: SeaweedS3) -> None:
    store = S3Storage(
        s3_server.bucket, endpoint_url=s3_server.endpoint_url,
        access_key_id=s3_server.access_key, secret_access_key="wrong", max_attempts=1,
    )
    with pytest.raises(StorageError, match="SignatureDoesNotMatch") as caught:
        await store.put(new_key(1, "images", "image/webp"), b"x", account_id=1,
                        content_type="image/webp")
    assert not isinstance(caught.value, FileMissing)
    await store.aclose()


async def test_s3_unreachable_store_is_a_storage_error() -> None:
    from libs.common.embedded import free_port

    store = S3Storage("b", endpoint_url=f"http://127.0.0.1:{free_port()}",
                      access_key_id="a", secret_access_key="b", max_attempts=1,
                      connect_timeout=1.0)
    with pytest.raises(StorageError, match="could not be reached"):
        await store.read(new_key(1, "images", "image/webp"), account_id=1)
    await store.aclose()


async def test_s3_ensure_bucket_creates_a_missing_bucket(s3_server: SeaweedS3) -> None:
    name = f"igny8-{uuid.uuid4().hex[:10]}"
    store = S3Storage(name, endpoint_url=s3_server.endpoint_url,
                      access_key_id=s3_server.access_key,
                      secret_access_key=s3_server.secret_key)
    await store.ensure_bucket()
    await store.ensure_bucket()  # twice is fine
    key = new_key(1, "images", "image/webp")
    await store.put(key, b"x", account_id=1, content_type="image/webp")
    assert await store.read(key, account_id=1) == b"x"
    await store.aclose()


# --- settings ----------------------------------------------------------------------------------


def test_settings_default_to_local_disk_under_igny8_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IGNY8_HOME", str(tmp_path))
    store = build_storage(StorageSettings())
    assert isinstance(store, LocalStorage)
    assert store.root == (tmp_path / "files").resolve()
    monkeypatch.setenv("IGNY8_STORAGE_DIR", str(tmp_path / "elsewhere"))
    store = build_storage(StorageSettings())
    assert isinstance(store, LocalStorage)
    assert store.root == (tmp_path / "elsewhere").resolve()


async def test_settings_build_the_s3_backend(
    s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "IGNY8_STORAGE_BACKEND": "s3",
        "IGNY8_STORAGE_S3_BUCKET": s3_server.bucket,
        "IGNY8_STORAGE_S3_ENDPOINT_URL": s3_server.endpoint_url,
        "IGNY8_STORAGE_S3_ACCESS_KEY_ID": s3_server.access_key,
        "IGNY8_STORAGE_S3_SECRET_ACCESS_KEY": s3_server.secret_key,
        "IGNY8_STORAGE_S3_PREFIX": "from-settings/",
    }.items():
        monkeypatch.setenv(name, value)
    store = build_storage(StorageSettings())
    assert isinstance(store, S3Storage)
    assert store.backend == "s3"
    key = new_key(2, "images", "image/webp")
    await store.put(key, b"x", account_id=2, content_type="image/webp")
    s3_server.client().head_object(Bucket=s3_server.bucket, Key="from-settings/" + key)
    await store.aclose()


async def test_a_stream_serves_an_http_response(storage: FileStorage) -> None:
    """How a service's file endpoint uses it: the stream as the body, closed afterwards."""
    import httpx
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from starlette.background import BackgroundTask

    key = new_key(8, "images", "image/webp")
    await storage.put(key, WEBP, account_id=8, content_type="image/webp")
    app = FastAPI()

    @app.get("/file")
    async def file() -> StreamingResponse:
        stream = await storage.open(key, account_id=8, chunk_size=4096)
        return StreamingResponse(
            stream, media_type=stream.info.content_type,
            headers={"Content-Length": str(stream.info.size)},
            background=BackgroundTask(stream.aclose),
        )

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        resp = await client.get("/file")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "image/webp"
    assert resp.headers["content-length"] == str(len(WEBP))
    assert resp.content == WEBP
