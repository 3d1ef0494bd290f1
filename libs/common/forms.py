"""Form-encoded and multipart bodies read as DRF reads them (ADR 0044).

DRF's default parsers are JSON, form and multipart, so a client ported from the original
may send `application/x-www-form-urlencoded` (`curl -d`) or `multipart/form-data`
(`curl -F`) to any endpoint that takes a JSON body: a login, a create, a bulk action.
`ReadFormBodies`, installed for every service by the app factory, finds the route the
request goes to and, when that route reads a JSON body (not `Form`/`File` parameters, as
the CSV imports do, and not the raw bytes, as writer's webhooks do), turns the form into
the JSON object a JSON client would have sent, the way DRF's fields read a `QueryDict`:

- a field declared as a list (`ids: list[Id]`) takes every value of its repeated key
  (`ids=1&ids=2`; a single `ids=1` is `[1]`), else DRF's indexed keys (`ids[0]=1`);
- a field declared as an object (a nested model, a dict) with no value of its own takes
  its dotted keys (`config.site_url=...`), as DRF's `parse_html_dict`;
- every other name takes its last value;
- an empty value of a field that is not text is null where the field takes null, and
  left out where the field may be left out (DRF's `Field.get_value` for HTML input): the
  "any" of a form's select, `cluster_id=`, clears or leaves the field, never a 400;
- a file part named as a field of the body is that field's 400 "Invalid value.".

The values stay strings: the body's model coerces them as it coerces JSON (`"5"` is 5,
`"true"` is True) and a bad one is the same 400 naming the field. The JSON then goes on
as any JSON body: the NUL check (`libs/common/nul.py`) names a field holding U+0000, and
the gateway's body limit has already applied to the form as it came. Everything else
(`text/plain`, XML) still reaches the route as bytes and is a 415.
"""

from __future__ import annotations

import codecs
import collections.abc
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import parse_qsl

import orjson
from fastapi import params
from pydantic import AliasChoices, AliasPath, BaseModel
from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common.bodies import read_body, replay_body
from libs.common.problems import endpoint_routes, problem_response

FORM = b"application/x-www-form-urlencoded"
MULTIPART = b"multipart/form-data"
INVALID = "Invalid value."  # DRF's `Field.default_error_messages["invalid"]`

_LISTS = (list, set, frozenset, tuple, collections.abc.Sequence, collections.abc.Set)
_OBJECTS = (dict, collections.abc.Mapping)


@dataclass(frozen=True, slots=True)
class FieldShape:
    """What a body field is, as far as reading a form goes."""

    many: bool = False  # a list: every value of its key
    nested: bool = False  # an object: its dotted keys
    text: bool = True  # a string: an empty value is a value
    nullable: bool = True
    required: bool = False


def _body_model(annotation: Any) -> type[BaseModel] | None:
    return next((t for t in _members(annotation)
                 if isinstance(t, type) and issubclass(t, BaseModel)), None)


def body_names(annotation: Any) -> frozenset[str] | None:
    """Every top-level name the body model may read (field names, aliases, validation
    aliases and their choices' first steps), or None when the body is no model or keeps
    names it does not declare (`extra="allow"`): a name outside them is dropped by the
    model (ADR 0041)."""
    model = _body_model(annotation)
    if model is None or model.model_config.get("extra") == "allow":
        return None
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.update({name, info.alias or name})
        aliases = info.validation_alias
        choices = aliases.choices if isinstance(aliases, AliasChoices) else [aliases]
        for choice in choices:
            if isinstance(choice, str):
                names.add(choice)
            elif isinstance(choice, AliasPath) and isinstance(choice.path[0], str):
                names.add(choice.path[0])
    return frozenset(names)


def body_shape(annotation: Any) -> dict[str, FieldShape] | None:
    """The fields of a JSON body by the name a client sends (the alias), or None when the
    body is no model (`dict[str, Any]`): then every name takes its last value."""
    model = _body_model(annotation)
    if model is None:
        return None
    shape: dict[str, FieldShape] = {}
    for name, info in model.model_fields.items():
        members = _members(info.annotation)
        shape[info.alias or name] = FieldShape(
            many=any(_origin(t) in _LISTS for t in members),
            nested=any(_origin(t) in _OBJECTS
                       or (isinstance(t, type) and issubclass(t, BaseModel)) for t in members),
            text=any(_is_text(t) for t in members),
            nullable=any(t is type(None) or t is Any for t in members),
            required=info.is_required())
    return shape


def _is_text(annotation: Any) -> bool:
    """A string field, where `""` is a value; not a choice (an enum of strings), which
    DRF's `ChoiceField` reads empty as it reads an empty number."""
    return annotation is Any or (isinstance(annotation, type) and issubclass(annotation, str)
                                 and not issubclass(annotation, Enum))


