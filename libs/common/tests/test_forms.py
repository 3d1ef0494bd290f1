"""Form-encoded and multipart bodies read as DRF's parsers and fields read them (ADR 0044),
through the middleware stack every service has (`create_service_app` installs the same
two middlewares in this order; `test_app.py` and each service's tests go through it)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.testclient import TestClient
from pydantic import AliasChoices, AliasPath, BaseModel, ConfigDict, Field

from libs.common.fields import IdList
from libs.common.forms import ReadFormBodies, as_json_object, body_names, body_shape
from libs.common.ids import Id
from libs.common.nul import RefuseNulCharacters
from libs.common.problems import install_problem_handlers
from libs.common.schemas import WriteModel

router = APIRouter(prefix="/api/v1/kernel")


class Config(BaseModel):
    site_url: str | None = None
    depth: int = 1


class Status(StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


class KeywordCreate(WriteModel):
    keyword: str
    status: Status = Status.ACTIVE
    volume: int | None = None
    cluster_id: Id | None = None
    difficulty: int = 0
    active: bool = True
    tags: list[str] = []
    config: Config | None = None


class Bulk(BaseModel):
    ids: IdList


@router.post("/keywords/", status_code=201)
def create_keyword(body: KeywordCreate) -> dict[str, Any]:
    return body.model_dump()


@router.post("/keywords/bulk_delete/")
def bulk_delete(body: Bulk) -> dict[str, Any]:
    return {"ids": body.ids}


@router.post("/keywords/maybe/")
def optional_body(body: Bulk | None = None) -> dict[str, Any]:
    return {"ids": body.ids if body else None}


@router.post("/blobs/")
def blob(body: dict[str, Any]) -> dict[str, Any]:
    return body


@router.post("/hooks/")
async def webhook(request: Request) -> dict[str, Any]:
    """A route that reads its raw body (writer's webhooks): no body model to read into."""
    return {"type": request.headers["content-type"], "raw": (await request.body()).decode()}


@router.post("/keywords/import/")
async def import_csv(file: UploadFile = File(), site_id: Id | None = Form(None)
                     ) -> dict[str, Any]:
    return {"size": len(await file.read()), "site_id": site_id}


def client() -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    app.add_middleware(RefuseNulCharacters)
    app.add_middleware(ReadFormBodies)
    return TestClient(app)


FORM = {"content-type": "application/x-www-form-urlencoded"}


def post_form(path: str, body: bytes) -> Any:
    return client().post(f"/api/v1/kernel/{path}", content=body, headers=FORM)


def test_a_form_is_read_as_the_json_object_it_stands_for() -> None:
    answer = post_form("keywords/", b"keyword=caf%C3%A9&volume=120&active=false&tags=a"
                       b"&tags=b&config.site_url=https%3A%2F%2Fa.example&config.depth=2")
    assert answer.status_code == 201
    assert answer.json() == {"keyword": "café", "status": "active", "volume": 120,
                             "cluster_id": None,
                             "difficulty": 0, "active": False, "tags": ["a", "b"],
                             "config": {"site_url": "https://a.example", "depth": 2}}
    # UTF-8 sent as it is (curl -d "keyword=café"), and the last of a repeated name.
    answer = post_form("keywords/", "keyword=x&keyword=café&unknown=1".encode())
    assert answer.json()["keyword"] == "café"
    assert "unknown" not in answer.json()


def test_a_list_takes_every_value_of_its_key() -> None:
    assert post_form("keywords/bulk_delete/", b"ids=1&ids=2&ids=3").json() == {
        "ids": [1, 2, 3]}
    assert post_form("keywords/bulk_delete/", b"ids=7").json() == {"ids": [7]}
    # DRF's indexed keys, in index order.
    assert post_form("keywords/bulk_delete/", b"ids[1]=9&ids[0]=8").json() == {"ids": [8, 9]}
    assert post_form("keywords/maybe/", b"ids=4").json() == {"ids": [4]}
    missing = post_form("keywords/bulk_delete/", b"")
    assert (missing.status_code, missing.json()["errors"]) == (
        400, {"ids": ["This field is required."]})


def test_bad_values_are_400s_naming_the_field_as_for_json() -> None:
    answer = post_form("keywords/", b"keyword=k&volume=many&active=perhaps")
    assert answer.status_code == 400
    assert answer.json()["errors"] == {"volume": ["A valid integer is required."],
                                       "active": ["Must be a valid boolean."]}
    bulk = post_form("keywords/bulk_delete/", b"ids=1&ids=x")
    assert bulk.json()["errors"] == {"ids.1": ["A valid integer is required."]}
    nul = post_form("keywords/", b"keyword=a%00b")
    assert (nul.status_code, nul.json()["errors"]) == (
        400, {"keyword": ["Null characters are not allowed."]})
    # A name no field reads is dropped with its value, from a form as from JSON; a body
    # kept as it came (a dict) keeps every name, so it is refused there.
    assert post_form("keywords/", b"keyword=k&note=a%00b").status_code == 201
    kept = client().post("/api/v1/kernel/keywords/", json={"keyword": "k", "n": ["\x00"]})
    assert kept.status_code == 201, kept.text
    blob = client().post("/api/v1/kernel/blobs/", json={"note": "a\x00", "k": {"x\x00": 1}})
    assert (blob.status_code, blob.json()["errors"]) == (
        400, {"note": ["Null characters are not allowed."],
              "k.x\x00": ["Null characters are not allowed."]})


def test_an_empty_value_is_none_or_left_out_unless_the_field_is_text() -> None:
    """DRF's `Field.get_value` for HTML input: the "any" of a form's select."""
    answer = post_form("keywords/", b"keyword=&status=&volume=&cluster_id=&difficulty=")
    assert answer.status_code == 201
    assert answer.json() == {"keyword": "", "status": "active", "volume": None,
                             "cluster_id": None, "difficulty": 0, "active": True, "tags": [],
                             "config": None}


def test_multipart_is_read_the_same_way() -> None:
    answer = client().post("/api/v1/kernel/keywords/",
                           data={"keyword": "k", "tags": ["x", "y"], "volume": "3"},
                           files={"attachment": ("a.txt", b"ignored")})
    assert answer.status_code == 201
    assert answer.json()["tags"] == ["x", "y"]
    assert answer.json()["volume"] == 3
    # A file for a field of the body is that field's 400.
    as_file = client().post("/api/v1/kernel/keywords/", data={"volume": "3"},
                            files={"keyword": ("k.txt", b"k")})
    assert (as_file.status_code, as_file.json()["errors"]) == (
        400, {"keyword": ["Invalid value."]})
    in_object = client().post("/api/v1/kernel/keywords/", data={"keyword": "k"},
                              files={"config.site_url": ("u.txt", b"u")})
    assert (in_object.status_code, in_object.json()["errors"]) == (
        400, {"config": ["Invalid value."]})


def test_a_multipart_body_that_cannot_be_read_is_a_400() -> None:
    """Schemathesis sent `multipart/form-data` with no boundary and a JSON body: Starlette
    reports it as an HTTPException, which answered 500. DRF's ParseError is a 400."""
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=x"):
        answer = client().post("/api/v1/kernel/keywords/", content=b'{"keyword": "k"}',
                               headers={"content-type": content_type})
        assert answer.status_code == 400, (content_type, answer.text)
        assert answer.json()["detail"].startswith("Multipart form parse error - ")


def test_endpoints_that_take_a_form_or_a_dict_or_no_form() -> None:
    """A `Form`/`File` endpoint and one that reads its raw body get the body as it came; a
    dict body takes last values; `text/plain` is still a 415; JSON is untouched."""
    imported = client().post("/api/v1/kernel/keywords/import/", data={"site_id": "5"},
                             files={"file": ("k.csv", b"keyword\nx\n")})
    assert imported.json() == {"size": 10, "site_id": 5}
    assert post_form("blobs/", b"a=1&a=2&b=").json() == {"a": "2", "b": ""}
    assert post_form("hooks/", b"a=1&a=2").json() == {"type": FORM["content-type"],
                                                      "raw": "a=1&a=2"}
    plain = client().post("/api/v1/kernel/blobs/", content=b"a=1",
                          headers={"content-type": "text/plain"})
    assert plain.status_code == 415
    assert client().post("/api/v1/kernel/keywords/bulk_delete/",
                         json={"ids": [1]}).json() == {"ids": [1]}


def test_the_body_shape_follows_the_model() -> None:
    shape = body_shape(KeywordCreate | None)
    assert shape is not None
    assert [name for name, field in shape.items() if field.many] == ["tags"]
    assert [name for name, field in shape.items() if field.nested] == ["config"]
    assert [name for name, field in shape.items() if field.text] == ["keyword"]
    assert [name for name, field in shape.items() if field.required] == ["keyword"]
    assert body_shape(dict[str, Any]) is None
    assert as_json_object([("ids", "1"), ("ids", "2")], body_shape(Bulk)) == {"ids": ["1", "2"]}


class _Aliased(BaseModel):
    plain: int
    named: int = Field(alias="shown")
    either: int = Field(validation_alias=AliasChoices("one", AliasPath("two", 0)))


class _Keeping(BaseModel):
    model_config = ConfigDict(extra="allow")
    plain: int


def test_body_names_are_every_name_the_model_may_read() -> None:
    """The NUL check lets through only names no field reads: a name a model reads through
    an alias must count as read, or its U+0000 would reach the database."""
    expected = {"plain", "named", "shown", "either", "one", "two"}
    assert body_names(_Aliased) == expected
    assert body_names(_Aliased | None) == expected
    assert body_names(dict[str, Any]) is None
    assert body_names(_Keeping) is None  # every name it is sent is a value it keeps
