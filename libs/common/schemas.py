"""Request bodies that create or change a resource, read the way DRF reads them.

Clients of the reference (its own frontend first) GET a resource, edit it, and PUT the
whole object back, and clients ported from it send what they sent the original. DRF's
`Serializer.to_internal_value` reads only its writable fields: the read-only ones in such
a body (`id`, `created_at`, names joined in for display) and any name that is no field at
all are dropped silently, and the rest is applied (ADR 0041). A pydantic model with
`extra="forbid"` refused them ("Extra inputs are not permitted"), and a field typed
`X | None` so that it may be left out also took an explicit `null` for a column that
cannot hold one (a 5xx at the database).

`WriteModel` knows the resource it writes (`resource`, the model GET answers with):

    class SiteUpdate(WriteModel):
        resource = SitePublic
        name: ShortText | None = None          # libs.common.fields
        url: str | None = None

- a name that is no field of the write model is dropped, whether the resource shows it
  (read-only: `id`, `account_id`, a `status` only actions change) or not (a typo, a field
  of a newer or older client): it never reaches `model_dump`, so it can change nothing;
  the OpenAPI schema does not say `additionalProperties: false`;
- `null` is refused ("This field may not be null.") for a field that `resource` shows
  without `None` in its type; a field the resource does not show may be null when its own
  type says so. Leaving a field out is always allowed where it has a default.

The update body of a resource is its create body made partial, as DRF's one serializer
with `partial=True` (ADR 0030): each field, its constraints and validators are declared
once, in the create body, and `partial_of` derives the rest:

    @partial_of(IdeaCreate, fixed={"site_id", "sector_id"})
    class IdeaUpdate(WriteModel):
        pass

- every field of the create body but `fixed` (what cannot change after creation), in the
  create body's order, each optional with no default (`X | None = None`: what is left out
  stays as it is) and the create body's constraints;
- the create body's field validators, run on what is given; on a null only where the
  create body's type admits None (otherwise null is refused first, or passes untouched);
- `null` is taken as the create body takes it: a field that cannot be created null
  cannot be set to null either (the resource, where it shows the field, decides first);
- `fixed` fields are what any other name is: ignored (`site_id` in an update body moves
  nothing).

The class statement holds what the update body says of itself (its docstring, its
`resource` if not the create body's, a `nullable` rule through its bases) and no fields.
Service code reads an update body as `model_dump(exclude_unset=True)`: the fields are
not declared where mypy sees them, so reading one as an attribute does not type-check
(rather than typing it as the create body's required field).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    create_model,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from libs.common.fields import IdList

__all__ = ["ActionBody", "Ids", "WriteModel", "admits_none", "counts", "partial_of"]


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


def counts(annotation: Any) -> bool:
    """Whether the type takes integers but not booleans (`int`, `Id | None`): there a JSON
    true is no number, though pydantic reads it as 1."""
    def members(a: Any) -> set[Any]:
        origin = get_origin(a)
        if origin is Annotated:
            return members(get_args(a)[0])
        if origin is Union or origin is types.UnionType:
            return set().union(*(members(arg) for arg in get_args(a)))
        return {a}

    found = members(annotation)
    return int in found and bool not in found and Any not in found


DATETIME_FORMAT = ("Datetime has wrong format. Use one of these formats instead: "
                   "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].")
DATE_FORMAT = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."


def temporal(annotation: Any) -> type | None:
    """`datetime` or `date` when the type takes one (`datetime | None`), else None."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return temporal(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        found = [t for t in map(temporal, get_args(annotation)) if t is not None]
        return found[0] if found else None
    if annotation in (datetime, date):
        return annotation
    return None


def refuse_number_as_time(model: type[BaseModel], value: Any, info: ValidationInfo) -> Any:
    """A JSON number where the field takes a datetime or a date: pydantic reads it as unix
    seconds (`"current_period_end": 0` set 1970-01-01), DRF's DateTimeField refuses it
    (schemathesis' negative_data_rejection)."""
    if (isinstance(value, int | float) and not isinstance(value, bool)
            and info.field_name is not None and info.field_name in model.model_fields):
        kind = temporal(model.model_fields[info.field_name].annotation)
        if kind is datetime:
            raise PydanticCustomError("datetime_type", DATETIME_FORMAT)
        if kind is date:
            raise PydanticCustomError("date_type", DATE_FORMAT)
    return value


