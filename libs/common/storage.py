"""Files the platform keeps (generated images first) behind one interface.

Two backends with the same behaviour: local disk under `IGNY8_HOME` (the default, for
`igny8 up` and tests) and an S3-compatible object store (Kubernetes; tested against
SeaweedFS). Callers hold a `FileStorage` built once by `build_storage(settings)`.

Keys are `accounts/<account id>/<kind>/<name>.<ext>` (`new_key` makes them). Every call
names the account it acts for, and a key outside that account's namespace is refused
before any I/O, so a key can never reach another tenant's file even when a caller mixes
rows up. Keys are checked against a strict pattern (no `..`, no absolute paths, no
nesting), and the extension must agree with the content type, so a file is always served
with the type it was stored with, by either backend.

The S3 backend uses boto3 (its S3 support is the reference the object stores are tested
against) in worker threads, so the event loop never waits on the network; streams read
one chunk per thread hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # pragma: no cover - typing only

DEFAULT_CHUNK_SIZE = 256 * 1024
DEFAULT_MAX_BYTES = 25 * 1024 * 1024

# What may be stored, by extension. No SVG or HTML: the platform serves these files from
# its own origin, and a script inside one would run there.
CONTENT_TYPES: dict[str, str] = {
    "webp": "image/webp",
    "png": "image/png",
    "jpg": "image/jpeg",
    "gif": "image/gif",
    "avif": "image/avif",
    "pdf": "application/pdf",
    "csv": "text/csv",
    "json": "application/json",
}
EXTENSIONS: dict[str, str] = {ctype: ext for ext, ctype in CONTENT_TYPES.items()}

_KEY = re.compile(
    r"accounts/(?P<account>[1-9][0-9]{0,18})/(?P<kind>[a-z][a-z0-9_-]{0,31})/"
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9_-]{0,127})\.(?P<ext>[a-z0-9]{1,8})"
)
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")


class StorageError(Exception):
    """A storage operation failed (the backend refused or could not be reached)."""


class InvalidKey(StorageError, ValueError):
    """The key is malformed, outside the caller's account, or disagrees with the content
    type. A programming error, never a user's: keys come from the platform's own rows."""


class FileMissing(StorageError, LookupError):
    """No file under this key."""


class FileTooLarge(StorageError, ValueError):
    """The data is larger than the storage accepts (`IGNY8_STORAGE_MAX_BYTES`)."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """What `put` stored: the caller keeps these on its row (the sha256 doubles as ETag)."""

    key: str
    size: int
    content_type: str
    sha256: str


@dataclass(frozen=True, slots=True)
class FileInfo:
    key: str
    size: int
    content_type: str


def new_key(account_id: int, kind: str, content_type: str) -> str:
    """A fresh key in the account's namespace: `accounts/7/images/<uuid4 hex>.webp`."""
    if isinstance(account_id, bool) or not isinstance(account_id, int) or account_id < 1:
        raise InvalidKey(f"account_id must be a positive integer, not {account_id!r}")
    if not _KIND.fullmatch(kind):
        raise InvalidKey(f"kind must be lowercase letters, digits, - or _, not {kind!r}")
    ext = EXTENSIONS.get(content_type)
    if ext is None:
        raise InvalidKey(f"content type {content_type!r} is not one the storage keeps")
    return f"accounts/{account_id}/{kind}/{uuid.uuid4().hex}.{ext}"


def named_key(account_id: int, kind: str, name: str, content_type: str) -> str:
    """A key in the account's namespace whose name the caller chooses (letters, digits,
    `-` and `_`): a job that stores a file under a name derived from its row and the
    bytes' hash overwrites its own file when it is retried, and leaves no orphan."""
    ext = EXTENSIONS.get(content_type)
    if ext is None:
        raise InvalidKey(f"content type {content_type!r} is not one the storage keeps")
    key = f"accounts/{account_id}/{kind}/{name}.{ext}"
    check_key(key, account_id)
    return key


