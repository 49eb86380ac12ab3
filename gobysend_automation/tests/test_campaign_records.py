from odoo.exceptions import ValidationError
from odoo.tests import new_test_user

from ..kinds.triggers import record_entries
from .test_campaign import CampaignCase

TEMPLATE = "{{ record.name }}: {{ old.stage_id }} -> {{ record.stage_id }} ({{ changes | join(', ') }})"


class RecordCampaignCase(CampaignCase):
    """Record-triggered campaigns: a marketer of workspace A who may read every lead sets them up."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.marketer = new_test_user(
            cls.env,
            login="gbs_marketer_a",
            groups="base.group_user,gobysend_automation.group_gobysend_manager,"
            "sales_team.group_sale_salesman_all_leads",
        )
        cls.workspace_a.member_ids = [(4, cls.marketer.id)]
        cls.seller = new_test_user(cls.env, login="gbs_seller", groups="base.group_user,sales_team.group_sale_salesman")
        Stage = cls.env["crm.stage"]
        cls.stage_new = Stage.create({"name": "Fresh", "sequence": 1})
        cls.stage_talks = Stage.create({"name": "Talks", "sequence": 2})
        cls.stage_won = Stage.create({"name": "Signed", "sequence": 3, "is_won": True})
        cls.stage_won_too = Stage.create({"name": "Paid", "sequence": 4, "is_won": True})
        cls.customer = cls.contacts[0]
        cls.lead_model = cls.env["ir.model"]._get("crm.lead")
        cls.partner_model = cls.env["ir.model"]._get("res.partner")

    def field(self, model, name):
        return self.env["ir.model.fields"]._get(model, name)

    def record_campaign(self, trigger="on_write", model="crm.lead", watched=("stage_id",), body=TEMPLATE, **values):
        defaults = {
            "trigger_kind": trigger,
            "model_id": self.env["ir.model"]._get(model).id,
            "partner_path": "partner_id",
            "trigger_field_ids": [(6, 0, [self.field(model, name).id for name in watched])],
        }
        defaults.update(values)
        steps = [{"kind": "send", "channel_id": self.sms.id, "body": body}]
        Campaign = self.env["gobysend.campaign"].with_user(self.marketer)
        campaign = Campaign.create(dict(defaults, name="Lead won", workspace_id=self.workspace_a.id))
        for step in steps:
            self.env["gobysend.campaign.step"].create(dict(step, campaign_id=campaign.id))
        return campaign

    def launch(self, campaign):
        # A record trigger has no audience to queue at launch: its rule starts the journeys.
        campaign.action_launch()
        self.assertEqual(campaign.state, "running")
        return campaign

    def lead(self, **values):
        return self.env["crm.lead"].create(
            dict({"name": "Shop fit-out", "partner_id": self.customer.id, "stage_id": self.stage_new.id}, **values)
        )

    def own_leads_author(self, login):
        """A manager of workspace A who sees their own leads only, to set campaigns up."""
        author = new_test_user(
            self.env,
            login=login,
            groups="base.group_user,gobysend_automation.group_gobysend_manager,sales_team.group_sale_salesman",
        )
        self.workspace_a.member_ids = [(4, author.id)]
        return author

    def commit_writer(self):
        """What happens when the writer's transaction commits (its precommit hooks note the
        records), then the engine's job turning the notes into journeys."""
        self.env.cr.flush()
        self.enter_noted()

    def enter_noted(self):
        record_entries.enter_noted(self.env.registry)
        self.env.invalidate_all()

    def messages_of(self, campaign):
        return self.env["gobysend.message"].search([("campaign_id", "=", campaign.id)])

    def render(self, message):
        return message._render_for(
            message.workspace_id,
            message.partner_id,
            message.channel_type,
            message.subject_template,
            message.body_template,
            message.render_context,
        )[1]


