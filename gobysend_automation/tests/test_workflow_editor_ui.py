"""The workflow editor of the campaign form, driven in a browser (static/tests/tours/)."""

from odoo.tests import tagged

from .common import GobysendHttpCase


@tagged("post_install", "-at_install")
class TestWorkflowEditorUi(GobysendHttpCase):
    def test_marketer_draws_a_workflow_with_a_condition_and_launches_it(self):
        workspace = self.env["gobysend.workspace"].create(
            {"name": "Editor shop", "token_balance": 100, "quiet_hours_start": 0, "quiet_hours_end": 0}
        )
        vip_tag = self.env["res.partner.category"].create({"name": "Editor VIP"})
        vip, plain = self.env["res.partner"].create(
            [
                {"name": "Editor Vip", "phone": "+84 912 000 051", "category_id": [(4, vip_tag.id)]},
                {"name": "Editor Plain", "phone": "+84 912 000 052"},
            ]
        )
        self.env["gobysend.subscription"].create(
            [{"workspace_id": workspace.id, "partner_id": partner.id} for partner in vip | plain]
        )
        self.env["gobysend.channel"].create(
            {"name": "Editor SMS", "workspace_id": workspace.id, "channel_type": "sms", "state": "enabled"}
        )

        self.start_tour(
            "/odoo/action-gobysend_automation.gobysend_campaign_action/new",
            "gobysend_workflow_editor_tour",
            login="admin",
        )

        campaign = self.env["gobysend.campaign"].search([("name", "=", "Editor tour")])
        self.assertEqual(
            (campaign.workspace_id, campaign.trigger_kind, campaign.state), (workspace, "manual", "running")
        )
        first, condition, gift = campaign.step_ids.sorted(lambda step: (bool(step.parent_id), step.sequence))
        self.assertEqual((first.kind, first.name, first.parent_id.id), ("send", "Welcome", False))
        self.assertEqual((condition.kind, condition.condition_kind, condition.tag_id), ("condition", "tag", vip_tag))
        self.assertFalse(condition.parent_id)
        self.assertEqual(
            (gift.kind, gift.parent_id, gift.branch, gift.body), ("send", condition, "yes", "A gift for you")
        )
        self.assertEqual(first._next_step(), condition, "the condition comes after the first message")

        # The background jobs of the launch: put the audience into journeys and advance them.
        while campaign._fan_out_chunk():
            pass
        Journey = self.env["gobysend.journey"]
        self.env.flush_all()
        while claim := Journey._claim_due(1000, None):
            Journey._advance_claimed(claim, None)
            self.env.invalidate_all()
        journeys = {journey.partner_id: journey for journey in campaign.journey_ids}
        self.assertEqual(set(journeys), {vip, plain})
        self.assertEqual({journey.state for journey in journeys.values()}, {"completed"})
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        sent = {(message.partner_id, message.campaign_step_id) for message in messages}
        self.assertEqual(sent, {(vip, first), (plain, first), (vip, gift)})

        # Back in the browser: the drawing counts what each step did, the journey shows its steps.
        self.start_tour(
            f"/odoo/action-gobysend_automation.gobysend_campaign_action/{campaign.id}",
            "gobysend_workflow_journey_tour",
            login="admin",
        )
