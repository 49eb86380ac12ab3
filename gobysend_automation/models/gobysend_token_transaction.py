from odoo import fields, models


class GobysendTokenTransaction(models.Model):
    """One movement of a workspace's token balance, tied to the message that caused it."""

    _name = "gobysend.token.transaction"
    _inherit = ["gobysend.workspace.bound"]
    _description = "Gobysend Token Transaction"
    _order = "id desc"

    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", index=True)
    message_id = fields.Many2one("gobysend.message", ondelete="set null", index=True)
    amount = fields.Float(digits=(16, 2), required=True, help="Negative for a debit, positive for a refund or top-up.")
    balance_after = fields.Float(digits=(16, 2))
    note = fields.Char()
