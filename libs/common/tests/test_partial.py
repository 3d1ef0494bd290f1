"""`partial_of`: an update body derived from its create body, as DRF's `partial=True`
(ADR 0030): the same fields but the fixed ones, optional, with no defaults, the same
constraints and validators, and the answers a hand-written update body gave."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

import pytest
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from libs.common.schemas import WriteModel, partial_of

Colour = Literal["red", "green"]


class GadgetOut(BaseModel):
    id: int
    site_id: int
    name: str
    size: int
    colour: str
    note: str | None
    tags: list[str]
    created_at: datetime


def _squash(value: str) -> str:
    cleaned = " ".join(value.split())
    if not cleaned:
        raise ValueError("This field may not be blank.")
    return cleaned


def _split(value: Any) -> Any:
    return value.split(",") if isinstance(value, str) else value


def _doubled(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    return handler(value * 2 if isinstance(value, int) else value)


seen_by_note: list[Any] = []


class GadgetCreate(WriteModel):
    resource = GadgetOut
    name: str = Field(min_length=1, max_length=20, description="What it is called")
    site_id: int = Field(ge=1)
    size: int = Field(default=10, ge=0, le=100)
    colour: Colour = "red"
    note: str | None = None
    tags: list[str] = Field(default_factory=list, max_length=3)
    serial: str = Field(default="", max_length=8)  # written, never shown

    _name = field_validator("name")(_squash)

    @field_validator("note")
    @classmethod
    def _note(cls, value: str | None, info: ValidationInfo) -> str | None:
        seen_by_note.append((value, info.field_name))
        return value.upper() if value is not None else None

    _tags = field_validator("tags", mode="before")(_split)
    _size = field_validator("size", mode="wrap")(_doubled)


@partial_of(GadgetCreate, fixed={"site_id"})
class GadgetUpdate(WriteModel):
    """What may change of a gadget."""


class HandWritten(WriteModel):
    """What may change of a gadget."""

    resource = GadgetOut
    name: str | None = Field(default=None, min_length=1, max_length=20,
                             description="What it is called")
    size: int | None = Field(default=None, ge=0, le=100)
    colour: Colour | None = None
    note: str | None = None
    tags: list[str] | None = Field(default=None, max_length=3)
    serial: str | None = Field(default=None, max_length=8)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _squash(value)

    @field_validator("note")
    @classmethod
    def _note(cls, value: str | None) -> str | None:
        return value.upper() if value is not None else None

    _tags = field_validator("tags", mode="before")(_split)
    _size = field_validator("size", mode="wrap")(_doubled)


def errors(model: type[BaseModel], body: dict[str, Any]) -> list[tuple[Any, ...]]:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    return [(e["loc"], e["type"], e["msg"]) for e in caught.value.errors()]


def test_the_fields_are_the_create_bodys_but_the_fixed_ones_optional_without_defaults(
) -> None:
    assert list(GadgetUpdate.model_fields) == ["name", "size", "colour", "note", "tags",
                                               "serial"]
    assert all(not f.is_required() and f.default is None and f.default_factory is None
               for f in GadgetUpdate.model_fields.values())
    assert GadgetUpdate.model_validate({}).model_dump(exclude_unset=True) == {}
    assert GadgetUpdate.__name__ == "GadgetUpdate"
    assert GadgetUpdate.resource is GadgetOut
    assert GadgetUpdate.partial_source is GadgetCreate


def test_the_schema_is_the_one_written_by_hand() -> None:
    """...but for what it says of null: a field documents null only where the body takes
    it. The hand-written `serial: str | None` took a null (see below); derived, it is
    documented and read as its create body's `str`."""
    written = HandWritten.model_json_schema()
    written["title"] = "GadgetUpdate"
    assert written["properties"]["serial"] == {
        "anyOf": [{"maxLength": 8, "type": "string"}, {"type": "null"}], "default": None,
        "title": "Serial"}
    written["properties"]["serial"] = {"maxLength": 8, "title": "Serial", "type": "string"}
    assert json.dumps(GadgetUpdate.model_json_schema()) == json.dumps(written)


def test_a_field_that_refuses_null_is_documented_without_it() -> None:
    """An update body's fields are `X | None` so that they may be left out, not sent as
    null (schemathesis' positive_data_acceptance sent the null OpenAPI allowed: 400)."""
    properties = GadgetUpdate.model_json_schema()["properties"]
    assert properties["name"] == {"description": "What it is called", "maxLength": 20,
                                  "minLength": 1, "title": "Name", "type": "string"}
    assert properties["colour"] == {"enum": ["red", "green"], "title": "Colour",
                                    "type": "string"}
    assert properties["note"]["anyOf"][-1] == {"type": "null"}  # the resource shows null
    assert "required" not in GadgetUpdate.model_json_schema()


