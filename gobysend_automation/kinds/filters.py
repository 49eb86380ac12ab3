"""Conditions written in a line of text, shared by trigger and step kinds."""

import re

from odoo.exceptions import ValidationError
from odoo.tools import SQL

# "total > 500", "city = Hanoi", "sku contains TEE": a property, an operator, a value.
PROPERTY_FILTER_RE = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*(>=|<=|!=|=|>|<|\bcontains\b)\s*(.+?)\s*$")


def parse_property_filter(env, text):
    """``(key, operator, value)`` of a property filter, or None when ``text`` is empty; raise a
    ValidationError with a sentence when it cannot be read."""
    if not text or not text.strip():
        return None
    match = PROPERTY_FILTER_RE.match(text)
    if not match:
        raise ValidationError(
            env._(
                "“%(filter)s” is not a property condition: write a property, an operator (=, !=, >, >=, <, <=, "
                "contains) and a value, e.g. total > 500.",
                filter=text,
            )
        )
    key, operator, value = match.groups()
    return key, operator, value.strip("\"'")


def property_filter_sql(env, text, alias):
    """The SQL test of ``text`` on the events aliased ``alias`` (None when there is no filter),
    built by the segment conditions' own property filter."""
    parsed = parse_property_filter(env, text)
    if not parsed:
        return None
    key, operator, value = parsed
    condition = env["gobysend.segment.condition"].new(
        {"kind": "event", "property_key": key, "property_operator": operator, "property_value": value}
    )
    return condition._property_filter_sql(SQL.identifier(alias) if isinstance(alias, str) else alias)
