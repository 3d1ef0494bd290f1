"""`WriteModel`: a resource's body read as DRF reads it (issue 13 D1, M5)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from libs.common.schemas import ActionBody, Ids, WriteModel, admits_none
from libs.common.testing.checks import refusing_unknown_names


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


def test_names_that_are_no_field_are_ignored() -> None:
    """As DRF's `Serializer.to_internal_value` (ADR 0041): the rest of the body is read
    as usual, the unknown names reach neither `model_dump` nor the model."""
    update = ThingUpdate.model_validate({"name": "b", "colour": "red", "account_id": 9,
                                         "id": 3, "status": "done"})
    assert update.model_dump(exclude_unset=True) == {"name": "b"}
    assert update.model_dump() == {"name": "b", "note": None, "tags": None, "secret": None}
    assert update.model_extra is None
    assert not hasattr(update, "colour")
    ids = Ids.model_validate({"ids": [3, 1], "foo": 1})
    assert ids.model_dump() == {"ids": [3, 1]}
    # An ignored name does not hide what the rest of the body gets wrong.
    with pytest.raises(ValidationError) as caught:
        ThingUpdate.model_validate({"name": None, "colour": "red"})
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("name",), "This field may not be null.")]
    with pytest.raises(ValidationError) as empty:
        ThingUpdate.model_validate({"name": "", "colour": "red"})
    assert [e["loc"] for e in empty.value.errors()] == [("name",)]
    with pytest.raises(ValidationError) as no_ids:
        Ids.model_validate({"foo": 1})
    assert [(e["loc"], e["type"]) for e in no_ids.value.errors()] == [(("ids",), "missing")]


@pytest.mark.parametrize("model", [ThingUpdate, ThingCreate, Ids])
def test_the_schema_does_not_say_unknown_names_are_refused(model: type[BaseModel]) -> None:
    assert refusing_unknown_names(model.model_json_schema()) == []

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")
        inner: ThingCreate

    assert refusing_unknown_names(Strict.model_json_schema()) == ["#"]


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


def test_without_a_resource_its_own_types_decide() -> None:
    class Plain(WriteModel):
        name: str
        note: str | None = None

    assert Plain.model_validate({"name": " x ", "note": None}).name == "x"
    assert Plain.model_validate({"name": "x", "id": 1}).model_dump() == {
        "name": "x", "note": None}
    with pytest.raises(ValidationError):
        Plain.model_validate({"name": None})


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


class Period(WriteModel):
    ends: datetime | None = None
    starts_on: date | None = None


class Publish(ActionBody):
    at: datetime | None = None


@pytest.mark.parametrize("model", [Period, Publish])
def test_a_number_is_no_datetime(model: type[BaseModel]) -> None:
    """Pydantic reads a number as unix seconds (`"current_period_end": 0` set 1970-01-01:
    schemathesis' negative_data_rejection); DRF's DateTimeField refuses it."""
    field = "ends" if model is Period else "at"
    for number in (0, 1.5, 1796339040):
        with pytest.raises(ValidationError) as caught:
            model.model_validate({field: number})
        assert caught.value.errors()[0]["msg"].startswith("Datetime has wrong format.")
    assert model.model_validate({field: "2026-12-03T22:00:00Z"}).model_dump()[field] == (
        datetime(2026, 12, 3, 22, tzinfo=UTC))


def test_a_number_is_no_date() -> None:
    with pytest.raises(ValidationError) as caught:
        Period.model_validate({"starts_on": 20261203})
    assert caught.value.errors()[0]["msg"] == (
        "Date has wrong format. Use one of these formats instead: YYYY-MM-DD.")