@pytest.mark.parametrize("body", [
    {"name": "x" * 21}, {"name": ""}, {"name": "   "}, {"size": 51}, {"size": -1},
    {"colour": "blue"}, {"tags": ["a", "b", "c", "d"]}, {"tags": "a,b,c,d"},
    {"serial": "123456789"}, {"size": "big"}, {"name": None}, {"size": None},
    {"tags": None}, {"colour": None}, {"name": "", "whatever": 1},
    {"size": -1, "site_id": 0, "nope": 1}, {"name": 3, "size": 2.5, "note": 1},
])
def test_bad_bodies_are_refused_as_the_hand_written_body_refused_them(
        body: dict[str, Any]) -> None:
    assert errors(GadgetUpdate, body) == errors(HandWritten, body)


@pytest.mark.parametrize("body", [{"name": "x", "whatever": 1}, {"site_id": 0, "nope": 1},
                                  {"id": 4, "created_at": "now", "size": 3}])
def test_unknown_and_fixed_names_are_ignored_as_the_hand_written_body_ignored_them(
        body: dict[str, Any]) -> None:
    read = GadgetUpdate.model_validate(body).model_dump(exclude_unset=True)
    assert read == HandWritten.model_validate(body).model_dump(exclude_unset=True)
    assert not read.keys() - {"name", "size"}


def test_the_create_bodys_validators_run_on_what_is_given() -> None:
    update = GadgetUpdate.model_validate({"name": "  a   b ", "tags": "x,y", "size": 4})
    assert update.model_dump(exclude_unset=True) == {"name": "a b", "tags": ["x", "y"],
                                                     "size": 8}
    assert errors(GadgetUpdate, {"name": "   "}) == [
        (("name",), "string_too_short", "String should have at least 1 character")]
    assert errors(GadgetUpdate, {"size": 60}) == [
        (("size",), "less_than_equal", "Input should be less than or equal to 100")]


def test_a_validator_runs_on_null_only_where_the_create_body_takes_null() -> None:
    seen_by_note.clear()
    assert GadgetUpdate.model_validate({"note": None}).model_dump(exclude_unset=True) == {
        "note": None}
    assert GadgetUpdate.model_validate({"note": "hi"}).model_dump(exclude_unset=True) == {
        "note": "HI"}
    assert seen_by_note == [(None, "note"), ("hi", "note")]


def test_a_validator_of_every_field_is_kept_for_every_field_kept() -> None:
    class Loud(WriteModel):
        a: str = ""
        b: str | None = None
        c: str = ""

        @field_validator("*")
        @classmethod
        def _loud(cls, value: Any) -> Any:
            return None if value is None else value.upper()

    @partial_of(Loud, fixed={"c"})
    class LoudUpdate(WriteModel):
        pass

    assert LoudUpdate.model_validate({"a": "x", "b": "y"}).model_dump(exclude_unset=True) == {
        "a": "X", "b": "Y"}
    assert LoudUpdate.model_validate({"b": None}).model_dump(exclude_unset=True) == {
        "b": None}


def test_null_is_taken_as_the_create_body_takes_it() -> None:
    # `serial` is not shown by the resource: its create type says whether null is allowed
    # (`serial: str | None` written by hand took a null the column cannot hold).
    assert errors(GadgetUpdate, {"serial": None}) == [
        (("serial",), "null", "This field may not be null.")]
    assert errors(GadgetUpdate, {"name": None, "size": None}) == [
        (("name",), "null", "This field may not be null."),
        (("size",), "null", "This field may not be null."),
    ]


def test_fixed_fields_are_ignored_shown_or_not() -> None:
    """DRF's serializer reads only its writable fields: a fixed field sent in an update
    is dropped like any other name (ADR 0041), never applied."""
    shown = GadgetOut(id=1, site_id=2, name="a", size=3, colour="red", note=None, tags=[],
                      created_at=datetime(2026, 1, 1)).model_dump(mode="json")
    assert GadgetUpdate.model_validate(shown).model_dump(exclude_unset=True) == {
        "name": "a", "size": 6, "colour": "red", "note": None, "tags": []}

    class ThingCreate(WriteModel):
        name: str
        owner: str

    @partial_of(ThingCreate, fixed={"owner"})
    class ThingUpdate(WriteModel):
        pass

    assert ThingUpdate.model_validate({"owner": "x", "name": "b", "colour": 1}).model_dump(
        exclude_unset=True) == {"name": "b"}
    assert "owner" not in ThingUpdate.model_fields
    assert GadgetUpdate.model_validate({"site_id": 9, "size": 2}).model_dump(
        exclude_unset=True) == {"size": 4}


def test_what_cannot_be_derived_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="no fields"):
        partial_of(GadgetCreate, fixed={"colour_id"})

    class Early(WriteModel):
        later: Later  # noqa: F821 - defined after the derivation

    with pytest.raises(TypeError, match="not complete"):
        partial_of(Early)

    with pytest.raises(TypeError, match="declares"):
        @partial_of(GadgetCreate)
        class Own(WriteModel):
            extra: int | None = None

    class Checked(WriteModel):
        a: int = 0
        b: int = 0

        @model_validator(mode="after")
        def _order(self) -> Checked:
            return self

    with pytest.raises(TypeError, match="whole body"):
        @partial_of(Checked)
        class CheckedUpdate(WriteModel):
            pass
