"""Every SQL statement billing runs. Nothing here decides anything; `service/` does.

`BillingRepository` holds the credit path: balances, holds, the ledger and usage, with
hand-written SQL where it was measured (ADRs 0013, 0015, 0017). Balance rows are the
serialisation point of an account: whatever changes credits locks that one row
(`FOR UPDATE`) or changes it with a conditional `UPDATE`, so concurrent holds and captures
can never jointly spend more than the balance. The rest (usage logs, the ledger's pages,
invoices, payments, payment methods, packages, cost tables) stands on the kernel's
`Repository`, made for the caller's `Visibility`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg.rows import namedtuple_row
from psycopg.types.json import Jsonb
from sqlalchemy import Date as SqlDate
from sqlalchemy import Row, case, func, insert, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from libs.common.db import driver_connection
from libs.common.events import Event
from libs.common.repository import Repository, table_of
from libs.common.telemetry import current_trace_headers
from services.billing.models import (
    Account,
    CreditBalance,
    CreditCostConfig,
    CreditHold,
    CreditPackage,
    CreditTransaction,
    CreditUsageLog,
    HoldStatus,
    Invoice,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Plan,
    Subscription,
)

M = TypeVar("M", bound=SQLModel)

BALANCES = table_of(CreditBalance)
HOLDS = table_of(CreditHold)
LEDGER = table_of(CreditTransaction)
USAGE = table_of(CreditUsageLog)
COSTS = table_of(CreditCostConfig)


class KeyTaken(Exception):
    """A row already exists under this idempotency key."""


@dataclass(frozen=True, slots=True)
class BalanceRow:
    account_id: int
    plan_credits: int
    purchased_credits: int
    held: int
    plan_credits_per_month: int
    period_start: datetime | None
    period_end: datetime | None
    low_notified: bool

    @property
    def total(self) -> int:
        return self.plan_credits + self.purchased_credits

    @property
    def available(self) -> int:
        return self.total - self.held


def _balance(row: Any) -> BalanceRow | None:
    if row is None:
        return None
    return BalanceRow(
        account_id=row.account_id, plan_credits=row.plan_credits,
        purchased_credits=row.purchased_credits, held=row.held,
        plan_credits_per_month=row.plan_credits_per_month, period_start=row.period_start,
        period_end=row.period_end, low_notified=row.low_notified,
    )


_BALANCE_COLUMNS = (
    BALANCES.c.account_id, BALANCES.c.plan_credits, BALANCES.c.purchased_credits,
    BALANCES.c.held, BALANCES.c.plan_credits_per_month, BALANCES.c.period_start,
    BALANCES.c.period_end, BALANCES.c.low_notified,
)


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=lambda obj: orjson.dumps(obj).decode())


# --- the command path ------------------------------------------------------------------
# Holds and captures are billing's hot path (every AI job runs one of each). The command
# responder gathers the commands that arrive together and runs each kind as a batch: a fixed
# handful of hand-written statements whatever the batch's size, sent straight through the
# session's driver connection. A batch's rows travel as one JSON document
# (`jsonb_to_recordset`): one parameter that orjson writes in microseconds, where arrays
# would be one parameter per column, each adapted element by element. The planner cannot
# see how many rows a document holds, so every statement also names the rows it touches by
# primary key (`= ANY(ids)`, or a LATERAL probe of a unique key): index lookups, never a
# scan of a whole table whose row-level security policy runs on every row. A single
# command is a batch of one.

_HOLD_LOOKUPS = """
SELECT r.ord, h.id, h.account_id, h.operation_type, h.amount, h.status, h.expires_at,
       c.id AS config_id, c.is_active, c.unit, c.min_credits, c.credits_cost,
       c.tokens_per_credit
FROM jsonb_to_recordset(%(rows)s::jsonb)
     AS r (ord int, account_id bigint, idempotency_key text, operation_type text)
