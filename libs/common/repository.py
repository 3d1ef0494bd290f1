"""The repository base every service's repositories stand on: one aggregate's table,
scoped to the caller, with declared filters, multi-field ordering and paging.

A list's query string is declared once and serves three ends: the OpenAPI parameters,
their validation (a bad value is a 400 naming the parameter) and the SQL.

    # schemas.py: what the list accepts
    class TaskFilters(FilterSet):
        status = Choice(TASK_STATUSES)
        site_id = Equals(Id)
        cluster_id = Equals(Id)
        search = Search("title")

    TASK_ORDERING = Orderings("created_at", "updated_at", "id", "title", "status",
                              default="-created_at")
    TaskQuery = ListQuery.of(TaskFilters, TASK_ORDERING)   # a FastAPI dependency

    # repository.py: all of the aggregate's SQL
    class TaskRepository(Repository[Row]):
        table = table_of(Task)           # or `model = Task` for Task instances

    # api.py: parse, call the service, answer
    @router.get("/tasks/")
    async def list_tasks(request: Request, tasks: TaskReader, query: TaskQuery) -> Response:
        page = await tasks.list(query)           # the service calls repository.page(query)
        return page_response(request, query.page, page.count, page.rows)

Tenancy is not optional: a repository is made for a `Visibility` (the caller's account,
and the sites they may see), and every statement it runs carries those conditions, so
another tenant's id is simply not found (404). Row-level security is the second wall.
Tables with `deleted_at` are soft-deleted: reads skip deleted rows, `delete` marks them.

Every dependency here is a coroutine function: FastAPI runs a plain `def` dependency in
its thread pool, a hand-off to a worker thread and back for each one on each request,
which on a list path cost more than parsing the query string itself (ADR 0033).

Rows are dicts by default (the cheapest on list paths, ADR 0018); a
repository that sets `model` answers that SQLModel's instances instead. Measured hot
paths keep hand-written SQL by overriding `count`/`rows` (or adding methods) behind the
same interface.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, ClassVar, Generic, TypeVar, cast

from fastapi import Depends, Query
from pydantic import BeforeValidator
from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from libs.common.ids import MAX_BIGINT, BigInt, Id
from libs.common.messages import filter_choice
from libs.common.pagination import PageParams, page_params
from libs.common.problems import ValidationFailed

Row = dict[str, Any]
R = TypeVar("R")
F = TypeVar("F", bound="FilterSet")


def table_of(model: type[SQLModel]) -> Table:
    """The Core table behind a SQLModel table class."""
    return cast(Table, model.__table__)  # type: ignore[attr-defined]


def choice(name: str, value: str | None, allowed: Iterable[str]) -> str | None:
    """`value` of the query parameter `name` when it is one of `allowed` (or None);
    otherwise a 400 naming `name` in django-filter's words (ADR 0037)."""
    if value is None:
        return None
    if value not in tuple(allowed):
        raise ValidationFailed.field(name, filter_choice(value))
    return value


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def contains(column: Any, term: str) -> ColumnElement[bool]:
    """Case-insensitive substring match; `%` and `_` in `term` are literal."""
    return cast(ColumnElement[bool], column.ilike(f"%{escape_like(term)}%", escape="\\"))


# --- who may see what ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visibility:
    """The rows a caller may see: one account (None only through `all_accounts`, for
    platform staff and sweepers), and within it every site (`site_ids` None) or only the
    sites granted to them."""

    account_id: int | None
    site_ids: tuple[int, ...] | None = None

    @classmethod
    def all_accounts(cls) -> Visibility:
        return cls(None)

    def may_see(self, site_id: int) -> bool:
        return self.site_ids is None or site_id in self.site_ids

    def conditions(self, t: Any, *, tenant_column: str | None = "account_id",
                   site_column: str | None = "site_id") -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = []
        if tenant_column is not None and self.account_id is not None:
            conds.append(t.c[tenant_column] == self.account_id)
        if site_column is not None and self.site_ids is not None:
            conds.append(t.c[site_column].in_(self.site_ids) if self.site_ids else false())
        return conds


