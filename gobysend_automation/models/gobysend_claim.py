from odoo import fields, models


class GobysendClaim(models.Model):
    """One worker's claim on rows of a work table, with its heartbeat (see ``claims``)."""

    _name = "gobysend.claim"
    _description = "Gobysend Work Claim"
    _log_access = False

    token = fields.Char(required=True, readonly=True)
    table_name = fields.Char(required=True, readonly=True, help="The table whose rows the claim holds.")
    claimed_at = fields.Datetime(required=True, readonly=True)
    heartbeat_at = fields.Datetime(required=True, readonly=True, help="When its worker last said it is alive.")

    _sql_constraints = [("token_uniq", "unique(token)", "A claim token is used once.")]
