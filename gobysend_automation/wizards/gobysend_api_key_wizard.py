from odoo import _, fields, models


class GobysendApiKeyWizard(models.TransientModel):
    """Creates an API key and shows its plaintext once; only its hash is kept."""

    _name = "gobysend.api.key.wizard"
    _description = "New Gobysend API Key"

    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade")
    name = fields.Char(required=True, string="Key Name", help="Where the key will be used, e.g. “Online shop”.")
    # Not stored: the plaintext travels to the dialog in the action's context and is never
    # written to the database, like Odoo's own API keys (res.users.apikeys.show).
    key = fields.Char(readonly=True, store=False)

    def action_generate(self):
        self.ensure_one()
        key = self.workspace_id.api_key_create(self.name)
        return {
            "type": "ir.actions.act_window",
            "name": _("API Key Ready"),
            "res_model": self._name,
            "views": [(False, "form")],
            "target": "new",
            "context": {"default_workspace_id": self.workspace_id.id, "default_name": self.name, "default_key": key},
        }
