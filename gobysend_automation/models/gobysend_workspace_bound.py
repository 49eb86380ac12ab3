from odoo import _, models
from odoo.exceptions import UserError


class GobysendWorkspaceBound(models.AbstractModel):
    """Records that belong to one workspace for good.

    Record rules check a write against the record as it was, so moving a record into another
    workspace would let a member of one workspace put data into a workspace they cannot see.
    """

    _name = "gobysend.workspace.bound"
    _description = "Gobysend Workspace Record"

    def write(self, vals):
        if "workspace_id" in vals and any(record.workspace_id.id != vals["workspace_id"] for record in self.sudo()):
            raise UserError(
                _(
                    "A %(model)s cannot move to another workspace; create it in that workspace instead.",
                    model=self._description,
                )
            )
        return super().write(vals)
