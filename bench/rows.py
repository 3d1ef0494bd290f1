"""What a list page's rows cost in the service, by their shape: dicts (the repository
base's default), typed rows (a slotted dataclass per row), or ORM objects (SQLModel
instances, then the response model).

    python -m bench.rows [--rows 100] [--pages 400]

Embedded PostgreSQL, planner's migrated database, one account with 1,000 keywords. Each
shape reads the same page of keywords (the columns the API answers) on one connection,
then turns it into the JSON body the endpoint sends; the figure is the mean time per page,
database included, and the share of it that is Python's.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import select, text

from libs.common.db import Database, TenantScope
from libs.common.embedded import EmbeddedPostgres
from libs.common.provision import provision_service_database
from libs.common.repository import Visibility
from services.planner.main import MIGRATIONS
from services.planner.models import Keyword
from services.planner.repository import KEYWORD_COLUMNS, KeywordRepository, keywords
from services.planner.schemas import KeywordOut

ACCOUNT = 7


@dataclass(slots=True, frozen=True)
class KeywordRow:
    id: int
    account_id: int
    site_id: int
    sector_id: int
    keyword: str
    volume: int
    difficulty: int
    intent: str
    seed_keyword_id: int | None
    cluster_id: int | None
    status: str
    disabled: bool
    created_at: datetime
    updated_at: datetime


NAMES = tuple(f.name for f in fields(KeywordRow))


def _default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(type(value).__name__)


async def main(rows: int, pages: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="igny8-bench-rows-"))
    pg = EmbeddedPostgres(root / "pg")
    pg.start()
    try:
        info = provision_service_database(pg.url, "planner", MIGRATIONS,
                                          app_password=secrets.token_urlsafe(12))
        db = Database(info.app_url, pool_size=1, max_overflow=0)
        scope = TenantScope.account(ACCOUNT)
        async with db.session(scope) as session:
            await session.execute(text(
                "INSERT INTO keywords (account_id, site_id, sector_id, keyword, volume,"
                " difficulty, intent, status, disabled)"
                " SELECT :a, 1, 1, 'keyword ' || g, g, g % 100, 'informational', 'active',"
                " false FROM generate_series(1, 1000) g"), {"a": ACCOUNT})
            await session.commit()
        page = (select(*(keywords.c[n] for n in KEYWORD_COLUMNS))
                .where(keywords.c.account_id == ACCOUNT).order_by(keywords.c.id).limit(rows))
        orm_page = (select(Keyword).where(Keyword.account_id == ACCOUNT)  # type: ignore[arg-type]
                    .order_by(Keyword.id).limit(rows))  # type: ignore[arg-type]

        async def dicts(session: Any) -> bytes:
            found = [dict(r) for r in (await session.execute(page)).mappings()]
            return orjson.dumps(found, default=_default)

        async def typed(session: Any) -> bytes:
            found = [KeywordRow(*r) for r in (await session.execute(page)).all()]
            return orjson.dumps(found)  # orjson writes dataclasses natively

        async def orm(session: Any) -> bytes:
            found = (await session.execute(orm_page)).scalars().all()
            out = [KeywordOut.model_validate(k, from_attributes=True) for k in found]
            session.expunge_all()
            return orjson.dumps(out, default=_default)

        async def repository(session: Any) -> bytes:
            found = await KeywordRepository(session, Visibility(ACCOUNT)).find(
                keywords.c.id <= rows)
            return orjson.dumps(found, default=_default)

        shapes: dict[str, Callable[[Any], Awaitable[bytes]]] = {
            "dicts (RowMapping → dict)": dicts, "typed rows (slotted dataclass)": typed,
            "ORM objects → KeywordOut": orm, "repository base (get/find, dicts)": repository}
        print(f"bench.rows: pages of {rows} keywords, {pages} pages per shape, one connection")
        async with db.session(scope, read_only=True) as session:
            for shape, read in shapes.items():
                for _ in range(20):  # warm-up: prepared statements, caches
                    await read(session)
                started, cpu = time.perf_counter(), time.process_time()
                for _ in range(pages):
                    await read(session)
                wall = (time.perf_counter() - started) / pages * 1000
                python = (time.process_time() - cpu) / pages * 1000
                print(f"  {shape:36s} {wall:6.2f} ms/page   ({python:5.2f} ms CPU in Python)")
        await db.dispose()
    finally:
        pg.stop()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--pages", type=int, default=400)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.pages))


if __name__ == "__main__":
    cli()
