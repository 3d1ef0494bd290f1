"""Errors every service answers the same way (issue 13, D3, D4, D7): malformed JSON names
no field, a POST-only action answers GET with 405, 405's Allow lists every method that
works on the path, and OPTIONS answers instead of 405."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel, field_validator

from libs.common.ids import Id
from libs.common.problems import install_problem_handlers

router = APIRouter(prefix="/api/v1/kernel")


@router.get("/keywords/")
def list_keywords() -> list[Any]:
    return []


@router.post("/keywords/", status_code=201)
def create_keyword(body: dict[str, Any]) -> dict[str, Any]:
    return body


@router.get("/keywords/{keyword_id}/")
@router.delete("/keywords/{keyword_id}/")
def keyword(keyword_id: Id) -> dict[str, int]:
    return {"id": keyword_id}


@router.post("/keywords/bulk_delete/")
def bulk_delete(body: dict[str, Any]) -> dict[str, int]:
    return {"deleted": 0}


@router.post("/keywords/run_now/")
def run_now(site_id: Annotated[Id, Query()]) -> dict[str, int]:
    return {"site_id": site_id}


class Meeting(BaseModel):
    at: str

    @field_validator("at")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        if len(value) != 5:
            raise ValueError("Use the 24-hour HH:MM format.")
        return value


@router.post("/meetings/")
def meeting(body: Meeting) -> Meeting:
    return body


def client() -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    return TestClient(app)


def test_a_validators_message_is_its_own() -> None:
    """Pydantic puts "Value error, " before a validator's message; DRF answers the message
    (schemathesis showed "Value error, Use the 24-hour HH:MM format.")."""
    answer = client().post("/api/v1/kernel/meetings/", json={"at": "9"})
    assert answer.status_code == 400
    assert answer.json()["errors"] == {"at": ["Use the 24-hour HH:MM format."]}


def test_malformed_json_is_a_non_field_error() -> None:
    answer = client().post("/api/v1/kernel/keywords/", content=b'{"keyword": ',
                           headers={"content-type": "application/json"})
    assert answer.status_code == 400
    (message,) = answer.json()["errors"]["non_field_errors"]
    assert message.startswith("JSON parse error - ")


def test_get_on_a_post_only_action_is_405_not_a_bad_id() -> None:
    answer = client().get("/api/v1/kernel/keywords/bulk_delete/")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST, OPTIONS"
    # A malformed id where no action has that name names no row: 404, as DRF answers
    # (the path parameter's name is no field of the API's).
    for wrong in ("abc", "0", str(2**63)):
        answer = client().get(f"/api/v1/kernel/keywords/{wrong}/")
        assert answer.status_code == 404, wrong
        assert answer.json()["detail"] == "Not found."
    nothing = client().get("/api/v1/kernel/nothing/")  # no route: the same answer
    assert (nothing.status_code, nothing.json()["detail"]) == (404, "Not found.")


def test_405_allows_every_method_that_works_and_options_answers() -> None:
    answer = client().put("/api/v1/kernel/keywords/")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET, POST, OPTIONS"
    options = client().options("/api/v1/kernel/keywords/7/")
    assert options.status_code == 200
    assert options.headers["allow"] == "DELETE, GET, OPTIONS"
    assert client().options("/api/v1/kernel/nothing/").status_code == 404


def test_a_body_that_is_not_json_is_415_as_drf_says() -> None:
    """Found probing the public API: a text/plain body was read as bytes and answered 400
    "Input should be a valid dictionary" naming no field. (A form or multipart body is
    read as JSON before it gets here: `libs.common.forms`, `test_forms.py`.)"""
    for media_type, body in (("text/plain", b'{"keyword": "x"}'),
                             ("application/xml", b"<keyword>x</keyword>")):
        answer = client().post("/api/v1/kernel/keywords/", content=body,
                               headers={"content-type": media_type})
        assert answer.status_code == 415
        assert answer.json()["detail"] == f'Unsupported media type "{media_type}" in request.'
    # JSON that is not an object is still the body's fault; no body at all is missing.
    assert client().post("/api/v1/kernel/keywords/", json=[1]).status_code == 400
    missing = client().post("/api/v1/kernel/keywords/")
    assert missing.status_code == 400
    assert missing.json()["errors"] == {"non_field_errors": ["This field is required."]}


def test_a_missing_query_parameter_says_it_is_one() -> None:
    """A user who sends `{"site_id": 2}` as the body of automation's `run_now` learns
    where the API expects it."""
    answer = client().post("/api/v1/kernel/keywords/run_now/", json={"site_id": 2})
    assert answer.status_code == 400
    assert answer.json()["errors"] == {"site_id": ["This query parameter is required."]}
    assert client().post("/api/v1/kernel/keywords/run_now/?site_id=2").json() == {"site_id": 2}
