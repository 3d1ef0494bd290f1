"""`igny8 up`: the whole platform on one machine, in order, and down again in reverse.

PostgreSQL and NATS → every service's database and migrations → demo data (once) →
every service's API and worker and the gateway → health → URLs → supervise until
Ctrl-C/SIGTERM → stop children (SIGTERM, wait, SIGKILL), then NATS, then PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from igny8 import database
from igny8.console import HealthBoard, Reporter
from igny8.home import Home, Secrets, StateFile
from igny8.infra import Infrastructure, start_nats, start_postgres
from igny8.plan import (
    PlatformInputs,
    ProcessSpec,
    allocate_ports,
    api_url,
    docs_url,
    plan_processes,
    port_names,
)
from igny8.services import GATEWAY, REPO_ROOT, ServiceSpec, present_services
from igny8.supervisor import StartupFailed, Supervisor
from libs.common.embedded import free_port, port_open


class Shutdown(Exception):  # noqa: N818 - a signal, not an error
    pass


class SignalGuard:
    """SIGINT/SIGTERM: the first one unwinds `up` (raising Shutdown wherever it is), any
    further one makes the shutdown hurry (SIGKILL instead of waiting)."""

    def __init__(self) -> None:
        self.stopping = False
        self.hurry = False
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        if self.stopping:
            self.hurry = True
            return
        self.stopping = True
        raise Shutdown(signal.Signals(signum).name)

    def __enter__(self) -> SignalGuard:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class UpOptions:
    timeout: float = 180.0
    seed: bool = True


def _pick_free() -> int:
    return free_port(None)


def _is_free(port: int) -> bool:
    return not port_open(port) and free_port(port) == port


def choose_ports(services: list[ServiceSpec],
                 env: Mapping[str, str] | None = None) -> dict[str, int]:
    """The default ports where they are free; with `IGNY8_PORTS=any` (tests and benches
    that run beside other platforms on one machine) every port is one the kernel picks,
    so two platforms starting together never both take a free default."""
    env = os.environ if env is None else env
    is_free = (lambda _: False) if env.get("IGNY8_PORTS") == "any" else _is_free
    return allocate_ports(port_names(services), is_free, _pick_free)


def _seed_once(reporter: Reporter, state: StateFile, secrets: Secrets,
               databases: Mapping[str, Any]) -> None:
    auth = databases["auth"]
    marker = database.seed_marker(auth.owner_url)
    if state.read().get("seed", {}).get("marker") == marker:
        reporter.done("demo data already seeded")
        return
    with reporter.step("seeding demo data through auth", "seeded demo data"):
        counts = database.seed_demo(auth.app_url, secrets.demo_password,
                                    secret_key=secrets.secret_key)
    state.update(seed={"marker": marker, "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "counts": counts})
    if counts:
        reporter.say("  " + ", ".join(f"{k}: {v}" for k, v in counts.items()))


def _run_state(infra: Infrastructure, supervisor: Supervisor, ports: Mapping[str, int],
               status: str, gateway_started: bool) -> dict[str, Any]:
    return {
        "status": status,
        "supervisor_pid": os.getpid(),
        "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "api_url": api_url(ports) if gateway_started else None,
        "docs_url": docs_url(ports) if gateway_started else None,
        "ports": dict(ports),
        **infra.describe(),
        "processes": [
            {"name": c.name, "kind": c.spec.kind, "pid": c.pid, "port": c.spec.port,
             "health": list(c.spec.health), "log": str(c.log_path)}
            for c in supervisor.children
        ],
    }


def _banner(reporter: Reporter, home: Home, ports: Mapping[str, int], secrets: Secrets,
            specs: list[ProcessSpec], gateway_started: bool) -> None:
    console = reporter.console
    console.print()
    console.print("[bold green]IGNY8 is up.[/]")
    if gateway_started:
        console.print(f"  API       {api_url(ports)}")
        console.print(f"  Docs      {docs_url(ports)}")
    else:
        reporter.warn("gateway/main.py is not in this checkout yet: services answer directly")
        for spec in specs:
            if spec.kind == "api":
                console.print(f"  {spec.name:<9} http://127.0.0.1:{spec.port}/")
    console.print(f"  Login     {database.DEMO_EMAIL} / {secrets.demo_password}")
    console.print(f"  Logs      {home.logs}/")
    console.print(f"  Data      {home.root}/")
    console.print("Ctrl-C stops everything.")


def run_up(home: Home, reporter: Reporter, options: UpOptions,
           env: Mapping[str, str] | None = None) -> int:
    """Runs until a signal arrives; returns the exit code."""
    env = dict(os.environ) if env is None else dict(env)
    state = StateFile(home)
    services = present_services()
    if not any(s.name == "auth" for s in services):
        reporter.fail("services/auth/main.py is missing: the platform needs auth to start")
        return 1
    gateway_started = GATEWAY.present()
    reporter.say("services in this checkout: " + ", ".join(s.name for s in services)
                 + (" + gateway" if gateway_started else " (no gateway yet)"))
    secrets = Secrets.load_or_create(home, [s.name for s in services])
    infra = Infrastructure(admin_url="", nats_url=None)
    supervisor = Supervisor(logs_dir=home.logs, cwd=REPO_ROOT, base_env=env,
                            say=reporter.warn)
    ports: dict[str, int] = {}
    guard = SignalGuard()
    code = 0
    try:
        with guard:
            try:
                with reporter.step("starting PostgreSQL", "PostgreSQL ready"):
                    infra.admin_url, infra.postgres = start_postgres(home, env, reporter.say)
                with reporter.step("starting NATS (JetStream)", "NATS ready"):
                    infra.nats_url, infra.nats, infra.nats_tls_ca = start_nats(
                        home, env, reporter.say, secrets.nats_passwords)
                databases: dict[str, Any] = {}
                for spec in services:
                    with reporter.step(f"migrating {spec.name}", f"{spec.database} migrated"):
                        databases.update(database.migrate_all(
                            infra.admin_url, [spec], secrets, lambda _: None, env))
                if options.seed:
                    _seed_once(reporter, state, secrets, databases)
                ports = choose_ports(services, env)
                assert infra.nats_url is not None
                specs = plan_processes(
                    PlatformInputs(
                        services=services, ports=ports,
                        databases=database.database_urls(databases),
                        nats_url=infra.nats_url, secret_key=secrets.secret_key,
                        gateway_present=gateway_started, python=sys.executable,
                        nats_passwords=secrets.nats_passwords if infra.nats else {},
                        nats_tls_ca=infra.nats_tls_ca,
                    ),
                    with_workers={s.name: s.has_worker() for s in services},
                )
                reporter.say(f"starting {len(specs)} processes: "
                             + ", ".join(f"{p.name}:{p.port}" for p in specs))
                supervisor.start_all(specs)
                state.update(run=_run_state(infra, supervisor, ports, "starting",
                                            gateway_started))
                with HealthBoard(reporter, list(supervisor.children)) as board:
                    supervisor.wait_healthy(options.timeout, board.ready, board.tick)
                state.update(run=_run_state(infra, supervisor, ports, "running",
                                            gateway_started))
                _banner(reporter, home, ports, secrets, specs, gateway_started)
                while True:
                    notes = supervisor.tend()
                    for note in notes:
                        reporter.warn(note)
                    if notes:
                        state.update(run=_run_state(infra, supervisor, ports, "running",
                                                    gateway_started))
                    time.sleep(0.5)
            except Shutdown as stop:
                reporter.console.print()
                reporter.say(f"{stop}: stopping everything")
            except StartupFailed as failed:
                code = 1
                reporter.fail(str(failed))
                if failed.log_tail:
                    reporter.console.print(failed.log_tail, markup=False)
            except Exception as exc:
                code = 1
                reporter.fail(f"{type(exc).__name__}: {exc}")
                raise
            finally:
                guard.stopping = True
                if supervisor.children:
                    reporter.say("stopping services and gateway")
                supervisor.stop_all(hurry=lambda: guard.hurry)
                infra.stop(reporter.say)
                if ports:
                    state.update(run=_run_state(infra, supervisor, ports, "stopped",
                                                gateway_started))
                reporter.done("stopped")
    except Shutdown:
        # A signal that raced the handover to the shutdown path above.
        pass
    return code
