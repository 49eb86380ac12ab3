from odoo import fields, models


class GobysendProviderToken(models.Model):
    """OAuth tokens that a provider renews by itself (Zalo's single-use refresh token).

    Kept in a row of their own rather than on the channel: a renewal is committed in a
    transaction of its own while the dispatch batch that needed it goes on, and that batch
    writes messages that point to the channel. Had the renewal updated the channel's row, the
    batch (under repeatable read) could no longer reference it and would fail.
    """

    _name = "gobysend.provider.token"
    _description = "Gobysend Provider Token"

    channel_id = fields.Many2one("gobysend.channel", required=True, ondelete="cascade", index=True, readonly=True)
    access_token = fields.Char()
    refresh_token = fields.Char()
    expires_at = fields.Datetime()

    _sql_constraints = [("channel_uniq", "unique(channel_id)", "A channel has one set of provider tokens.")]
