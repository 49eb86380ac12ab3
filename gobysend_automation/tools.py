"""Input normalisation shared by the models, the API and the tests."""

import contextlib
import datetime
import gc
import hashlib
import hmac
import json
import math
import re
import threading

import phonenumbers
import pytz
from psycopg2.extensions import ISQLQuote, QuotedString

from odoo import _, tools
from odoo.tools import SQL

from .exceptions import InvalidInput

ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ISO_DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
# Timestamps outside this range are almost always unit mistakes (milliseconds sent as seconds).
EARLIEST_TIMESTAMP = datetime.datetime(2000, 1, 1)
FUTURE_TOLERANCE = datetime.timedelta(days=1)

ATTRIBUTE_TYPES = ("string", "number", "boolean", "date", "datetime")
# The header that signs what Gobysend posts to a business's systems (channel webhooks, webhook steps).
SIGNATURE_HEADER = "X-Gobysend-Signature"


# The collector's thresholds while contacts and events are ingested in bulk (see
# ``fewer_collections``): a first generation of 12,000 new objects instead of Python's 700.
BULK_GC_THRESHOLD = (12_000, 20, 25)
_bulk_gc_lock = threading.Lock()
_bulk_gc = {"depth": 0, "saved": None}


@contextlib.contextmanager
def fewer_collections():
    """Run the block with the garbage collector's thresholds raised to ``BULK_GC_THRESHOLD``.

    A batch of contacts keeps thousands of objects alive while it runs (records, their
    values, the cache). At Python's default thresholds, each 700 more objects set off a
    collection, and every hundredth collection walks every object of the process, the registry
    included. For 40,000 known contacts identified again, that was a tenth of the time.
    Refcounting frees nearly all of a batch's objects once it ends, so the collector has little
    to find here; what it does find waits for the next collection. These thresholds (those
    Odoo's later versions set for the whole server) belong to the whole process: they are put
    back when the last block running (in any thread) ends, unless someone raised them higher
    already."""
    with _bulk_gc_lock:
        if not _bulk_gc["depth"]:
            _bulk_gc["saved"] = gc.get_threshold()
            if _bulk_gc["saved"][0] < BULK_GC_THRESHOLD[0]:
                gc.set_threshold(*BULK_GC_THRESHOLD)
        _bulk_gc["depth"] += 1
    try:
        yield
    finally:
        with _bulk_gc_lock:
            _bulk_gc["depth"] -= 1
            if not _bulk_gc["depth"]:
                gc.set_threshold(*_bulk_gc["saved"])


def compute_signature(secret, timestamp, body):
    """Hex HMAC-SHA256 of ``"{timestamp}.{body}"`` with ``secret``; ``body`` is bytes."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret, timestamp, body):
    """The value of the ``X-Gobysend-Signature`` header: ``t=<unix seconds>,v1=<hex>``."""
    return "t=%d,v1=%s" % (int(timestamp), compute_signature(secret, timestamp, body))


def secrets_match(expected, given):
    """Compare a secret we computed with one a client sent, in constant time.

    ``hmac.compare_digest`` (Odoo's ``consteq``) raises ``TypeError`` on a ``str`` with non-ASCII
    characters, which a client controls: anything that is not the expected secret, whatever its
    characters or type, is a plain mismatch here."""
    if not isinstance(expected, str | bytes) or not isinstance(given, str | bytes):
        return False
    if isinstance(expected, str):
        expected = expected.encode()
    if isinstance(given, str):
        given = given.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(expected, given)


def count_related(records, model, inverse_field):
    """{record: how many ``model`` records point at it through ``inverse_field``}, counted
    under the current user's record rules (one query for all of ``records``)."""
    return dict(records.env[model]._read_group([(inverse_field, "in", records.ids)], [inverse_field], ["__count"]))


def related_list_action(record, model, inverse_field, name):
    """A window action listing the ``model`` records of ``record``, creating new ones for it."""
    return {
        "type": "ir.actions.act_window",
        "name": name,
        "res_model": model,
        "view_mode": "list,form",
        "domain": [(inverse_field, "=", record.id)],
        "context": {f"default_{inverse_field}": record.id},
    }


# Plain addresses (dot-separated atoms of the common characters, no quotes, comments, display
# names or spaces): ``email_normalize`` reads them as they are, lowercased.
PLAIN_EMAIL_RE = re.compile(r"^[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")


def normalize_email(email):
    """``email_normalize`` of ``email``, or False when it is no valid address or no text. Plain
    addresses skip the full parser: the bulk paths read a hundred thousand of them at once."""
    if not isinstance(email, str):
        return False
    if PLAIN_EMAIL_RE.match(email):
        return email.lower()
    return tools.email_normalize(email)


# A number written in E.164: a plus, then digits (the country code first, never a zero).
E164_RE = re.compile(r"\+([1-9][0-9]{6,14})")


def _e164_number(number):
    """``number`` if it is written in E.164 and the phone library would read it as written: a
    valid number of the country code it starts with, whose national part does not start with a
    zero or with a national prefix that reading it strips. Otherwise None, and the library reads
    it in full.

    Reading a number in full (``phonenumbers.parse``) costs twice the checks that follow, and
    the bulk paths read a hundred thousand numbers at once, mostly in E.164."""
    match = E164_RE.fullmatch(number)
    if not match:
        return None
    digits = match.group(1)
    # Country codes are prefix-free: the first one that the digits start with is theirs, as in
    # the library's own reading.
    for length in (1, 2, 3):
        country_code = int(digits[:length])
        if country_code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[length:]
    if national.startswith("0"):
        return None  # leading zeros are kept apart (Italy)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
        country_code, phonenumbers.region_code_for_country_code(country_code)
    )
    if metadata is None:
        return None
    if metadata.national_prefix_for_parsing and re.match(metadata.national_prefix_for_parsing, national):
        return None  # the library may strip it as a national prefix or a carrier code
    parsed = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
    if phonenumbers.is_possible_number(parsed) and phonenumbers.is_valid_number(parsed):
        return number
    return None


