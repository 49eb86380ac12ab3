"""Helpers shared by the channel providers: signatures, JSON paths, placeholders, JWTs."""

import base64
import datetime
import email.utils
import hashlib
import hmac
import json
import re

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

# One signing scheme for every request Gobysend posts: the webhook steps of the engine use it too.
from odoo.addons.gobysend_automation.tools import (  # noqa: F401 (re-exported for the providers)
    SIGNATURE_HEADER,
    compute_signature,
    secrets_match,
    signature_header,
)

# A signed request older (or newer) than this is refused: a captured request cannot be replayed later.
SIGNATURE_TOLERANCE = datetime.timedelta(minutes=5)

PLACEHOLDER_RE = re.compile(r"\{(to|body|subject|sender|message_id)\}")
PATH_TOKEN_RE = re.compile(r"[^.\[\]]+|\[\d+\]")


class SignatureError(Exception):
    """A signed request could not be authenticated. ``code`` says why, for the HTTP answer."""

    def __init__(self, code, message):
        self.code = code
        super().__init__(message)


# ----------------------------------------------------------------------
# HMAC signatures (outgoing webhooks and inbound receipts)
# ----------------------------------------------------------------------


def parse_signature_header(value):
    """Return (timestamp, [v1 signatures]) from a ``t=…,v1=…`` header, or raise SignatureError."""
    timestamp = None
    signatures = []
    for part in (value or "").split(","):
        key, _sep, item = part.strip().partition("=")
        if key == "t" and item.isdigit():
            timestamp = int(item)
        elif key == "v1" and item:
            signatures.append(item.strip())
    if timestamp is None or not signatures:
        raise SignatureError("missing_signature", "The signature header must read t=<unix time>,v1=<hex digest>.")
    return timestamp, signatures


def verify_signature(secret, header, body, now):
    """Check a ``t=…,v1=…`` header against ``body``; return the matching signature.

    ``now`` is a naive UTC datetime. Raises SignatureError for a wrong signature or a
    timestamp outside the tolerance window.
    """
    timestamp, signatures = parse_signature_header(header)
    expected = compute_signature(secret, timestamp, body)
    matching = [candidate for candidate in signatures if secrets_match(expected, candidate)]
    if not matching:
        raise SignatureError("invalid_signature", "The signature does not match the request body.")
    now_ts = now.replace(tzinfo=datetime.UTC).timestamp()
    if abs(now_ts - timestamp) > SIGNATURE_TOLERANCE.total_seconds():
        raise SignatureError("stale_timestamp", "The signature timestamp is outside the five-minute window.")
    return matching[0]


def twilio_signature(auth_token, url, params):
    """Twilio's X-Twilio-Signature: base64 HMAC-SHA1 of the URL followed by every POST
    parameter, sorted by name, as name then value. ``params`` maps names to lists of values."""
    data = url
    for key in sorted(params):
        for value in params[key]:
            data += key + value
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# ----------------------------------------------------------------------
# Templates and answers
# ----------------------------------------------------------------------


def fill_placeholders(value, values):
    """Replace ``{to}``, ``{body}``, ``{subject}``, ``{sender}`` and ``{message_id}`` in every string
    of ``value`` (a JSON structure). Nothing else is interpreted: no attribute access, no format
    specifications, and the JSON structure itself cannot be changed by the substituted text."""
    if isinstance(value, str):
        return PLACEHOLDER_RE.sub(lambda match: str(values.get(match.group(1)) or ""), value)
    if isinstance(value, list):
        return [fill_placeholders(item, values) for item in value]
    if isinstance(value, dict):
        return {key: fill_placeholders(item, values) for key, item in value.items()}
    return value


def json_path(data, path):
    """Read ``path`` (``data.id``, ``messages[0].id`` or ``messages.0.id``) from ``data``.

    Raises KeyError when the path does not exist."""
    current = data
    for token in PATH_TOKEN_RE.findall(path or ""):
        key = token.strip("[]")
        if isinstance(current, list):
            if not key.isdigit() or int(key) >= len(current):
                raise KeyError(path)
            current = current[int(key)]
        elif isinstance(current, dict) and key in current:
            current = current[key]
        else:
            raise KeyError(path)
    return current


def retry_after_seconds(response):
    """The delay a ``Retry-After`` header asks for, in seconds, or None."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return max(0, int((moment - datetime.datetime.now(datetime.UTC)).total_seconds()))


def response_json(response):
    """The JSON of a response, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None


# ----------------------------------------------------------------------
# JSON Web Tokens (Google service accounts)
# ----------------------------------------------------------------------


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_jwt_rs256(claims, private_key_pem, key_id=None):
    """A compact JWT over ``claims``, signed RS256 with the PEM private key."""
    header = {"alg": "RS256", "typ": "JWT"}
    if key_id:
        header["kid"] = key_id
    signing_input = (
        b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + b64url(signature)