class TestRecordCampaign(RecordCampaignCase):
    def test_lead_won_starts_a_journey_and_its_message_sees_record_old_and_changes(self):
        campaign = self.launch(
            self.record_campaign(
                filter_pre_domain="[('stage_id.is_won', '=', False)]",
                filter_domain="[('stage_id.is_won', '=', True)]",
            )
        )
        automation = campaign.automation_id
        self.assertTrue(automation.active)
        self.assertEqual((automation.trigger, automation.model_id), ("on_write", self.lead_model))
        self.assertEqual(automation.trigger_field_ids, self.field("crm.lead", "stage_id"))
        lead = self.lead()
        lead.write({"stage_id": self.stage_won.id})
        # The writer's transaction only records the journey: nothing reaches the outbox in it.
        self.assertFalse(campaign.journey_ids)
        self.commit_writer()
        journey = campaign.journey_ids
        self.assertEqual((journey.partner_id, journey.res_model, journey.res_id), (self.customer, "crm.lead", lead.id))
        self.assertEqual(journey.state, "active")
        self.assertFalse(self.messages_of(campaign))
        context = journey.trigger_context
        self.assertEqual(context["old"], {"stage_id": "Fresh"})
        self.assertEqual(context["changes"], ["stage_id"])
        self.assertEqual((context["record"]["name"], context["record"]["stage_id"]), ("Shop fit-out", "Signed"))
        # Only the fields the campaign's messages use are read in the writer's transaction.
        self.assertNotIn("partner_id", context["record"])
        self.advance()
        message = self.messages_of(campaign)
        self.assertEqual((message.partner_id, message.state, message.res_id), (self.customer, "queued", lead.id))
        self.assertEqual(self.render(message), "Shop fit-out: Fresh -> Signed (stage_id)")

    def test_before_and_after_filters(self):
        campaign = self.launch(
            self.record_campaign(
                filter_pre_domain="[('stage_id.is_won', '=', False)]",
                filter_domain="[('stage_id.is_won', '=', True)]",
            )
        )
        lead = self.lead()
        lead.stage_id = self.stage_talks  # not won after: the "after" filter refuses it
        self.commit_writer()
        self.assertFalse(campaign.journey_ids)
        lead.stage_id = self.stage_won
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 1)
        campaign.reentry = "every_time"
        lead.stage_id = self.stage_won_too  # already won before: the "before" filter refuses it
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 1)
        lead.name = "Renamed"  # no watched field changed
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 1)

    def test_a_watched_field_changed_by_a_recomputation_fires(self):
        """A stored computed field changes without being written: a contact's commercial entity
        follows the company it is attached to."""
        campaign = self.launch(
            self.record_campaign(
                model="res.partner",
                watched=("commercial_partner_id",),
                partner_path="id",
                body="{{ contact.name }} now buys for {{ record.commercial_partner_id }}",
            )
        )
        company = self.env["res.partner"].create({"name": "Lotus Trading", "is_company": True})
        self.commit_writer()
        self.assertFalse(campaign.journey_ids, "a new record's computed values are no change")
        self.customer.parent_id = company
        self.commit_writer()
        journey = campaign.journey_ids
        self.assertEqual((journey.partner_id, journey.res_id), (self.customer, self.customer.id))
        self.assertEqual(journey.trigger_context["changes"], ["commercial_partner_id"])
        self.assertEqual(journey.trigger_context["old"], {"commercial_partner_id": self.customer.name})
        self.assertEqual(journey.trigger_context["record"]["commercial_partner_id"], "Lotus Trading")

    def test_odoo_does_not_run_the_campaigns_rule_itself(self):
        """The rule is Odoo's for what users see and set; the engine's lighter patches run it."""
        campaign = self.launch(self.record_campaign())
        automation = campaign.automation_id
        self.assertEqual(automation.gobysend_campaign_id, campaign)
        Automation = self.env["base.automation"]
        self.assertNotIn(automation.id, Automation._get_automation_ids("crm.lead", ("on_write",)))
        lead = self.lead()
        lead.stage_id = self.stage_won
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 1)
        self.assertFalse(lead.date_automation_last, "the campaign does not stamp the lead's Last Action")

    def test_partner_change_on_contacts_themselves(self):
        campaign = self.launch(
            self.record_campaign(
                model="res.partner",
                watched=("city",),
                partner_path="id",
                body="{{ contact.name }} moved from {{ old.city }} to {{ record.city }}",
            )
        )
        self.customer.city = "Hanoi"
        self.commit_writer()
        journey = campaign.journey_ids
        self.assertEqual((journey.partner_id, journey.res_model), (self.customer, "res.partner"))
        self.customer.city = "Da Nang"
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 1, "once per contact, the default")
        campaign.reentry = "every_time"
        self.customer.city = "Hue"
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 2)
        self.advance()
        texts = sorted(self.render(message) for message in self.messages_of(campaign))
        self.assertEqual(texts, ["Contact 0 moved from  to Hanoi", "Contact 0 moved from Da Nang to Hue"])

    def test_new_data_fires_when_a_required_field_is_set(self):
        campaign = self.launch(
            self.record_campaign(trigger="on_create", watched=("partner_id",), reentry="every_time", body="Welcome")
        )
        self.assertEqual(campaign.automation_id.trigger, "on_create")
        self.lead(partner_id=False)
        self.commit_writer()
        self.assertFalse(campaign.journey_ids, "created without the required field")
        lead = self.lead()
        self.commit_writer()
        journey = campaign.journey_ids
        self.assertEqual((journey.res_id, journey.partner_id), (lead.id, self.customer))
        self.assertEqual(journey.trigger_context["changes"], ["partner_id"])
        self.assertEqual(journey.trigger_context["old"], {})
        lead.partner_id = self.contacts[1]  # a change is no creation
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 1)

    def test_new_or_changed_data(self):
        campaign = self.launch(
            self.record_campaign(
                trigger="on_create_or_write", filter_domain="[('stage_id.is_won', '=', True)]", reentry="every_time"
            )
        )
        self.lead(stage_id=self.stage_won.id)
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 1)
        lead = self.lead()
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 1)
        lead.stage_id = self.stage_won
        self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 2)

    def test_once_per_record(self):
        campaign = self.launch(
            self.record_campaign(filter_domain="[('stage_id.is_won', '=', True)]", reentry="once_per_record")
        )
        first, second = self.lead(), self.lead(name="Second shop")
        for stage in (self.stage_won, self.stage_talks, self.stage_won):
            first.stage_id = stage
            self.commit_writer()
        self.assertEqual(len(campaign.journey_ids), 1)
        second.stage_id = self.stage_won
        self.commit_writer()
        self.assertEqual(campaign.journey_ids.mapped("res_id"), [second.id, first.id])
        self.assertEqual(campaign.journey_ids.partner_id, self.customer, "the same contact, once per record")

    def test_one_transaction_many_records_and_writes(self):
        campaign = self.launch(self.record_campaign(reentry="every_time"))
        leads = self.lead() | self.lead(name="B") | self.lead(name="C", partner_id=self.contacts[1].id)
        leads.stage_id = self.stage_talks
        leads[0].stage_id = self.stage_won
        leads[1].stage_id = self.stage_new  # back where it was: no change in the end
        self.commit_writer()
        journeys = campaign.journey_ids.sorted("res_id")
        self.assertEqual(journeys.mapped("res_id"), [leads[0].id, leads[2].id])
        self.assertEqual(len(set(journeys.mapped("entered_at"))), 1)
        first = journeys[0].trigger_context
        self.assertEqual((first["old"], first["record"]["stage_id"]), ({"stage_id": "Fresh"}, "Signed"))

    def test_the_writer_pays_one_query_however_many_records(self):
        """The writer's transaction only notes the records that fired, in one insert that also
        tells whether the engine's job is pending; the engine starts the journeys."""
        campaign = self.launch(self.record_campaign(reentry="every_time"))
        leads = self.env["crm.lead"]
        for index in range(12):
            leads |= self.lead(name=f"Lead {index}", partner_id=self.contacts[index % 5].id)
        self.commit_writer()

        def queries_to_note(batch):
            batch.stage_id = self.stage_won
            self.env.flush_all()
            before = self.env.cr.sql_log_count
            self.env.cr.flush()  # the precommit hooks
            noted = self.env.cr.sql_log_count - before
            self.assertEqual(len(campaign.journey_ids), 0, "the writer starts no journey itself")
            self.assertEqual(self.env["gobysend.record.entry"].search_count([]), len(batch))
            self.enter_noted()
            self.assertFalse(self.env["gobysend.record.entry"].search_count([]), "a note leaves once handled")
            campaign.journey_ids.unlink()
            return noted

        queries_to_note(leads[0])  # the first note of the test queues the engine's job
        self.assertEqual(queries_to_note(leads[1]), 1)
        self.assertEqual(queries_to_note(leads[2:]), 1)

    def test_the_campaigns_rule_costs_the_write_no_query(self):
        """Odoo runs the campaign's rule from the registry cache: a lead's stage change makes
        the same queries with the campaign running as without, but for the note at commit."""
        campaign = self.launch(self.record_campaign(reentry="every_time"))
        leads = self.env["crm.lead"]
        for index in range(4):
            leads |= self.lead(name=f"Lead {index}", partner_id=self.contacts[index].id)
        self.commit_writer()

        def queries_to_change(lead, stage):
            self.env.invalidate_all()
            before = self.env.cr.sql_log_count
            lead.stage_id = stage
            self.env.cr.flush()
            return self.env.cr.sql_log_count - before

        queries_to_change(leads[0], self.stage_talks)  # fills the caches
        watched = queries_to_change(leads[1], self.stage_talks)
        self.enter_noted()
        self.assertEqual(sorted(campaign.journey_ids.mapped("res_id")), leads[:2].ids)
        campaign.action_pause()
        queries_to_change(leads[2], self.stage_talks)
        unwatched = queries_to_change(leads[3], self.stage_talks)
        self.assertEqual(watched, unwatched + 1, (watched, unwatched))

    def test_a_change_rolled_back_starts_nothing(self):
        campaign = self.launch(self.record_campaign())
        lead = self.lead()
        self.commit_writer()
        with self.assertRaises(ValueError), self.env.cr.savepoint():
            lead.stage_id = self.stage_won
            raise ValueError("the rest of the request failed")
        self.commit_writer()
        self.assertFalse(campaign.journey_ids)

    def test_a_record_the_author_cannot_see_starts_nothing(self):
        author = self.own_leads_author("gbs_seller_marketer")
        campaign = self.record_campaign(reentry="every_time")
        campaign.with_user(author).write({"filter_domain": "[('stage_id.is_won', '=', True)]"})
        self.assertEqual(campaign.filter_user_id, author)
        self.launch(campaign)
        theirs = self.lead(user_id=author.id)
        others = self.lead(user_id=self.seller.id, partner_id=self.contacts[1].id)
        (theirs | others).write({"stage_id": self.stage_won.id})
        self.commit_writer()
        self.assertEqual(campaign.journey_ids.res_id, theirs.id)

    def test_the_before_filter_sees_only_what_its_author_sees(self):
        """The "before" filter runs with the rights of who set it: another salesperson's lead,
        which the author cannot see, does not make the author's lead match (it would tell the
        author what that lead is called)."""
        author = self.own_leads_author("gbs_before_author")
        campaign = self.record_campaign(reentry="every_time")
        campaign.with_user(author).write(
            {"filter_pre_domain": "[('partner_id.opportunity_ids.name', '=', 'Secret deal')]"}
        )
        self.launch(campaign)
        self.lead(name="Secret deal", user_id=self.seller.id)
        theirs = self.lead(user_id=author.id)
        theirs.stage_id = self.stage_won
        self.commit_writer()
        self.assertFalse(campaign.journey_ids)
        # A lead of the same customer that the author sees does count.
        self.lead(name="Secret deal", user_id=author.id)
        theirs.stage_id = self.stage_talks
        self.commit_writer()
        self.assertEqual(campaign.journey_ids.res_id, theirs.id)

    def test_pause_archive_and_delete_take_the_rule_along(self):
        campaign = self.launch(self.record_campaign())
        automation = campaign.automation_id
        action = automation.action_server_ids
        self.assertEqual(action.code, f'env["gobysend.campaign"].browse({campaign.id})._enter_from_records(records)')
        campaign.action_pause()
        self.assertFalse(automation.active)
        lead = self.lead()
        lead.stage_id = self.stage_won
        self.commit_writer()
        self.assertFalse(campaign.journey_ids)
        campaign.action_resume()
        self.assertTrue(automation.active)
        campaign.write({"filter_domain": "[('stage_id.is_won', '=', True)]"})
        self.assertEqual(automation.filter_domain, "[('stage_id.is_won', '=', True)]", "a running rule follows")
        campaign.active = False
        self.assertFalse(automation.active)
        campaign.active = True
        self.assertTrue(automation.active)
        campaign.unlink()
        self.assertFalse(automation.exists())
        self.assertFalse(action.exists())

    def test_notes_of_a_campaign_deleted_meanwhile_are_dropped(self):
        """A record noted just before its campaign is deleted starts nothing, and its note goes
        with the next batch (notes name their campaign by number only)."""
        kept = self.launch(self.record_campaign(reentry="every_time"))
        deleted = self.launch(self.record_campaign(reentry="every_time"))
        lead = self.lead()
        lead.stage_id = self.stage_won
        self.env.flush_all()
        self.env.cr.flush()  # the precommit hooks: the writer's notes
        Entry = self.env["gobysend.record.entry"]
        self.assertEqual(sorted(Entry.search([]).mapped("campaign_id")), sorted([kept.id, deleted.id]))
        deleted.unlink()
        self.enter_noted()
        self.assertFalse(Entry.search_count([]))
        self.assertEqual(kept.journey_ids.mapped("res_id"), [lead.id])
        self.assertFalse(self.env["gobysend.journey"].search([("campaign_id", "=", deleted.id)]))


