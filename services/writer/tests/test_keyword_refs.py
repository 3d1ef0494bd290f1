"""Writer's read model of planner's keywords, fed by `planner.keyword.*` events: an
import's event carries thousands of keywords, written by one statement for many rows with
the rules of row by row (the newest event wins; a key named twice keeps its last row)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from libs.common.db import Database, TenantScope
from libs.common.events import Event
from libs.common.testing.checks import rows
from services.writer.events import apply_keyword_event

from .conftest import next_id


def keyword_event(account_id: int, keywords: list[dict[str, object]], at: datetime,
                  kind: str = "created") -> Event:
    return Event(type=f"planner.keyword.{kind}", account_id=account_id, occurred_at=at,
                 data={"keywords": keywords})


async def apply(db: Database, event: Event) -> None:
    async with db.session(TenantScope.account(event.account_id)) as session:
        await apply_keyword_event(session, event)
        await session.commit()


async def test_an_imports_keywords_in_chunks_newest_event_wins(writer_db: Database) -> None:
    account = next_id()
    n = 2_107  # past SQLAlchemy's 1,000 rows per multi-row INSERT
    ids = [next_id() for _ in range(n)]
    now = datetime.now(UTC)
    batch = [{"id": i, "keyword": f"kettle {i}", "volume": 10, "intent": "commercial",
              "cluster_id": None} for i in ids]
    batch.append({**batch[0], "keyword": "named twice: the last row wins"})
    await apply(writer_db, keyword_event(account, batch, now))

    stored = {r["id"]: r for r in await rows(
        writer_db, account, "SELECT id, keyword, volume, deleted FROM cluster_keywords"
        " WHERE account_id = :a")}
    assert len(stored) == n
    assert stored[ids[0]]["keyword"] == "named twice: the last row wins"
    assert stored[ids[-1]] == {"id": ids[-1], "keyword": f"kettle {ids[-1]}", "volume": 10,
                               "deleted": False}

    # An older event arriving late changes nothing; a newer one does.
    late = [{**batch[1], "volume": 1}]
    await apply(writer_db, keyword_event(account, late, now - timedelta(minutes=1), "updated"))
    newer = [{**batch[2], "volume": 99}]
    await apply(writer_db, keyword_event(account, newer, now + timedelta(minutes=1), "updated"))
    changed = {r["id"]: r["volume"] for r in await rows(
        writer_db, account, "SELECT id, volume FROM cluster_keywords WHERE id IN (:x, :y)",
        x=ids[1], y=ids[2])}
    assert changed == {ids[1]: 10, ids[2]: 99}
