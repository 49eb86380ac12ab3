import base64
import datetime

from freezegun import freeze_time

from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.tests import new_test_user, tagged

from .. import journeys, kinds
from ..kinds.steps.partner_field import ALLOWED_PARAMETER
from .common import GobysendCase
from .test_campaign import MONDAY_MORNING_UTC, CampaignCase


class ActionCase(CampaignCase):
    def journeys_of(self, campaign):
        self.env.flush_all()
        self.env.invalidate_all()
        return self.env["gobysend.journey"].search([("campaign_id", "=", campaign.id)], order="id")

    def log_of(self, journey):
        return journey.log_ids.filtered(lambda log: log.step_id.kind != "send")

    def partner_field(self, name):
        return self.env["ir.model.fields"]._get("res.partner", name)

    def list_(self, name, workspace=None):
        return self.env["gobysend.segment"].create(
            {"name": name, "workspace_id": (workspace or self.workspace_a).id, "segment_type": "static"}
        )

    def members(self, segment):
        self.env.flush_all()
        self.env.invalidate_all()
        return segment.current_membership_ids.partner_id


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestUpdateContactField(ActionCase):
    def step(self, name, value):
        return {"kind": "partner_field", "partner_field_id": self.partner_field(name).id, "partner_field_value": value}

    def test_writes_the_contacts_the_workspace_owns_and_skips_the_others(self):
        owned, shared, foreign, account, also_owned = self.contacts
        # Shared with another workspace; created through another workspace; an Odoo user.
        self.env["gobysend.subscription"].create({"workspace_id": self.workspace_b.id, "partner_id": shared.id})
        foreign.sudo().gobysend_origin_workspace_id = self.workspace_b
        user = new_test_user(self.env, login="gbs_account", groups="base.group_user")
        user.partner_id.write({"email": account.email})
        account.active = False  # the user's partner stands in for this contact
        self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_a.id, "partner_id": user.partner_id.id}
        )
        campaign = self.launch(self.campaign([self.step("city", "Hanoi"), self.step("country_id", "VN")]))
        self.assertEqual(owned.city, "Hanoi")
        self.assertEqual(also_owned.city, "Hanoi")
        self.assertEqual(owned.country_id, self.env.ref("base.vn"), "a linked record by its code")
        for partner in (shared, foreign, user.partner_id):
            self.assertFalse(partner.city, partner.name)
        journeys_ = self.journeys_of(campaign)
        self.assertEqual(set(journeys_.mapped("state")), {"completed"}, "a skipped contact's journey goes on")
        reasons = {journey.partner_id: set(journey.log_ids.mapped("reason")) for journey in journeys_}
        self.assertEqual(reasons[owned], {False})
        self.assertIn("shared with other workspaces", " ".join(reasons[shared]))
        self.assertIn("created through another workspace", " ".join(reasons[foreign]))
        self.assertIn("Odoo user or company", " ".join(reasons[user.partner_id]))

    def test_only_allowed_simple_fields_and_typed_values(self):
        with self.assertRaisesRegex(ValidationError, "“Email” is not one that workflows may update"):
            self.campaign([self.step("email", "new@example.com")])
        with self.assertRaisesRegex(ValidationError, "Zip” is not one that workflows may update"):
            self.campaign([self.step("zip", "10000")])
        with self.assertRaisesRegex(ValidationError, "choose the contact field"):
            self.campaign([{"kind": "partner_field", "partner_field_value": "x"}])
        with self.assertRaisesRegex(ValidationError, "“Atlantis” is not the name of an existing record"):
            self.campaign([self.step("country_id", "Atlantis")])
        with self.assertRaisesRegex(ValidationError, "“Klingon” is not one of"):
            self.campaign([self.step("lang", "Klingon")])
        # Even an administrator cannot open fields that decide who a contact is.
        self.env["ir.config_parameter"].set_param(ALLOWED_PARAMETER, "city,email,color,company_id")
        with self.assertRaisesRegex(ValidationError, "Email” is not one that workflows may update"):
            self.campaign([self.step("email", "new@example.com")])
        with self.assertRaisesRegex(ValidationError, "“old” is not a whole number"):
            self.campaign([self.step("color", "old")])
        self.launch(self.campaign([self.step("color", "3")]))
        self.assertEqual(set(self.contacts.mapped("color")), {3})

    def test_a_field_taken_off_the_list_fails_the_journeys(self):
        wait = {"kind": "wait", "timing": "delay", "delay_amount": 1, "delay_unit": "days"}
        campaign = self.launch(self.campaign([wait, self.step("city", "Hanoi")]))
        self.env["ir.config_parameter"].set_param(ALLOWED_PARAMETER, "function")
        self.advance(MONDAY_MORNING_UTC + datetime.timedelta(days=1))
        journeys_ = self.journeys_of(campaign)
        self.assertEqual(set(journeys_.mapped("state")), {"failed"})
        self.assertIn("“City” is not one that workflows may update", journeys_[0].reason)
        self.assertFalse(any(self.contacts.mapped("city")))

    def test_the_list_is_an_administrators_setting(self):
        Settings = self.env["res.config.settings"]
        with self.assertRaises(AccessError):
            Settings.with_user(self.manager_a).create({}).execute()
        settings = Settings.create({})
        self.assertIn(self.partner_field("city"), settings.gobysend_partner_field_ids)
        settings.gobysend_partner_field_ids = self.partner_field("zip") | self.partner_field("city")
        settings.execute()
        self.assertEqual(set(self.env["ir.config_parameter"].get_param(ALLOWED_PARAMETER).split(",")), {"city", "zip"})
        step = self.campaign([self.step("zip", "10000")]).step_ids
        # What the step form offers follows the setting.
        self.assertEqual(step.allowed_partner_field_ids, self.partner_field("zip") | self.partner_field("city"))
        # None at all: not the default list back.
        Settings.create({"gobysend_partner_field_ids": [(5,)]}).execute()
        self.assertFalse(Settings.create({}).gobysend_partner_field_ids)
        with self.assertRaisesRegex(ValidationError, "City” is not one that workflows may update"):
            self.campaign([self.step("city", "Hanoi")])
        with self.assertRaisesRegex(ValidationError, "Email"):
            Settings.create({"gobysend_partner_field_ids": [(6, 0, self.partner_field("email").ids)]})


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestLists(ActionCase):
    def test_copy_and_move_between_lists(self):
        prospects, customers = self.list_("Prospects"), self.list_("Customers")
        prospects._change_list_members(add=self.contacts[:3].ids)
        self.assertEqual(self.members(prospects), self.contacts[:3])
        campaign = self.launch(
            self.campaign(
                [{"kind": "list", "list_action": "move", "list_id": customers.id, "list_source_id": prospects.id}]
            )
        )
        self.assertEqual(set(self.journeys_of(campaign).mapped("state")), {"completed"})
        self.assertEqual(self.members(customers), self.contacts)
        self.assertFalse(self.members(prospects))
        self.assertEqual((customers.member_count, prospects.member_count), (5, 0))
        vip = self.list_("VIP")
        self.launch(self.campaign([{"kind": "list", "list_action": "copy", "list_id": vip.id}], name="Copy"))
        self.assertEqual(self.members(vip), self.contacts)
        self.assertEqual(self.members(customers), self.contacts, "a copy leaves the other lists alone")

    def test_a_list_is_never_rebuilt_from_conditions(self):
        vip = self.list_("VIP")
        vip._change_list_members(add=self.contacts[:2].ids + self.outsider.ids)
        self.assertEqual(self.members(vip), self.contacts[:2], "only the workspace's contacts enter")
        vip._rebuild()
        self.env["gobysend.segment"]._mark_dirty(self.contacts.ids, "contact")
        self.env["gobysend.segment"]._process_dirty_contacts()
        self.assertEqual(self.members(vip), self.contacts[:2])
        with self.assertRaisesRegex(ValidationError, "is a list"):
            vip.write({"condition_ids": [(0, 0, {"kind": "joined", "days": 7})]})
        dynamic = self.env["gobysend.segment"].create({"name": "Dynamic", "workspace_id": self.workspace_a.id})
        with self.assertRaisesRegex(UserError, "segment of conditions"):
            dynamic._change_list_members(add=self.contacts.ids)

    def test_entering_a_list_starts_its_campaigns(self):
        vip = self.list_("VIP")
        welcome = self.campaign(name="Welcome VIP", trigger_kind="segment", trigger_segment_id=vip.id)
        welcome.action_launch()
        farewell = self.campaign(
            name="Bye VIP", trigger_kind="segment", trigger_segment_id=vip.id, segment_transition="left"
        )
        farewell.action_launch()
        self.launch(self.campaign([{"kind": "list", "list_id": vip.id}], name="Promote"))
        self.assertEqual(self.journeys_of(welcome).partner_id, self.contacts)
        self.assertEqual(self.journeys_of(welcome)[0].res_model, "gobysend.segment.membership")
        # By hand, through the wizard of the contact list: out of the list, one "left" journey.
        wizard = (
            self.env["gobysend.list.members.wizard"]
            .with_user(self.user_a)
            .with_context(active_model="res.partner", active_ids=self.contacts[:1].ids)
            .create({"action": "remove", "segment_id": vip.id})
        )
        wizard.action_apply()
        self.assertEqual(self.journeys_of(farewell).partner_id, self.contacts[0])
        self.assertEqual(self.members(vip), self.contacts[1:])

    def test_by_hand_from_the_contacts_of_the_workspace(self):
        vip = self.list_("VIP")
        subscriptions = self.env["gobysend.subscription"].search(
            [("workspace_id", "=", self.workspace_a.id), ("partner_id", "in", self.contacts[:2].ids)]
        )
        Wizard = self.env["gobysend.list.members.wizard"].with_user(self.user_a)
        wizard = Wizard.with_context(active_model="gobysend.subscription", active_ids=subscriptions.ids).create(
            {"segment_id": vip.id}
        )
        self.assertEqual(wizard.partner_ids, self.contacts[:2])
        wizard.action_apply()
        self.assertEqual(self.members(vip), self.contacts[:2])
        # From the list's own form: the list is chosen already.
        wizard = Wizard.with_context(active_model="gobysend.segment", active_ids=vip.ids).create(
            {"action": "remove", "partner_ids": [(6, 0, self.contacts[:1].ids)]}
        )
        self.assertEqual(wizard.segment_id, vip)
        wizard.action_apply()
        self.assertEqual(self.members(vip), self.contacts[1])
        self.assertEqual(vip.member_count, 1)

    def test_bad_input_and_other_workspaces(self):
        vip, theirs = self.list_("VIP"), self.list_("Theirs", self.workspace_b)
        dynamic = self.env["gobysend.segment"].create({"name": "Dynamic", "workspace_id": self.workspace_a.id})
        with self.assertRaisesRegex(ValidationError, "choose a list of the campaign's workspace"):
            self.campaign([{"kind": "list", "list_id": theirs.id}])
        with self.assertRaisesRegex(ValidationError, "choose a list of the campaign's workspace"):
            self.campaign([{"kind": "list", "list_id": dynamic.id}])
        with self.assertRaisesRegex(ValidationError, "choose the list of the campaign's workspace the contact leaves"):
            self.campaign([{"kind": "list", "list_action": "move", "list_id": vip.id}])
        with self.assertRaisesRegex(ValidationError, "cannot move to the list it leaves"):
            self.campaign([{"kind": "list", "list_action": "move", "list_id": vip.id, "list_source_id": vip.id}])
        # A member of workspace B cannot fill workspace A's list.
        wizard = (
            self.env["gobysend.list.members.wizard"]
            .with_user(self.user_b)
            .create({"segment_id": vip.id, "partner_ids": [(6, 0, self.contacts.ids)]})
        )
        with self.assertRaises(AccessError):
            wizard.action_apply()
        self.assertFalse(self.members(vip))


