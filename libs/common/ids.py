"""Integers that reach PostgreSQL, bounded to its `bigint` at the edge.

Every id, id list, filter and page number a caller sends is checked against these bounds
when the request is parsed: a number the database cannot hold is the caller's 400 (or a
404 for a page), never a driver overflow answered as a 5xx.

    keyword_id: Id                  # path parameter, query parameter or body field
    ids: list[Id]                   # an id list in a body
"""

from __future__ import annotations

from typing import Annotated, Any

from annotated_types import Ge, Le
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

MAX_BIGINT = 2**63 - 1
MIN_BIGINT = -(2**63)


def refuse_bool(value: Any) -> Any:
    """`true` is not a number here: pydantic reads it as 1 (`{"content_id": true}` named
    the row with id 1); DRF's IntegerField and PrimaryKeyRelatedField refuse it."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "A valid integer is required.")
    return value


# A row id: positive and a bigint.
Id = Annotated[int, Ge(1), Le(MAX_BIGINT), BeforeValidator(refuse_bool)]
# Any number compared with a bigint (or narrower) column.
BigInt = Annotated[int, Ge(MIN_BIGINT), Le(MAX_BIGINT), BeforeValidator(refuse_bool)]