LEFT JOIN LATERAL (
    SELECT * FROM credit_holds
    WHERE account_id = r.account_id AND idempotency_key = r.idempotency_key
) h ON true
LEFT JOIN credit_cost_configs c ON c.operation_type = r.operation_type
ORDER BY r.ord
"""

# Reserve on each balance row only if its spendable balance covers the amount, and insert
# the hold only where the reservation happened: a row without a hold id means insufficient
# credits (`available` is then the balance before the statement). The accounts of one call
# are distinct (an UPDATE changes a row once per statement). A hold already under a key (a
# concurrent request won) fails the whole statement with a unique violation, so no
# reservation outlives it, even when the statement is its own transaction.
_RESERVE_HOLDS = """
WITH req AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
         AS r (ord int, account_id bigint, operation_type text, amount int,
               idempotency_key text, expires_at timestamptz)
), reserved AS (
    UPDATE credit_balances b SET held = b.held + req.amount, updated_at = now()
    FROM req
    WHERE b.account_id = req.account_id AND b.account_id = ANY(%(account_ids)s::bigint[])
      AND b.plan_credits + b.purchased_credits - b.held >= req.amount
    RETURNING b.account_id, b.plan_credits + b.purchased_credits - b.held AS available
), hold AS (
    INSERT INTO credit_holds (account_id, operation_type, amount, status, idempotency_key,
                              expires_at, captured_credits, refunded_credits, from_plan,
                              from_purchased)
    SELECT req.account_id, req.operation_type, req.amount, 'held', req.idempotency_key,
           req.expires_at, 0, 0, 0, 0
    FROM req JOIN reserved ON reserved.account_id = req.account_id
    RETURNING id, account_id, operation_type, amount, status, expires_at
)
SELECT req.ord, hold.id, req.account_id, req.operation_type, req.amount, hold.status,
       hold.expires_at,
       COALESCE(reserved.available,
                b.plan_credits + b.purchased_credits - b.held, 0) AS available
FROM req
LEFT JOIN reserved ON reserved.account_id = req.account_id
LEFT JOIN hold ON hold.account_id = req.account_id
LEFT JOIN credit_balances b
       ON b.account_id = req.account_id AND b.account_id = ANY(%(account_ids)s::bigint[])
ORDER BY req.ord
"""

# The holds of one batch (one account and operation): the balance reserves their sum once,
# only if the spendable balance covers it, and every hold is inserted only if it did (all or
# none). Without a reservation, `available` is the balance before the statement. A key
# already held (a concurrent request won) fails the statement with a unique violation.
_RESERVE_HOLD_BATCH = """
WITH req AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
         AS r (ord int, amount int, idempotency_key text, expires_at timestamptz)
), reserved AS (
    UPDATE credit_balances b SET held = b.held + %(total)s::int, updated_at = now()
    WHERE b.account_id = %(account_id)s::bigint
      AND b.plan_credits + b.purchased_credits - b.held >= %(total)s::int
    RETURNING b.plan_credits + b.purchased_credits - b.held AS available
), hold AS (
    INSERT INTO credit_holds (account_id, operation_type, amount, status, idempotency_key,
                              expires_at, captured_credits, refunded_credits, from_plan,
                              from_purchased)
    SELECT %(account_id)s::bigint, %(operation_type)s::text, req.amount, 'held',
           req.idempotency_key, req.expires_at, 0, 0, 0, 0
    FROM req CROSS JOIN reserved
    ORDER BY req.ord
    RETURNING id, amount, status, expires_at, idempotency_key
)
SELECT req.ord, hold.id, %(account_id)s::bigint AS account_id,
       %(operation_type)s::text AS operation_type, req.amount, hold.status, hold.expires_at,
       COALESCE((SELECT available FROM reserved),
                (SELECT b.plan_credits + b.purchased_credits - b.held FROM credit_balances b
                 WHERE b.account_id = %(account_id)s::bigint), 0) AS available
