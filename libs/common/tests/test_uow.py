"""The unit of work commits in one place, before the response is sent; a write nobody
committed is an error, not a 2xx; compensations run when the writes are not kept."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from sqlalchemy import text
from sqlalchemy.orm.exc import StaleDataError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.app import create_service_app
from libs.common.db import Database, TenantScope, UncommittedWrites
from libs.common.problems import Conflict
from libs.common.provision import ServiceDatabase
from libs.common.settings import ServiceSettings
from libs.common.tenancy import UoW, request_session
from libs.common.testing.tokens import TestIssuer
from libs.common.uow import unit_of_work

from .conftest import MIGRATIONS

ACCOUNT = 4242
router = APIRouter(prefix="/api/v1/kernel")
undone: list[str] = []


async def insert_note(session: Any, body: str) -> None:
    await session.execute(text("INSERT INTO notes (account_id, body) VALUES (:a, :b)"),
                          {"a": ACCOUNT, "b": body})


@router.post("/notes/", status_code=201)
async def create_note(body: dict[str, str], uow: UoW) -> dict[str, str]:
    await insert_note(uow.session, body["body"])
    return body


@router.post("/notes/forgetful/", status_code=201)
async def create_note_and_forget(body: dict[str, str], request: Request) -> dict[str, str]:
    """Writes in a session of its own and never commits."""
    async with request_session(request, TenantScope.account(ACCOUNT)) as session:
        await insert_note(session, body["body"])
    return body


@router.post("/notes/refused/", status_code=201)
async def create_note_then_refuse(body: dict[str, str], uow: UoW) -> dict[str, str]:
    uow.on_rollback(lambda: _undo(body["body"]))
    await insert_note(uow.session, body["body"])
    raise Conflict("refused after writing")


@router.post("/notes/twice/", status_code=201)
async def create_note_twice(body: dict[str, str], uow: UoW) -> dict[str, str]:
    """The second row breaks a unique constraint checked only at COMMIT."""
    uow.on_rollback(lambda: _undo(body["body"]))
    await insert_note(uow.session, body["body"])
    await uow.session.execute(text("INSERT INTO note_names (name) VALUES (:n), (:n)"),
                              {"n": body["body"]})
    return body


@router.post("/notes/bodiless/", status_code=201)
async def create_note_without_body(body: dict[str, str], uow: UoW) -> dict[str, str]:
    """A NOT NULL column left empty: a bug of the service, not the caller's conflict."""
    uow.on_rollback(lambda: _undo(body["body"]))
    await insert_note(uow.session, body["body"])
    await uow.session.execute(text("INSERT INTO notes (account_id, body) VALUES (:a, NULL)"),
                              {"a": ACCOUNT})
    return body


@router.post("/notes/vanished/", status_code=201)
async def create_note_then_change_a_vanished_row(body: dict[str, str],
                                                 uow: UoW) -> dict[str, str]:
    """What the ORM raises when a row it read was deleted by another request before this
    one's UPDATE (auth's prompts, sites...)."""
    uow.on_rollback(lambda: _undo(body["body"]))
    await insert_note(uow.session, body["body"])
    raise StaleDataError("UPDATE statement on table 'notes' expected to update 1 row(s); "
                         "0 were matched.")


async def _undo(body: str) -> None:
    undone.append(body)


class CommitProbe:
    """Before the response's first byte leaves, asks a separate connection whether the
    note the request wrote is already visible (committed)."""

    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app, self.db = app, db
        self.seen: dict[str, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/v1/kernel/notes/":
            await self.app(scope, receive, send)
            return
        request_body = b""

        async def remember(message: Message) -> None:
            nonlocal request_body
            request_body += message.get("body", b"")

        async def receive_and_remember() -> Message:
            message = await receive()
            await remember(message)
            return message

        async def send_after_probe(message: Message) -> None:
            if message["type"] == "http.response.start":
                body = json.loads(request_body)["body"]
                self.seen[body] = await note_exists(self.db, body)
            await send(message)

        await self.app(scope, receive_and_remember, send_after_probe)


async def note_exists(db: Database, body: str) -> bool:
    async with db.session(TenantScope.system(), read_only=True) as session:
        found = await session.execute(text("SELECT count(*) FROM notes WHERE body = :b"),
                                      {"b": body})
        return bool(found.scalar_one())


@pytest.fixture(scope="module")
async def app_and_probe(kernel_db_info: ServiceDatabase, kernel_db: Database,
                        nats_url: str) -> AsyncIterator[tuple[FastAPI, CommitProbe]]:
    settings = ServiceSettings(service_name="kernel", database_url=kernel_db_info.app_url,
                               nats_url=nats_url, environment="test")
    issuer = TestIssuer()
    app = create_service_app(settings, title="kernel", routers=[router],
                             migrations_dir=MIGRATIONS, keys_fetcher=issuer.fetcher())
    probe = CommitProbe(app, kernel_db)
    app.state.issuer = issuer
    async with app.router.lifespan_context(app):
        yield app, probe


@pytest.fixture
async def client(app_and_probe: tuple[FastAPI, CommitProbe]) -> AsyncIterator[httpx.AsyncClient]:
    app, probe = app_and_probe
    # An unexpected error answers 500, as it does in production, instead of raising here.
    transport = httpx.ASGITransport(app=probe, raise_app_exceptions=False)
    headers = app.state.issuer.headers(user_id=1, account_id=ACCOUNT)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers=headers) as c:
        yield c


