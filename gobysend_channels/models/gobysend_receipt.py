import datetime

from odoo import api, fields, models

# Signed receipts older than five minutes are refused anyway; the keys are kept longer so that
# providers without timestamps (Twilio) are guarded for days.
KEEP_KEYS = datetime.timedelta(days=7)


class GobysendReceipt(models.Model):
    """The replay guard of the receipt endpoints: one row per signed request already taken."""

    _name = "gobysend.receipt"
    _description = "Gobysend Received Receipt"
    _order = "id desc"
    _rec_name = "key"

    channel_id = fields.Many2one("gobysend.channel", required=True, ondelete="cascade", index=True, readonly=True)
    key = fields.Char(required=True, readonly=True, help="The request's signature, or the provider's event id.")
    received_at = fields.Datetime(required=True, default=fields.Datetime.now, readonly=True)

    _sql_constraints = [("key_uniq", "unique(channel_id, key)", "This receipt was already received.")]

    @api.model
    def _remember(self, channel, key):
        """Remember ``key`` for ``channel``; False when it was already seen (a replay).

        ``ON CONFLICT DO NOTHING`` keeps this right when the same request arrives twice at once.
        """
        self.env.cr.execute(
            """
            INSERT INTO gobysend_receipt (channel_id, key, received_at, create_uid, create_date, write_uid, write_date)
            VALUES (%(channel)s, %(key)s, %(now)s, %(uid)s, %(now)s, %(uid)s, %(now)s)
            ON CONFLICT (channel_id, key) DO NOTHING
            RETURNING id
            """,
            {"channel": channel.id, "key": key, "now": fields.Datetime.now(), "uid": self.env.uid},
        )
        return bool(self.env.cr.fetchone())

    @api.autovacuum
    def _gc_old_keys(self):
        self.sudo().search([("received_at", "<", fields.Datetime.now() - KEEP_KEYS)]).unlink()