@freeze_time(MONDAY_MORNING_UTC)
@tagged("time_sensitive")
class TestCreateOpportunity(ActionCase):
    def step(self, **values):
        return dict({"kind": "opportunity", "opportunity_name": "Upsell {{ contact.name }}"}, **values)

    def leads_of(self, campaign):
        self.env.flush_all()
        return self.env["crm.lead"].search([("partner_id", "in", self.contacts.ids)], order="partner_id")

    def test_one_opportunity_per_journey_for_the_salesperson(self):
        self.contacts[0].user_id = self.manager_a
        campaign = self.launch(self.campaign([self.step(opportunity_revenue=1200)]))
        leads = self.leads_of(campaign)
        self.assertEqual(leads.partner_id, self.contacts)
        self.assertEqual(set(leads.mapped("type")), {"opportunity"})
        first = leads.filtered(lambda lead: lead.partner_id == self.contacts[0])
        self.assertRecordValues(first, [{"name": "Upsell Contact 0", "user_id": self.manager_a.id}])
        self.assertEqual(set(leads.mapped("expected_revenue")), {1200})
        self.assertFalse((leads - first).user_id, "no salesperson: nobody, not the engine's user")
        # The batch run again (a crash after the step, a second server): no second opportunity.
        step = campaign.step_ids
        batch = journeys.JourneyBatch(self.env, MONDAY_MORNING_UTC)
        rows = batch.load(self.journeys_of(campaign).ids)
        outcomes = kinds.STEPS["opportunity"].run(batch, step, rows)
        self.assertEqual({outcome.reason for outcome in outcomes}, {"The opportunity was created before."})
        self.assertEqual(len(self.leads_of(campaign)), 5)

    def test_chosen_user_and_team(self):
        team = self.env["crm.team"].create({"name": "Hanoi team"})
        self.contacts[0].user_id = self.user_a
        campaign = self.launch(
            self.campaign([self.step(opportunity_user_id=self.manager_a.id, opportunity_team_id=team.id)])
        )
        leads = self.leads_of(campaign)
        self.assertEqual(leads.user_id, self.manager_a)
        self.assertEqual(leads.team_id, team)

    def test_bad_input_is_refused(self):
        with self.assertRaisesRegex(ValidationError, "give the opportunity a name"):
            self.campaign([self.step(opportunity_name=" ")])
        with self.assertRaisesRegex(ValidationError, "Step “Create an opportunity”"):
            self.campaign([self.step(opportunity_name="Upsell {{ contact.name ")])
        with self.assertRaisesRegex(ValidationError, "cannot be negative"):
            self.campaign([self.step(opportunity_revenue=-5)])


