import datetime

from freezegun import freeze_time

from odoo.exceptions import AccessError, UserError
from odoo.tests import new_test_user, tagged

from .. import campaign_templates, kinds
from .common import GobysendHttpCase
from .test_campaign import MONDAY_MORNING_UTC, CampaignCase

NOW = MONDAY_MORNING_UTC
RECORD_TRIGGER = "on_write"


def tree(campaign, parent=None, branch=False):
    """The campaign's steps as nested tuples: (kind, {branch: subtree}) in order."""
    steps = campaign.step_ids.filtered(
        lambda s: s.parent_id == (parent or campaign.step_ids.browse()) and (s.branch or False) == branch
    ).sorted(lambda s: (s.sequence, s.id))
    result = []
    for step in steps:
        kind = kinds.STEPS[step.kind]
        branches = {label: tree(campaign, step, label) for label in kind.branch_labels(step)}
        result.append((step.kind, branches) if branches else step.kind)
    return result


@freeze_time(NOW)
@tagged("time_sensitive")
class TestCampaignTemplates(CampaignCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.email = cls.env["gobysend.channel"].create(
            {"name": "Email", "workspace_id": cls.workspace_a.id, "channel_type": "email", "state": "enabled"}
        )

    def create_from(self, key, lang="en", workspace=None, **values):
        wizard = self.env["gobysend.campaign.template.wizard"].create(
            dict(values, template_key=key, workspace_id=(workspace or self.workspace_a).id, message_lang=lang)
        )
        action = wizard.action_create()
        self.assertEqual((action["res_model"], action["view_mode"]), ("gobysend.campaign", "form"))
        return self.env["gobysend.campaign"].browse(action["res_id"])

    def test_gallery_lists_at_least_ten_templates(self):
        action = self.env["gobysend.campaign.template.wizard"].action_open_gallery()
        cards = self.env["gobysend.campaign.template.wizard"].search(action["domain"])
        keys = cards.mapped("template_key")
        self.assertGreaterEqual(len(keys), 10)
        # The record-change templates are listed even while their trigger is missing.
        self.assertIn("lead_lifecycle", keys)
        self.assertEqual("order_status" in keys, "sale.order" in self.env, "order updates are offered with Sales only")
        welcome = cards.filtered(lambda c: c.template_key == "abandoned_cart")
        self.assertEqual(welcome.channels_needed, "Email, SMS")
        self.assertTrue(welcome.description and welcome.icon)

    def test_every_template_creates_a_valid_draft_campaign(self):
        created = 0
        for tmpl in campaign_templates.available_templates(self.env):
            if tmpl.trigger_kind not in kinds.TRIGGERS:
                continue
            with self.subTest(template=tmpl.key):
                campaign = self.create_from(tmpl.key)
                self.assertEqual(campaign.state, "draft")
                self.assertEqual(campaign.trigger_kind, tmpl.trigger_kind)
                self.assertEqual(campaign.workspace_id, self.workspace_a)
                self.assertTrue(campaign.step_ids)
                # What launching checks: every step and the trigger's settings are valid.
                campaign.step_ids._check_step()
                kinds.TRIGGERS[campaign.trigger_kind].validate(campaign)
                for step in campaign.step_ids.filtered(lambda s: s.kind == "send"):
                    self.assertEqual(step.channel_id.workspace_id, self.workspace_a)
                    self.assertEqual(step.template_id.name[-5:], " (EN)")
                    self.assertEqual(step.body, step.template_id.body)
                created += 1
        self.assertGreaterEqual(created, 9)

    def test_step_trees_follow_the_scenarios(self):
        expected = {
            "welcome": ["send", "wait", "send", "wait", "send"],
            "abandoned_cart": [("wait_event", {"happened": ["exit"], "timed_out": ["send", "wait", "send"]})],
            "first_purchase": ["wait", "send", "wait", "send"],
            "birthday": ["send"],
            "cross_sell": ["wait", "send"],
            "best_customers": ["send", "tag"],
            "win_back": ["send", ("wait_event", {"happened": ["exit"], "timed_out": ["send"]})],
            "city_offer": [("condition", {"yes": ["send"], "no": ["send"]})],
            "tier_up": ["send", ("condition", {"yes": ["send"], "no": []})],
        }
        for key, steps in expected.items():
            with self.subTest(template=key):
                self.assertEqual(tree(self.create_from(key)), steps)

    def test_trigger_settings_of_the_templates(self):
        cart = self.create_from("abandoned_cart")
        self.assertRecordValues(
            cart, [{"trigger_kind": "event", "event_name": "cart_updated", "goal_event_name": "order_paid"}]
        )
        waiting = cart.step_ids.filtered(lambda s: s.kind == "wait_event")
        self.assertEqual((waiting.event_name, waiting.delay_amount, waiting.delay_unit), ("order_paid", 1, "hours"))
        timed_out = cart.step_ids.filtered(lambda s: s.branch == "timed_out").sorted("sequence")
        self.assertEqual(timed_out.mapped("channel_id"), self.email | self.sms)
        self.assertEqual(timed_out[1].delay_amount, 24)

        birthday = self.create_from("birthday")
        self.assertRecordValues(
            birthday,
            [{"trigger_kind": "periodic", "period": "daily", "run_time": 9.0, "date_source": "field"}],
        )
        self.assertEqual(birthday.date_field_id.name, "gobysend_birthday")

        cross = self.create_from("cross_sell")
        self.assertEqual((cross.event_name, cross.event_filter), ("order_paid", 'category = "electronics"'))

        best = self.create_from("best_customers")
        self.assertEqual(best.trigger_segment_id.name, "Top spenders")
        self.assertEqual(best.trigger_segment_id.workspace_id, self.workspace_a)
        # A second campaign reuses the segment; a segment the user chose is used instead.
        self.assertEqual(self.create_from("best_customers").trigger_segment_id, best.trigger_segment_id)
        own = self.env["gobysend.segment"].create({"name": "My VIPs", "workspace_id": self.workspace_a.id})
        self.assertEqual(self.create_from("best_customers", segment_id=own.id).trigger_segment_id, own)

        win_back = self.create_from("win_back")
        self.assertEqual(win_back.trigger_segment_id.predefined, "not_seen")

    def test_messages_in_the_chosen_language_with_both_saved(self):
        campaign = self.create_from("welcome", lang="vi")
        first = campaign.step_ids.sorted("sequence")[0]
        self.assertIn("Chào mừng", first.subject)
        self.assertEqual(first.template_id.name, "Welcome (VI)")
        templates = self.env["gobysend.message.template"].search(
            [("workspace_id", "=", self.workspace_a.id), ("name", "in", ("Welcome (EN)", "Welcome (VI)"))]
        )
        self.assertEqual(len(templates), 2)
        self.assertIn("Welcome", templates.filtered(lambda t: t.name.endswith("(EN)")).subject)

    def test_missing_channel_is_refused_with_the_channel_to_create(self):
        self.sms.state = "disabled"
        with self.assertRaisesRegex(UserError, "has no SMS channel that can send"):
            self.create_from("abandoned_cart")
        self.assertFalse(self.env["gobysend.campaign"].search([("workspace_id", "=", self.workspace_a.id)]))
        wizard = self.env["gobysend.campaign.template.wizard"].create(
            {"template_key": "abandoned_cart", "workspace_id": self.workspace_a.id, "message_lang": "en"}
        )
        self.assertEqual(wizard.missing_channels, "SMS")
        # A channel in test mode is one being set up: the template uses it.
        self.sms.state = "test"
        self.assertEqual(self.create_from("abandoned_cart").step_ids.channel_id, self.email | self.sms)

    def test_a_marketing_manager_creates_in_their_own_workspaces_only(self):
        Wizard = self.env["gobysend.campaign.template.wizard"].with_user(self.manager_a)
        wizard = Wizard.create(
            {"template_key": "best_customers", "workspace_id": self.workspace_a.id, "message_lang": "en"}
        )
        campaign = self.env["gobysend.campaign"].browse(wizard.action_create()["res_id"])
        self.assertEqual(campaign.create_uid, self.manager_a)
        self.assertEqual(campaign.trigger_segment_id.workspace_id, self.workspace_a)
        self.assertEqual(campaign.step_ids.filtered(lambda s: s.kind == "tag").tag_id.name, "VIP")
        self.env["gobysend.channel"].create(
            {"name": "Email B", "workspace_id": self.workspace_b.id, "channel_type": "email", "state": "enabled"}
        )
        wizard = Wizard.create({"template_key": "birthday", "workspace_id": self.workspace_b.id, "message_lang": "en"})
        with self.assertRaises(AccessError):
            wizard.action_create()
        self.assertFalse(self.env["gobysend.campaign"].search([("workspace_id", "=", self.workspace_b.id)]))

    def test_other_workspace_channels_are_never_used(self):
        with self.assertRaisesRegex(UserError, "has no Email channel"):
            self.create_from("birthday", workspace=self.workspace_b)

    def test_record_change_templates(self):
        if RECORD_TRIGGER not in kinds.TRIGGERS:
            self.skipTest("the record-change trigger (on_write) is not in this installation yet")
        lead = self.create_from("lead_lifecycle")
        self.assertRecordValues(lead, [{"trigger_kind": "on_write", "partner_path": "partner_id"}])
        self.assertEqual(lead.model_id.model, "crm.lead")
        self.assertEqual(lead.trigger_field_ids.mapped("name"), ["stage_id"])
        self.assertEqual(
            tree(lead),
            [
                "send",
                "wait",
                "lead_stage",
                "activity",
                ("wait_event", {"happened": ["lead_stage", "send"], "timed_out": ["activity"]}),
            ],
        )
        lead.step_ids._check_step()
        if "sale.order" in self.env:
            order = self.create_from("order_status")
            self.assertEqual(order.model_id.model, "sale.order")
            self.assertEqual(order.trigger_field_ids.mapped("name"), ["state"])

    def test_record_change_template_without_its_trigger_is_refused(self):
        if RECORD_TRIGGER in kinds.TRIGGERS:
            self.skipTest("the record-change trigger is installed: test_record_change_templates covers it")
        with self.assertRaisesRegex(UserError, "needs the trigger “on_write”"):
            self.create_from("lead_lifecycle")

    def test_abandoned_cart_journey(self):
        campaign = self.create_from("abandoned_cart")
        campaign.action_launch()
        self.assertEqual(campaign.state, "running")
        shopper, buyer = self.contacts[:2]
        for contact in (shopper, buyer):
            self.ingest.track(self.workspace_a, {"email": contact.email, "name": "cart_updated"})
        self.advance(NOW)
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"waiting"})
        with freeze_time(NOW + datetime.timedelta(minutes=30)):
            self.ingest.track(self.workspace_a, {"email": buyer.email, "name": "order_paid"})
        self.advance(NOW + datetime.timedelta(minutes=30))
        self.advance(NOW + datetime.timedelta(hours=1, minutes=1))
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        self.assertEqual(messages.partner_id, shopper)
        self.assertEqual(messages.channel_id, self.email)
        self.advance(NOW + datetime.timedelta(hours=25, minutes=2))
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)], order="id")
        self.assertEqual(messages.mapped("channel_id"), self.email | self.sms)
        self.assertEqual(messages.partner_id, shopper)
        by_partner = {journey.partner_id: journey for journey in campaign.journey_ids}
        self.assertEqual(by_partner[shopper].state, "completed")
        self.assertEqual(by_partner[buyer].state, "exited")

    def test_city_offer_journey(self):
        self.contacts[:2].write({"city": "Ho Chi Minh City"})
        campaign = self.launch(self.create_from("city_offer", lang="vi"))
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        self.assertEqual(len(messages), 5)
        local = messages.filtered(lambda m: "cửa hàng của chúng tôi tại" in m.body_template)
        self.assertEqual(local.partner_id, self.contacts[:2])
        self.assertEqual(set(campaign.journey_ids.mapped("state")), {"completed"})

    def test_birthday_journey(self):
        self.contacts[0].gobysend_birthday = datetime.date(1990, 11, 23)
        self.contacts[1].gobysend_birthday = datetime.date(1990, 11, 24)
        campaign = self.create_from("birthday")
        campaign.action_launch()
        # 09:00 in Ho Chi Minh City on the 23rd is 02:00 UTC.
        ids = campaign._run_periodic(datetime.datetime(2026, 11, 23, 2, 0))
        self.env.invalidate_all()
        self.assertEqual(self.env["gobysend.journey"].browse(ids).partner_id, self.contacts[0])
        self.advance(NOW)
        messages = self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])
        self.assertEqual(messages.partner_id, self.contacts[0])
        self.assertIn("Happy birthday", messages.subject_template)


@tagged("post_install", "-at_install", "time_sensitive")
class TestCampaignTemplateGallery(GobysendHttpCase):
    def test_marketer_creates_a_campaign_from_the_gallery(self):
        marketer = new_test_user(
            self.env,
            login="gbs_tour_marketer",
            groups="base.group_user,gobysend_automation.group_gobysend_manager",
        )
        workspace = self.env["gobysend.workspace"].create(
            {"name": "Shop Template", "member_ids": [(6, 0, marketer.ids)]}
        )
        self.env["gobysend.channel"].create(
            {"name": "Tour email", "workspace_id": workspace.id, "channel_type": "email", "state": "enabled"}
        )
        self.start_tour("/odoo", "gobysend_campaign_template_tour", login=marketer.login)
        campaign = self.env["gobysend.campaign"].search([("workspace_id", "=", workspace.id)])
        self.assertEqual(len(campaign), 1)
        self.assertRecordValues(campaign, [{"state": "draft", "trigger_kind": "event", "event_name": "order_paid"}])
        sends = campaign.step_ids.filtered(lambda s: s.kind == "send").sorted("sequence")
        self.assertEqual(sends[0].subject, "Đơn hàng đầu tiên của bạn thế nào?")
