from odoo import api, fields, models
from odoo.exceptions import UserError


class GobysendCampaignTestJourneyWizard(models.TransientModel):
    """Send one contact (or a test address) through the campaign's workflow, step by step, as a
    test journey: its waits are shortened to a minute (``journeys.TEST_WAIT``), its messages are
    test messages, and neither counts in any statistic. The campaign need not be launched."""

    _name = "gobysend.campaign.test.journey.wizard"
    _description = "Start a Test Journey"

    campaign_id = fields.Many2one("gobysend.campaign", required=True, ondelete="cascade")
    workspace_id = fields.Many2one(related="campaign_id.workspace_id")
    partner_id = fields.Many2one("res.partner", string="Test Contact")
    email = fields.Char(string="Or a Test Address", help="A contact with this address is used, or made.")

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        campaign = self.env["gobysend.campaign"].browse(values.get("campaign_id"))
        test_partner = campaign.step_ids.channel_id.test_partner_id[:1]
        if test_partner and "partner_id" in fields_list and not values.get("partner_id"):
            values["partner_id"] = test_partner.id
        return values

    def _test_partner(self):
        if self.partner_id:
            return self.partner_id
        email = (self.email or "").strip()
        if not email or "@" not in email:
            raise UserError(self.env._("Choose a test contact or type a test address."))
        # The workspace's own contact with that address, else a new contact for the tests:
        # never another workspace's contact.
        subscription = self.env["gobysend.subscription"].search(
            [("workspace_id", "=", self.campaign_id.workspace_id.id), ("partner_id.email", "=ilike", email)], limit=1
        )
        return subscription.partner_id or self.env["res.partner"].create({"name": email, "email": email})

    def action_start(self):
        self.ensure_one()
        campaign = self.campaign_id
        campaign.check_access("write")
        if campaign.state in ("done", "cancelled"):
            raise UserError(self.env._("A finished or cancelled campaign cannot run a test journey."))
        if not campaign.step_ids:
            raise UserError(self.env._("The campaign has no step yet."))
        partner = self._test_partner()
        # sudo: journeys are the engine's records (created in SQL by _enter); the manager
        # starts one in a campaign they may edit, for the contact chosen above.
        ids = (
            self.env["gobysend.journey"]
            .sudo()
            ._enter(campaign.sudo(), [{"partner_id": partner.id, "context": {}}], is_test=True)
        )
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Test Journey"),
            "res_model": "gobysend.journey",
            "view_mode": "form",
            "res_id": ids[0],
        }