FROM req
LEFT JOIN hold ON hold.idempotency_key = req.idempotency_key
ORDER BY req.ord
"""

# The holds and their accounts' balances, all locked, with each operation's pricing. Rows
# lock in account order, so batches that share accounts queue behind each other instead
# of deadlocking.
_LOCK_FOR_CAPTURES = """
SELECT h.id, h.account_id, h.operation_type, h.amount, h.status, h.captured_credits,
       h.transaction_id, h.usage_log_id,
       c.id AS config_id, c.unit, c.min_credits, c.credits_cost, c.tokens_per_credit,
       c.display_name,
       b.plan_credits, b.purchased_credits, b.held, b.plan_credits_per_month,
       b.period_start, b.period_end, b.low_notified
FROM credit_holds h
JOIN credit_balances b ON b.account_id = h.account_id
LEFT JOIN credit_cost_configs c ON c.operation_type = h.operation_type
WHERE h.id = ANY(%(hold_ids)s::bigint[])
ORDER BY h.account_id, h.id
FOR UPDATE OF h, b
"""

# Ids for the ledger entries and usage logs of `n` captures (so one statement can write
# them and the events that name them), in increasing order.
_LEDGER_IDS = """
SELECT nextval(pg_get_serial_sequence('credit_transactions', 'id')) AS transaction_id,
       nextval(pg_get_serial_sequence('credit_usage_logs', 'id')) AS usage_log_id
