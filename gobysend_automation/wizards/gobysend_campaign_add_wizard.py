import json

from odoo import _, api, fields, models, tools
from odoo.exceptions import UserError

# The records sales staff add to a campaign from, and how many at once.
SOURCE_MODELS = ("res.partner", "crm.lead")
MAX_RECORDS = 1000
GOING_STATES = ("active", "waiting", "running")


class GobysendCampaignAddWizard(models.TransientModel):
    """Sales staff put chosen contacts, or the contacts of chosen CRM leads, into a running
    campaign with manual enrolment of one of their workspaces.

    Sales staff only read campaigns and journeys: the journeys are started by the engine's
    ``_enter`` (set-based, under the campaign's re-entry policy), after the campaign, the
    records and the contacts have been checked with the user's own rights. A contact new to the
    workspace is subscribed by the user, as a manager subscribing it by hand would be (see
    ``_subscribe``)."""

    _name = "gobysend.campaign.add.wizard"
    _description = "Add to a Gobysend Campaign"

    campaign_id = fields.Many2one(
        "gobysend.campaign",
        string="Campaign",
        domain="[('trigger_kind', '=', 'manual'), ('state', '=', 'running'), ('workspace_id.member_ids', 'in', uid)]",
        help="Running campaigns with manual enrolment of your workspaces.",
    )
    res_model = fields.Char(string="Added From", readonly=True)
    res_ids = fields.Char(readonly=True, help="The ids of the records chosen, as JSON.")
    record_count = fields.Integer(compute="_compute_record_count", string="Chosen")
    state = fields.Selection([("choose", "Choose"), ("done", "Done")], default="choose", readonly=True)
    added_count = fields.Integer(string="Added", readonly=True)
    already_count = fields.Integer(string="Already In", readonly=True)
    skipped_count = fields.Integer(string="Skipped", readonly=True)
    subscribed_count = fields.Integer(string="New to the Workspace", readonly=True)
    result = fields.Text(readonly=True)

    @api.model
    def default_get(self, fields_list):
        values = super().default_get(fields_list)
        context = self.env.context
        model = context.get("active_model")
        ids = context.get("active_ids") or ([context["active_id"]] if context.get("active_id") else [])
        if model in SOURCE_MODELS and ids:
            values["res_model"] = model
            values["res_ids"] = json.dumps([int(record_id) for record_id in ids])
        return values

    @api.depends("res_ids")
    def _compute_record_count(self):
        for wizard in self:
            wizard.record_count = len(wizard._requested_ids())

    def _requested_ids(self):
        try:
            ids = json.loads(self.res_ids or "[]")
        except ValueError:
            return []
        return [record_id for record_id in ids if isinstance(record_id, int)]

    # ------------------------------------------------------------------
    # Checks, with the user's own rights
    # ------------------------------------------------------------------

    def _get_campaign(self):
        """The chosen campaign, when the user may add to it: running, with manual enrolment, of
        one of the user's workspaces (searched as the user: record rules apply)."""
        campaign = self.env["gobysend.campaign"].search(
            [
                ("id", "=", self.campaign_id.id),
                ("trigger_kind", "=", "manual"),
                ("state", "=", "running"),
                ("workspace_id.member_ids", "in", self.env.uid),
            ]
        )
        if not campaign:
            raise UserError(
                _("Choose a running campaign with manual enrolment of one of your workspaces."),
            )
        return campaign

    def _get_records(self):
        """The chosen records; refused as a whole when the user cannot read one of them."""
        if self.res_model not in SOURCE_MODELS:
            raise UserError(_("Contacts can be added to a campaign from contacts and from CRM leads only."))
        ids = self._requested_ids()
        if not ids:
            raise UserError(_("Choose the contacts or leads to add first."))
        if len(ids) > MAX_RECORDS:
            raise UserError(
                _(
                    "At most %(max)s records can be added at once; for more, ask a manager to target them with the "
                    "campaign's audience.",
                    max=MAX_RECORDS,
                )
            )
        records = self.env[self.res_model].browse(ids).exists()
        # AccessError (with Odoo's own explanation) for any record the user cannot see.
        records.check_access("read")
        return records

    # ------------------------------------------------------------------
    # The action
    # ------------------------------------------------------------------

    def action_add(self):
        self.ensure_one()
        campaign = self._get_campaign()
        records = self._get_records()
        plan = _Plan(self.env, campaign)
        if self.res_model == "crm.lead":
            for lead in records:
                plan.add_lead(lead)
        else:
            for partner in records:
                plan.add_partner(partner, partner.display_name)
        plan.run()
        self.write(
            {
                "state": "done",
                "added_count": len(plan.added),
                "already_count": len(plan.already),
                "skipped_count": len(plan.skipped),
                "subscribed_count": plan.subscribed,
                "result": plan.report(),
            }
        )
        return {
            "type": "ir.actions.act_window",
            "name": _("Added to %(campaign)s", campaign=campaign.display_name),
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
        }

    def action_view_journeys(self):
        """The journeys of the campaign that the chosen records started or belong to."""
        self.ensure_one()
        records = self.env[self.res_model].browse(self._requested_ids())._filtered_access("read")
        if self.res_model == "crm.lead":
            domain = [("res_model", "=", "crm.lead"), ("res_id", "in", records.ids)]
            domain = ["|", ("partner_id", "in", records.partner_id.ids), *domain]
        else:
            domain = [("partner_id", "in", records.ids)]
        return {
            "type": "ir.actions.act_window",
            "name": _("Journeys"),
            "res_model": "gobysend.journey",
            "view_mode": "list,form",
            "views": [(False, "list"), (False, "form")],
            "domain": [("campaign_id", "=", self.campaign_id.id), *domain],
        }