# --- ordering ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ordering:
    """(column name, descending) pairs; `id` is always the last tie-breaker, so pages
    partition a list."""

    keys: tuple[tuple[str, bool], ...]

    def clauses(self, t: Any) -> list[Any]:
        out = [t.c[name].desc() if desc else t.c[name].asc() for name, desc in self.keys]
        if not any(name == "id" for name, _ in self.keys):
            last_desc = self.keys[-1][1] if self.keys else True
            out.append(t.c.id.desc() if last_desc else t.c.id.asc())
        return out


class Orderings:
    """What `?ordering=` accepts: public names (`a,-b`, `-` for descending), each naming a
    column (itself, or another through `aliases`), and the default (which may name any
    column). `Depends(KEYWORD_ORDERING.dependency)` gives the parsed `Ordering`.

    A name that is none of them is dropped, as DRF's `OrderingFilter.remove_invalid_fields`
    drops it (ADR 0041): `name,bogus,-volume` orders by name then -volume, `bogus` alone
    by the default; never a 400 (clients ported from the reference send such orders)."""

    def __init__(self, *names: str, default: str = "-created_at", **aliases: str) -> None:
        self.columns: dict[str, str] = {**{n: n for n in names}, **aliases}
        self.default = Ordering(tuple(
            (part.strip().removeprefix("-"), part.strip().startswith("-"))
            for part in default.split(",") if part.strip()))
        description = ("Comma-separated fields; prefix '-' for descending. Default "
                       f"{default}. Fields: {', '.join(self.columns)}; any other is "
                       "ignored.")

        async def dependency(ordering: str | None = Query(None, description=description)
                             ) -> Ordering:
            return self.parse(ordering)

        self.dependency = dependency

    def parse(self, value: str | None) -> Ordering:
        """`-volume,created_at` → ((volume, desc), (created_at, asc)); unknown names are
        dropped (the default when none is left); a column named twice counts once."""
        if not value or not value.strip():
            return self.default
        keys: list[tuple[str, bool]] = []
        for part in (p.strip() for p in value.split(",")):
            name = part.removeprefix("-")
            if name not in self.columns:
                continue
            column = self.columns[name]
            if all(column != seen for seen, _ in keys):
                keys.append((column, part.startswith("-")))
        return Ordering(tuple(keys)) if keys else self.default


# --- filters -------------------------------------------------------------------------


class Filter:
    """One query parameter of a list: its type for OpenAPI and parsing, how a value is
    checked, and the condition it puts on its column (the attribute's name unless
    `column` says otherwise). On a `FilterSet` instance the attribute reads the value."""

    annotation: Any = str

    def __init__(self, *, column: str | None = None, description: str | None = None) -> None:
        self.column = column
        self.description = description
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.column = self.column or name

    def __get__(self, instance: FilterSet | None, owner: type) -> Any:
        if instance is None:
            return self
        return instance.value(self.name)

    def param(self) -> Any:
        return Query(description=self.description)

    def clean(self, value: Any) -> Any:
        """The value to filter on, None for no filter, or a 400 naming the parameter."""
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    def condition(self, t: Any, value: Any) -> ColumnElement[bool]:
        return cast(ColumnElement[bool], t.c[self.column] == value)


class Equals(Filter):
    """Equality on a column; `type_` is `str`, `bool`, `Id`, `BigInt`..."""

    def __init__(self, type_: Any = str, **kw: Any) -> None:
        super().__init__(**kw)
        self.annotation = type_


class Choice(Filter):
    """Equality with one of `choices` (OpenAPI lists them); another value is a 400."""

    def __init__(self, choices: Iterable[str], **kw: Any) -> None:
        super().__init__(**kw)
        self.choices = tuple(choices)

    def param(self) -> Any:
        return Query(description=self.description,
                     json_schema_extra={"enum": list(self.choices)})

    def clean(self, value: Any) -> Any:
        return choice(self.name, super().clean(value), self.choices)


class AtLeast(Filter):
    """`column >= value` (e.g. `volume_min`)."""

    annotation = BigInt

    def __init__(self, column: str, **kw: Any) -> None:
        super().__init__(column=column, **kw)

    def condition(self, t: Any, value: Any) -> ColumnElement[bool]:
        return cast(ColumnElement[bool], t.c[self.column] >= value)


class AtMost(AtLeast):
    """`column <= value` (e.g. `volume_max`)."""

    def condition(self, t: Any, value: Any) -> ColumnElement[bool]:
        return cast(ColumnElement[bool], t.c[self.column] <= value)