def _members(annotation: Any) -> list[Any]:
    """The types a value may have: `Annotated` unwrapped, a union's members (None too)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _origin(annotation: Any) -> Any:
    return get_origin(annotation) or annotation


def as_json_object(items: Iterable[tuple[str, str | UploadFile]],
                   shape: Mapping[str, FieldShape] | None) -> dict[str, Any] | str:
    """The object DRF's fields would read from the form's items (in order, a name may
    repeat), or the name of a body field sent as a file."""
    values: dict[str, list[str | UploadFile]] = {}
    for name, value in items:
        values.setdefault(name, []).append(value)
    body: dict[str, Any] = {}
    for name, given in values.items():
        if shape is None or name not in shape:
            body[name] = given[-1]  # ignored by a model, kept by a dict body
    for name, field in (shape or {}).items():
        value = _field_value(name, field, values)
        if value is not _ABSENT:
            body[name] = value
    for name, value in body.items():
        if _holds_file(value):
            if shape is not None and name in shape:
                return name
            body[name] = None  # a name no field reads: dropped by the model anyway
    return body


def _holds_file(value: Any) -> bool:
    if isinstance(value, list):
        return any(_holds_file(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_file(v) for v in value.values())
    return isinstance(value, UploadFile)


_ABSENT: Any = object()


def _field_value(name: str, field: FieldShape,
                 values: Mapping[str, list[str | UploadFile]]) -> Any:
    given = values.get(name)
    if field.many:
        if given:
            return list(given)
        indexed = _prefixed(values, f"{name}[", "]")
        if not indexed:
            return _ABSENT
        return [v for _, v in sorted(indexed.items(), key=lambda kv: int(kv[0]))]
    if given is None:
        nested = _prefixed(values, f"{name}.", "") if field.nested else {}
        return nested or _ABSENT
    value = given[-1]
    if value == "" and not field.text:
        if field.nullable:
            return None
        if not field.required:
            return _ABSENT
    return value


def _prefixed(values: Mapping[str, list[str | UploadFile]], prefix: str,
              suffix: str) -> dict[str, str | UploadFile]:
    """`{"site_url": ...}` of `config.site_url=...`; `{"0": ...}` of `ids[0]=...` (only
    whole indexes, as DRF's `parse_html_list`)."""
    found: dict[str, str | UploadFile] = {}
    for key, given in values.items():
        if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix):
            inner = key[len(prefix):len(key) - len(suffix)] if suffix else key[len(prefix):]
            if suffix and not inner.isdigit():
                continue
            found[inner] = given[-1]
    return found


def form_kind(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media_type = value.split(b";", 1)[0].strip().lower()
            return media_type if media_type in (FORM, MULTIPART) else None
    return None


def json_body_route(scope: Scope) -> Any | None:
    """The route the request goes to, if it reads a JSON body."""
    app = scope.get("app")
    for route in endpoint_routes(app.router.routes if app is not None else ()):
        if route.matches(scope)[0] == Match.FULL:
            body = getattr(route, "body_field", None)
            if body is None or isinstance(body.field_info, params.Form):
                return None
            return route
    return None


def _charset(content_type: str) -> str:
    charset = parse_options_header(content_type)[1].get(b"charset", b"utf-8")
    try:
        return codecs.lookup(charset.decode("latin-1")).name
    except LookupError:
        return "utf-8"


async def read_form(scope: Scope, receive: Receive, kind: bytes,
                    ) -> list[tuple[str, str | UploadFile]]:
    """The form's items, in order. A urlencoded body is decoded in its charset (UTF-8 by
    default, as Django's `QueryDict`: Starlette reads bytes that are not escaped as
    Latin-1); no count or size of fields is capped here beyond what a JSON body has."""
    request = Request(scope, receive)
    if kind == FORM:
        body, _ = await read_body(receive)
        charset = _charset(request.headers.get("content-type", ""))
        text = body.decode(charset, errors="replace")
        return list(parse_qsl(text, keep_blank_values=True, encoding=charset,
                              errors="replace"))
    form = await request.form(max_files=sys.maxsize, max_fields=sys.maxsize,
                              max_part_size=sys.maxsize)
    try:
        return list(form.multi_items())
    finally:
        await form.close()


class ReadFormBodies:
    """A form or multipart body sent to a JSON endpoint, given to it as the JSON object it
    stands for (with `Content-Type: application/json`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = form_kind(scope) if scope["type"] == "http" else None
        route = json_body_route(scope) if kind is not None else None
        if kind is None or route is None:
            await self.app(scope, receive, send)
            return
        try:
            items = await read_form(scope, receive, kind)
        except ClientDisconnect:
            return
        except (MultiPartException, HTTPException) as exc:
            # DRF's ParseError for a body its parser cannot read. Starlette raises its
            # parser's error as an HTTPException (400) once the app is in the scope.
            reason = exc.message if isinstance(exc, MultiPartException) else exc.detail
            await problem_response(400, "Bad request", f"Multipart form parse error - "
                                   f"{reason}")(scope, receive, send)
            return
        body = as_json_object(items, body_shape(route.body_field.field_info.annotation))
        if isinstance(body, str):
            await problem_response(400, "Validation failed",
                                   errors={body: [INVALID]})(scope, receive, send)
            return
        data = orjson.dumps(body)
        headers = [(k, v) for k, v in scope["headers"]
                   if k not in (b"content-type", b"content-length")]
        headers += [(b"content-type", b"application/json"),
                    (b"content-length", b"%d" % len(data))]
        scope = {**scope, "headers": headers}
        await self.app(scope, replay_body(data, None, receive), send)