class _Plan:
    """Who of the chosen records enters the campaign, who is already in it and who is skipped
    (and why); ``run`` subscribes the contacts new to the workspace and starts the journeys."""

    def __init__(self, env, campaign):
        self.env = env
        self.campaign = campaign
        self.workspace = campaign.workspace_id
        self.entries = []  # (entry, label)
        self.to_subscribe = self.env["res.partner"]
        self.added = []
        self.already = []  # (label, reason)
        self.skipped = []  # (label, reason)
        self.subscribed = 0
        self._seen = set()
        self._subscriptions = {}

    # Who enters ----------------------------------------------------------

    def _subscription(self, partner):
        if partner.id not in self._subscriptions:
            # As the user: record rules show only their workspaces' subscriptions.
            self._subscriptions[partner.id] = (
                self.env["gobysend.subscription"]
                .with_context(active_test=False)
                .search([("workspace_id", "=", self.workspace.id), ("partner_id", "=", partner.id)], limit=1)
            )
        return self._subscriptions[partner.id]

    def add_partner(self, partner, label, lead=None):
        """Plan ``partner``'s journey (for ``lead`` when given); False when it is skipped."""
        if not partner._filtered_access("read"):
            self.skipped.append((label, self.env._("you cannot see its contact")))
            return False
        subscription = self._subscription(partner)
        if subscription and not subscription.active:
            self.skipped.append(
                (
                    label,
                    self.env._("the contact was archived in workspace %(workspace)s", workspace=self.workspace.name),
                )
            )
            return False
        if not subscription and partner not in self.to_subscribe:
            if not partner.active:
                self.skipped.append((label, self.env._("the contact is archived")))
                return False
            if self.env["gobysend.ingest"]._is_odoo_account(partner):
                self.skipped.append(
                    (
                        label,
                        self.env._(
                            "an Odoo user or company cannot be made a contact of the workspace here; a manager can "
                            "subscribe it"
                        ),
                    )
                )
                return False
            self.to_subscribe |= partner
        key = (partner.id, "crm.lead" if lead else None, lead.id if lead else None)
        if key in self._seen:
            return True
        self._seen.add(key)
        entry = {"partner_id": partner.id}
        if lead:
            entry.update(res_model="crm.lead", res_id=lead.id, context={"record": self._lead_values(lead)})
        self.entries.append((entry, label))
        return True

    def add_lead(self, lead):
        label = lead.display_name
        if lead.partner_id:
            return self.add_partner(lead.partner_id, label, lead=lead)
        email = tools.email_normalize(lead.email_from or "")
        if not email:
            self.skipped.append((label, self.env._("the lead has no contact and no valid email address")))
            return False
        partner = self._contact_from_email(lead, email)
        if not partner:
            self.skipped.append(
                (label, self.env._("the contact with this email address was archived in the workspace"))
            )
            return False
        return self.add_partner(partner, label, lead=lead)

    def _contact_from_email(self, lead, email):
        """The workspace's contact with the lead's email, found or created as the tracking API
        identifies a contact (``gobysend.ingest``): the workspace's subscription with that
        address, else a contact the workspace created before, else a new contact. Nobody
        else's contact is adopted: an Odoo user, a company, another workspace's or a CRM
        contact keep theirs."""
        ingest = self.env["gobysend.ingest"]
        ref = {"id": None, "email": email, "phone": None}
        subscription = ingest._find_subscription(self.workspace, ref)
        if subscription:
            return subscription.partner_id.with_env(self.env) if subscription.active else self.env["res.partner"]
        # sudo: looks for this workspace's own contacts by address (its creator field is for
        # administrators only); nothing else is read.
        partners = self.env["res.partner"].sudo()
        partner = partners.search(
            [("email_normalized", "=", email), ("gobysend_origin_workspace_id", "=", self.workspace.id)],
            order="id",
            limit=1,
        )
        if partner and ingest._is_odoo_account(partner):
            partner = partners.browse()
        if not partner:
            # Two users adding the same new address at once collide here rather than make two contacts.
            ingest._claim_new_contact(self.workspace, ref)
            # sudo: sales staff may not create contacts; this one is new, made of the lead's
            # name and address only (which the user reads), and belongs to this workspace.
            partner = partners.with_context(mail_create_nolog=True, mail_create_nosubscribe=True).create(
                {
                    "name": lead.contact_name or lead.partner_name or email,
                    "email": email,
                    "gobysend_origin_workspace_id": self.workspace.id,
                }
            )
        return partner.with_env(self.env)

    @staticmethod
    def _lead_values(lead):
        """What the campaign's templates see of the lead (``record``): plain values only."""
        return {
            "id": lead.id,
            "name": lead.name or "",
            "contact_name": lead.contact_name or "",
            "partner_name": lead.partner_name or "",
            "email_from": lead.email_from or "",
            "phone": lead.phone or "",
            "stage": lead.stage_id.name or "",
            "expected_revenue": lead.expected_revenue,
        }

    # Entering ---------------------------------------------------------------

    def _going(self):
        """Indexes of the entries whose contact has a journey of the campaign under way: a
        second one would repeat its messages, whatever the re-entry policy."""
        partner_ids = list({entry["partner_id"] for entry, _label in self.entries})
        journeys = self.env["gobysend.journey"].search(
            [
                ("campaign_id", "=", self.campaign.id),
                ("partner_id", "in", partner_ids),
                ("state", "in", GOING_STATES),
                ("is_test", "=", False),
            ]
        )
        going = set(journeys.partner_id.ids)
        return {index for index, (entry, _label) in enumerate(self.entries) if entry["partner_id"] in going}

    def _subscribe(self):
        """Make the contacts new to the workspace its contacts, as the user.

        Consent: the user vouches for the relationship (a customer or a lead of theirs), as a
        manager subscribing a contact by hand does (source "Set by a user"). A workspace with
        double opt-in keeps them pending and emails them a confirmation: they get nothing
        before they confirm. Odoo's email and phone blacklists keep applying when sending."""
        partners = self.to_subscribe.filtered(lambda partner: partner.id in {e["partner_id"] for e, _l in self.entries})
        if not partners:
            return
        self.env["gobysend.subscription"].with_context(mail_create_nolog=True, mail_create_nosubscribe=True).create(
            [{"workspace_id": self.workspace.id, "partner_id": partner.id, "source": "manual"} for partner in partners]
        )
        self.subscribed = len(partners)

    def run(self):
        going = self._going()
        for index in sorted(going):
            self.already.append((self.entries[index][1], self.env._("a journey of this campaign is under way")))
        entries = [pair for index, pair in enumerate(self.entries) if index not in going]
        self.entries = entries
        self._subscribe()
        journey_ids = self.env["gobysend.journey"]._enter(self.campaign, [entry for entry, _label in entries])
        # Inserted in SQL: what the ORM holds of the campaign's journeys is out of date.
        self.campaign.invalidate_recordset(["journey_ids"])
        started = {
            (journey.partner_id.id, journey.res_model or None, journey.res_id or None)
            for journey in self.env["gobysend.journey"].browse(journey_ids)
        }
        for entry, label in entries:
            key = (entry["partner_id"], entry.get("res_model"), entry.get("res_id"))
            if key in started:
                started.discard(key)
                self.added.append(label)
            else:
                self.already.append(
                    (label, self.env._("the campaign's re-entry policy does not let the contact in again"))
                )

    def report(self):
        lines = [self.env._("Already in: %(who)s (%(why)s)", who=label, why=reason) for label, reason in self.already]
        lines += [self.env._("Skipped: %(who)s (%(why)s)", who=label, why=reason) for label, reason in self.skipped]
        return "\n".join(lines)
