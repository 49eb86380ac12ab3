from urllib.parse import quote

from odoo import _, fields, models

from odoo.addons.gobysend_automation.exceptions import PermanentSendError, TransientSendError
from odoo.addons.gobysend_automation.tools import secrets_match

from .. import utils
from .gobysend_channel import MANAGER

TWILIO_API_URL = "https://api.twilio.com"
# Twilio error codes that a later attempt can get through.
TWILIO_TRANSIENT_CODES = {
    20429,  # Too many requests
    21611,  # This 'From' number has exceeded the maximum number of queued messages
}
# Status callback statuses (MessageStatus) and the receipt they mean.
TWILIO_STATUSES = {"delivered": "delivered", "undelivered": "failed", "failed": "failed", "read": "opened"}


# Each provider extends the channel in a file of its own, as payment providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """Twilio Programmable Messaging: POST /2010-04-01/Accounts/{AccountSid}/Messages.json."""

    _inherit = "gobysend.channel"

    provider = fields.Selection(selection_add=[("twilio", "Twilio")], ondelete={"twilio": "set default"})
    twilio_base_url = fields.Char(string="Twilio API URL", default=TWILIO_API_URL, groups=MANAGER)
    twilio_account_sid = fields.Char(string="Twilio Account SID", groups=MANAGER)
    twilio_auth_token = fields.Char(groups=MANAGER)
    twilio_messaging_service_sid = fields.Char(
        string="Twilio Messaging Service SID",
        groups=MANAGER,
        help="Send through this Messaging Service (MG…) instead of the sender number.",
    )
    twilio_status_callback = fields.Boolean(
        string="Twilio Status Callbacks",
        groups=MANAGER,
        help="Ask Twilio to report delivery to this database (the server must be reachable from the Internet).",
    )

    def _get_supported_channel_types(self):
        if self.provider == "twilio":
            return ("sms",)
        return super()._get_supported_channel_types()

    def _get_twilio_status_callback_url(self):
        self.ensure_one()
        return f"{self.get_base_url()}/gobysend/receipts/{self.id}/twilio"

    def _twilio_send(self, message):
        self._check_credentials("twilio_account_sid", "twilio_auth_token")
        if not (self.twilio_messaging_service_sid or self.sender):
            raise PermanentSendError(
                _("Channel %(channel)s needs a sender number or a Messaging Service SID.", channel=self.name)
            )
        data = {"To": self._get_contact_phone(message, "e164"), "Body": message.body or ""}
        if self.twilio_messaging_service_sid:
            data["MessagingServiceSid"] = self.twilio_messaging_service_sid
        else:
            data["From"] = self.sender
        if self.twilio_status_callback:
            data["StatusCallback"] = self._get_twilio_status_callback_url()
        hidden = (self.twilio_auth_token,)
        url = "%s/2010-04-01/Accounts/%s/Messages.json" % (
            (self.twilio_base_url or TWILIO_API_URL).rstrip("/"),
            quote(self.twilio_account_sid, safe=""),
        )
        response = yield from self._provider_request(
            "POST", url, hidden=hidden, data=data, auth=(self.twilio_account_sid, self.twilio_auth_token)
        )
        payload = utils.response_json(response) or {}
        if response.status_code < 300 and payload.get("sid"):
            return payload["sid"]
        answer = self._format_answer(response, hidden)
        code = payload.get("code")
        reason = _(
            "Twilio refused the message: %(message)s (error %(code)s).",
            message=payload.get("message") or response.reason,
            code=code or response.status_code,
        )
        if code in TWILIO_TRANSIENT_CODES:
            raise TransientSendError(reason, answer, utils.retry_after_seconds(response))
        self._raise_for_http_status(response, reason, hidden)
        raise PermanentSendError(_("Twilio answered without a message SID."), answer)

    # ------------------------------------------------------------------
    # Status callbacks
    # ------------------------------------------------------------------

    def _twilio_check_signature(self, signature, urls, params):
        """Whether ``signature`` (X-Twilio-Signature) signs one of ``urls`` with ``params``."""
        self.ensure_one()
        if not (self.provider == "twilio" and self.twilio_auth_token and signature):
            return False
        return any(
            secrets_match(utils.twilio_signature(self.twilio_auth_token, url, params), signature) for url in urls
        )

    def _twilio_process_status_callback(self, signature, urls, params):
        """Authenticate and apply one Twilio status callback (form parameters as lists)."""
        self.ensure_one()
        if not self._twilio_check_signature(signature, urls, params):
            raise utils.SignatureError("invalid_signature", "The X-Twilio-Signature does not match the request.")
        sid = (params.get("MessageSid") or params.get("SmsSid") or [""])[0]
        twilio_status = (params.get("MessageStatus") or params.get("SmsStatus") or [""])[0]
        # Twilio's callbacks carry no timestamp: each (message, status) pair is taken once.
        if not sid or not self.env["gobysend.receipt"]._remember(self, f"twilio:{sid}:{twilio_status}"):
            raise utils.SignatureError("replayed", "This status callback was already received.")
        status = TWILIO_STATUSES.get(twilio_status)
        if not status:
            return {"received": 1, "applied": 0, "unknown": []}
        error_code = (params.get("ErrorCode") or [""])[0]
        receipt = {
            "provider_message_id": sid,
            "status": status,
            "event_key": f"twilio:{sid}:{twilio_status}",
            "timestamp": None,
            "reason": _("Twilio error %(code)s", code=error_code) if error_code else None,
            "url": None,
        }
        return self._apply_receipts([receipt])
