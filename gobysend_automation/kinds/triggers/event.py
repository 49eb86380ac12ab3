import re

from odoo.exceptions import ValidationError
from odoo.tools import SQL
from odoo.tools.translate import LazyTranslate

from .. import TRIGGERS, TriggerKind, register

_lt = LazyTranslate(__name__)

# One condition of an event filter: a property, an operator and a value, e.g. ``total > 500``
# or ``coupon = "SUMMER"``; conditions are joined with "and".
FILTER_CONDITION_RE = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*(>=|<=|!=|==|=|>|<|\bcontains\b)\s*(.*?)\s*$", re.I)
FILTER_AND_RE = re.compile(r"\s+and\s+", re.I)


def parse_event_filter(env, text):
    """The conditions of an event filter as (property, operator, value) triples; raise a
    ``ValidationError`` naming the part that cannot be read."""
    conditions = []
    for part in FILTER_AND_RE.split((text or "").strip()):
        if not part.strip():
            continue
        match = FILTER_CONDITION_RE.match(part)
        if not match or not match.group(3):
            raise ValidationError(
                env._(
                    "Event Properties: “%(condition)s” is not a condition; write a property, an operator "
                    "(=, !=, >, >=, <, <=, contains) and a value, e.g. total > 500, joined with “and”.",
                    condition=part.strip(),
                )
            )
        key, operator, value = match.groups()
        operator = {"==": "="}.get(operator, operator.lower())
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        conditions.append((key, operator, value))
    return conditions


def event_filter_sql(env, text, alias):
    """The SQL test of an event filter on the events of ``alias``: the same comparisons as the
    property conditions of segments (``gobysend.segment.condition._property_filter_sql``)."""
    Condition = env["gobysend.segment.condition"]
    tests = []
    for key, operator, value in parse_event_filter(env, text):
        condition = Condition.new(
            {"kind": "event", "property_key": key, "property_operator": operator, "property_value": value}
        )
        tests.append(condition._property_filter_sql(alias))
    return SQL(" AND ").join(tests) if tests else SQL("TRUE")


@register(TRIGGERS)
class EventTrigger(TriggerKind):
    """A contact performs an event (reported through the tracking API), optionally with
    properties meeting a filter. Journeys start as the events are stored, from the ingest path
    (``gobysend.campaign._start_event_journeys``); the event reaches the templates as
    ``event.name``, ``event.properties`` and ``event.timestamp``."""

    key = "event"
    label = _lt("Event performed")
    icon = "fa-bolt"
    sequence = 60
    fields = ("event_name", "event_filter")
    help = _lt(
        "Starts a journey when a contact of the workspace performs the event, as your systems report it through "
        "the tracking API, within seconds. Optionally only when its properties meet conditions such as "
        "total > 500 (joined with “and”). Templates can use {{ event.properties.<name> }}. With the re-entry "
        "“Every time”, each event starts its own journey."
    )

    def validate(self, campaign):
        if not (campaign.event_name or "").strip():
            raise ValidationError(
                campaign.env._("Campaign “%(name)s”: name the event that starts it.", name=campaign.name)
            )
        if campaign.event_filter:
            event_filter_sql(campaign.env, campaign.event_filter, SQL.identifier("e"))