class TestRecordContacts(RecordCampaignCase):
    def claims_of(self, workspace):
        self.env.cr.execute("SELECT identifier FROM gobysend_contact_claim WHERE workspace_id = %s", (workspace.id,))
        return {identifier for (identifier,) in self.env.cr.fetchall()}

    def test_a_customer_without_subscription_joins_the_workspace(self):
        campaign = self.launch(self.record_campaign())
        newcomer = self.env["res.partner"].create({"name": "Walk-in", "email": "walkin@example.com"})
        self.lead(partner_id=newcomer.id).stage_id = self.stage_won
        self.commit_writer()
        self.assertEqual(campaign.journey_ids.partner_id, newcomer)
        subscription = self.subscription_of(self.workspace_a, newcomer)
        self.assertEqual(
            (subscription.active, subscription.source, subscription.sms_state), (True, "record", "subscribed")
        )
        # Claimed, so that an API request bringing the same contact in at once collides with it.
        self.assertIn(f"partner:{newcomer.id}", self.claims_of(self.workspace_a))

    def test_staff_companies_archived_and_other_workspaces_contacts_are_not_adopted(self):
        campaign = self.launch(self.record_campaign(reentry="every_time"))
        company_partner = self.env.company.partner_id
        staff_partner = self.seller.partner_id
        theirs = self.env["res.partner"].create({"name": "B's", "gobysend_origin_workspace_id": self.workspace_b.id})
        archived = self.env["res.partner"].create({"name": "Gone", "active": False})
        left = self.contacts[2]
        self.subscription_of(self.workspace_a, left).active = False
        leads = self.env["crm.lead"]
        for partner in (company_partner, staff_partner, theirs, archived, left):
            leads |= self.lead(partner_id=partner.id)
        leads.stage_id = self.stage_won
        self.commit_writer()
        self.assertFalse(campaign.journey_ids)
        for partner in (company_partner, staff_partner, theirs, archived):
            self.assertFalse(self.subscription_of(self.workspace_a, partner))

    def test_a_lead_without_partner_reaches_its_email(self):
        campaign = self.launch(
            self.record_campaign(
                trigger="on_create",
                watched=("email_from",),
                email_path="email_from",
                reentry="every_time",
                body="Hello {{ record.contact_name }}",
            )
        )
        self.seller.partner_id.email = "seller@example.com"
        leads = self.env["crm.lead"].create(
            [
                {"name": "Web form", "email_from": "Minh <MINH@example.com>", "contact_name": "Minh"},
                {"name": "Known", "email_from": self.contacts[3].email},
                {"name": "Staff address", "email_from": "seller@example.com", "contact_name": "Not the seller"},
                {"name": "No email", "contact_name": "Nobody"},
            ]
        )
        self.commit_writer()
        journeys = campaign.journey_ids.sorted("res_id")
        self.assertEqual(journeys.mapped("res_id"), leads[:3].ids)
        minh = journeys[0].partner_id.sudo()
        self.assertEqual(
            (minh.name, minh.email, minh.gobysend_origin_workspace_id), ("Minh", "minh@example.com", self.workspace_a)
        )
        self.assertEqual(journeys[1].partner_id, self.contacts[3], "the workspace's contact with that address")
        self.assertNotEqual(journeys[2].partner_id, self.seller.partner_id, "never the partner of a user")
        self.assertEqual(self.subscription_of(self.workspace_a, minh).source, "record")
        self.assertIn("email:minh@example.com", self.claims_of(self.workspace_a))
        # The same address again finds the contact created the first time.
        self.env["crm.lead"].create({"name": "Again", "email_from": "minh@example.com"})
        self.commit_writer()
        self.assertEqual(campaign.journey_ids.sorted("res_id")[-1].partner_id, minh)


