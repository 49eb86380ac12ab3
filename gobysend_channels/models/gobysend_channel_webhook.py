import json
import secrets
import time

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from odoo.addons.gobysend_automation.exceptions import PermanentSendError

from .. import utils
from .gobysend_channel import MANAGER

# Headers a channel's extra headers may not override.
RESERVED_HEADERS = {"content-type", "content-length", "host", utils.SIGNATURE_HEADER.lower(), "x-gobysend-message-id"}


# Each provider extends the channel in a file of its own, as payment providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """A webhook to the business's own systems: a signed JSON POST for each message.

    The body is a JSON object::

        {"type": "message", "id": "<message id>",
         "workspace": {"id", "name"},
         "channel": {"id", "name", "type"},
         "contact": {"id", "customer_id", "name", "first_name", "email", "phone", ..., "attributes": {...}},
         "message": {"id", "subject", "body", "origin": {"model", "id"} or null, "is_test"},
         "sent_at": "<ISO 8601 UTC>"}

    and the header ``X-Gobysend-Signature: t=<unix time>,v1=<hex>`` carries the HMAC-SHA256 of
    ``"<unix time>.<raw body>"`` keyed with the channel's webhook secret. Receivers should check it
    with a constant-time comparison and refuse timestamps older than five minutes.
    """

    _inherit = "gobysend.channel"

    provider = fields.Selection(selection_add=[("webhook", "Webhook")], ondelete={"webhook": "set default"})
    webhook_url = fields.Char(string="Webhook URL", groups=MANAGER)
    webhook_secret = fields.Char(
        string="Webhook Signing Secret", groups=MANAGER, copy=False, default=lambda self: secrets.token_urlsafe(32)
    )
    webhook_headers = fields.Text(
        string="Extra Headers (JSON)",
        groups=MANAGER,
        help='Sent with every request, e.g. {"Authorization": "Bearer …"}.',
    )

    def _get_supported_channel_types(self):
        if self.provider == "webhook":
            return ("webhook",)
        return super()._get_supported_channel_types()

    @api.constrains("webhook_headers")
    def _check_webhook_headers(self):
        for channel in self.sudo().filtered("webhook_headers"):
            channel._webhook_extra_headers()

    def _webhook_extra_headers(self):
        try:
            headers = json.loads(self.webhook_headers or "{}")
        except ValueError:
            headers = None
        if not isinstance(headers, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in headers.items()
        ):
            raise ValidationError(_('The extra headers must be a JSON object of texts, e.g. {"X-Api-Key": "…"}.'))
        reserved = sorted(key for key in headers if key.lower() in RESERVED_HEADERS)
        if reserved:
            raise ValidationError(_("These headers cannot be set: %(headers)s.", headers=", ".join(reserved)))
        if any("\n" in key + value or "\r" in key + value for key, value in headers.items()):
            raise ValidationError(_("Header names and values cannot contain line breaks."))
        return headers

    def _webhook_payload(self, message):
        workspace = message.workspace_id
        return {
            "type": "message",
            "id": str(message.id),
            "workspace": {"id": workspace.id, "name": workspace.name},
            "channel": {"id": self.id, "name": self.name, "type": self.channel_type},
            "contact": self.env["gobysend.message"]._contact_variables(workspace, message.partner_id),
            "message": {
                "id": message.id,
                "subject": message.subject or None,
                "body": message.body or "",
                "origin": {"model": message.res_model, "id": message.res_id} if message.res_model else None,
                "is_test": message.is_test,
            },
            "sent_at": fields.Datetime.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def _webhook_send(self, message):
        self._check_credentials("webhook_url", "webhook_secret")
        body = json.dumps(self._webhook_payload(message), default=str, ensure_ascii=False).encode()
        headers = self._webhook_extra_headers()
        hidden = tuple(headers.values())
        headers.update(
            {
                "Content-Type": "application/json",
                "X-Gobysend-Message-Id": str(message.id),
                utils.SIGNATURE_HEADER: utils.signature_header(self.webhook_secret, time.time(), body),
            }
        )
        response = yield from self._provider_request(
            "POST", self.webhook_url, hidden=hidden, data=body, headers=headers, allow_redirects=False
        )
        if 300 <= response.status_code < 400:
            raise PermanentSendError(
                _(
                    "The webhook answered with a redirect (HTTP %(status)s): set its final URL.",
                    status=response.status_code,
                ),
                self._format_answer(response, hidden),
            )
        self._raise_for_http_status(response, hidden=hidden)
        result = utils.response_json(response)
        if isinstance(result, dict) and isinstance(result.get("id"), str | int) and result["id"] != "":
            return str(result["id"])
        return f"webhook-{message.id}"
