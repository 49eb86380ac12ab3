import base64
import binascii

from odoo import fields, models
from odoo.exceptions import UserError

from .. import workflow_json


class GobysendWorkflowImportWizard(models.TransientModel):
    """Create a draft campaign in a workspace from a workflow exported as JSON (its trigger
    settings, audience, steps and message templates). Channels, segments, attributes and tags are
    matched by name inside that workspace; what is not found is left empty and listed here."""

    _name = "gobysend.workflow.import.wizard"
    _description = "Import a Workflow"

    workspace_id = fields.Many2one(
        "gobysend.workspace", required=True, default=lambda self: self.env["gobysend.workspace"].search([], limit=1)
    )
    file = fields.Binary(string="Workflow File", required=True, attachment=False)
    filename = fields.Char()
    name = fields.Char(string="Campaign Name", help="Empty: the name in the file.")
    campaign_id = fields.Many2one("gobysend.campaign", readonly=True)
    result = fields.Text(readonly=True)
    state = fields.Selection([("upload", "Upload"), ("done", "Done")], default="upload", readonly=True)

    def _raw(self):
        # A base64 text of more than 4/3 of the cap cannot decode to less than the cap.
        if len(self.file or b"") > workflow_json.MAX_SIZE * 4 // 3 + 4:
            raise UserError(
                self.env._(
                    "The workflow file cannot be imported: it is larger than %(size)s MB.",
                    size=workflow_json.MAX_SIZE // (1024 * 1024),
                )
            )
        try:
            return base64.b64decode(self.file or b"", validate=True)
        except (binascii.Error, ValueError):
            raise UserError(self.env._("The workflow file could not be read; upload it again.")) from None

    def action_import(self):
        self.ensure_one()
        self.workspace_id.check_access("read")
        importer = workflow_json.Importer(self.env, self.workspace_id)
        data = importer.parse(self._raw())
        campaign = importer.create_campaign(data, name=self.name)
        lines = [self.env._("Campaign “%(name)s” was created as a draft.", name=campaign.name)]
        if importer.unmatched:
            lines.append(self.env._("Left empty or replaced, to check before launching:"))
            lines += [f"• {line}" for line in importer.unmatched]
        self.write({"campaign_id": campaign.id, "result": "\n".join(lines), "state": "done"})
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
            "name": self.env._("Import a Workflow"),
        }

    def action_open_campaign(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": "gobysend.campaign",
            "res_id": self.campaign_id.id,
            "view_mode": "form",
        }