class Search(Filter):
    """Case-insensitive substring search in one column or any of several."""

    def __init__(self, *columns: str, description: str | None = None) -> None:
        super().__init__(column=columns[0], description=description)
        self.columns = columns

    def condition(self, t: Any, value: Any) -> ColumnElement[bool]:
        matches = [contains(t.c[c], value) for c in self.columns]
        return matches[0] if len(matches) == 1 else or_(*matches)


class DayFrom(Filter):
    """Rows on or after a day (`YYYY-MM-DD`, UTC), e.g. `start_date` on `created_at`."""

    def __init__(self, column: str, **kw: Any) -> None:
        super().__init__(column=column, **kw)

    def param(self) -> Any:
        return Query(description=self.description, json_schema_extra={"format": "date"})

    def clean(self, value: Any) -> Any:
        value = super().clean(value)
        if value is None or isinstance(value, date):
            return value
        try:
            if len(value) != 10:
                raise ValueError(value)
            return date.fromisoformat(value)
        except ValueError:
            raise ValidationFailed.field(
                self.name, "Enter a valid date.") from None  # django-filter's DateFilter

    @staticmethod
    def start(day: date) -> datetime:
        return datetime.combine(day, time.min, tzinfo=UTC)

    def condition(self, t: Any, value: Any) -> ColumnElement[bool]:
        return cast(ColumnElement[bool], t.c[self.column] >= self.start(value))


class DayUntil(DayFrom):
    """Rows on or before a day (`YYYY-MM-DD`, UTC): the whole of that day is included."""

    def condition(self, t: Any, value: Any) -> ColumnElement[bool]:
        return cast(ColumnElement[bool],
                    t.c[self.column] < self.start(value) + timedelta(days=1))


def _blank_is_none(value: Any) -> Any:
    """django-filter's rule for every filter: an empty value filters nothing (the "any"
    of a form's select, `?cluster_id=`), before the value is read as a number or a day."""
    return None if isinstance(value, str) and not value.strip() else value


class FilterSet:
    """The filters of one list, declared once as class attributes (see the module's
    docstring). `Depends(TaskFilters.from_query)` reads the query string, with every
    filter an optional parameter (a coroutine, so not run in the thread pool, as the
    class itself would be). Instances are immutable and hashable (cache keys); reading an
    attribute gives the value or None."""

    filters: ClassVar[dict[str, Filter]] = {}
    # The FastAPI dependency making an instance from the query string (set per subclass).
    from_query: ClassVar[Callable[..., Awaitable[Any]]]
    __slots__ = ("_values",)

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.filters = {name: f for klass in reversed(cls.__mro__)
                       for name, f in vars(klass).items() if isinstance(f, Filter)}
        params = [inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=None,
            annotation=Annotated[f.annotation | None, BeforeValidator(_blank_is_none),
                                 f.param()])
            for name, f in cls.filters.items()]
        cls.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]

        async def from_query(**values: Any) -> FilterSet:
            return cls(**values)

        from_query.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            params, return_annotation=cls)
        from_query.__qualname__ = f"{cls.__qualname__}.from_query"
        cls.from_query = staticmethod(from_query)

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.filters)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no filter {', '.join(sorted(unknown))}")
        cleaned = ((name, self.filters[name].clean(v)) for name, v in values.items())
        self._values: tuple[tuple[str, Any], ...] = tuple(
            sorted((name, v) for name, v in cleaned if v is not None))

    def value(self, name: str) -> Any:
        return next((v for n, v in self._values if n == name), None)

    def given(self) -> dict[str, Any]:
        """The filters that narrow the list, by parameter name."""
        return dict(self._values)

    def only(self, *names: str) -> bool:
        """True when no filter outside `names` narrows the list."""
        return all(name in names for name, _ in self._values)

    def conditions(self, t: Any) -> list[ColumnElement[bool]]:
        return [self.filters[name].condition(t, value) for name, value in self._values]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FilterSet) and type(other) is type(self) \
            and other._values == self._values

    def __hash__(self) -> int:
        return hash((type(self), self._values))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={v!r}' for n, v in self._values)})"


class NoFilters(FilterSet):
    """For lists that take no filters."""


