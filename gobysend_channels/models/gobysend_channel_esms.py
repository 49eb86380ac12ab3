from odoo import _, fields, models

from odoo.addons.gobysend_automation.exceptions import PermanentSendError, TransientSendError

from .. import utils
from .gobysend_channel import MANAGER

ESMS_API_URL = "https://rest.esms.vn"
ESMS_SEND_PATH = "/MainService.svc/json/SendMultipleMessage_V4_post_json/"
ESMS_SUCCESS = "100"
# The RequestId was already used: an earlier attempt reached eSMS (its answer was lost).
ESMS_DUPLICATE_REQUEST = "124"
# Not enough balance: the message can go out once the account is topped up.
ESMS_TRANSIENT_CODES = {"103": 3600}


# Each provider extends the channel in a file of its own, as payment providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """eSMS.vn brand-name SMS (customer care, SmsType 2), sender = the registered brand name."""

    _inherit = "gobysend.channel"

    provider = fields.Selection(selection_add=[("esms", "eSMS.vn")], ondelete={"esms": "set default"})
    esms_base_url = fields.Char(string="eSMS API URL", default=ESMS_API_URL, groups=MANAGER)
    esms_api_key = fields.Char(string="eSMS API Key", groups=MANAGER)
    esms_secret_key = fields.Char(string="eSMS Secret Key", groups=MANAGER)
    esms_sandbox = fields.Boolean(
        string="eSMS Sandbox", groups=MANAGER, help="eSMS checks the requests but neither sends nor charges them."
    )

    def _get_supported_channel_types(self):
        if self.provider == "esms":
            return ("sms",)
        return super()._get_supported_channel_types()

    def _has_idempotent_sends(self):
        if self.provider == "esms":
            return True  # see _esms_request_id
        return super()._has_idempotent_sends()

    def _esms_request_id(self, message):
        """eSMS refuses a RequestId seen before: retries of one message can never send it twice."""
        database_uuid = self.env["ir.config_parameter"].sudo().get_param("database.uuid", "")
        return f"gbs-{database_uuid[:8]}-{message.id}"

    def _esms_send(self, message):
        self._check_credentials("esms_api_key", "esms_secret_key", "sender")
        body = message.body or ""
        request_id = self._esms_request_id(message)
        payload = {
            "ApiKey": self.esms_api_key,
            "SecretKey": self.esms_secret_key,
            "Phone": self._get_vietnamese_phone(message, "national"),
            "Content": body,
            "Brandname": self.sender,
            "SmsType": "2",
            "IsUnicode": "0" if body.isascii() else "1",
            "Sandbox": "1" if self.esms_sandbox else "0",
            "RequestId": request_id,
        }
        hidden = (self.esms_api_key, self.esms_secret_key)
        response = yield from self._provider_request(
            "POST", (self.esms_base_url or ESMS_API_URL).rstrip("/") + ESMS_SEND_PATH, hidden=hidden, json=payload
        )
        self._raise_for_http_status(response, hidden=hidden)
        answer = self._format_answer(response, hidden)
        result = utils.response_json(response)
        if not isinstance(result, dict):
            raise PermanentSendError(_("eSMS.vn answered something that is not JSON."), answer)
        code = str(result.get("CodeResult") or "")
        if code == ESMS_SUCCESS and result.get("SMSID"):
            return str(result["SMSID"])
        if code == ESMS_DUPLICATE_REQUEST:
            return str(result.get("SMSID") or request_id)
        reason = _(
            "eSMS.vn refused the message: %(message)s (code %(code)s).",
            message=result.get("ErrorMessage") or result.get("error") or _("no message"),
            code=code or "-",
        )
        if code in ESMS_TRANSIENT_CODES:
            raise TransientSendError(reason, answer, ESMS_TRANSIENT_CODES[code])
        raise PermanentSendError(reason, answer)