FROM generate_series(1, %(n)s)
"""

# Captures in one statement: the balances (one row per account, its state after the last
# of its captures), the ledger entries, the usage logs, the settled holds and the outbox
# rows of their events.
_RECORD_CAPTURES = """
WITH cap AS (
    SELECT * FROM jsonb_to_recordset(%(captures)s::jsonb)
         AS c (hold_id bigint, account_id bigint, operation_type text,
               transaction_id bigint, usage_log_id bigint, charge int, from_plan int,
               balance_after int, plan_after int, purchased_after int, description text,
               ledger_meta jsonb, cost_usd numeric, model_used text, tokens_input int,
               tokens_output int, units int, related_object_type text,
               related_object_id text, usage_meta jsonb, event_id uuid, event_subject text,
               event_payload jsonb)
), balance AS (
    UPDATE credit_balances b
    SET plan_credits = v.plan_credits, purchased_credits = v.purchased_credits,
        held = v.held, low_notified = v.low_notified, updated_at = now()
    FROM jsonb_to_recordset(%(balances)s::jsonb)
         AS v (account_id bigint, plan_credits int, purchased_credits int, held int,
               low_notified bool)
    WHERE b.account_id = v.account_id AND b.account_id = ANY(%(account_ids)s::bigint[])
), ledger AS (
    INSERT INTO credit_transactions (id, account_id, transaction_type, amount, balance_after,
                                     plan_balance_after, purchased_balance_after,
                                     description, reference, metadata, idempotency_key)
    SELECT transaction_id, account_id, 'deduction', -charge, balance_after, plan_after,
           purchased_after, description, 'hold:' || hold_id, ledger_meta,
           'capture:' || hold_id
    FROM cap
    RETURNING id
), usage AS (
    INSERT INTO credit_usage_logs (id, account_id, operation_type, credits_used, cost_usd,
                                   model_used, tokens_input, tokens_output, units,
                                   related_object_type, related_object_id, hold_id,
                                   transaction_id, metadata)
    SELECT usage_log_id, account_id, operation_type, charge, cost_usd, model_used,
           tokens_input, tokens_output, units, related_object_type, related_object_id,
           hold_id, transaction_id, usage_meta
    FROM cap
), settled AS (
    UPDATE credit_holds h
    SET status = 'captured', captured_credits = cap.charge, from_plan = cap.from_plan,
        from_purchased = cap.charge - cap.from_plan, transaction_id = cap.transaction_id,
        usage_log_id = cap.usage_log_id, settled_at = %(settled_at)s
    FROM cap
    WHERE h.id = cap.hold_id AND h.id = ANY(%(hold_ids)s::bigint[])
), event AS (
    INSERT INTO outbox (id, subject, payload, headers)
    SELECT event_id, event_subject, event_payload, %(event_headers)s::jsonb FROM cap
)
SELECT count(*) FROM ledger
"""


def _json_rows(rows: list[dict[str, Any]]) -> str:
    return orjson.dumps(rows).decode()


@dataclass(frozen=True, slots=True)
class CaptureWrite:
    """What one capture writes (see `record_captures`)."""

    hold_id: int
    account_id: int
    operation_type: str
    transaction_id: int
    usage_log_id: int
    balance: BalanceRow  # the account's balance after this capture
    charge: int
    from_plan: int
    description: str
    ledger_meta: dict[str, Any]
    cost_usd: Any
    model_used: str
    tokens_input: int
    tokens_output: int
    units: int | None
    related_object_type: str | None
    related_object_id: str | None
    usage_meta: dict[str, Any]
    event: Event


class BillingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        """Run one hand-written statement on the session's connection (in its transaction)
        and return its rows (named tuples)."""
        driver = await driver_connection(self.session)
        async with driver.cursor(row_factory=namedtuple_row) as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchall()

    # --- command path -------------------------------------------------------------------

    async def hold_lookups(self, requests: Sequence[tuple[int, str, str]]) -> list[Any]:
        """For each (account, idempotency key, operation), in order: the hold already placed
        under the key (`id` None when there is none) and the operation's cost
        configuration (`config_id` None when unknown)."""
        return await self._rows(_HOLD_LOOKUPS, {"rows": _json_rows([
            {"ord": i, "account_id": account, "idempotency_key": key, "operation_type": op}
            for i, (account, key, op) in enumerate(requests)])})

    async def reserve_holds(self, requests: Sequence[tuple[int, str, int, str, datetime]]
                            ) -> list[Any]:
        """Reserve and insert a hold for each (account, operation, amount, key, expiry) of
        distinct accounts, in one statement; in order, a row each, whose `id` is None when
        the spendable balance (`available`) does not cover the amount. Raises `KeyTaken`
        when a key's hold already exists (the statement changed nothing; in a transaction,
        the transaction is aborted)."""
        try:
            return await self._rows(_RESERVE_HOLDS, {
                "account_ids": [r[0] for r in requests], "rows": _json_rows([
                    {"ord": i, "account_id": account, "operation_type": op, "amount": amount,
                     "idempotency_key": key, "expires_at": expires}
                    for i, (account, op, amount, key, expires) in enumerate(requests)])})
        except psycopg.errors.UniqueViolation as exc:
            raise KeyTaken(", ".join(r[3] for r in requests)) from exc

    async def reserve_hold_batch(self, account_id: int, operation_type: str,
                                 holds: Sequence[tuple[int, str, datetime]]) -> list[Any]:
        """Reserve the sum of the (amount, key, expiry) holds on the account's balance and
        insert them all, or none, in one statement; in order, a row each, whose `id` is None
        when the spendable balance (`available`) does not cover the sum. Raises `KeyTaken`
        when a key's hold already exists (the statement changed nothing)."""
        try:
            return await self._rows(_RESERVE_HOLD_BATCH, {
                "account_id": account_id, "operation_type": operation_type,
                "total": sum(h[0] for h in holds), "rows": _json_rows([
                    {"ord": i, "amount": amount, "idempotency_key": key, "expires_at": expires}
                    for i, (amount, key, expires) in enumerate(holds)])})
        except psycopg.errors.UniqueViolation as exc:
            raise KeyTaken(", ".join(h[1] for h in holds)) from exc

    async def lock_for_captures(self, hold_ids: Sequence[int]) -> list[Any]:
        """The holds that exist with a balance row, their pricing and their accounts'
        balances, holds and balances locked, in account order."""
        return await self._rows(_LOCK_FOR_CAPTURES, {"hold_ids": list(hold_ids)})

    async def ledger_ids(self, n: int) -> list[tuple[int, int]]:
        """`n` (ledger entry id, usage log id) pairs, ledger ids increasing, for the batch to
        hand out in the order its captures change balances: the ledger's `balance_after`
        chain reads in id order. Taken once the balances are locked, so they also come
        after those of any writer the batch waited for. (Drawn inside the locking
        statement, ids came in the order the join produced rows, not the batch's order.)"""
        rows = await self._rows(_LEDGER_IDS, {"n": n})
        return sorted((row.transaction_id, row.usage_log_id) for row in rows)

    async def record_captures(self, writes: Sequence[CaptureWrite], settled_at: datetime
                              ) -> None:
        """Write captures in one statement (see `CaptureWrite`). No NOTIFY: PostgreSQL
        serialises the commits of notifying transactions (one fsync each), so the caller
        wakes the relay after its commit instead (ADR 0013)."""
        final = {w.account_id: w.balance for w in writes}  # the last capture of each account
        await self._rows(_RECORD_CAPTURES, {
            "account_ids": list(final), "hold_ids": [w.hold_id for w in writes],
            "balances": _json_rows([
                {"account_id": b.account_id, "plan_credits": b.plan_credits,
                 "purchased_credits": b.purchased_credits, "held": b.held,
                 "low_notified": b.low_notified} for b in final.values()]),
            "captures": _json_rows([{
                "hold_id": w.hold_id, "account_id": w.account_id,
                "operation_type": w.operation_type, "transaction_id": w.transaction_id,
                "usage_log_id": w.usage_log_id, "charge": w.charge, "from_plan": w.from_plan,
                "balance_after": w.balance.total, "plan_after": w.balance.plan_credits,
                "purchased_after": w.balance.purchased_credits,
                "description": w.description[:500], "ledger_meta": w.ledger_meta,
                "cost_usd": str(w.cost_usd), "model_used": w.model_used[:255],
                "tokens_input": w.tokens_input, "tokens_output": w.tokens_output,
                "units": w.units, "related_object_type": w.related_object_type,
                "related_object_id": w.related_object_id, "usage_meta": w.usage_meta,
                "event_id": w.event.id, "event_subject": w.event.subject,
                "event_payload": w.event.model_dump(mode="json"),
            } for w in writes]),
            "event_headers": _jsonb(current_trace_headers()),
            "settled_at": settled_at,
        })

    # --- balances ---------------------------------------------------------------------

    async def get_balance(self, account_id: int, *, lock: bool = False) -> BalanceRow | None:
        query = select(*_BALANCE_COLUMNS).where(BALANCES.c.account_id == account_id)
        if lock:
            query = query.with_for_update()
        return _balance((await self.session.execute(query)).first())

    async def create_balance(self, account_id: int, *, plan_credits_per_month: int,
                             period_start: datetime | None, period_end: datetime | None) -> bool:
        """Insert an empty balance row; False when it already existed."""
        result = await self.session.execute(
            pg_insert(BALANCES)
            .values(account_id=account_id, plan_credits=0, purchased_credits=0, held=0,
                    plan_credits_per_month=plan_credits_per_month, period_start=period_start,
                    period_end=period_end, low_notified=False)
            .on_conflict_do_nothing(index_elements=[BALANCES.c.account_id])
            .returning(BALANCES.c.account_id)
        )
        return result.first() is not None

    async def reserve(self, account_id: int, amount: int) -> BalanceRow | None:
        """Add `amount` to `held` only if the spendable balance covers it (one statement,
        so concurrent reservations cannot both pass on the same credits)."""
        result = await self.session.execute(
            update(BALANCES)
            .where(BALANCES.c.account_id == account_id,
                   BALANCES.c.plan_credits + BALANCES.c.purchased_credits - BALANCES.c.held
                   >= amount)
            .values(held=BALANCES.c.held + amount, updated_at=func.now())
            .returning(*_BALANCE_COLUMNS)
        )
        return _balance(result.first())

    async def set_balance(self, account_id: int, **values: Any) -> None:
        await self.session.execute(
            update(BALANCES).where(BALANCES.c.account_id == account_id)
            .values(updated_at=func.now(), **values)
        )

    async def release_held(self, account_id: int, amount: int) -> None:
        await self.session.execute(
            update(BALANCES).where(BALANCES.c.account_id == account_id)
            .values(held=func.greatest(BALANCES.c.held - amount, 0), updated_at=func.now())
        )

    async def due_balances(self, now: datetime, limit: int) -> list[BalanceRow]:
        """Balances whose period has ended, locked; other replicas skip them (SKIP LOCKED)."""
        rows = (await self.session.execute(
            select(*_BALANCE_COLUMNS)
            .where(BALANCES.c.period_end <= now)
            .order_by(BALANCES.c.period_end)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )).all()
        return [b for b in (_balance(r) for r in rows) if b is not None]

    # --- ledger -----------------------------------------------------------------------

    async def add_transaction(self, *, account_id: int, transaction_type: str, amount: int,
                              balance: BalanceRow, description: str, reference: str | None,
                              meta: dict[str, Any], idempotency_key: str | None) -> int:
        """Append one ledger entry; `balance` is the balance after it."""
        result = await self.session.execute(
            insert(LEDGER).values(
                account_id=account_id, transaction_type=transaction_type, amount=amount,
                balance_after=balance.total, plan_balance_after=balance.plan_credits,
                purchased_balance_after=balance.purchased_credits, description=description[:500],
                reference=reference, metadata=meta, idempotency_key=idempotency_key,
            ).returning(LEDGER.c.id)
        )
        return int(result.scalar_one())

    async def transaction_by_key(self, account_id: int, key: str) -> CreditTransaction | None:
        return (await self.session.execute(
            select(CreditTransaction).where(col(CreditTransaction.account_id) == account_id,
                                            col(CreditTransaction.idempotency_key) == key)
        )).scalar_one_or_none()

    async def ledger_sum(self, account_id: int) -> int:
        return int((await self.session.execute(
            select(func.coalesce(func.sum(LEDGER.c.amount), 0))
            .where(LEDGER.c.account_id == account_id)
        )).scalar_one())

    async def credits_used_since(self, account_id: int, since: datetime) -> int:
        return int((await self.session.execute(
            select(func.coalesce(func.sum(USAGE.c.credits_used), 0))
            .where(USAGE.c.account_id == account_id, USAGE.c.created_at >= since)
        )).scalar_one())

    # --- holds ------------------------------------------------------------------------

    async def hold_by_key(self, account_id: int, key: str) -> Row[Any] | None:
        return (await self.session.execute(
            select(HOLDS).where(HOLDS.c.account_id == account_id,
                                HOLDS.c.idempotency_key == key)
        )).first()

    async def get_hold(self, hold_id: int, *, lock: bool = False) -> Row[Any] | None:
        query = select(HOLDS).where(HOLDS.c.id == hold_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).first()

    async def insert_hold(self, *, account_id: int, operation_type: str, amount: int,
                          idempotency_key: str, expires_at: datetime) -> Row[Any] | None:
        """The new hold, or None when a concurrent request with the same key won."""
        return (await self.session.execute(
            pg_insert(HOLDS)
            .values(account_id=account_id, operation_type=operation_type, amount=amount,
                    status=HoldStatus.HELD, idempotency_key=idempotency_key,
                    expires_at=expires_at,
                    captured_credits=0, refunded_credits=0, from_plan=0, from_purchased=0)
            .on_conflict_do_nothing(constraint="uq_credit_holds_key")
            .returning(HOLDS)
        )).first()

    async def settle_hold(self, hold_id: int, **values: Any) -> None:
        await self.session.execute(update(HOLDS).where(HOLDS.c.id == hold_id).values(**values))

    async def expire_holds(self, now: datetime, limit: int) -> list[Row[Any]]:
        """Mark expired open holds and give their credits back, in one statement; safe with
        several sweepers (SKIP LOCKED) and with captures racing them (row locks)."""
        result = await self.session.execute(
            text(
                "WITH due AS ("
                "  SELECT id FROM credit_holds WHERE status = 'held' AND expires_at <= :now"
                "  ORDER BY expires_at LIMIT :limit FOR UPDATE SKIP LOCKED),"
                " expired AS ("
                "  UPDATE credit_holds h SET status = 'expired', settled_at = now()"
                "  FROM due WHERE h.id = due.id RETURNING h.id, h.account_id, h.amount),"
                " per_account AS ("
                "  SELECT account_id, sum(amount) AS amount FROM expired GROUP BY account_id),"
                " released AS ("
                "  UPDATE credit_balances b SET held = GREATEST(b.held - p.amount, 0),"
                "  updated_at = now() FROM per_account p WHERE b.account_id = p.account_id"
                "  RETURNING b.account_id)"
                " SELECT e.id, e.account_id, e.amount,"
                " (SELECT count(*) FROM released) AS balances FROM expired e"
            ),
            {"now": now, "limit": limit},
        )
        return list(result.all())

    # --- usage --------------------------------------------------------------------------

    async def add_usage(self, **values: Any) -> int:
        meta = values.pop("meta", {})
        result = await self.session.execute(
            insert(USAGE).values(metadata=meta, **values).returning(USAGE.c.id)
        )
        return int(result.scalar_one())

    # --- cost configuration -------------------------------------------------------------

    async def cost_config(self, operation_type: str) -> Row[Any] | None:
        return (await self.session.execute(
            select(COSTS).where(COSTS.c.operation_type == operation_type)
        )).first()

    async def operation_types(self) -> set[str]:
        return set((await self.session.execute(select(COSTS.c.operation_type))).scalars().all())

    # --- read models ------------------------------------------------------------------

    async def upsert(self, model: type[SQLModel], keys: Sequence[str],
                     values: dict[str, Any]) -> None:
        tbl = table_of(model)
        stmt = pg_insert(tbl).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[tbl.c[k] for k in keys],
            set_={k: stmt.excluded[k] for k in values if k not in keys}
            | {"updated_at": func.now()},
        )
        await self.session.execute(stmt)

    async def get_plan(self, plan_id: int) -> Plan | None:
        return await self.session.get(Plan, plan_id)

    async def get_account(self, account_id: int) -> Account | None:
        return await self.session.get(Account, account_id)

    async def subscription_for(self, account_id: int) -> Subscription | None:
        return (await self.session.execute(
            select(Subscription).where(col(Subscription.account_id) == account_id)
            .order_by(col(Subscription.updated_at).desc(), col(Subscription.id).desc())
            .limit(1)
        )).scalar_one_or_none()

    # --- usage analytics ----------------------------------------------------------------

    async def usage_summary(self, account_id: int, start: datetime | None,
                            end: datetime | None) -> list[Row[Any]]:
        conditions = [USAGE.c.account_id == account_id]
        if start is not None:
            conditions.append(USAGE.c.created_at >= start)
        if end is not None:
            conditions.append(USAGE.c.created_at < end)
        return list((await self.session.execute(
            select(USAGE.c.operation_type, func.count().label("n"),
                   func.sum(USAGE.c.credits_used).label("credits"),
                   func.sum(USAGE.c.cost_usd).label("cost_usd"),
                   func.sum(USAGE.c.tokens_input).label("tokens_input"),
                   func.sum(USAGE.c.tokens_output).label("tokens_output"))
            .where(*conditions)
            .group_by(USAGE.c.operation_type)
            .order_by(USAGE.c.operation_type)
        )).all())

    async def usage_by_day(self, account_id: int, since: datetime) -> list[Row[Any]]:
        day = sql_cast(func.timezone("UTC", USAGE.c.created_at), SqlDate).label("day")
        return list((await self.session.execute(
            select(day, USAGE.c.operation_type, func.count().label("n"),
                   func.sum(USAGE.c.credits_used).label("credits"),
                   func.sum(USAGE.c.cost_usd).label("cost_usd"))
            .where(USAGE.c.account_id == account_id, USAGE.c.created_at >= since)
            .group_by(day, USAGE.c.operation_type)
            .order_by(day, USAGE.c.operation_type)
        )).all())

    async def spend_by_day(self, account_id: int, since: datetime) -> dict[date, tuple[int, int]]:
        """Credits added and spent per day, from the ledger."""
        day = sql_cast(func.timezone("UTC", LEDGER.c.created_at), SqlDate).label("day")
        rows = (await self.session.execute(
            select(day,
                   func.sum(case((LEDGER.c.amount > 0, LEDGER.c.amount), else_=0)),
                   func.sum(case((LEDGER.c.amount < 0, -LEDGER.c.amount), else_=0)))
            .where(LEDGER.c.account_id == account_id, LEDGER.c.created_at >= since)
            .group_by(day)
        )).all()
        return {r[0]: (int(r[1] or 0), int(r[2] or 0)) for r in rows}