class TestActionKinds(ActionCase):
    def test_the_editor_offers_them_with_a_summary(self):
        vip = self.list_("VIP")
        campaign = self.campaign(
            [
                {
                    "kind": "partner_field",
                    "partner_field_id": self.partner_field("city").id,
                    "partner_field_value": "Hue",
                },
                {"kind": "list", "list_id": vip.id},
                {"kind": "opportunity", "opportunity_name": "Deal"},
            ]
        )
        summaries = campaign.step_ids.sorted("sequence").mapped("summary")
        self.assertEqual(summaries, ["City = Hue", "+ VIP", "Deal → the salesperson"])
        offered = {kind["key"]: kind["label"] for kind in self.env["gobysend.campaign.step"].workflow_step_kinds()}
        self.assertEqual(offered["partner_field"], "Update a contact field")
        self.assertEqual(offered["list"], "Copy or move to a list")
        self.assertEqual(offered["opportunity"], "Create an opportunity")


@tagged("post_install", "-at_install")
class TestImportIntoList(GobysendCase):
    def test_imported_contacts_join_the_chosen_list(self):
        vip = self.env["gobysend.segment"].create(
            {"name": "VIP", "workspace_id": self.workspace_a.id, "segment_type": "static"}
        )
        content = b"email,name\nlan@example.com,Lan\nbad,Bad\nminh@example.com,Minh\n"
        wizard = (
            self.env["gobysend.contact.import.wizard"]
            .with_user(self.user_a)
            .create(
                {
                    "workspace_id": self.workspace_a.id,
                    "file": base64.b64encode(content),
                    "file_name": "vip.csv",
                    "list_id": vip.id,
                }
            )
        )
        action = wizard.action_import()
        record = self.env["gobysend.contact.import"].browse(action["res_id"])
        self.assertEqual(record.list_id, vip)
        self.run_import_jobs()
        self.assertEqual((record.state, record.rows_rejected), ("done", 1))
        self.env.invalidate_all()
        members = vip.current_membership_ids.partner_id
        self.assertEqual(sorted(members.mapped("email")), ["lan@example.com", "minh@example.com"])
        self.assertEqual(vip.member_count, 2)
        # A list of another workspace is refused, naming it.
        theirs = self.env["gobysend.segment"].create(
            {"name": "Theirs", "workspace_id": self.workspace_b.id, "segment_type": "static"}
        )
        with self.assertRaisesRegex(UserError, "list of the same workspace: “Theirs”"):
            self.env["gobysend.contact.import"]._create_import(
                self.workspace_a, "x.csv", content, [{"index": 0, "target": "email"}], target_list=theirs
            )
