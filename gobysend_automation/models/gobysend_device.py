from odoo import api, fields, models

PLATFORMS = [("ios", "iOS"), ("android", "Android"), ("web", "Web")]


class GobysendDevice(models.Model):
    """A push token of a contact's app or browser. A token belongs to the last contact that
    claimed it: a shared phone follows whoever logged in last."""

    _name = "gobysend.device"
    _inherit = ["gobysend.workspace.bound"]
    _description = "Gobysend Device"
    _order = "last_seen desc, id desc"
    _rec_name = "token"

    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", index=True)
    partner_id = fields.Many2one("res.partner", string="Contact", required=True, ondelete="cascade", index=True)
    token = fields.Char(required=True)
    platform = fields.Selection(PLATFORMS, required=True)
    last_seen = fields.Datetime(default=fields.Datetime.now)
    active = fields.Boolean(default=True)

    _sql_constraints = [
        ("token_uniq", "unique(workspace_id, token)", "A device token is registered once per workspace.")
    ]

    @api.model
    def _claim(self, workspace, partner, token, platform):
        """Register ``token`` for ``partner``, moving it from any earlier owner."""
        device = self.with_context(active_test=False).search(
            [("workspace_id", "=", workspace.id), ("token", "=", token)], limit=1
        )
        values = {"partner_id": partner.id, "platform": platform, "last_seen": fields.Datetime.now(), "active": True}
        if device:
            device.write(values)
            return device
        return self.create(dict(values, workspace_id=workspace.id, token=token))

    def action_remove(self):
        self.write({"active": False})
