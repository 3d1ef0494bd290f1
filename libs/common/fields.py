"""Request-body field types every service's schemas share, bounded at the edge.

The reference's short texts are `varchar(255)` columns that must not be blank (names,
titles, keywords, idempotency keys), and its bulk actions take a list of ids of bounded
size. The constraint is declared once here, so a service's body reads as its contract:

    class ClusterCreate(WriteModel):
        name: Name                              # required: 1 to 255 characters, squashed
        description: str = ""
        topic: Annotated[str, Squashed] = Field(default="", max_length=255)

    @partial_of(ClusterCreate)                  # libs.common.schemas: the update body
    class ClusterUpdate(WriteModel):            # has `name: ShortText | None = None`:
        pass                                    # may be left out; never blank when given

    class BulkDelete(BaseModel):
        ids: IdList                        # 1 to 1,000 row ids

The OpenAPI schema is pydantic's for the same `Field` constraints written on the field;
the API words a refusal as DRF does ("This field may not be blank.", ADR 0037). Whitespace
is stripped first by `WriteModel` (`str_strip_whitespace`), so "  " is blank too.

A name (a keyword, a cluster's or an idea's name, a title) is what people type and then
search, sort and compare, so runs of white space inside it are squashed to one space:
"best   running  shoes" and "best running shoes" are one keyword.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

from libs.common.ids import Id

__all__ = ["MAX_BULK_IDS", "IdList", "Name", "ShortText", "Squashed", "json_numbers_fit",
           "squash_spaces"]

# Rows one bulk action (delete, status change, queue) may name.
MAX_BULK_IDS = 1000

# A required short text: what a `varchar(255)` column holds, not blank.
ShortText = Annotated[str, Field(min_length=1, max_length=255)]
# The row ids of one bulk action.
IdList = Annotated[list[Id], Field(min_length=1, max_length=MAX_BULK_IDS)]


def json_numbers_fit(value: Any) -> Any:
    """A validator for free-form JSON a resource stores and answers (billing's payment
    method details, a WordPress integration's config): an integer past 64 bits would be
    stored, then fail every answer that shows it (a 500, found by schemathesis in billing
    and by the public-API probe in the integrations list)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise ValueError("Numbers must fit in 64 bits.")
    # PostgreSQL keeps JSON numbers as decimals: 1e20 comes back as the integer
    # 100000000000000000000, and infinity cannot be stored at all.
    if isinstance(value, float) and not (math.isfinite(value) and abs(value) < 2**63):
        raise ValueError("Numbers must fit in 64 bits.")
    if isinstance(value, dict):
        for item in value.values():
            json_numbers_fit(item)
    elif isinstance(value, list):
        for item in value:
            json_numbers_fit(item)
    return value


def squash_spaces(value: str) -> str:
    """One space between words, none around them."""
    return " ".join(value.split())


def _squashed_name(value: str) -> str:
    # Blank after squashing only where nothing stripped it first (a model without
    # `str_strip_whitespace`): refused as DRF refuses a blank CharField.
    name = squash_spaces(value)
    if not name:
        raise ValueError("This field may not be blank.")
    return name


# Runs of white space squashed to one space (a field's `Annotated` metadata).
Squashed = AfterValidator(squash_spaces)
# A required name or title: a short text, white space squashed, never blank.
Name = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_squashed_name)]
