"""Refusals in DRF's words (ADR 0037): clients ported from the original backend show the
messages under `errors`, and some match them. Each message below is DRF's own
`default_error_messages` text (rest_framework/fields.py, serializers.py), or Django forms'
for a query parameter (django-filter)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

import pytest
from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import EmailStr, Field, ValidationError

from libs.common.commands import invalid
from libs.common.fields import IdList, Name, ShortText
from libs.common.messages import DRF_MESSAGES, drf_message
from libs.common.problems import install_problem_handlers
from libs.common.repository import Choice, FilterSet
from libs.common.schemas import WriteModel


class Color(StrEnum):
    RED = "red"
    BLUE = "blue"


class Body(WriteModel):
    name: Name = "x"
    note: str = Field(default="", max_length=10)
    code: str = Field(default="abc", min_length=3)
    color: Color = Color.RED
    mode: Literal["a", "b"] = "a"
    email: EmailStr | None = None
    count: int = Field(default=0, ge=0, le=100)
    credits: int = Field(default=1, gt=0)
    price: Decimal = Field(default=Decimal("1"), gt=0, max_digits=6, decimal_places=2)
    ratio: float = 0.0
    active: bool = True
    tags: list[str] = Field(default_factory=list)
    ids: IdList = [1]
    at: datetime | None = None
    day: date | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    title: ShortText = "t"


class Filters(FilterSet):
    color = Choice(Color)


router = APIRouter()


@router.post("/things/")
async def create(body: Body) -> dict[str, str]:
    return {}


@router.get("/things/")
async def things(filters: Annotated[Filters, Depends(Filters.from_query)],
                 size: Annotated[int, Query(ge=1)] = 1,
                 mode: Annotated[Literal["a", "b"] | None, Query()] = None) -> dict[str, str]:
    return {}


def client() -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    return TestClient(app)


def refused(**body: Any) -> dict[str, list[str]]:
    answer = client().post("/things/", json=body)
    assert answer.status_code == 400, answer.text
    errors: dict[str, list[str]] = answer.json()["errors"]
    return errors


DATETIME = ("Datetime has wrong format. Use one of these formats instead: "
            "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("color", "green", '"green" is not a valid choice.'),
    ("mode", "c", '"c" is not a valid choice.'),
    ("email", "not-an-email", "Enter a valid email address."),
    ("email", "a@b", "Enter a valid email address."),
    ("count", "abc", "A valid integer is required."),
    ("count", 1.5, "A valid integer is required."),
    ("count", -1, "Ensure this value is greater than or equal to 0."),
    ("count", 101, "Ensure this value is less than or equal to 100."),
    ("credits", 0, "Ensure this value is greater than or equal to 1."),
    ("price", "abc", "A valid number is required."),
    ("price", "0", "Ensure this value is greater than 0."),
    ("price", "1.234", "Ensure that there are no more than 2 decimal places."),
    ("price", "12345", "Ensure that there are no more than 4 digits before the decimal point."),
    ("price", "1234.567", "Ensure that there are no more than 6 digits in total."),
    ("ratio", "x", "A valid number is required."),
    ("active", "maybe", "Must be a valid boolean."),
    ("note", "x" * 11, "Ensure this field has no more than 10 characters."),
    ("title", "x" * 256, "Ensure this field has no more than 255 characters."),
    ("code", "ab", "Ensure this field has at least 3 characters."),
    ("title", "", "This field may not be blank."),
    ("title", "   ", "This field may not be blank."),
    ("name", None, "This field may not be null."),
    ("note", 5, "Not a valid string."),
    ("tags", "a", 'Expected a list of items but got type "str".'),
    ("tags", {"a": 1}, 'Expected a list of items but got type "dict".'),
    ("ids", [], "This list may not be empty."),
    ("ids", ["x"], "A valid integer is required."),
    ("at", "yesterday", DATETIME),
    ("day", "5th", "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."),
    ("details", "x", 'Expected a dictionary of items but got type "str".'),
])
def test_a_body_field_is_refused_in_drfs_words(field: str, value: Any, message: str) -> None:
    errors = refused(**{field: value})
    key = "ids.0" if value == ["x"] else field
    assert errors == {key: [message]}


def test_a_body_that_is_not_an_object() -> None:
    for body, kind in (("str", "str"), ([1], "list"), (5, "int")):
        assert client().post("/things/", json=body).json()["errors"] == {
            "non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}


def test_a_query_parameter_is_refused_in_django_filters_words() -> None:
    def errors(query: str) -> dict[str, list[str]]:
        answer = client().get(f"/things/?{query}")
        assert answer.status_code == 400, answer.text
        found: dict[str, list[str]] = answer.json()["errors"]
        return found

    choice = "Select a valid choice. green is not one of the available choices."
    assert errors("color=green") == {"color": [choice]}
    assert errors("mode=green") == {"mode": [choice]}
    assert errors("size=abc") == {"size": ["Enter a whole number."]}
    assert errors("size=0") == {"size": ["Ensure this value is greater than or equal to 1."]}
    assert client().get("/things/?color=red&mode=a").status_code == 200


def test_the_command_bus_words_its_refusals_the_same() -> None:
    with pytest.raises(ValidationError) as caught:
        Body.model_validate({"color": "green", "count": "x"})
    reply = invalid(caught.value)
    assert b'"\\"green\\" is not a valid choice."' in reply
    assert b"A valid integer is required." in reply


def test_every_message_is_drfs_not_pydantics() -> None:
    """No entry of the table answers pydantic's own text."""
    for kind in DRF_MESSAGES:
        text = drf_message({"type": kind, "loc": ("body", "x"), "msg": "Input should be",
                            "input": "v", "ctx": {"error": "own", "reason": "r",
                                                  "min_length": 2, "max_length": 3,
                                                  "actual_length": 1, "ge": 0, "le": 1,
                                                  "gt": 0, "lt": 1, "max_digits": 4,
                                                  "decimal_places": 2, "whole_digits": 2}})
        assert "Input should" not in text, kind
