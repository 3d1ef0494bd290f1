"""What a refused value is told, in Django REST framework's words (ADR 0037).

Clients ported from the original DRF backend show, and sometimes match, the messages
under `errors`. Pydantic's own ("Input should be 'a' or 'b'", "Input should be a valid
integer, unable to parse string as an integer") are translated here, by pydantic's error
`type` and its `ctx`, into the `default_error_messages` of DRF's fields and serializers
(rest_framework/fields.py, serializers.py). One table serves every place that words a
refusal: the request handler (`problems.validation_errors`), the command bus, and code
that checks values by hand (list filters, CSV imports).

A query parameter was a django-filter filter in the original, which answers in Django
forms' words ("Select a valid choice. x is not one of the available choices.", "Enter a
whole number."); those few differ from a body field's and are looked up first for one.
A validator's own message (`ValueError("Use the 24-hour HH:MM format.")`) is its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["BLANK", "INTEGER", "NULL", "REQUIRED", "drf_message", "filter_choice",
           "invalid_choice", "max_length", "max_value", "min_value"]

REQUIRED = "This field is required."
QUERY_REQUIRED = "This query parameter is required."
NULL = "This field may not be null."
BLANK = "This field may not be blank."
INTEGER = "A valid integer is required."
NUMBER = "A valid number is required."
BOOLEAN = "Must be a valid boolean."
STRING = "Not a valid string."
EMAIL = "Enter a valid email address."
URL = "Enter a valid URL."
UUID = "Must be a valid UUID."
PATTERN = "This value does not match the required pattern."
TOO_LARGE = "String value too large."
EMPTY_LIST = "This list may not be empty."
DATETIME = ("Datetime has wrong format. Use one of these formats instead: "
            "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].")
DATE = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
TIME = "Time has wrong format. Use one of these formats instead: hh:mm[:ss[.uuuuuu]]."
DATE_NOT_DATETIME = "Expected a date but got a datetime."
JSON = "Value must be valid JSON."


def invalid_choice(value: Any) -> str:
    """A body field's value outside its choices (DRF's ChoiceField)."""
    return f'"{value}" is not a valid choice.'


def filter_choice(value: Any) -> str:
    """A query parameter's value outside its choices (django-filter's ChoiceFilter)."""
    return f"Select a valid choice. {value} is not one of the available choices."


def max_length(limit: Any) -> str:
    return f"Ensure this field has no more than {limit} characters."


def min_length(limit: Any) -> str:
    return f"Ensure this field has at least {limit} characters."


def max_value(limit: Any) -> str:
    return f"Ensure this value is less than or equal to {limit}."


def min_value(limit: Any) -> str:
    return f"Ensure this value is greater than or equal to {limit}."


def not_a_list(value: Any) -> str:
    return f'Expected a list of items but got type "{_type_name(value)}".'


def not_an_object(value: Any) -> str:
    return f"Invalid data. Expected a dictionary, but got {_type_name(value)}."


def _type_name(value: Any) -> str:
    # DRF names the parsed JSON's Python type: str, int, float, bool, list, dict.
    return type(value).__name__


Error = Mapping[str, Any]
Message = str | Callable[[Error], str]


def _ctx(err: Error, key: str) -> Any:
    return (err.get("ctx") or {}).get(key)


def _too_short_text(err: Error) -> str:
    # DRF refuses an empty (or all-space) CharField as blank before counting characters.
    value = err.get("input")
    return BLANK if isinstance(value, str) and not value.strip() else min_length(
        _ctx(err, "min_length"))


def _too_short_list(err: Error) -> str:
    if _ctx(err, "actual_length") == 0:
        return EMPTY_LIST  # DRF's ListField(allow_empty=False)
    return f"Ensure this field has at least {_ctx(err, 'min_length')} elements."


def _exclusive(bound: Any, step: int, words: str) -> str:
    # DRF has inclusive bounds only: `gt=0` on an integer is its `min_value=1`.
    if isinstance(bound, int) and not isinstance(bound, bool):
        return (min_value if step > 0 else max_value)(bound + step)
    return f"Ensure this value is {words} {bound}."


def _choice(err: Error) -> str:
    return invalid_choice(err.get("input"))


def _email_or_own(err: Error) -> str:
    if _ctx(err, "error") is not None:
        return str(_ctx(err, "error"))  # a validator's own words, without "Value error, "
    if _ctx(err, "reason") is not None and "email address" in str(err.get("msg", "")):
        return EMAIL  # email-validator's reason ("An email address must have an @-sign.")
    return str(err.get("msg", "Invalid value."))


# pydantic error type → DRF's message (a text, or a function of the error and its ctx).
DRF_MESSAGES: dict[str, Message] = {
    "missing": REQUIRED,
    "value_error": _email_or_own,
    "assertion_error": _email_or_own,
    "enum": _choice,
    "literal_error": _choice,
    "int_type": INTEGER,
    "int_parsing": INTEGER,
    "int_from_float": INTEGER,
    "int_parsing_size": TOO_LARGE,
    "float_type": NUMBER,
    "float_parsing": NUMBER,
    "finite_number": NUMBER,
    "decimal_type": NUMBER,
    "decimal_parsing": NUMBER,
    "decimal_max_digits": lambda e: ("Ensure that there are no more than "
                                     f"{_ctx(e, 'max_digits')} digits in total."),
    "decimal_max_places": lambda e: ("Ensure that there are no more than "
                                     f"{_ctx(e, 'decimal_places')} decimal places."),
    "decimal_whole_digits": lambda e: ("Ensure that there are no more than "
                                       f"{_ctx(e, 'whole_digits')} digits before the "
                                       "decimal point."),
    "bool_type": BOOLEAN,
    "bool_parsing": BOOLEAN,
    "string_type": STRING,
    "string_unicode": STRING,
    "string_too_short": _too_short_text,
    "string_too_long": lambda e: max_length(_ctx(e, "max_length")),
    "string_pattern_mismatch": PATTERN,
    "too_short": _too_short_list,
    "too_long": lambda e: (f"Ensure this field has no more than {_ctx(e, 'max_length')} "
                           "elements."),
    "greater_than_equal": lambda e: min_value(_ctx(e, "ge")),
    "less_than_equal": lambda e: max_value(_ctx(e, "le")),
    "greater_than": lambda e: _exclusive(_ctx(e, "gt"), 1, "greater than"),
    "less_than": lambda e: _exclusive(_ctx(e, "lt"), -1, "less than"),
    "list_type": lambda e: not_a_list(e.get("input")),
    "set_type": lambda e: not_a_list(e.get("input")),
    "tuple_type": lambda e: not_a_list(e.get("input")),
    "dict_type": lambda e: (f'Expected a dictionary of items but got type '
                            f'"{_type_name(e.get("input"))}".'),
    "model_type": lambda e: not_an_object(e.get("input")),
    "model_attributes_type": lambda e: not_an_object(e.get("input")),
    "datetime_type": DATETIME,
    "datetime_parsing": DATETIME,
    "datetime_from_date_parsing": DATETIME,
    "datetime_object_invalid": DATETIME,
    "date_type": DATE,
    "date_parsing": DATE,
    "date_from_datetime_parsing": DATE,
    "date_from_datetime_inexact": DATE_NOT_DATETIME,
    "time_type": TIME,
    "time_parsing": TIME,
    "uuid_type": UUID,
    "uuid_parsing": UUID,
    "url_type": URL,
    "url_parsing": URL,
    "url_scheme": URL,
    "url_syntax_violation": URL,
    "json_type": JSON,
}

# Where a query parameter (a django-filter filter in the original) is worded otherwise:
# Django forms' IntegerField, DecimalField, DateField, DateTimeField, ChoiceField.
FILTER_MESSAGES: dict[str, Message] = {
    "missing": QUERY_REQUIRED,
    "enum": lambda e: filter_choice(e.get("input")),
    "literal_error": lambda e: filter_choice(e.get("input")),
    "int_type": "Enter a whole number.",
    "int_parsing": "Enter a whole number.",
    "int_from_float": "Enter a whole number.",
    "float_parsing": "Enter a number.",
    "decimal_parsing": "Enter a number.",
    "date_parsing": "Enter a valid date.",
    "date_from_datetime_parsing": "Enter a valid date.",
    "datetime_parsing": "Enter a valid date/time.",
    "datetime_from_date_parsing": "Enter a valid date/time.",
}


def drf_message(err: Error) -> str:
    """DRF's message for one pydantic error (an item of `ValidationError.errors()`)."""
    kind = str(err.get("type", ""))
    loc = err.get("loc") or ()
    if loc and loc[0] == "query" and kind in FILTER_MESSAGES:
        message: Message | None = FILTER_MESSAGES[kind]
    elif err.get("input", 0) is None and kind not in ("missing", "value_error"):
        return NULL  # DRF refuses null before it looks at the type
    else:
        message = DRF_MESSAGES.get(kind)
    if message is None:
        return str(err.get("msg", "Invalid value."))
    return message if isinstance(message, str) else message(err)