# --- the rest, on the kernel's repository base ------------------------------------------


class Rows(Repository[M]):
    """Billing's other tables as SQLModel instances: created whole (`add`, after
    `model_validate`), changed by setting attributes, read locked where a review changes
    them (`locked`)."""

    async def locked(self, row_id: int) -> M | None:
        found = await self.fetch(self.select().where(*self.scope(), self.table.c.id == row_id)
                                 .with_for_update())
        return found[0] if found else None

    async def add(self, row: M) -> M:
        self.session.add(row)
        await self.session.flush()
        return row

    async def remove(self, row: M) -> None:
        await self.session.delete(row)
        await self.session.flush()


def rows_of(model: type[M]) -> type[Rows[M]]:
    """The repository of a tenant table that needs nothing beyond the base."""
    return type(f"{model.__name__}Rows", (Rows,), {"model": model})


UsageLogs = rows_of(CreditUsageLog)
Transactions = rows_of(CreditTransaction)


class Invoices(Rows[Invoice]):
    """Invoices; their number is written once the row has its id."""

    model = Invoice

    async def number(self, invoice: Invoice, prefix: str) -> None:
        invoice.invoice_number = f"{prefix}-{invoice.id:06d}"
        await self.session.flush()


class Payments(Rows[Payment]):
    """Payments, and the one a pending invoice may have awaiting review."""

    model = Payment

    async def pending_for(self, invoice_id: int) -> Payment | None:
        found = await self.find(self.table.c.invoice_id == invoice_id,
                                self.table.c.status == PaymentStatus.PENDING_APPROVAL)
        return found[0] if found else None


