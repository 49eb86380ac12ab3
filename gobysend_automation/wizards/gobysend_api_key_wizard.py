from odoo import fields, models


class GobysendApiKeyWizard(models.TransientModel):
    """Creates an API key and shows its plaintext once; only its hash is kept."""

    _name = "gobysend.api.key.wizard"
    _description = "New Gobysend API Key"

    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade")
    name = fields.Char(required=True, string="Key Name", help="Where the key will be used, e.g. “Online shop”.")
    key = fields.Char(readonly=True)

    def action_generate(self):
        self.ensure_one()
        self.key = self.workspace_id.api_key_create(self.name)
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
        }
