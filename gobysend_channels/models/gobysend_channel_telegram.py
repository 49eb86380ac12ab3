from urllib.parse import quote

from odoo import _, fields, models

from odoo.addons.gobysend_automation.exceptions import PermanentSendError, TransientSendError

from .. import utils
from .gobysend_channel import MANAGER

TELEGRAM_API_URL = "https://api.telegram.org"


# Each provider extends the channel in a file of its own, as payment providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """Telegram bot: sendMessage to a configured chat (a team group or channel)."""

    _inherit = "gobysend.channel"

    provider = fields.Selection(selection_add=[("telegram", "Telegram")], ondelete={"telegram": "set default"})
    telegram_base_url = fields.Char(string="Telegram API URL", default=TELEGRAM_API_URL, groups=MANAGER)
    telegram_bot_token = fields.Char(groups=MANAGER, help="From @BotFather: 123456:ABC…")
    telegram_chat_id = fields.Char(
        string="Telegram Chat ID", groups=MANAGER, help="The chat to post to: a numeric id (-100…) or @channelusername."
    )

    def _get_supported_channel_types(self):
        if self.provider == "telegram":
            return ("chat",)
        return super()._get_supported_channel_types()

    def _telegram_send(self, message):
        self._check_credentials("telegram_bot_token", "telegram_chat_id")
        text = message.body or ""
        if message.subject:
            text = f"{message.subject}\n\n{text}"
        hidden = (self.telegram_bot_token,)
        url = "%s/bot%s/sendMessage" % (
            (self.telegram_base_url or TELEGRAM_API_URL).rstrip("/"),
            quote(self.telegram_bot_token, safe=":"),
        )
        response = yield from self._provider_request(
            "POST", url, hidden=hidden, json={"chat_id": self.telegram_chat_id, "text": text}
        )
        result = utils.response_json(response)
        answer = self._format_answer(response, hidden)
        if isinstance(result, dict) and result.get("ok"):
            message_id = (result.get("result") or {}).get("message_id")
            if message_id is not None:
                return str(message_id)
            raise PermanentSendError(_("Telegram answered without a message id."), answer)
        result = result if isinstance(result, dict) else {}
        error_code = result.get("error_code") or response.status_code
        reason = _(
            "Telegram refused the message: %(description)s (error %(code)s).",
            description=self._redact(result.get("description") or response.reason, hidden),
            code=error_code,
        )
        if error_code == 429:
            retry_after = (result.get("parameters") or {}).get("retry_after") or utils.retry_after_seconds(response)
            raise TransientSendError(reason, answer, retry_after)
        self._raise_for_http_status(response, reason, hidden)
        raise PermanentSendError(reason, answer)