class WriteModel(BaseModel):
    """A create or update body for the resource `resource` (see the module docstring):
    names that are none of its fields are ignored."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    resource: ClassVar[type[BaseModel] | None] = None
    # The create body an update body is derived from (`partial_of`).
    partial_source: ClassVar[type[WriteModel] | None] = None

    @classmethod
    def nullable(cls, name: str) -> bool:
        """Whether `name` takes an explicit null: as the resource shows the field, else
        as this model types it (an update body: as its create body does)."""
        if cls.resource is not None and name in cls.resource.model_fields:
            return admits_none(cls.resource.model_fields[name].annotation)
        declared = cls.partial_source or cls
        return admits_none(declared.model_fields[name].annotation)

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        """The body as it is read: a field that refuses null (`nullable`) is documented
        without `null`, though it is typed `X | None` so that it may be left out (an
        update body's fields). OpenAPI said `null` was fine and the API answered 400."""
        json_schema = handler(core_schema)
        properties = handler.resolve_ref_schema(json_schema).get("properties", {})
        for name, prop in properties.items():
            if name in cls.model_fields and not cls.nullable(name):
                _drop_null(prop)
        return json_schema

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_null_and_true_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        """A null where the field takes none; a boolean where it counts (DRF's
        IntegerField refuses true: `{"word_count": true}` was stored as 1). One validator
        for both: it runs on every field of every body."""
        if info.field_name is None:
            return value
        if value is None and not cls.nullable(info.field_name):
            raise PydanticCustomError("null", "This field may not be null.")
        if isinstance(value, bool) and counts(
                (cls.partial_source or cls).model_fields[info.field_name].annotation):
            raise PydanticCustomError("int_type", "A valid integer is required.")
        return refuse_number_as_time(cls.partial_source or cls, value, info)


def _drop_null(prop: dict[str, Any]) -> None:
    """`{"anyOf": [X, {"type": "null"}], "default": null, ...}` → `{...X, ...}`: the
    field may be left out (it is not `required`), not sent as null."""
    variants = prop.get("anyOf")
    if isinstance(variants, list):
        kept = [v for v in variants if v != {"type": "null"}]
        if len(kept) < len(variants):
            del prop["anyOf"]
            if len(kept) == 1:
                # X's own keys ($ref, type, bounds) next to the field's (title...).
                prop.update({k: v for k, v in kept[0].items() if k not in prop})
            else:
                prop["anyOf"] = kept
    elif isinstance(prop.get("type"), list) and "null" in prop["type"]:
        rest = [t for t in prop["type"] if t != "null"]
        prop["type"] = rest[0] if len(rest) == 1 else rest
    if "default" in prop and prop["default"] is None:
        del prop["default"]


class ActionBody(BaseModel):
    """The arguments of an action (a bulk delete, a job to queue), not a resource. A name
    that is none of its fields is ignored, as a DRF serializer ignores it
    (`{"ids": [1], "foo": 1}` deletes row 1)."""

    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_number_as_time(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_number_as_time(cls, value, info)


class Ids(ActionBody):
    """The rows a bulk action names: `{"ids": [1, 2, 3]}`."""

    ids: IdList


W = TypeVar("W", bound=WriteModel)


def partial_of(source: type[WriteModel], *,
               fixed: Iterable[str] = ()) -> Callable[[type[W]], type[W]]:
    """The update body of `source`'s resource, from the class it decorates (see the
    module docstring): `source`'s fields but `fixed`, optional, with no defaults."""
    fixed = frozenset(fixed)
    if not source.__pydantic_complete__:
        # Its annotations name what is not defined yet: the fields would be copied unresolved.
        raise TypeError(f"{source.__name__} is not complete; define what it names first")
    if unknown := fixed - set(source.model_fields):
        raise TypeError(f"{source.__name__} has no fields {sorted(unknown)}")

    def derive(cls: type[W]) -> type[W]:
        if own := set(cls.model_fields) - set(WriteModel.model_fields):
            raise TypeError(f"{cls.__name__} derives its fields from {source.__name__}; "
                            f"it declares {sorted(own)} itself")
        extra = set(source.__pydantic_decorators__.model_validators) - set(
            cls.__pydantic_decorators__.model_validators)
        if extra:
            raise TypeError(f"{source.__name__}'s model validators {sorted(extra)} check "
                            f"a whole body; a part of one cannot be derived from it")
        fields: dict[str, Any] = {name: _optional(info) for name, info
                                  in source.model_fields.items() if name not in fixed}
        validators = _validators(source, cls, set(fields))
        derived = create_model(cls.__name__, __base__=cls, __module__=cls.__module__,
                               __qualname__=cls.__qualname__, __doc__=cls.__doc__,
                               __validators__=validators, **fields)
        derived.partial_source = source
        if "resource" not in cls.__dict__:
            derived.resource = source.resource
        return derived

    return derive


def _optional(info: Any) -> tuple[Any, Any]:
    """A field as an update body has it: `X | None`, default None, the same constraints
    and other attributes (title, description, aliases...). The constraints and
    `Annotated` validators stay on `X` (`Annotated[X, ...] | None`): they check a value,
    and a null, where the resource takes one, is not handed to them."""
    parts = info.asdict()
    attributes = {k: v for k, v in parts["attributes"].items()
                  if k not in ("default", "default_factory", "validate_default")}
    annotation = parts["annotation"]
    if parts["metadata"]:
        annotation = Annotated.__class_getitem__((annotation, *parts["metadata"]))  # type: ignore[attr-defined]
    return annotation | None, Field(default=None, **attributes)


def _validators(source: type[WriteModel], cls: type[WriteModel],
                fields: set[str]) -> dict[str, Any]:
    """`source`'s field validators for the fields an update body keeps, but those `cls`
    has already (its bases': `WriteModel`'s own), each skipping a null where the create
    body's type has no None (the create body's validator was not written for one)."""
    own = {name: getattr(d.func, "__func__", d.func)
           for name, d in cls.__pydantic_decorators__.field_validators.items()}
    copied: dict[str, Any] = {}
    for name, decorator in source.__pydantic_decorators__.field_validators.items():
        func = getattr(decorator.func, "__func__", decorator.func)
        if own.get(name) is func:
            continue
        if name in own:
            raise TypeError(f"{cls.__name__}.{name} would hide {source.__name__}.{name}")
        names = (["*"] if "*" in decorator.info.fields
                 else [f for f in decorator.info.fields if f in fields])
        if names:
            copied[name] = _skipping_null(source, decorator.func, decorator.info.mode, names,
                                          fields)
    return copied


def _skipping_null(source: type[WriteModel], func: Any, mode: str, names: list[str],
                   fields: set[str]) -> Any:
    takes_none = {name for name in (fields if names == ["*"] else names)
                  if admits_none(source.model_fields[name].annotation)}
    # As pydantic calls a validator: with `info` if it takes one more positional argument.
    positional = [p for p in inspect.signature(func).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if mode == "wrap":
        with_info = len(positional) > 2

        def wrap(value: Any, handler: ValidatorFunctionWrapHandler,
                 info: ValidationInfo) -> Any:
            if value is None and info.field_name not in takes_none:
                return handler(value)
            return func(value, handler, info) if with_info else func(value, handler)

        return field_validator(*names, mode="wrap", check_fields=False)(wrap)
    with_info = len(positional) > 1

    def call(value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in takes_none:
            return value
        return func(value, info) if with_info else func(value)

    if mode == "before":
        return field_validator(*names, mode="before", check_fields=False)(call)
    if mode == "plain":
        return field_validator(*names, mode="plain", check_fields=False)(call)
    return field_validator(*names, mode="after", check_fields=False)(call)
