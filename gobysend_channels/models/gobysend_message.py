from odoo import _, api, fields, models

from odoo.addons.gobysend_automation.models.gobysend_channel import CONSENT_CHANNEL_TYPES

# What a receipt may report, and from which states of the message it moves it forward. A
# message never goes back: a late "delivered" after an "opened" changes nothing, but the
# event is still recorded.
RECEIPT_TRANSITIONS = {
    "delivered": ("sent",),
    "opened": ("sent", "delivered"),
    "clicked": ("sent", "delivered", "opened"),
    "bounced": ("sent", "delivered"),
    "failed": ("sent",),
}


class GobysendMessage(models.Model):
    _inherit = "gobysend.message"

    @api.model
    def _get_receipt_statuses(self):
        return tuple(RECEIPT_TRANSITIONS)

    def _apply_receipt(self, status, event_key, timestamp=None, reason=None, url=None):
        """Record what the provider reported about this message.

        The message moves forward (``RECEIPT_TRANSITIONS``), a bounce marks the contact's consent
        on the channel as bounced, and an event ``message_<status>`` is recorded on the contact
        once per ``event_key`` (a repeated receipt is stored once). Returns whether the state changed.
        """
        self.ensure_one()
        message = self.sudo()
        changed = message.state in RECEIPT_TRANSITIONS[status]
        if changed:
            values = {"state": status}
            if status in ("failed", "bounced"):
                values["reason"] = reason or _("The provider reported the message as %(status)s.", status=status)
            message.write(values)
        if status == "bounced" and message.channel_type in CONSENT_CHANNEL_TYPES:
            subscription = message._get_subscription()
            if subscription:
                subscription._set_consent(
                    message.channel_type, "bounced", "bounce", note=reason or _("Bounce reported by the provider.")
                )
        properties = {"message_id": message.id, "channel": message.channel_type, "channel_id": message.channel_id.id}
        if url:
            properties["url"] = url
        if reason:
            properties["reason"] = reason
        self.env["gobysend.ingest"].sudo()._insert_events(
            message.workspace_id,
            [
                {
                    "partner_id": message.partner_id.id,
                    "name": f"message_{status}",
                    "kind": "event",
                    "timestamp": timestamp or fields.Datetime.now(),
                    "properties": properties,
                    "message_id": event_key,
                    "url": None,
                    "title": None,
                    "referrer": None,
                }
            ],
        )
        return changed
