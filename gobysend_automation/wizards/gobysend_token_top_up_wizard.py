from odoo import fields, models


class GobysendTokenTopUpWizard(models.TransientModel):
    """Adds tokens to a workspace's balance through its ledger; for Odoo administrators."""

    _name = "gobysend.token.top.up.wizard"
    _description = "Top Up Gobysend Tokens"

    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade")
    token_balance = fields.Float(related="workspace_id.token_balance", string="Current Balance")
    amount = fields.Float(string="Tokens to Add", digits=(16, 2), required=True)
    note = fields.Char(help="Why the tokens are added, e.g. the invoice that paid for them.")

    def action_top_up(self):
        self.ensure_one()
        self.workspace_id.top_up(self.amount, self.note)
        return {"type": "ir.actions.act_window_close"}