class SiteFilters(FilterSet):
    """`site_id` and `sector_id`, which every list of site-and-sector rows takes (the
    reference's query parameters): a list's filters inherit them."""

    site_id = Equals(Id)
    sector_id = Equals(Id)


# --- a list request and its answer ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListQuery(Generic[F]):
    """What a list request asks: its filters, its order and its page."""

    filters: F
    ordering: Ordering
    page: PageParams

    @staticmethod
    def of(filters: type[F], orderings: Orderings) -> Any:
        """The FastAPI dependency (an `Annotated` type) parsing a list's query string."""

        async def dependency(given: Any = Depends(filters.from_query),
                             ordering: Ordering = Depends(orderings.dependency),
                             page: PageParams = Depends(page_params)) -> ListQuery[F]:
            return ListQuery(given, ordering, page)

        return Annotated[ListQuery[filters], Depends(dependency)]  # type: ignore[valid-type]


@dataclass(frozen=True, slots=True)
class Page(Generic[R]):
    count: int
    rows: list[R]


# --- the repository ------------------------------------------------------------------

_AUTO: Any = object()


class Repository(Generic[R]):
    """The SQL of one aggregate, for one caller. Subclasses set `table` (rows as dicts) or
    `model` (that SQLModel's instances; `table` is then the model's own); `tenant_column` is
    None for global tables (plans, catalogues); `site_column` and `deleted_column` default
    to `site_id` and `deleted_at` when the table has them. Nothing here commits: the unit
    of work does."""

    table: ClassVar[Table]
    model: ClassVar[type[SQLModel] | None] = None
    tenant_column: ClassVar[str | None] = "account_id"
    site_column: ClassVar[str | None] = _AUTO
    deleted_column: ClassVar[str | None] = _AUTO
    default_ordering: ClassVar[Ordering] = Ordering((("created_at", True),))
    # Columns a list never shows (a stored working document): `rows` does not read them.
    unlisted: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.__dict__.get("model") is not None and "table" not in cls.__dict__:
            cls.table = table_of(cls.__dict__["model"])
        if cls.unlisted and cls.model is not None:
            raise TypeError(f"{cls.__name__}: `unlisted` leaves columns out of dict rows; "
                            "a model's instances are whole")
        table = getattr(cls, "table", None)
        if table is None:
            return
        if cls.site_column is _AUTO:
            cls.site_column = "site_id" if "site_id" in table.c else None
        if cls.deleted_column is _AUTO:
            cls.deleted_column = "deleted_at" if "deleted_at" in table.c else None

    def __init__(self, session: AsyncSession, visibility: Visibility | None = None) -> None:
        if self.tenant_column is not None and visibility is None:
            raise TypeError(f"{type(self).__name__} holds tenant rows: give a Visibility")
        self.session = session
        self.visibility = visibility

    @property
    def account_id(self) -> int:
        """The caller's account, for repositories made for one (not `all_accounts`)."""
        if self.visibility is None or self.visibility.account_id is None:
            raise TypeError(f"{type(self).__name__} is not made for one account")
        return self.visibility.account_id

    # --- building blocks -------------------------------------------------------------

    def scope(self, t: Any = None) -> list[ColumnElement[bool]]:
        """The caller's rows that are not deleted: every statement starts here (`t`:
        another table or view with the same columns, such as a view of the table)."""
        t = self.table if t is None else t
        conds: list[ColumnElement[bool]] = []
        if self.visibility is not None:
            conds += self.visibility.conditions(t, tenant_column=self.tenant_column,
                                                site_column=self.site_column)
        if self.deleted_column is not None:
            conds.append(t.c[self.deleted_column].is_(None))
        return conds

    def select(self) -> Select[Any]:
        """What a row is made of; override to join names in (rows read by `get`, `list`)."""
        return select(self.model) if self.model is not None else select(self.table)

    def list_select(self) -> Select[Any]:
        """What a list item is made of: the table without the `unlisted` columns (a
        repository that joins names in through `select` and sets `unlisted` overrides
        this too)."""
        if not self.unlisted:
            return self.select()
        return select(*(c for c in self.table.c if c.name not in self.unlisted))

    async def fetch(self, statement: Any) -> list[R]:
        result = await self.session.execute(statement)
        if self.model is not None:
            return cast(list[R], list(result.scalars().all()))
        return cast(list[R], [dict(r) for r in result.mappings()])

    @property
    def _target(self) -> Any:
        """What DML names: the model (its instances come back) or the table (dicts)."""
        return self.model if self.model is not None else self.table

    def _returning(self, statement: Any) -> Any:
        return statement.returning(self._target)

    def _changed(self, values: dict[str, Any]) -> dict[str, Any]:
        if "updated_at" in self.table.c and "updated_at" not in values:
            return {**values, "updated_at": func.now()}
        return values

    # --- reads -----------------------------------------------------------------------

    async def count(self, filters: FilterSet) -> int:
        query = (select(func.count()).select_from(self.table)
                 .where(*self.scope(), *filters.conditions(self.table)))
        return int((await self.session.execute(query)).scalar_one())

    async def rows(self, filters: FilterSet, ordering: Ordering, offset: int,
                   limit: int) -> list[R]:
        t = self.table
        query = (self.list_select().where(*self.scope(), *filters.conditions(t))
                 .order_by(*ordering.clauses(t)).offset(offset).limit(limit))
        return await self.fetch(query)

    async def page(self, query: ListQuery[Any]) -> Page[R]:
        """One page and the count of the whole list (the page is not read when the
        count says it would be empty). `page=last` is the last page the count makes."""
        count = await self.count(query.filters)
        page = query.page.resolved(count)
        if count == 0 or page.offset >= count:
            return Page(count, [])
        return Page(count, await self.rows(query.filters, query.ordering, page.offset,
                                           page.limit))

    async def get(self, row_id: int) -> R | None:
        found = await self.get_many([row_id])
        return found[0] if found else None

    async def get_many(self, ids: Iterable[int]) -> list[R]:
        """The caller's rows among `ids`, by id; others' ids are simply absent."""
        t = self.table
        wanted = [i for i in ids if 0 < i <= MAX_BIGINT]
        if not wanted:
            return []
        return await self.fetch(self.select().where(*self.scope(), t.c.id.in_(wanted))
                                .order_by(t.c.id))

    async def find(self, *conditions: ColumnElement[bool],
                   ordering: Ordering | None = None) -> list[R]:
        """The caller's rows meeting `conditions` (in `ordering`, by id when None)."""
        t = self.table
        order = ordering.clauses(t) if ordering is not None else [t.c.id]
        return await self.fetch(self.select().where(*self.scope(), *conditions).order_by(*order))

    # --- writes ----------------------------------------------------------------------

    def _owned(self, values: dict[str, Any]) -> dict[str, Any]:
        """New rows belong to the caller's account, whatever `values` says."""
        if self.tenant_column is None or self.visibility is None:
            return values
        account = self.visibility.account_id
        if account is None:
            if values.get(self.tenant_column) is None:
                raise TypeError("a row written for all accounts must name its account")
            return values
        return {**values, self.tenant_column: account}

    async def insert(self, values: dict[str, Any]) -> R:
        (row,) = await self.insert_many([values])
        return row

    async def insert_many(self, rows: Sequence[dict[str, Any]]) -> list[R]:
        if not rows:
            return []
        statement = self._returning(insert(self._target).values([self._owned(r) for r in rows]))
        return await self.fetch(statement)

    async def update(self, row_id: int, values: dict[str, Any]) -> R | None:
        changed = await self.update_many([row_id], values)
        return changed[0] if changed else None

    async def update_many(self, ids: Iterable[int], values: dict[str, Any],
                          *where: ColumnElement[bool]) -> list[R]:
        """Change the caller's live rows among `ids` (and meeting `where`); the changed
        rows come back."""
        t = self.table
        statement = (update(self._target).where(*self.scope(), t.c.id.in_(list(ids)), *where)
                     .values(**self._changed(values)))
        return await self.fetch(self._returning(statement))

    async def delete(self, ids: Iterable[int]) -> list[R]:
        """Delete the caller's rows among `ids` (soft when the table has `deleted_at`);
        the deleted rows come back, so a single delete of a foreign id is a 404."""
        t = self.table
        wanted = list(ids)
        if self.deleted_column is not None:
            return await self.update_many(wanted, {self.deleted_column: func.now()})
        statement = delete(self._target).where(*self.scope(), t.c.id.in_(wanted))
        return await self.fetch(self._returning(statement))
