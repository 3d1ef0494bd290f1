"""Request bodies that create or change a resource, read the way DRF reads them.

Clients of the reference (its own frontend first) GET a resource, edit it, and PUT the
whole object back. DRF ignores the read-only fields in such a body (`id`, `created_at`,
names joined in for display) and refuses only names that are no field at all. A pydantic
model with `extra="forbid"` refused them all ("Extra inputs are not permitted"), and a
field typed `X | None` so that it may be left out also took an explicit `null` for a
column that cannot hold one (a 5xx at the database).

`WriteModel` knows the resource it writes (`resource`, the model GET answers with):

    class SiteUpdate(WriteModel):
        resource = SitePublic
        name: ShortText | None = None          # libs.common.fields
        url: str | None = None

- a name that is a field of `resource` but not of the write model is read-only: dropped;
- any other unknown name is a 400 naming it ("Extra inputs are not permitted");
- `null` is refused ("This field may not be null.") for a field that `resource` shows
  without `None` in its type; a field the resource does not show may be null when its own
  type says so. Leaving a field out is always allowed where it has a default.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

__all__ = ["WriteModel", "admits_none"]


def admits_none(annotation: Any) -> bool:
    """Whether a value of this type may be None (`X | None`, `Optional[X]`, `Any`)."""
    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return admits_none(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(admits_none(arg) for arg in get_args(annotation))
    return False


class WriteModel(BaseModel):
    """A create or update body for the resource `resource` (see the module docstring).
    `read_only` names more fields to ignore that the resource does not show."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    resource: ClassVar[type[BaseModel] | None] = None
    read_only: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def ignored_fields(cls) -> frozenset[str]:
        """What a body may carry without effect: the resource's fields this model does
        not write, and `read_only`."""
        shown = set(cls.resource.model_fields) if cls.resource is not None else set()
        return frozenset((shown | cls.read_only) - set(cls.model_fields))

    @classmethod
    def nullable(cls, name: str) -> bool:
        """Whether `name` takes an explicit null: as the resource shows the field, else
        as this model types it."""
        if cls.resource is not None and name in cls.resource.model_fields:
            return admits_none(cls.resource.model_fields[name].annotation)
        return admits_none(cls.model_fields[name].annotation)

    @model_validator(mode="before")
    @classmethod
    def _drop_read_only(cls, data: Any) -> Any:
        if isinstance(data, dict):
            ignored = cls.ignored_fields()
            if ignored & data.keys():
                return {k: v for k, v in data.items() if k not in ignored}
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name is not None and not cls.nullable(info.field_name):
            raise PydanticCustomError("null", "This field may not be null.")
        return value
