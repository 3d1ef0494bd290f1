"""`WriteModel`: a resource's body read as DRF reads it (issue 13 D1, M5)."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import BaseModel, Field, ValidationError

from libs.common.schemas import WriteModel, admits_none


class ThingPublic(BaseModel):
    id: int
    name: str
    note: str | None
    tags: list[str]
    created_at: datetime
    owner_name: str


class ThingUpdate(WriteModel):
    resource = ThingPublic
    name: str | None = Field(default=None, min_length=1)
    note: str | None = None
    tags: list[str] | None = None
    secret: str | None = None  # written, never shown


class ThingCreate(WriteModel):
    resource = ThingPublic
    name: str
    note: str | None = None


def test_a_get_body_put_back_is_accepted_without_its_read_only_fields() -> None:
    shown = ThingPublic(
        id=7, name="a", note=None, tags=["x"], created_at=datetime(2025, 1, 1), owner_name="o"
    ).model_dump(mode="json")
    shown["name"] = "b"
    update = ThingUpdate.model_validate(shown)
    assert update.model_dump(exclude_unset=True) == {"name": "b", "note": None, "tags": ["x"]}
    assert ThingCreate.model_validate(shown).name == "b"
    assert ThingUpdate.ignored_fields() == {"id", "created_at", "owner_name"}


def test_names_that_are_no_field_are_refused() -> None:
    with pytest.raises(ValidationError) as caught:
        ThingUpdate.model_validate({"name": "b", "colour": "red"})
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [
        (("colour",), "extra_forbidden")
    ]


def test_null_only_where_the_resource_shows_none() -> None:
    with pytest.raises(ValidationError) as caught:
        ThingUpdate.model_validate({"name": None, "tags": None})
    errors = {e["loc"]: e["msg"] for e in caught.value.errors()}
    assert errors == {
        ("name",): "This field may not be null.",
        ("tags",): "This field may not be null.",
    }
    assert ThingUpdate.model_validate({"note": None, "secret": None}).model_dump(
        exclude_unset=True
    ) == {"note": None, "secret": None}
    assert ThingUpdate.model_validate({}).model_dump(exclude_unset=True) == {}


def test_without_a_resource_it_is_a_strict_body() -> None:
    class Plain(WriteModel):
        name: str
        note: str | None = None

    assert Plain.model_validate({"name": " x ", "note": None}).name == "x"
    with pytest.raises(ValidationError):
        Plain.model_validate({"name": "x", "id": 1})


def test_admits_none() -> None:
    assert admits_none(int | None)
    assert admits_none(type(None))
    assert not admits_none(int)
    assert not admits_none(list[int])


def test_true_is_no_number_where_a_field_counts() -> None:
    """Found probing the public API: `{"word_count": true}` was stored as 1 (pydantic reads
    true as 1; DRF's IntegerField refuses it). A boolean field still takes booleans."""

    class Counted(WriteModel):
        words: int | None = None
        flag: bool = False
        anything: int | str | None = None

    with pytest.raises(ValidationError) as refused:
        Counted.model_validate({"words": True})
    assert refused.value.errors()[0]["msg"] == "A valid integer is required."
    assert Counted.model_validate({"words": 3, "flag": True}).flag is True
    with pytest.raises(ValidationError):
        Counted.model_validate({"anything": True})