def check_key(key: str, account_id: int) -> str:
    """The key's content type, after checking the key is well formed and inside
    `account_id`'s namespace."""
    m = _KEY.fullmatch(key) if isinstance(key, str) else None
    if m is None:
        raise InvalidKey(f"malformed storage key {key!r}")
    if int(m["account"]) != account_id:
        raise InvalidKey(f"the key {key!r} is not in account {account_id}'s namespace")
    content_type = CONTENT_TYPES.get(m["ext"])
    if content_type is None:
        raise InvalidKey(f"the storage keeps no .{m['ext']} files")
    return content_type


def _check_put(key: str, account_id: int, data: bytes, content_type: str, limit: int) -> None:
    expected = check_key(key, account_id)
    if content_type != expected:
        raise InvalidKey(f"the key {key!r} holds {expected}, not {content_type}")
    if len(data) > limit:
        raise FileTooLarge(f"{len(data)} bytes is more than the {limit} the storage accepts")


class FileStream:
    """A file being read in chunks: `info` first, then `async for chunk in stream`.
    Close it (`aclose`, or `async with`) when done, also when stopping early."""

    def __init__(
        self,
        info: FileInfo,
        read_chunk: Callable[[], bytes],
        close: Callable[[], None],
    ) -> None:
        self.info = info
        self._read_chunk = read_chunk
        self._close = close
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        try:
            while not self._closed:
                chunk = await asyncio.to_thread(self._read_chunk)
                if not chunk:
                    break
                yield chunk
        finally:
            await self.aclose()

    async def read_all(self) -> bytes:
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._close)

    async def __aenter__(self) -> FileStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class FileStorage(Protocol):
    """The one storage interface. `account_id` is the tenant the caller acts for."""

    backend: str

    async def put(
        self, key: str, data: bytes, *, account_id: int, content_type: str
    ) -> StoredFile: ...

    async def read(self, key: str, *, account_id: int) -> bytes: ...

    async def open(
        self, key: str, *, account_id: int, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> FileStream: ...

    async def stat(self, key: str, *, account_id: int) -> FileInfo: ...

    async def exists(self, key: str, *, account_id: int) -> bool:
        """Whether the key holds a file: every store answers it through its `stat`."""
        try:
            await self.stat(key, account_id=account_id)
        except FileMissing:
            return False
        return True

    async def delete(self, key: str, *, account_id: int) -> None: ...

    async def signed_url(
        self, key: str, *, account_id: int, expires_in: int = 300
    ) -> str | None: ...

    async def aclose(self) -> None: ...


# --- local disk --------------------------------------------------------------------------------


class LocalStorage(FileStorage):
    """Files under `root`, one per key. A write goes to a temporary file in the target
    folder, is flushed to disk, then renamed over the key: a reader sees the old file or the
    new one, never half of one, and a crash leaves at most a stray `.tmp` file."""

    backend = "local"

    def __init__(self, root: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes

    def _path(self, key: str) -> Path:
        # The key pattern already rules out `..` and absolute paths; this lexical check is
        # the backstop. Nothing is resolved: a symlink under a key is never followed
        # (O_NOFOLLOW on open; a put renames over the link itself).
        path = Path(os.path.normpath(self.root / key))
        if not path.is_relative_to(self.root):
            raise InvalidKey(f"the key {key!r} leaves the storage folder")
        return path

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def _open_fd(path: Path, key: str) -> int:
        try:
            return os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise FileMissing(f"no file under {key!r}") from None
        except OSError as exc:  # ELOOP: a symlink planted under the key is never followed
            raise StorageError(f"cannot open {key!r}: {exc.strerror}") from None

    async def put(
        self, key: str, data: bytes, *, account_id: int, content_type: str
    ) -> StoredFile:
        _check_put(key, account_id, data, content_type, self.max_bytes)
        path = self._path(key)
        await asyncio.to_thread(self._write, path, data)
        return StoredFile(key, len(data), content_type, hashlib.sha256(data).hexdigest())

    async def read(self, key: str, *, account_id: int) -> bytes:
        check_key(key, account_id)
        path = self._path(key)

        def _read() -> bytes:
            with os.fdopen(self._open_fd(path, key), "rb") as fh:
                return fh.read()

        return await asyncio.to_thread(_read)

    async def open(
        self, key: str, *, account_id: int, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> FileStream:
        content_type = check_key(key, account_id)
        path = self._path(key)

        def _open() -> tuple[Any, int]:
            fh = os.fdopen(self._open_fd(path, key), "rb")
            return fh, os.fstat(fh.fileno()).st_size

        fh, size = await asyncio.to_thread(_open)
        return FileStream(
            FileInfo(key, size, content_type), lambda: fh.read(chunk_size), fh.close
        )

    async def stat(self, key: str, *, account_id: int) -> FileInfo:
        content_type = check_key(key, account_id)
        path = self._path(key)
        try:
            st = await asyncio.to_thread(os.stat, path, follow_symlinks=False)
        except FileNotFoundError:
            raise FileMissing(f"no file under {key!r}") from None
        return FileInfo(key, st.st_size, content_type)

    async def delete(self, key: str, *, account_id: int) -> None:
        check_key(key, account_id)
        path = self._path(key)

        def _unlink() -> None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

        await asyncio.to_thread(_unlink)

    async def signed_url(
        self, key: str, *, account_id: int, expires_in: int = 300
    ) -> str | None:
        """Local files have no URL of their own: the owning service streams them."""
        check_key(key, account_id)
        return None

    async def aclose(self) -> None:
        return None


# --- S3-compatible object store ----------------------------------------------------------------

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class S3Storage(FileStorage):
    """Objects in one bucket of an S3-compatible store (AWS S3, SeaweedFS, MinIO, Ceph RGW),
    under an optional prefix so several deployments can share a bucket. The sha256 of each
    object is kept in its metadata (`x-amz-meta-sha256`)."""

    backend = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        prefix: str = "",
        addressing_style: Literal["path", "virtual", "auto"] = "path",
        max_bytes: int = DEFAULT_MAX_BYTES,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        max_attempts: int = 3,
    ) -> None:
        if prefix and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_./-]*/", prefix):
            raise ValueError("the S3 prefix must be letters, digits, _ . - / and end with /")
        self.bucket = bucket
        self.prefix = prefix
        self.max_bytes = max_bytes
        self._client_options: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        self._config_options: dict[str, Any] = {
            "s3": {"addressing_style": addressing_style},
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "retries": {"max_attempts": max_attempts, "mode": "standard"},
        }
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    def _s3(self) -> S3Client:
        """The boto3 client, built once (building one reads botocore's service model,
        tens of milliseconds: never on the event loop). Clients are thread-safe."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3
                    from botocore.config import Config

                    session = boto3.session.Session()
                    self._client = session.client(
                        "s3", config=Config(**self._config_options), **self._client_options
                    )
        return self._client

    def _object_key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    async def _call(self, key: str, fn: Callable[[S3Client], Any]) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        def _run() -> Any:
            return fn(self._s3())

        try:
            return await asyncio.to_thread(_run)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _MISSING_CODES:
                raise FileMissing(f"no file under {key!r}") from None
            raise StorageError(
                f"the object store refused {exc.operation_name} on {key!r}: "
                f"{code} {error.get('Message', '')}".rstrip()
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(f"the object store could not be reached: {exc}") from exc

    async def ensure_bucket(self) -> None:
        """Creates the bucket when it is missing (development and tests; in Kubernetes the
        bucket is provisioned with the store and the platform's credentials need not allow
        this)."""
        from botocore.exceptions import ClientError

        def _ensure(s3: S3Client) -> None:
            try:
                s3.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket"):
                    raise
                s3.create_bucket(Bucket=self.bucket)

        await self._call(self.bucket, _ensure)

    async def put(
        self, key: str, data: bytes, *, account_id: int, content_type: str
    ) -> StoredFile:
        _check_put(key, account_id, data, content_type, self.max_bytes)
        digest = hashlib.sha256(data).hexdigest()
        await self._call(
            key,
            lambda s3: s3.put_object(
                Bucket=self.bucket,
                Key=self._object_key(key),
                Body=data,
                ContentType=content_type,
                Metadata={"sha256": digest},
            ),
        )
        return StoredFile(key, len(data), content_type, digest)

    async def read(self, key: str, *, account_id: int) -> bytes:
        check_key(key, account_id)

        def _get(s3: S3Client) -> bytes:
            body = s3.get_object(Bucket=self.bucket, Key=self._object_key(key))["Body"]
            with contextlib.closing(body):
                return bytes(body.read())

        result: bytes = await self._call(key, _get)
        return result

    async def open(
        self, key: str, *, account_id: int, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> FileStream:
        content_type = check_key(key, account_id)
        answer = await self._call(
            key, lambda s3: s3.get_object(Bucket=self.bucket, Key=self._object_key(key))
        )
        body = answer["Body"]
        info = FileInfo(key, int(answer["ContentLength"]), content_type)
        return FileStream(info, lambda: bytes(body.read(chunk_size)), body.close)

    async def stat(self, key: str, *, account_id: int) -> FileInfo:
        content_type = check_key(key, account_id)
        head = await self._call(
            key, lambda s3: s3.head_object(Bucket=self.bucket, Key=self._object_key(key))
        )
        return FileInfo(key, int(head["ContentLength"]), content_type)

    async def delete(self, key: str, *, account_id: int) -> None:
        check_key(key, account_id)
        await self._call(
            key, lambda s3: s3.delete_object(Bucket=self.bucket, Key=self._object_key(key))
        )

    async def signed_url(
        self, key: str, *, account_id: int, expires_in: int = 300
    ) -> str | None:
        """A presigned GET URL on the store's endpoint. The platform's file endpoint streams
        through the owning service instead (the tenant check stays in one place); this is
        for deployments whose store is reachable by clients and that prefer a redirect."""
        check_key(key, account_id)
        url: str = await self._call(
            key,
            lambda s3: s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._object_key(key)},
                ExpiresIn=expires_in,
            ),
        )
        return url

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)


# --- settings ----------------------------------------------------------------------------------


class StorageSettings(BaseSettings):
    """Where files go. A service's settings inherit these (`class WriterSettings(
    ServiceSettings, StorageSettings)`); `igny8 up` and tests use the local default."""

    model_config = SettingsConfigDict(env_prefix="IGNY8_", extra="ignore")

    # `IGNY8_HOME`: the platform's state folder; files go to `<home>/files` unless
    # `IGNY8_STORAGE_DIR` says otherwise. Unset, `.igny8/` under the working directory, as
    # `igny8 up` does.
    home: Path | None = None
    storage_backend: Literal["local", "s3"] = "local"
    storage_dir: Path | None = None
    storage_max_bytes: int = DEFAULT_MAX_BYTES
    storage_s3_bucket: str = "igny8"
    storage_s3_endpoint_url: str | None = None
    storage_s3_region: str = "us-east-1"
    # Unset: boto3's own chain (environment, web identity in Kubernetes, instance profile).
    storage_s3_access_key_id: str | None = None
    storage_s3_secret_access_key: SecretStr | None = None
    storage_s3_prefix: str = ""
    storage_s3_addressing_style: Literal["path", "virtual", "auto"] = "path"

    def local_storage_dir(self) -> Path:
        if self.storage_dir is not None:
            return self.storage_dir.expanduser()
        home = self.home.expanduser() if self.home else Path.cwd() / ".igny8"
        return home / "files"


def build_storage(settings: StorageSettings) -> FileStorage:
    """The backend the settings name."""
    if settings.storage_backend == "s3":
        secret = settings.storage_s3_secret_access_key
        return S3Storage(
            settings.storage_s3_bucket,
            endpoint_url=settings.storage_s3_endpoint_url,
            region=settings.storage_s3_region,
            access_key_id=settings.storage_s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            prefix=settings.storage_s3_prefix,
            addressing_style=settings.storage_s3_addressing_style,
            max_bytes=settings.storage_max_bytes,
        )
    return LocalStorage(settings.local_storage_dir(), max_bytes=settings.storage_max_bytes)