def normalize_phone(number, region, field_name="phone"):
    """Return ``number`` in E.164 form, reading numbers without prefix as numbers of ``region``."""
    if not isinstance(number, str) or not number.strip():
        raise InvalidInput(field_name, _("A phone number is required."))
    e164 = _e164_number(number)
    if e164:
        return e164
    try:
        parsed = phonenumbers.parse(number.strip(), (region or "VN").upper())
    except phonenumbers.NumberParseException as error:
        raise InvalidInput(
            field_name, _("“%(number)s” is not a phone number: %(reason)s", number=number, reason=str(error))
        ) from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidInput(
            field_name, _("“%(number)s” has the wrong number of digits for a phone number.", number=number)
        )
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput(
            field_name,
            _("“%(number)s” is not a valid phone number in %(region)s.", number=number, region=region),
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def parse_timestamp(value, field_name="timestamp", now=None):
    """Read an ISO 8601 string or epoch seconds into a naive UTC datetime (Odoo's convention).

    ``None`` means now. Timestamps before 2000 or more than a day ahead are refused: they are
    nearly always milliseconds sent as seconds or a wrong clock.
    """
    now = now or datetime.datetime.utcnow()
    if value is None or value == "":
        return now.replace(microsecond=0)
    if isinstance(value, bool):
        raise InvalidInput(field_name, _("A timestamp must be an ISO 8601 date-time or epoch seconds."))
    if isinstance(value, int | float):
        try:
            moment = datetime.datetime.fromtimestamp(value, datetime.UTC).replace(tzinfo=None)
        except (OverflowError, OSError, ValueError):
            raise InvalidInput(field_name, _("%(value)s is not a usable epoch timestamp.", value=value)) from None
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidInput(
                field_name,
                _("“%(value)s” is not an ISO 8601 date-time (for example 2026-01-31T08:30:00Z).", value=value),
            ) from None
        if moment.tzinfo:
            moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
    else:
        raise InvalidInput(field_name, _("A timestamp must be an ISO 8601 date-time or epoch seconds."))
    if moment < EARLIEST_TIMESTAMP:
        raise InvalidInput(field_name, _("The timestamp %(value)s is before the year 2000.", value=value))
    if moment > now + FUTURE_TOLERANCE:
        raise InvalidInput(field_name, _("The timestamp %(value)s is more than a day in the future.", value=value))
    # Odoo keeps date-times to the second.
    return moment.replace(microsecond=0)


class _ArrayLiteral:
    """A query parameter that psycopg2 writes as one quoted PostgreSQL array literal."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text

    def __conform__(self, protocol):
        return QuotedString(self.text) if protocol is ISQLQuote else None

    def __repr__(self):
        return f"pg_array({self.text!r})"


def _array_element(value):
    """``value`` as an element of a PostgreSQL array literal (see ``pg_array``)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        # The shortest text that reads back as the same float, as psycopg2 writes one.
        return repr(float(value))
    if isinstance(value, datetime.datetime):
        value = value.isoformat(sep=" ")
    elif isinstance(value, datetime.date):
        value = value.isoformat()
    elif not isinstance(value, str):
        raise TypeError(f"pg_array cannot write a {type(value).__name__}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pg_array(values):
    """``values`` (text, numbers, booleans, dates, None) as one parameter to cast to an array
    type, as in ``unnest(%s::int[])``: written as one array literal (``'{1,2,3}'``).

    psycopg2 writes a list as ``ARRAY[...]`` with one literal per element, which Python
    composes and PostgreSQL then parses and evaluates element by element: for the ten
    thousand keys or values of an import chunk, four to six times what one literal costs,
    which PostgreSQL's array reader reads at once. Imports pass some thirty values per
    contact this way."""
    values = values if isinstance(values, list) else list(values)
    if all(type(value) is int for value in values):
        text = ",".join(map(str, values))
    else:
        text = ",".join(map(_array_element, values))
    return _ArrayLiteral("{" + text + "}")


def any_of(values, sql_type):
    """SQL for ``= ANY(...)`` over ``values``, a list of keys to look up (of the PostgreSQL
    type ``sql_type``), given through a subquery.

    Given as a literal array, a few hundred keys make the planner expect as many rows, and on
    a table of some hundred thousand rows (a young workspace's contacts) it then reads the
    whole table, in parallel, for a lookup an index answers in a few milliseconds. The
    planner does not read the length of a subquery's array, and looks each key up."""
    return SQL("ANY(%s)", _keys_array(values, sql_type))


def _keys_array(values, sql_type):
    """``values`` as an array of ``sql_type`` made by a subquery, whose length the planner
    does not read (see ``any_of``)."""
    return SQL("ARRAY(SELECT unnest(%s::%s[]))", pg_array(values), SQL(sql_type))


def keys_of(values, sql_type):
    """SQL for a table of ``values`` (a list of keys of the PostgreSQL type ``sql_type``) to
    join with, as ``%s AS k(value)``; through a subquery, as in ``any_of``.

    Joined rather than compared with ``= ANY``: where the planner reads a whole table (its
    statistics still count a fast-growing workspace's contacts as few), ``= ANY`` compares
    each row with every key, and a join hashes the keys once."""
    return SQL("unnest(%s)", _keys_array(values, sql_type))


def storable_text(text):
    """``text`` with each NUL character, which PostgreSQL cannot store, shown as U+FFFD: for
    what a file holds and is only shown back (a preview, a rejected row's cells)."""
    return text.replace("\x00", "\ufffd")


def find_nul_character(value, path):
    """Return the dotted path of the first text in ``value`` (keys included) that holds a NUL
    character, which PostgreSQL cannot store in text or JSON; None when there is none."""
    if isinstance(value, dict | list):
        # Mostly there is none: JSON writes a NUL character as \u0000, and the encoder reads
        # the whole payload much faster than a walk through it. Only a hit is looked for.
        try:
            if "\\u0000" not in json.dumps(value, default=str):
                return None
        except (TypeError, ValueError):
            pass
    return _find_nul_character(value, path)


def _find_nul_character(value, path):
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            item_path = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and "\x00" in key:
                return item_path
            found = _find_nul_character(item, item_path)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for item in value:
            found = _find_nul_character(item, path)
            if found is not None:  # the path of a list's own items may be empty
                return found
    return None


def infer_attribute_type(value):
    """Guess the type of an attribute seen for the first time."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        if ISO_DATE_RE.match(value):
            return "date"
        if ISO_DATETIME_RE.match(value):
            return "datetime"
        return "string"
    return None


def _as_number(value):
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    # NaN and infinities (JSON parsers accept them, and so does float()) cannot be compared
    # in segments; integers beyond a float's range overflow.
    return number if math.isfinite(number) else None


def _as_date(value):
    if not (isinstance(value, str) and ISO_DATE_RE.match(value)):
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        return None


def _as_datetime(value, field_name):
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return parse_timestamp(value, field_name=field_name, now=datetime.datetime.max - FUTURE_TOLERANCE)
    except InvalidInput:
        return None


def coerce_attribute_value(value_type, value, field_name):
    """Return ``value`` converted for storage as ``value_type``, or raise naming ``field_name``."""
    if value_type == "string":
        if isinstance(value, str):
            return value
        coerced = None if isinstance(value, bool) else (str(value) if isinstance(value, int | float) else None)
    elif value_type == "number":
        coerced = _as_number(value)
    elif value_type == "boolean":
        coerced = value if isinstance(value, bool) else None
    elif value_type == "date":
        coerced = _as_date(value)
    elif value_type == "datetime":
        coerced = _as_datetime(value, field_name)
    else:
        coerced = None
    if coerced is None:
        raise InvalidInput(
            field_name,
            _("%(value)r is not a valid %(type)s value.", value=value, type=value_type),
        )
    return coerced


def first_moment_at(tz, wall_time):
    """The first moment (aware, in ``tz``) at which the clocks of ``tz`` read the naive
    ``wall_time`` or later. A time read twice when the clocks go back is its first reading;
    a time skipped when they go forward is reached at the jump itself."""
    try:
        return tz.localize(wall_time, is_dst=None)
    except pytz.AmbiguousTimeError:
        return min(tz.localize(wall_time, is_dst=True), tz.localize(wall_time, is_dst=False))
    except pytz.NonExistentTimeError:
        pass
    # Skipped: the clocks read an earlier time at ``low`` and a later one at ``high``; the jump
    # lies between them, on a whole second.
    low, high = sorted(tz.localize(wall_time, is_dst=flag).astimezone(pytz.utc) for flag in (True, False))
    while high - low > datetime.timedelta(seconds=1):
        middle = low + datetime.timedelta(seconds=(high - low).total_seconds() // 2)
        if tz.normalize(middle.astimezone(tz)).replace(tzinfo=None) < wall_time:
            low = middle
        else:
            high = middle
    return high.astimezone(tz)


def retry_delays(value):
    """The minutes of ``value`` ("1,5,30") as timedeltas; ``ValueError`` when one is not a
    positive whole number."""
    delays = []
    for part in (value or "").split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) <= 0:
            raise ValueError(part)
        delays.append(datetime.timedelta(minutes=int(part)))
    return delays