class PendingPayments(Payments):
    """Payments awaiting a review, oldest first (platform staff's queue)."""

    def scope(self, t: Any = None) -> list[Any]:
        t = self.table if t is None else t
        return [*super().scope(t), t.c.status == PaymentStatus.PENDING_APPROVAL]


class PaymentMethods(Rows[PaymentMethod]):
    """An account's saved payment methods; at most one is its default."""

    model = PaymentMethod

    async def clear_default(self, keep: int | None = None) -> None:
        """No method is the default any more, but `keep` (the new default: one cleared
        here while its loaded row already says default would never be set again).

        Changes of an account's default take turns (a transaction-scoped advisory lock):
        two at once each cleared the defaults committed before them, not the other's,
        and the second broke the one-default index (schemathesis, two workers: a 500,
        then the kernel's 409). Waiting here, the second clears the first's default."""
        await self.session.execute(select(func.pg_advisory_xact_lock(
            func.hashtext(f"billing-default-method:{self.account_id}"))))
        t = self.table
        where = [*self.scope(), t.c.is_default.is_(True)]
        if keep is not None:
            where.append(t.c.id != keep)
        await self.session.execute(
            update(t).where(*where).values(is_default=False, updated_at=func.now()))


class Packages(Rows[CreditPackage]):
    """Credit packages, the same for every account."""

    model = CreditPackage
    tenant_column = None


class ActivePackages(Packages):
    """What accounts may buy: an inactive package is not found."""

    def scope(self, t: Any = None) -> list[Any]:
        t = self.table if t is None else t
        return [*super().scope(t), t.c.is_active.is_(True)]


class CostConfigs(Rows[CreditCostConfig]):
    """The price of each operation, the same for every account."""

    model = CreditCostConfig
    tenant_column = None
