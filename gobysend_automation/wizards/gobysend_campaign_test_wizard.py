from odoo import _, api, fields, models
from odoo.exceptions import UserError

from .. import kinds


class GobysendCampaignTestWizard(models.TransientModel):
    """Send every message of a campaign once to a chosen contact, as test messages, without
    waiting for the workflow's delays. Test messages stay out of the statistics."""

    _name = "gobysend.campaign.test.wizard"
    _description = "Send a Campaign Test"

    campaign_id = fields.Many2one("gobysend.campaign", required=True, ondelete="cascade")
    partner_id = fields.Many2one(
        "res.partner", string="Test Contact", required=True, default=lambda self: self.env.user.partner_id
    )

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        campaign = self.env["gobysend.campaign"].browse(values.get("campaign_id"))
        test_partner = campaign.step_ids.channel_id.test_partner_id[:1]
        if test_partner and "partner_id" in fields_list:
            values["partner_id"] = test_partner.id
        return values

    def action_send(self):
        self.ensure_one()
        sends = self.campaign_id.step_ids.filtered(
            lambda step: kinds.STEPS.get(step.kind) and kinds.STEPS[step.kind].sends
        )
        if not sends:
            raise UserError(_("The campaign has no step that sends a message."))
        Message = self.env["gobysend.message"]
        messages = Message.browse()
        for step in sends.sorted(lambda step: (step.sequence, step.id)):
            for subject, body in step._test_messages():
                messages |= Message._enqueue(self.partner_id, step.channel_id, body, subject=subject, is_test=True)
        Message._send_after_commit(messages.ids)
        return {
            "type": "ir.actions.act_window",
            "name": _("Test Messages"),
            "res_model": "gobysend.message",
            "view_mode": "list,form",
            "domain": [("id", "in", messages.ids)],
        }