def fresh() -> str:
    return f"note-{uuid.uuid4().hex[:8]}"


async def test_a_write_commits_before_its_response_is_sent(
        client: httpx.AsyncClient, app_and_probe: tuple[FastAPI, CommitProbe],
        kernel_db: Database) -> None:
    body = fresh()
    created = await client.post("/api/v1/kernel/notes/", json={"body": body})
    assert created.status_code == 201, created.text
    assert app_and_probe[1].seen[body] is True


async def test_a_write_endpoint_that_forgets_to_commit_fails(
        client: httpx.AsyncClient, kernel_db: Database) -> None:
    body = fresh()
    answer = await client.post("/api/v1/kernel/notes/forgetful/", json={"body": body})
    assert answer.status_code == 500
    assert not await note_exists(kernel_db, body)


async def test_a_refused_write_is_rolled_back_and_compensated(
        client: httpx.AsyncClient, kernel_db: Database) -> None:
    body = fresh()
    answer = await client.post("/api/v1/kernel/notes/refused/", json={"body": body})
    assert answer.status_code == 409
    assert not await note_exists(kernel_db, body)
    assert body in undone


async def test_a_commit_that_fails_answers_an_error_and_compensates(
        client: httpx.AsyncClient, kernel_db: Database) -> None:
    body = fresh()
    answer = await client.post("/api/v1/kernel/notes/twice/", json={"body": body})
    # A broken unique constraint is the caller's conflict (two requests creating the same
    # name at once), not a server error: 409, and nothing of the request kept.
    assert answer.status_code == 409, answer.text
    assert answer.json()["detail"] == "A row with these values already exists."
    assert not await note_exists(kernel_db, body)
    assert body in undone

    body = fresh()
    answer = await client.post("/api/v1/kernel/notes/vanished/", json={"body": body})
    assert answer.status_code == 404, answer.text  # the row is gone, as DRF would say
    assert not await note_exists(kernel_db, body)
    assert body in undone

    body = fresh()
    answer = await client.post("/api/v1/kernel/notes/bodiless/", json={"body": body})
    assert answer.status_code == 500  # any other integrity error stays a server error
    assert not await note_exists(kernel_db, body)
    assert body in undone


async def test_a_workers_unit_commits_on_return_and_compensates_on_error(
        kernel_db: Database) -> None:
    kept, lost, effects = fresh(), fresh(), []
    async with unit_of_work(kernel_db, TenantScope.account(ACCOUNT)) as uow:
        await insert_note(uow.session, kept)
        uow.after_commit(lambda: effects.append("committed"))
    assert await note_exists(kernel_db, kept)
    assert effects == ["committed"]

    async def failing_job() -> None:
        async with unit_of_work(kernel_db, TenantScope.account(ACCOUNT)) as uow:
            uow.on_rollback(lambda: _undo(lost))
            uow.after_commit(lambda: effects.append("not this one"))
            await insert_note(uow.session, lost)
            raise RuntimeError("the job failed")

    with pytest.raises(RuntimeError):
        await failing_job()
    assert not await note_exists(kernel_db, lost)
    assert lost in undone
    assert effects == ["committed"]


async def test_a_session_closed_with_writes_raises_and_keeps_nothing(
        kernel_db: Database) -> None:
    body = fresh()
    async def forgetful_write() -> None:
        async with kernel_db.session(TenantScope.account(ACCOUNT)) as session:
            await insert_note(session, body)

    with pytest.raises(UncommittedWrites):
        await forgetful_write()
    assert not await note_exists(kernel_db, body)
    # Saying so is allowed: an explicit rollback discards without an error.
    async with kernel_db.session(TenantScope.account(ACCOUNT)) as session:
        await insert_note(session, body)
        await session.rollback()
    # Reading and leaving is not a write.
    async with kernel_db.session(TenantScope.account(ACCOUNT)) as session:
        await session.execute(text("SELECT count(*) FROM notes"))