class TestRecordCampaignInput(RecordCampaignCase):
    def test_no_required_field(self):
        with self.assertRaisesRegex(ValidationError, "choose at least one required field"):
            self.record_campaign(watched=())

    def test_no_path_to_a_contact(self):
        with self.assertRaisesRegex(ValidationError, "choose how a record of Lead/Opportunity reaches its contact"):
            self.record_campaign(partner_path=False)
        with self.assertRaisesRegex(
            ValidationError, "“stage_id” leads from Lead/Opportunity to CRM Stages, not to a contact"
        ):
            self.record_campaign(partner_path="stage_id")
        with self.assertRaisesRegex(ValidationError, "“name” does not lead from Lead/Opportunity to a contact"):
            self.record_campaign(partner_path="name")
        with self.assertRaisesRegex(ValidationError, "“id” leads to a contact only on Contacts"):
            self.record_campaign(partner_path="id")
        with self.assertRaisesRegex(ValidationError, "“stage_id” is not a readable text field"):
            self.record_campaign(partner_path=False, email_path="stage_id")
        self.assertTrue(self.record_campaign(partner_path="partner_id.parent_id"))

    def test_trigger_field_of_another_model(self):
        with self.assertRaisesRegex(ValidationError, "Field “Job Position” is not a field of Lead/Opportunity"):
            self.record_campaign(trigger_field_ids=[(6, 0, self.field("res.partner", "function").ids)])

    def test_model_the_author_cannot_read(self):
        # manager_a manages campaigns but has no access to the CRM.
        with self.assertRaisesRegex(ValidationError, "cannot read Lead/Opportunity records"):
            self.env["gobysend.campaign"].with_user(self.manager_a).create(
                {
                    "name": "Leads",
                    "workspace_id": self.workspace_a.id,
                    "trigger_kind": "on_write",
                    "model_id": self.lead_model.id,
                    "partner_path": "partner_id",
                    "trigger_field_ids": [(6, 0, self.field("crm.lead", "stage_id").ids)],
                }
            )

    def test_user_accounts_are_out_of_reach(self):
        with self.assertRaisesRegex(ValidationError, "Records of User cannot fire a campaign"):
            self.record_campaign(model="res.users", watched=("login",))

    def test_filters_are_plain_data_over_readable_fields(self):
        with self.assertRaisesRegex(ValidationError, "The “After” filter must be a list of conditions"):
            self.record_campaign(filter_domain="[('name', '=', user.name)]")
        with self.assertRaisesRegex(ValidationError, "The “Before” filter must be a list of conditions"):
            self.record_campaign(filter_pre_domain="[('id', 'in', model.search([]).ids)]")
        with self.assertRaisesRegex(ValidationError, "Lead/Opportunity has no field “nope”"):
            self.record_campaign(filter_domain="[('nope', '=', 1)]")
        with self.assertRaisesRegex(ValidationError, "User records are out of its reach"):
            self.record_campaign(filter_domain="[('user_id.login', '=', 'admin')]")
        self.assertTrue(self.record_campaign(filter_domain="[('user_id', '=', uid), ('probability', '>', -1)]"))
