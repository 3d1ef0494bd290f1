"""Every SQL statement billing runs. Nothing here decides anything; `service.py` does.

Balance rows are the serialisation point of an account: whatever changes credits locks
that one row (`FOR UPDATE`) or changes it with a conditional `UPDATE`, so concurrent
holds and captures can never jointly spend more than the balance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Date as SqlDate
from sqlalchemy import Row, Table, and_, case, func, insert, select, text, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel, col

from services.billing.models import (
    Account,
    CreditBalance,
    CreditCostConfig,
    CreditHold,
    CreditPackage,
    CreditTransaction,
    CreditUsageLog,
    Invoice,
    Payment,
    PaymentMethod,
    Plan,
    Subscription,
)

M = TypeVar("M", bound=SQLModel)


def table(model: type[SQLModel]) -> Table:
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


BALANCES = table(CreditBalance)
HOLDS = table(CreditHold)
LEDGER = table(CreditTransaction)
USAGE = table(CreditUsageLog)
COSTS = table(CreditCostConfig)


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


class BillingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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
                    status="held", idempotency_key=idempotency_key, expires_at=expires_at,
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

    async def cost_configs(self) -> Sequence[CreditCostConfig]:
        return (await self.session.execute(
            select(CreditCostConfig).order_by(col(CreditCostConfig.id))
        )).scalars().all()

    async def operation_types(self) -> set[str]:
        return set((await self.session.execute(select(COSTS.c.operation_type))).scalars().all())

    # --- read models ------------------------------------------------------------------

    async def upsert(self, model: type[SQLModel], keys: Sequence[str],
                     values: dict[str, Any]) -> None:
        tbl = table(model)
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

    # --- generic ORM access -----------------------------------------------------------

    async def get(self, model: type[M], ident: int, *, account_id: int | None = None,
                  lock: bool = False) -> M | None:
        tbl = table(model)
        query = select(model).where(tbl.c[tbl.primary_key.columns.keys()[0]] == ident)
        if account_id is not None:
            query = query.where(tbl.c.account_id == account_id)
        if lock:
            query = query.with_for_update()
        return (await self.session.execute(query)).scalar_one_or_none()

    async def add(self, obj: M) -> M:
        self.session.add(obj)
        await self.session.flush()
        return obj

    async def delete(self, obj: SQLModel) -> None:
        await self.session.delete(obj)
        await self.session.flush()

    async def page(self, model: type[M], *, filters: Sequence[Any], offset: int, limit: int,
                   order: Sequence[Any] = ()) -> tuple[int, list[M]]:
        tbl = table(model)
        where = and_(True, *filters)
        count = int((await self.session.execute(
            select(func.count()).select_from(tbl).where(where))).scalar_one())
        ordering = list(order) or [tbl.c.created_at.desc(), tbl.c.id.desc()]
        rows = (await self.session.execute(
            select(model).where(where).order_by(*ordering).offset(offset).limit(limit)
        )).scalars().all()
        return count, list(rows)

    async def list_all(self, model: type[M], *, filters: Sequence[Any],
                       order: Sequence[Any]) -> list[M]:
        return list((await self.session.execute(
            select(model).where(and_(True, *filters)).order_by(*order))).scalars().all())

    # --- money --------------------------------------------------------------------------

    async def assign_invoice_number(self, invoice: Invoice, prefix: str) -> None:
        invoice.invoice_number = f"{prefix}-{invoice.id:06d}"
        await self.session.flush()

    async def clear_default_payment_method(self, account_id: int) -> None:
        await self.session.execute(
            update(table(PaymentMethod))
            .where(table(PaymentMethod).c.account_id == account_id,
                   table(PaymentMethod).c.is_default.is_(True))
            .values(is_default=False, updated_at=func.now())
        )

    async def pending_payment_for(self, invoice_id: int) -> Payment | None:
        return (await self.session.execute(
            select(Payment).where(col(Payment.invoice_id) == invoice_id,
                                  col(Payment.status) == "pending_approval")
        )).scalar_one_or_none()

    async def active_packages(self) -> list[CreditPackage]:
        return await self.list_all(
            CreditPackage, filters=[table(CreditPackage).c.is_active.is_(True)],
            order=[table(CreditPackage).c.sort_order, table(CreditPackage).c.id])

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
