"""`igny8 up` with `IGNY8_NATS_TLS=1` (issue 13, P6; ADR 0026): the embedded NATS requires
TLS with a CA made for the start, and every process is given that CA; without it, NATS
stays plaintext on loopback."""

from __future__ import annotations

import ssl
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError

from igny8.home import Home
from igny8.infra import Infrastructure, start_nats
from igny8.plan import PlatformInputs, common_env
from libs.common import nats as nats_kernel

pytestmark = pytest.mark.timeout(60)
PORTS = {"gateway": 1, "auth-api": 2}


async def _ignore(_: Exception) -> None:
    return None


async def test_igny8_up_starts_nats_with_tls_when_asked(tmp_path: Path) -> None:
    """`IGNY8_NATS_TLS=1`: the embedded server requires TLS, its URL is `tls://`, every
    process gets the CA (`IGNY8_NATS_TLS_CA`); without it, plaintext on loopback."""
    home = Home(tmp_path / "home")
    home.ensure()
    passwords = {"planner": "p" * 32}
    url, server, ca = start_nats(home, {"IGNY8_NATS_TLS": "1", "IGNY8_PORTS": "any"},
                                 lambda _: None, passwords)
    assert server is not None
    try:
        assert url.startswith("tls://127.0.0.1:")
        assert ca is not None
        assert ca.endswith("/nats-tls/ca.pem")
        env = common_env(PlatformInputs(services=(), ports=PORTS, databases={},
                                        nats_url=url, secret_key="s", nats_tls_ca=ca))
        assert env["IGNY8_NATS_URL"] == url
        assert env["IGNY8_NATS_TLS_CA"] == ca
        described = Infrastructure(admin_url="", nats_url=url, nats=server,
                                   nats_tls_ca=ca).describe()["nats"]
        assert described["tls_ca"] == ca  # state.json: what a client verifies with
        nc = await nats_kernel.connect(url, "test", user="planner", password="p" * 32,
                                       tls_ca=ca, first_attempt_timeout=5)
        await nc.close()
        with pytest.raises((NatsError, ssl.SSLError, OSError)):
            await nats.connect(url.replace("tls://", "nats://"), user="planner",
                               password="p" * 32, allow_reconnect=False, connect_timeout=5,
                               max_reconnect_attempts=0, error_cb=_ignore)
    finally:
        server.stop()
    plain = common_env(PlatformInputs(services=(), ports=PORTS, databases={},
                                      nats_url="nats://127.0.0.1:1", secret_key="s"))
    assert "IGNY8_NATS_TLS_CA" not in plain
