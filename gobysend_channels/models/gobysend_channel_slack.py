from odoo import _, fields, models

from odoo.addons.gobysend_automation.exceptions import PermanentSendError

from .gobysend_channel import MANAGER


# Each provider extends the channel in a file of its own, as payment providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """Slack incoming webhook: posts the message to the Slack channel of the webhook; the
    contact is what the message is about, not its recipient."""

    _inherit = "gobysend.channel"

    provider = fields.Selection(selection_add=[("slack", "Slack")], ondelete={"slack": "set default"})
    slack_webhook_url = fields.Char(
        string="Slack Webhook URL", groups=MANAGER, help="https://hooks.slack.com/services/T…/B…/…"
    )

    def _get_supported_channel_types(self):
        if self.provider == "slack":
            return ("slack",)
        return super()._get_supported_channel_types()

    def _slack_send(self, message):
        self._check_credentials("slack_webhook_url")
        text = message.body or ""
        if message.subject:
            text = f"*{message.subject}*\n{text}"
        hidden = (self.slack_webhook_url,)
        response = yield from self._provider_request("POST", self.slack_webhook_url, hidden=hidden, json={"text": text})
        # Slack answers errors as short plain-text codes: invalid_payload, channel_not_found, no_service...
        error = response.text.strip()[:200]
        self._raise_for_http_status(
            response, _("Slack refused the message: %(error)s", error=error or response.reason), hidden
        )
        if error != "ok":
            raise PermanentSendError(
                _("Slack refused the message: %(error)s", error=error), self._format_answer(response, hidden)
            )
        return f"slack-{message.id}"
