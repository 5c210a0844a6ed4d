"""The one form field that Slack and GitHub put a JSON document in (`payload=`)."""

from __future__ import annotations

from urllib.parse import parse_qs

MAX_FORM_FIELDS = 20


def single_field(body: bytes, name: str = "payload") -> str:
    """The value of the only `name` field of an urlencoded body; ValueError says what is wrong."""
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError:  # not UTF-8, or too many fields
        raise ValueError("body is not an urlencoded form") from None
    values = fields.get(name, [])
    if len(values) != 1:
        raise ValueError(f"form must have exactly one `{name}` field")
    return values[0]
