from odoo import api, models, tools


class MailThread(models.AbstractModel):
    _inherit = "mail.thread"

    @api.model
    def _routing_handle_bounce(self, email_message, message_dict):
        """A bounce of an email sent from the outbox marks its message bounced (and the
        contact's email consent in that workspace)."""
        result = super()._routing_handle_bounce(email_message, message_dict)
        bounced_msg_ids = message_dict.get("bounced_msg_ids")
        if bounced_msg_ids:
            messages = (
                self.env["gobysend.message"]
                .sudo()
                .search([("channel_type", "=", "email"), ("provider_message_id", "in", bounced_msg_ids)])
            )
            reason = tools.html2plaintext(message_dict.get("body") or "")[:500] or None
            for message in messages:
                message._apply_receipt("bounced", f"bounce-{message.id}", reason=reason)
        return result
