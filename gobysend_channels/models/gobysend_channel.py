import json
import logging
import re
import secrets

import phonenumbers
import requests

from odoo import _, api, fields, models

from odoo.addons.gobysend_automation import sending, transport
from odoo.addons.gobysend_automation.exceptions import (
    InvalidInput,
    PermanentSendError,
    TransientSendError,
    UncertainSendError,
)
from odoo.addons.gobysend_automation.tools import find_nul_character, parse_timestamp

from .. import utils

_logger = logging.getLogger(__name__)

MANAGER = "gobysend_automation.group_gobysend_manager"
DEFAULT_TIMEOUT = 10.0
MAX_RECEIPTS_PER_REQUEST = 1000
# How much of a provider's answer is kept on the message, for a human to read.
ANSWER_MAX_LENGTH = 2000
USER_AGENT = "Gobysend-Odoo/18.0"


def _new_secret():
    return secrets.token_urlsafe(32)


# Each provider extends the channel in a file of its own, as payment providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """What every provider of this module shares: the HTTP call with its timeout and error
    mapping, the contact's phone number in the provider's format, and the signed endpoint that
    takes delivery receipts and engagement back in."""

    _inherit = "gobysend.channel"

    request_timeout = fields.Float(
        string="Request Timeout (s)",
        default=DEFAULT_TIMEOUT,
        help="How long to wait for the provider's answer before trying again later.",
    )
    receipt_secret = fields.Char(
        string="Receipt Signing Secret",
        groups=MANAGER,
        copy=False,
        default=lambda self: _new_secret(),
        help="Shared with the provider or your systems: delivery receipts and engagement sent to the receipt URL "
        "must be signed with it (header X-Gobysend-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "
        '"<unix time>.<body>">).',
    )
    receipt_url = fields.Char(string="Receipt URL", compute="_compute_receipt_url")

    _sql_constraints = [
        ("request_timeout_positive", "CHECK(request_timeout > 0)", "The request timeout must be positive."),
    ]

    def _compute_receipt_url(self):
        for channel in self:
            channel.receipt_url = f"{channel.get_base_url()}/gobysend/receipts/{channel.id}" if channel.id else False

    @api.onchange("provider")
    def _onchange_provider_channel_type(self):
        supported = self._get_supported_channel_types() if self.provider else ()
        if supported and self.channel_type not in supported:
            self.channel_type = supported[0]

    def action_generate_receipt_secret(self):
        for channel in self:
            channel.receipt_secret = _new_secret()
        return True

    # ------------------------------------------------------------------
    # Calling a provider
    # ------------------------------------------------------------------

    def _get_provider_name(self):
        self.ensure_one()
        return dict(self._fields["provider"]._description_selection(self.env)).get(self.provider, self.provider)

    @api.model
    def _redact(self, text, hidden):
        """``text`` with every secret of ``hidden`` replaced, so that no credential ends up on a message."""
        text = text or ""
        for secret in hidden:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _format_answer(self, response, hidden=()):
        """A provider's HTTP answer as kept on the message: status line and (truncated) body."""
        text = "HTTP %s: %s" % (response.status_code, response.text[:ANSWER_MAX_LENGTH])
        return self._redact(text, hidden)

    def _provider_request(self, method, url, hidden=(), retry_safe=None, **kwargs):
        """Call the provider with this channel's timeout; return the response, whatever its status.

        A generator step (``response = yield from self._provider_request(...)``): the request is
        yielded to the dispatcher, which makes the requests of a whole batch side by side (see
        ``gobysend_automation.sending``). Timeouts and connection errors raise
        ``TransientSendError``; a URL that cannot be called at all raises ``PermanentSendError``.
        ``hidden`` lists secrets (tokens in URLs...) that must not appear in the reason kept on
        the message. A request whose answer timed out may have reached the provider: unless
        ``retry_safe`` (by default: the provider deduplicates a message's requests), it raises
        ``UncertainSendError``, and the message is not sent again automatically.
        """
        self.ensure_one()
        headers = {"User-Agent": USER_AGENT}
        headers.update(kwargs.pop("headers", None) or {})
        # A provider's API answers where it is asked; following a redirect would hand the
        # message (and its credentials) to another address.
        kwargs.setdefault("allow_redirects", False)
        timeout = self.request_timeout or DEFAULT_TIMEOUT
        try:
            return (yield sending.OutgoingRequest(method, url, headers=headers, timeout=timeout, **kwargs))
        except requests.RequestException as error:
            raise self._request_error(error, url, timeout, hidden, retry_safe) from None

    def _request_error(self, error, url, timeout, hidden, retry_safe=None):
        """The SendError for a request that got no answer."""
        provider = self._get_provider_name()
        if isinstance(error, transport.DestinationRefused):
            return PermanentSendError(self._destination_refused_reason(error))
        if isinstance(error, transport.AnswerTooLarge):
            # The request went out: the provider may have taken the message. Retrying could send
            # it twice, so it fails with the reason and a manager checks with the provider.
            return PermanentSendError(
                _(
                    "%(provider)s answered with more than %(size)s KiB; the answer was not read. "
                    "Check with the provider whether the message went out before sending it again.",
                    provider=provider,
                    size=error.limit // 1024,
                )
            )
        if isinstance(error, requests.exceptions.ReadTimeout):
            if retry_safe is None:
                retry_safe = self._has_idempotent_sends()
            if not retry_safe:
                return UncertainSendError(
                    _(
                        "%(provider)s took the request but did not answer within %(seconds)s seconds: the message may "
                        "or may not have arrived, so it is not sent again automatically. Check with the provider, "
                        "then retry it if needed.",
                        provider=provider,
                        seconds=timeout,
                    )
                )
        if isinstance(error, requests.Timeout):
            return TransientSendError(
                _("%(provider)s did not answer within %(seconds)s seconds.", provider=provider, seconds=timeout)
            )
        if isinstance(
            error,
            requests.exceptions.InvalidURL | requests.exceptions.MissingSchema | requests.exceptions.InvalidSchema,
        ):
            return PermanentSendError(
                _("The %(provider)s URL of channel %(channel)s is not valid.", provider=provider, channel=self.name)
            )
        # The text of a connection error names the URL, which may hold a token.
        cause = error.args[0] if error.args else error
        detail = str(getattr(cause, "reason", None) or cause or type(error).__name__)
        # Drop the Python object's representation ("<urllib3.connection... at 0x…>: ").
        detail = self._redact(re.sub(r"<[^<>]*>:\s*", "", detail), [*hidden, url])
        return TransientSendError(_("Could not reach %(provider)s: %(error)s", provider=provider, error=detail))

    def _destination_refused_reason(self, error):
        """Why a request to the server's own network was refused, and who can allow it."""
        kinds = {
            "loopback": _("a loopback address (this server itself)"),
            "private": _("a private network address"),
            "link-local": _("a link-local address (such as a cloud metadata service)"),
            "multicast": _("a multicast address"),
            "unspecified": _("an unspecified address"),
            "reserved": _("a reserved address"),
        }
        values = {
            "channel": self.name,
            "host": error.host,
            "address": error.address,
            "kind": kinds.get(error.kind, error.kind),
            "parameter": transport.ALLOWED_NETWORKS_PARAMETER,
        }
        if error.host == error.address:
            return _(
                "Channel %(channel)s may not call %(host)s, %(kind)s. Requests reach public addresses only, unless "
                "an Odoo administrator lists the network in the system parameter %(parameter)s.",
                **values,
            )
        return _(
            "Channel %(channel)s may not call %(host)s: it resolves to %(address)s, %(kind)s. Requests reach public "
            "addresses only, unless an Odoo administrator lists the network in the system parameter %(parameter)s.",
            **values,
        )

    def _raise_for_http_status(self, response, reason=None, hidden=()):
        """Map an unsuccessful HTTP status: 429 and 5xx are transient, other 4xx permanent."""
        status = response.status_code
        if status < 300:
            return
        answer = self._format_answer(response, hidden)
        provider = self._get_provider_name()
        if status == 429:
            raise TransientSendError(
                reason or _("%(provider)s is rate limiting the requests (HTTP 429).", provider=provider),
                answer,
                utils.retry_after_seconds(response),
            )
        if status >= 500:
            raise TransientSendError(
                reason or _("%(provider)s had a server error (HTTP %(status)s).", provider=provider, status=status),
                answer,
                utils.retry_after_seconds(response),
            )
        raise PermanentSendError(
            reason or _("%(provider)s refused the message (HTTP %(status)s).", provider=provider, status=status),
            answer,
        )

    def _check_credentials(self, *field_names):
        """Raise ``PermanentSendError`` naming the first of ``field_names`` left empty."""
        self.ensure_one()
        for name in field_names:
            if not self[name]:
                raise PermanentSendError(
                    _(
                        "Channel %(channel)s has no %(field)s: set it on the channel's Credentials tab.",
                        channel=self.name,
                        field=self._fields[name]._description_string(self.env),
                    )
                )

    # ------------------------------------------------------------------
    # Recipients
    # ------------------------------------------------------------------

    def _get_contact_phone(self, message, number_format="e164"):
        """The contact's mobile (or phone) number as the provider wants it.

        ``number_format``: ``e164`` (+84912345678), ``international`` (84912345678) or
        ``national`` (0912345678). Numbers without a country prefix are read as numbers of the
        workspace's country. Raises ``PermanentSendError`` when there is no valid number.
        """
        partner = message.partner_id
        number = partner.mobile or partner.phone
        if not number:
            raise PermanentSendError(_("%(contact)s has no phone number.", contact=partner.display_name))
        try:
            e164 = message.workspace_id._normalize_phone(number)
        except InvalidInput as error:
            raise PermanentSendError(error.message) from None
        if number_format == "international":
            return e164[1:]
        if number_format == "national":
            national = phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.NATIONAL)
            return "".join(char for char in national if char.isdigit())
        return e164

    def _get_vietnamese_phone(self, message, number_format):
        """Like ``_get_contact_phone`` for providers that only reach Vietnamese numbers."""
        e164 = self._get_contact_phone(message)
        if not e164.startswith("+84"):
            raise PermanentSendError(
                _(
                    "%(provider)s only sends to Vietnamese phone numbers, not %(number)s.",
                    provider=self._get_provider_name(),
                    number=e164,
                )
            )
        return self._get_contact_phone(message, number_format)

    # ------------------------------------------------------------------
    # Delivery receipts and engagement
    # ------------------------------------------------------------------

    def _process_signed_receipts(self, body, signature_header):
        """Authenticate and apply a receipt request of the generic endpoint.

        ``body`` (bytes) is a JSON object or an array of objects::

            {"id": "evt_123",                     # optional: the sender's event id, stored once
             "provider_message_id": "SM123",      # the id the provider answered when sending
             "status": "delivered",               # delivered | failed | opened | clicked | bounced
             "timestamp": "2026-01-31T08:30:00Z", # optional, ISO 8601 or epoch seconds
             "reason": "…", "url": "…"}           # optional: why it failed, which link was clicked

        Returns a dict for the JSON answer. Raises ``utils.SignatureError`` (refused, nothing
        changed) or ``InvalidInput`` (malformed body, nothing changed).
        """
        self.ensure_one()
        if not self.receipt_secret:
            raise utils.SignatureError("no_secret", "This channel takes no receipts: it has no receipt secret.")
        signature = utils.verify_signature(self.receipt_secret, signature_header, body, fields.Datetime.now())
        receipts = self._parse_receipts(body)
        if not self.env["gobysend.receipt"]._remember(self, "sig:" + signature):
            raise utils.SignatureError("replayed", "This signed request was already received.")
        return self._apply_receipts(receipts, default_key=signature)

    @api.model
    def _parse_receipts(self, body):
        try:
            payload = json.loads(body)
        except ValueError:
            raise InvalidInput("body", _("The body must be JSON.")) from None
        items = payload if isinstance(payload, list) else [payload]
        if len(items) > MAX_RECEIPTS_PER_REQUEST:
            raise InvalidInput(
                "body", _("Send at most %(count)s receipts per request.", count=MAX_RECEIPTS_PER_REQUEST)
            )
        nul_path = find_nul_character(payload, "")
        if nul_path is not None:
            raise InvalidInput(nul_path or "body", _("Texts cannot contain NUL characters."))
        receipts = []
        statuses = self.env["gobysend.message"]._get_receipt_statuses()
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise InvalidInput(f"[{index}]", _("Each receipt must be a JSON object."))
            provider_message_id = item.get("provider_message_id")
            if not isinstance(provider_message_id, str | int) or isinstance(provider_message_id, bool):
                raise InvalidInput(f"[{index}].provider_message_id", _("A receipt needs the provider's message id."))
            status = item.get("status")
            if status not in statuses:
                raise InvalidInput(
                    f"[{index}].status",
                    _("The status must be one of %(statuses)s.", statuses=", ".join(statuses)),
                )
            for key in ("id", "reason", "url"):
                if item.get(key) is not None and (not isinstance(item[key], str | int) or isinstance(item[key], bool)):
                    raise InvalidInput(f"[{index}].{key}", _("“%(key)s” must be text.", key=key))
            timestamp = item.get("timestamp")
            receipts.append(
                {
                    "provider_message_id": str(provider_message_id),
                    "status": status,
                    "event_key": str(item["id"]) if item.get("id") is not None else None,
                    "timestamp": parse_timestamp(timestamp, field_name=f"[{index}].timestamp"),
                    "reason": str(item["reason"]) if item.get("reason") is not None else None,
                    "url": str(item["url"]) if item.get("url") is not None else None,
                }
            )
        return receipts

    def _apply_receipts(self, receipts, default_key=None):
        """Apply parsed receipts to this channel's messages; return a summary."""
        self.ensure_one()
        Message = self.env["gobysend.message"].sudo()
        applied, unknown = 0, []
        for index, receipt in enumerate(receipts):
            message = Message.search(
                [("channel_id", "=", self.id), ("provider_message_id", "=", receipt["provider_message_id"])], limit=1
            )
            if not message:
                unknown.append(receipt["provider_message_id"])
                continue
            event_key = receipt["event_key"] or f"{default_key}:{index}"
            message._apply_receipt(
                receipt["status"],
                event_key=f"receipt:{self.id}:{event_key}",
                timestamp=receipt["timestamp"],
                reason=receipt["reason"],
                url=receipt["url"],
            )
            applied += 1
        return {"received": len(receipts), "applied": applied, "unknown": unknown}
