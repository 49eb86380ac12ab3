import logging
import secrets
import time
import uuid

from odoo import _, api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

from odoo.addons.queue_job.job import identity_exact

from .. import kinds
from .gobysend_journey import JOURNEY_FIGURES, MESSAGE_FIGURES
from .gobysend_segment_condition import FILTER_UID_KEY

_logger = logging.getLogger(__name__)

CAMPAIGN_STATES = [
    ("draft", "Draft"),
    ("scheduled", "Scheduled"),
    ("running", "Running"),
    ("paused", "Paused"),
    ("done", "Done"),
    ("cancelled", "Cancelled"),
]
REENTRY_POLICIES = [
    ("once", "Once per contact"),
    ("once_at_a_time", "Once at a time"),
    ("every_time", "Every time"),
    ("once_per_record", "Once per record"),
]


BULK_AUDIENCES = [("customers", "All customers"), ("leads", "All leads"), ("both", "Customers and leads")]
# Contacts a launch puts into journeys per transaction (and per job step of its progress).
FAN_OUT_CHUNK = 5000


def rates(reached, opened, clicked):
    """Open and click rates (fractions of 1) of ``reached`` messages."""
    if reached <= 0:
        return 0.0, 0.0
    return opened / reached, clicked / reached


class GobysendCampaign(models.Model):
    """A trigger, an audience and a workflow of steps.

    Every trigger kind starts journeys (``gobysend.journey``), one per contact run, which the
    journey engine (``journeys``) advances through the campaign's steps. A one-message campaign
    is a workflow of one *send* step. Trigger kinds live in the ``kinds`` registry: the fields a
    kind uses are listed there, and the form shows only those.
    """

    _name = "gobysend.campaign"
    _description = "Gobysend Campaign"
    _inherit = ["mail.thread", "gobysend.workspace.bound"]
    _order = "id desc"

    name = fields.Char(required=True, tracking=True, translate=False)
    active = fields.Boolean(default=True)
    color = fields.Integer()
    workspace_id = fields.Many2one(
        "gobysend.workspace",
        required=True,
        ondelete="cascade",
        index=True,
        default=lambda self: self.env["gobysend.workspace"].search([], limit=1),
        tracking=True,
    )
    description = fields.Text()
    trigger_kind = fields.Selection(
        kinds.trigger_selection, string="Trigger", required=True, default="manual", tracking=True
    )
    trigger_help = fields.Text(compute="_compute_trigger_help")
    trigger_fields = fields.Char(
        compute="_compute_trigger_help", help="The fields the trigger kind uses (the form shows only those)."
    )
    uses_audience = fields.Boolean(compute="_compute_trigger_help")
    # group_expand: the kanban by state shows every state's column, empty ones too.
    state = fields.Selection(
        CAMPAIGN_STATES, required=True, default="draft", readonly=True, tracking=True, index=True, group_expand=True
    )
    reentry = fields.Selection(
        REENTRY_POLICIES,
        string="Re-entry",
        required=True,
        default="once",
        help="Once per contact: a contact runs the campaign once, ever. Once at a time: again, but not while a "
        "journey of it is still running. Every time: at each trigger. Once per record: once for each record that "
        "fires it (record triggers).",
    )
    leave_off_audience = fields.Boolean(
        string="Leave When Out of the Audience",
        help="Checked each time a journey's steps run: a contact no longer in the chosen segments or tags, or "
        "no longer meeting the contact filter, leaves the campaign before its next step.",
    )
    scheduled_at = fields.Datetime(string="Launch At", tracking=True, help="Empty: launched at once.")
    launched_at = fields.Datetime(readonly=True, copy=False)
    ended_at = fields.Datetime(readonly=True, copy=False)
    goal_event_name = fields.Char(
        string="Goal Event",
        help="The event that counts as a conversion (e.g. order_paid): a contact that performs it during its "
        "journey leaves the campaign and counts as converted. To go on after the goal (a thank-you message), or for "
        "a goal that is a condition on the contact, add a Goal step to the workflow instead.",
    )

    # Audience: segments, tags and/or a contact filter, among the workspace's contacts.
    segment_ids = fields.Many2many("gobysend.segment", string="Segments")
    tag_ids = fields.Many2many("res.partner.category", string="Contact Tags")
    partner_domain = fields.Char(string="Contact Filter", default="[]")
    filter_user_id = fields.Many2one(
        "res.users",
        string="Filter Set By",
        readonly=True,
        copy=False,
        help="Whose access rights evaluate the contact filter and record triggers: who last changed them.",
    )
    bulk_audience = fields.Selection(BULK_AUDIENCES, string="Send To", default="customers")

    # Record triggers (new / changed / new or changed data).
    model_id = fields.Many2one("ir.model", string="Model", ondelete="cascade", domain=[("transient", "=", False)])
    model_name = fields.Char(related="model_id.model", string="Model Name")
    partner_path = fields.Char(
        string="Path to Contact",
        help="The field chain from the record to its contact, e.g. partner_id, or partner_id.parent_id.",
    )
    email_path = fields.Char(
        string="Email When No Contact",
        help="A field of the record holding an email address, used when the path to the contact is empty "
        "(a lead's email before it has a customer): the contact is found or created in the workspace.",
    )
    trigger_field_ids = fields.Many2many(
        "ir.model.fields",
        string="Required Fields",
        domain="[('model_id', '=', model_id)]",
        help="New data: fires when a record is created with one of these set. Changed data: when one of them changes.",
    )
    filter_pre_domain = fields.Char(string="Before", help="Only when the record matched this before the change.")
    filter_domain = fields.Char(string="After", help="Only when the record matches this after the change.")
    automation_id = fields.Many2one("base.automation", readonly=True, copy=False, ondelete="set null")

    # Webhook trigger.
    webhook_uuid = fields.Char(readonly=True, copy=False, default=lambda self: str(uuid.uuid4()))
    webhook_secret = fields.Char(readonly=True, copy=False, groups="gobysend_automation.group_gobysend_manager")
    webhook_url = fields.Char(compute="_compute_webhook_url", string="Webhook URL")

    # Periodic trigger.
    period = fields.Selection(
        [("daily", "Daily"), ("weekly", "Weekly"), ("monthly", "Monthly"), ("yearly", "Yearly")], default="monthly"
    )
    run_time = fields.Float(string="At", default=9.0, help="Time of day in the workspace's time zone.")
    run_weekday = fields.Selection(
        [
            ("0", "Monday"),
            ("1", "Tuesday"),
            ("2", "Wednesday"),
            ("3", "Thursday"),
            ("4", "Friday"),
            ("5", "Saturday"),
            ("6", "Sunday"),
        ],
        string="On",
        default="0",
    )
    run_monthday = fields.Integer(string="Day of Month", default=1)
    run_month = fields.Integer(string="Month", default=1)
    date_source = fields.Selection(
        [
            ("none", "The audience, at each run"),
            ("field", "A date field of the contact"),
            ("attribute", "A date attribute"),
            ("birthday_month", "Birthdays of this month"),
        ],
        string="Who",
        default="none",
    )
    date_field_id = fields.Many2one(
        "ir.model.fields",
        string="Date Field",
        domain="[('model', '=', 'res.partner'), ('ttype', 'in', ('date', 'datetime'))]",
        ondelete="cascade",
        help="For birthdays of this month, leave both the date field and the date attribute empty to use the "
        "contact's Birthday.",
    )
    date_attribute_id = fields.Many2one(
        "gobysend.attribute",
        string="Date Attribute",
        ondelete="cascade",
        domain="[('workspace_id', '=', workspace_id), ('value_type', 'in', ('date', 'datetime'))]",
    )
    date_offset_days = fields.Integer(
        string="Offset (days)", help="Days before (negative) or after (positive) the date, each year."
    )
    cron_id = fields.Many2one("ir.cron", readonly=True, copy=False, ondelete="set null")
    last_run_at = fields.Datetime(readonly=True, copy=False)

    # Event, segment and engagement triggers.
    event_name = fields.Char()
    event_filter = fields.Char(
        string="Event Properties", help="Optional conditions on the event's properties, e.g. total > 500."
    )
    trigger_segment_id = fields.Many2one("gobysend.segment", string="Segment", ondelete="restrict")
    segment_transition = fields.Selection([("entered", "Entered"), ("left", "Left")], default="entered")
    segment_cursor = fields.Datetime(readonly=True, copy=False)
    engagement_campaign_id = fields.Many2one("gobysend.campaign", string="Campaign Engaged With", ondelete="set null")
    engagement_kind = fields.Selection(
        [("opened", "Opened"), ("clicked", "Clicked"), ("not_opened", "Not opened within"), ("bounced", "Bounced")],
        string="Engagement",
        default="opened",
    )
    engagement_hours = fields.Integer(string="Within (hours)", default=48)
    # Follow-ups: an engagement campaign narrowed to the message of one step of the other campaign.
    engagement_step_id = fields.Many2one(
        "gobysend.campaign.step",
        string="Message of Step",
        ondelete="set null",
        domain="[('campaign_id', '=', engagement_campaign_id), ('kind', '=', 'send')]",
        help="Only the messages of this step of the other campaign start journeys (empty: any of its messages).",
    )
    followup_ids = fields.One2many(
        "gobysend.campaign",
        "engagement_campaign_id",
        string="Follow-ups",
        domain=[("trigger_kind", "=", "engagement")],
        help="Campaigns started by engagement with this campaign's messages, running beside its workflow.",
    )
    engagement_cursor = fields.Datetime(readonly=True, copy=False)

    # Workflow and journeys.
    step_ids = fields.One2many("gobysend.campaign.step", "campaign_id", string="Steps", copy=True)
    journey_ids = fields.One2many("gobysend.journey", "campaign_id", string="All Journeys")

    # Launch progress (a fan-out over the audience, in jobs).
    fan_out_total = fields.Integer(string="Audience at Launch", readonly=True, copy=False)
    fan_out_done = fields.Integer(string="Queued", readonly=True, copy=False)
    fan_out_cursor = fields.Integer(readonly=True, copy=False)
    fan_out_running = fields.Boolean(readonly=True, copy=False)
    progress_text = fields.Char(compute="_compute_progress_text", string="Progress")

    # Estimates and statistics.
    audience_count = fields.Integer(compute="_compute_estimate", string="Audience")
    token_estimate = fields.Float(compute="_compute_estimate", string="Estimated Tokens", digits=(16, 2))
    estimate_error = fields.Char(compute="_compute_estimate")
    token_balance = fields.Float(related="workspace_id.token_balance", string="Token Balance")
    tokens_spent = fields.Float(compute="_compute_statistics", digits=(16, 2))
    journey_count = fields.Integer(compute="_compute_statistics", string="Journeys")
    journeys_active = fields.Integer(compute="_compute_statistics", string="Active Journeys")
    journeys_waiting = fields.Integer(compute="_compute_statistics", string="Waiting")
    journeys_completed = fields.Integer(compute="_compute_statistics", string="Completed")
    journeys_exited = fields.Integer(compute="_compute_statistics", string="Exited")
    journeys_failed = fields.Integer(compute="_compute_statistics", string="Failed")
    journeys_converted = fields.Integer(compute="_compute_statistics", string="Converted")
    message_count = fields.Integer(compute="_compute_statistics", string="Messages Queued")
    sent_count = fields.Integer(compute="_compute_statistics", string="Sent")
    delivered_count = fields.Integer(compute="_compute_statistics", string="Delivered")
    opened_count = fields.Integer(compute="_compute_statistics", string="Opened")
    clicked_count = fields.Integer(compute="_compute_statistics", string="Clicked")
    bounced_count = fields.Integer(compute="_compute_statistics", string="Bounced")
    failed_count = fields.Integer(compute="_compute_statistics", string="Failed Messages")
    skipped_count = fields.Integer(compute="_compute_statistics", string="Skipped")
    unsubscribed_count = fields.Integer(compute="_compute_statistics", string="Unsubscribed")
    first_run_at = fields.Datetime(compute="_compute_statistics", string="First Run")
    last_run_at_stat = fields.Datetime(compute="_compute_statistics", string="Last Run")
    open_rate = fields.Float(
        compute="_compute_rates",
        help="Messages opened (or clicked) out of those that reached the provider and did not bounce.",
    )
    click_rate = fields.Float(
        compute="_compute_rates", help="Messages clicked out of those that reached the provider and did not bounce."
    )
    conversion_rate = fields.Float(compute="_compute_rates", help="Journeys that reached the goal out of all journeys.")
    step_stat_ids = fields.One2many(
        "gobysend.campaign.step", compute="_compute_step_stat_ids", string="Statistics per Step"
    )

    _sql_constraints = [("webhook_uuid_uniq", "unique(webhook_uuid)", "A campaign webhook address is used once.")]

    # ------------------------------------------------------------------
    # Computes
    # ------------------------------------------------------------------

    @api.depends("trigger_kind")
    def _compute_trigger_help(self):
        for campaign in self:
            kind = kinds.TRIGGERS.get(campaign.trigger_kind)
            campaign.trigger_help = str(kind.help) if kind and kind.help else False
            campaign.trigger_fields = " ".join(kind.fields) if kind else ""
            campaign.uses_audience = bool(kind and kind.uses_audience)

    @api.depends("webhook_uuid")
    def _compute_webhook_url(self):
        base_url = self.env["ir.config_parameter"].sudo().get_param("web.base.url", "")
        for campaign in self:
            campaign.webhook_url = (
                f"{base_url}/gobysend/campaign/{campaign.webhook_uuid}" if campaign.webhook_uuid else False
            )

    @api.depends("fan_out_done", "fan_out_total", "fan_out_running")
    def _compute_progress_text(self):
        for campaign in self:
            campaign.progress_text = (
                _(
                    "%(done)s of %(total)s queued",
                    done=format(campaign.fan_out_done, ","),
                    total=format(campaign.fan_out_total, ","),
                )
                if campaign.fan_out_total
                else False
            )

    @api.depends(
        "trigger_kind",
        "segment_ids",
        "tag_ids",
        "partner_domain",
        "bulk_audience",
        "workspace_id",
        "step_ids.kind",
        "step_ids.channel_id",
        "period",
        "run_time",
        "run_weekday",
        "run_monthday",
        "run_month",
        "date_source",
        "date_field_id",
        "date_attribute_id",
        "date_offset_days",
    )
    def _compute_estimate(self):
        for campaign in self:
            campaign.audience_count = 0
            campaign.token_estimate = 0.0
            campaign.estimate_error = False
            kind = kinds.TRIGGERS.get(campaign.trigger_kind)
            if not kind or not kind.uses_audience or not campaign.workspace_id:
                continue
            try:
                count = campaign._count_audience()
            except (ValidationError, UserError) as error:
                campaign.estimate_error = error.args[0]
                continue
            campaign.audience_count = count
            campaign.token_estimate = count * campaign._token_cost_per_contact()

    def _compute_statistics(self):
        stats = self.env["gobysend.journey"]._campaign_statistics(self.ids)
        for campaign in self:
            figures = stats.get(campaign.id, {})
            for name in (*JOURNEY_FIGURES, *MESSAGE_FIGURES):
                campaign[name] = figures.get(name, 0)
            campaign.first_run_at = figures.get("first_run_at", False)
            campaign.last_run_at_stat = figures.get("last_run_at", False)

    @api.depends("step_ids")
    def _compute_step_stat_ids(self):
        for campaign in self:
            campaign.step_stat_ids = campaign.step_ids.sorted(lambda step: (step.sequence, step.id))

    @api.depends("sent_count", "bounced_count", "opened_count", "clicked_count", "journeys_converted", "journey_count")
    def _compute_rates(self):
        for campaign in self:
            campaign.open_rate, campaign.click_rate = rates(
                campaign.sent_count - campaign.bounced_count, campaign.opened_count, campaign.clicked_count
            )
            campaign.conversion_rate = (
                campaign.journeys_converted / campaign.journey_count if campaign.journey_count else 0.0
            )

    # ------------------------------------------------------------------
    # Constraints
    # ------------------------------------------------------------------

    @api.constrains(
        "trigger_kind",
        "reentry",
        "model_id",
        "partner_path",
        "email_path",
        "trigger_field_ids",
        "period",
        "run_time",
        "event_name",
        "trigger_segment_id",
        "engagement_campaign_id",
        "partner_domain",
        "filter_domain",
        "filter_pre_domain",
        "date_source",
        "date_field_id",
        "date_attribute_id",
        "date_offset_days",
        "run_weekday",
        "run_monthday",
        "run_month",
        "segment_ids",
        "tag_ids",
    )
    def _check_trigger(self):
        for campaign in self:
            kind = kinds.TRIGGERS.get(campaign.trigger_kind)
            if not kind:
                raise ValidationError(_("Campaign “%(name)s” has an unknown trigger.", name=campaign.name))
            if campaign.reentry == "once_per_record" and not kind.record_based:
                raise ValidationError(
                    _("“Once per record” applies to campaigns fired by records changing; choose another re-entry.")
                )
            for segment in campaign.segment_ids | campaign.trigger_segment_id:
                if segment.workspace_id != campaign.workspace_id:
                    raise ValidationError(
                        _("Segment “%(segment)s” belongs to another workspace.", segment=segment.display_name)
                    )
            other = campaign.engagement_campaign_id
            if other and other.workspace_id != campaign.workspace_id:
                raise ValidationError(
                    _("Campaign “%(campaign)s” belongs to another workspace.", campaign=other.display_name)
                )
            if kind.uses_audience:
                campaign._get_contact_filter()
            kind.validate(campaign)

    # ------------------------------------------------------------------
    # CRUD
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        for vals in vals_list:
            self._check_time_given(vals, vals.get("trigger_kind"), vals.get("name"))
            vals.setdefault("webhook_secret", secrets.token_urlsafe(24))
            if self._sets_filters(vals):
                vals["filter_user_id"] = self.env.uid
        campaigns = super().create(vals_list)
        return campaigns

    def write(self, vals):
        for campaign in self:
            self._check_time_given(vals, vals.get("trigger_kind", campaign.trigger_kind), campaign.name)
        if self._sets_filters(vals):
            vals = dict(vals, filter_user_id=self.env.uid)
        if "trigger_kind" in vals and any(c.state not in ("draft", "cancelled") for c in self):
            raise UserError(_("The trigger of a launched campaign cannot change; duplicate the campaign instead."))
        result = super().write(vals)
        if "active" in vals:
            for campaign in self:
                automation = campaign.sudo().automation_id  # sudo: the owned rule, managers cannot edit rules
                if automation:
                    automation.active = vals["active"] and campaign.state == "running"
                cron = campaign.sudo().cron_id  # sudo: the owned scheduled action, as above
                if cron:
                    cron.active = vals["active"] and campaign.state == "running"
        elif self._sets_trigger_settings(vals):
            for campaign in self.filtered(lambda c: c.state == "running"):
                kinds.TRIGGERS[campaign.trigger_kind].activate(campaign)
        return result

    def unlink(self):
        # The owned rule and scheduled action go with the campaign (sudo: managers cannot
        # delete automation rules or crons themselves; these are the campaign's own).
        automations = self.sudo().automation_id
        crons = self.sudo().cron_id
        actions = automations.action_server_ids | crons.ir_actions_server_id
        result = super().unlink()
        automations.unlink()
        crons.unlink()
        actions.exists().unlink()
        return result

    def _check_time_given(self, vals, trigger_kind, name):
        """A periodic rule needs a time: a cleared time would silently read as midnight."""
        if trigger_kind == "periodic" and "run_time" in vals and vals["run_time"] in (False, None):
            raise ValidationError(
                _("Periodic campaign “%(name)s” needs a time of day (field “At”).", name=name or _("New"))
            )

    @staticmethod
    def _sets_filters(vals):
        return any(
            vals.get(name)
            for name in ("partner_domain", "filter_domain", "filter_pre_domain", "model_id", "partner_path")
        )

    @staticmethod
    def _sets_trigger_settings(vals):
        return bool(
            {
                "model_id",
                "partner_path",
                "email_path",
                "trigger_field_ids",
                "filter_domain",
                "filter_pre_domain",
                "period",
                "run_time",
                "run_weekday",
                "run_monthday",
                "run_month",
            }
            & set(vals)
        )

    # ------------------------------------------------------------------
    # Audience
    # ------------------------------------------------------------------

    def _get_filter_uid(self):
        """Whose rights evaluate this campaign's filters: who last set them (0 once deleted)."""
        self.ensure_one()
        return self.filter_user_id.id or (self.env.uid if not self.id else 0)

    def _get_contact_filter(self, now=None, text=None):
        """The contact filter (or ``text``, a step's) as a domain, checked as a segment's contact
        filter is (no path out of contact data, readable by whoever set it)."""
        self.ensure_one()
        text = self.partner_domain if text is None else text
        if not text or text.strip() in ("[]", ""):
            return []
        uid = self._get_filter_uid() or self.env.uid
        Condition = self.env["gobysend.segment.condition"].with_context(**{FILTER_UID_KEY: uid})
        condition = Condition.new({"kind": "domain", "partner_domain": text})
        return condition.with_context(**{FILTER_UID_KEY: uid})._get_contact_filter(self.workspace_id, now)

    def _contacts_model(self):
        uid = self._get_filter_uid()
        Partner = self.env["res.partner"].with_context(active_test=True)
        # Superuser only when the filter was set by the superuser; a deleted author's filter
        # reaches no one (no uid: see below).
        return Partner.with_user(uid) if uid else Partner.browse()

    def _get_audience_query(self, now=None):
        """The ORM ``Query`` of the contacts this campaign's audience holds now: the workspace's
        contacts, in the chosen segments or with the chosen tags (when any is chosen), meeting the
        contact filter, searched with the rights of whoever set the filter."""
        self.ensure_one()
        Partner = self._contacts_model()
        if not Partner.env.uid:
            return Partner.sudo()._search([("id", "=", 0)])  # sudo: an empty query, nothing is read
        subscriptions = (
            self.env["gobysend.subscription"]
            .sudo()
            ._search(  # sudo: this workspace's rows only
                [("workspace_id", "=", self.workspace_id.id)]
            )
        )
        domain = [("id", "in", subscriptions.subselect(SQL.identifier(subscriptions.table, "partner_id")))]
        kind = kinds.TRIGGERS[self.trigger_kind]
        domain += kind.audience_domain(self) if hasattr(kind, "audience_domain") else self._audience_domain()
        domain += self._get_contact_filter(now)
        return Partner._search(domain)

    def _audience_domain(self):
        """Segments or tags, when chosen (a contact in any of them)."""
        parts = []
        if self.segment_ids:
            memberships = (
                self.env["gobysend.segment.membership"]
                .sudo()
                ._search(  # sudo: segments of this workspace
                    [("segment_id", "in", self.segment_ids.ids), ("left_at", "=", False)]
                )
            )
            parts.append([("id", "in", memberships.subselect(SQL.identifier(memberships.table, "partner_id")))])
        if self.tag_ids:
            parts.append([("category_id", "in", self.tag_ids.ids)])
        if not parts:
            return []
        return parts[0] if len(parts) == 1 else ["|", *parts[0], *parts[1]]

    def _count_audience(self):
        kind = kinds.TRIGGERS[self.trigger_kind]
        if hasattr(kind, "count_audience"):
            # A kind that takes only part of the audience at a time (a periodic run) counts that part.
            return kind.count_audience(self)
        query = self._get_audience_query()
        self.env.cr.execute(
            SQL("SELECT count(*) FROM (%s) AS audience", query.select(SQL.identifier(query.table, "id")))
        )
        return self.env.cr.fetchone()[0]

    def _token_cost_per_contact(self):
        return sum(
            step.channel_id._get_message_token_cost()
            for step in self.step_ids
            if kinds.STEPS.get(step.kind) and kinds.STEPS[step.kind].sends and step.channel_id
        )

    # ------------------------------------------------------------------
    # Actions
    # ------------------------------------------------------------------

    def action_launch(self):
        for campaign in self:
            if campaign.state not in ("draft", "scheduled"):
                raise UserError(_("Only a draft or scheduled campaign can be launched."))
            campaign._check_ready()
            if campaign.scheduled_at and campaign.scheduled_at > fields.Datetime.now() and campaign.state == "draft":
                campaign.state = "scheduled"
                continue
            campaign._start()
        return True

    def _check_ready(self):
        self.ensure_one()
        if not self.step_ids:
            raise UserError(_("Campaign “%(name)s” has no steps: add at least one.", name=self.name))
        self.step_ids._check_step()
        kind = kinds.TRIGGERS[self.trigger_kind]
        kind.validate(self)
        if kind.uses_audience:
            count = self._count_audience()
            estimate = count * self._token_cost_per_contact()
            if estimate > self.workspace_id.token_balance:
                raise UserError(
                    _(
                        "Campaign “%(name)s” would cost about %(estimate)s tokens (%(count)s contacts), but the "
                        "workspace has %(balance)s. Top up the balance or narrow the audience.",
                        name=self.name,
                        estimate=format(estimate, ",.2f"),
                        count=format(count, ","),
                        balance=format(self.workspace_id.token_balance, ",.2f"),
                    )
                )

    def _start(self):
        self.ensure_one()
        self.write({"state": "running", "launched_at": fields.Datetime.now(), "ended_at": False})
        kind = kinds.TRIGGERS[self.trigger_kind]
        kind.activate(self)
        kind.launch(self)

    def action_pause(self):
        running = self.filtered(lambda c: c.state in ("running", "scheduled"))
        for campaign in running:
            kinds.TRIGGERS[campaign.trigger_kind].deactivate(campaign)
        running.write({"state": "paused"})
        # The campaign's messages not yet handed over wait with it (sudo: only this campaign's
        # messages, whose state the outbox alone writes otherwise).
        self.env["gobysend.message"].sudo().search(
            [("campaign_id", "in", running.ids), ("state", "=", "queued")]
        ).write({"state": "held", "reason": _("Held: the campaign is paused.")})
        return True

    def action_resume(self):
        paused = self.filtered(lambda c: c.state == "paused")
        paused.write({"state": "running"})
        for campaign in paused:
            kinds.TRIGGERS[campaign.trigger_kind].activate(campaign)
            if campaign.fan_out_running:
                campaign._enqueue_fan_out()
        # sudo: see action_pause
        held = (
            self.env["gobysend.message"]
            .sudo()
            .search(
                [
                    ("campaign_id", "in", paused.ids),
                    ("state", "=", "held"),
                    ("reason", "=", _("Held: the campaign is paused.")),
                ]
            )
        )
        held.write({"state": "queued", "reason": False, "next_attempt_at": fields.Datetime.now()})
        self.env["gobysend.journey"]._enqueue_advance()
        return True

    def action_cancel(self):
        cancellable = self.filtered(lambda c: c.state in ("draft", "scheduled", "running", "paused"))
        for campaign in cancellable:
            kinds.TRIGGERS[campaign.trigger_kind].deactivate(campaign)
        cancellable.write({"state": "cancelled", "ended_at": fields.Datetime.now(), "fan_out_running": False})
        # sudo: this campaign's messages and journeys, which the engine alone writes otherwise.
        messages = (
            self.env["gobysend.message"]
            .sudo()
            .search([("campaign_id", "in", cancellable.ids), ("state", "in", ("queued", "held"))])
        )
        messages._refund_tokens()
        messages.write({"state": "cancelled", "reason": _("Cancelled with its campaign.")})
        self.env["gobysend.journey"].sudo()._exit_campaigns(cancellable.ids, _("The campaign was cancelled."))
        return True

    def action_draft(self):
        self.filtered(lambda c: c.state == "cancelled").write({"state": "draft", "fan_out_total": 0, "fan_out_done": 0})
        return True

    def action_rotate_webhook_secret(self):
        for campaign in self:
            campaign.webhook_secret = secrets.token_urlsafe(24)
        return True

    def action_view_journeys(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Journeys of %(campaign)s", campaign=self.display_name),
            "res_model": "gobysend.journey",
            "view_mode": "list,form,pivot,graph",
            # Test journeys stay out of the counts, the pivot and the graph.
            "domain": [("campaign_id", "=", self.id), ("is_test", "=", False)],
            "context": {"search_default_group_state": 1},
        }

    def action_view_failed_journeys(self):
        """The campaign's failed journeys with their reasons, for a manager to retry."""
        action = self.action_view_journeys()
        action.update(
            name=_("Failed journeys of %(campaign)s", campaign=self.display_name),
            context={"search_default_failed": 1},
        )
        return action

    def action_view_messages(self):
        """The campaign's recipients, one message each, filterable by channel and state."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Messages of %(campaign)s", campaign=self.display_name),
            "res_model": "gobysend.message",
            "view_mode": "list,graph,pivot,form",
            "views": [(False, "list"), (False, "graph"), (False, "pivot"), (False, "form")],
            "domain": [("campaign_id", "=", self.id), ("is_test", "=", False)],
        }

    def action_view_statistics(self):
        """Sent, opened and clicked messages of the campaign by day, per channel."""
        action = self.action_view_messages()
        action.update(
            name=_("Statistics of %(campaign)s", campaign=self.display_name),
            views=[(False, "graph"), (False, "pivot"), (False, "list"), (False, "form")],
            view_mode="graph,pivot,list,form",
        )
        return action

    def action_view_journey_statistics(self):
        """The campaign's journeys by day of entry and state."""
        action = self.action_view_journeys()
        action.update(
            name=_("Journeys of %(campaign)s over Time", campaign=self.display_name),
            view_mode="graph,pivot,list,form",
            views=[(False, "graph"), (False, "pivot"), (False, "list"), (False, "form")],
            domain=[("campaign_id", "=", self.id), ("is_test", "=", False)],
            context={},
        )
        return action

    def action_view_conversions(self):
        """The campaign's converted journeys by day of conversion."""
        action = self.action_view_journey_statistics()
        action.update(
            name=_("Conversions of %(campaign)s over Time", campaign=self.display_name),
            views=[
                (self.env.ref("gobysend_automation.gobysend_journey_view_graph_conversions").id, "graph"),
                (False, "pivot"),
                (False, "list"),
                (False, "form"),
            ],
            domain=[("campaign_id", "=", self.id), ("is_test", "=", False), ("converted", "=", True)],
        )
        return action

    def action_view_step_statistics(self):
        """The steps the campaign's journeys ran, by day and step, with their outcomes."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Steps of %(campaign)s over Time", campaign=self.display_name),
            "res_model": "gobysend.journey.log",
            "view_mode": "graph,pivot,list",
            "views": [(False, "graph"), (False, "pivot"), (False, "list")],
            "domain": [("journey_id.campaign_id", "=", self.id), ("journey_id.is_test", "=", False)],
        }

    def action_send_test(self):
        """Run the campaign's send steps once for the test contact, as test messages."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Send a Test"),
            "res_model": "gobysend.campaign.test.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"default_campaign_id": self.id},
        }

    def action_export_workflow(self):
        """Download the campaign's workflow as JSON (see workflow_json)."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_url",
            "url": f"/gobysend/campaign/{self.id}/workflow.json",
            "target": "download",
        }

    def action_test_journey(self):
        """Send a test contact through the workflow, step by step, as a test journey."""
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Test Journey"),
            "res_model": "gobysend.campaign.test.journey.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"default_campaign_id": self.id},
        }

    # ------------------------------------------------------------------
    # Fan-out: a launch puts the audience into journeys, set-based, in jobs
    # ------------------------------------------------------------------

    def _begin_fan_out(self):
        self.ensure_one()
        total = self._count_audience()
        self.write({"fan_out_total": total, "fan_out_done": 0, "fan_out_cursor": 0, "fan_out_running": True})
        self._enqueue_fan_out()

    def _enqueue_fan_out(self):
        self.ensure_one()
        return self.with_delay(
            channel=self.env["gobysend.journey"]._get_job_channel(),
            identity_key=identity_exact,
            description=_("Queue the audience of %(campaign)s", campaign=self.display_name),
        )._job_fan_out()

    def _job_fan_out(self, time_budget=50.0):
        """Put the next chunks of the audience into journeys and run their first steps, a chunk
        per transaction, until done or out of time (then a fresh job goes on). Safe twice: the
        cursor advances in the chunk's transaction, and the journeys' entry keys refuse twice."""
        self.ensure_one()
        started = time.monotonic()
        while self.state == "running" and self.fan_out_running and time.monotonic() - started < time_budget:
            if not self._fan_out_chunk():
                break
            self.env.cr.commit()  # commit-ok: one chunk of the launch, its cursor with it
        else:
            if self.state == "running" and self.fan_out_running:
                self._enqueue_fan_out()
        return _("%(done)s of %(total)s queued", done=self.fan_out_done, total=self.fan_out_total)

    def _fan_out_chunk(self, size=FAN_OUT_CHUNK):
        """One chunk of the launch; False once the audience is exhausted."""
        self.ensure_one()
        self.env.cr.execute("SELECT fan_out_cursor FROM gobysend_campaign WHERE id = %s FOR NO KEY UPDATE", (self.id,))
        cursor = self.env.cr.fetchone()[0] or 0
        query = self._get_audience_query()
        self.env.cr.execute(
            SQL(
                "SELECT array_agg(id ORDER BY id) FROM (%s ORDER BY 1 LIMIT %s) AS chunk",
                query.select(SQL.identifier(query.table, "id")),
                size,
            )
            if not cursor
            else SQL(
                "SELECT array_agg(id ORDER BY id) FROM (SELECT * FROM (%s) AS audience (id) WHERE id > %s "
                "ORDER BY id LIMIT %s) AS chunk",
                query.select(SQL.identifier(query.table, "id")),
                cursor,
                size,
            )
        )
        partner_ids = self.env.cr.fetchone()[0] or []
        if not partner_ids:
            self.write({"fan_out_running": False})
            self.env["gobysend.journey"]._check_campaigns_done(self.ids)
            return False
        journeys = self.env["gobysend.journey"]._enter(self, [{"partner_id": pid} for pid in partner_ids], run=True)
        self.env.cr.execute(
            """
            UPDATE gobysend_campaign SET fan_out_cursor = %s, fan_out_done = COALESCE(fan_out_done, 0) + %s
             WHERE id = %s
            """,
            (partner_ids[-1], len(partner_ids), self.id),
        )
        self.invalidate_recordset(["fan_out_cursor", "fan_out_done"])
        _logger.debug("Campaign %s: %s journeys started", self.id, len(journeys))
        return True

    # ------------------------------------------------------------------
    # Record triggers
    # ------------------------------------------------------------------

    def _enter_from_records(self, records):
        """Called by the campaign's own automation rule (``automation_id``) in the transaction
        that created or changed ``records``: hand them over to the record trigger, which starts
        their journeys when the transaction commits."""
        self.ensure_one()
        kind = kinds.TRIGGERS.get(self.trigger_kind)
        if kind and kind.record_based:
            kind.hand_over(self, records)

    # ------------------------------------------------------------------
    # Scheduled entry points
    # ------------------------------------------------------------------

    def _run_periodic(self, now=None):
        """One run of a periodic campaign (its scheduled action's code): journeys for the contacts
        the run selects. Safe to run twice: the journeys of a run are keyed by its date."""
        now = now or fields.Datetime.now()
        kind = kinds.TRIGGERS["periodic"]
        started = []
        for campaign in self.exists().filtered(lambda c: c.state == "running" and c.trigger_kind == "periodic"):
            started += kind.run(campaign, now)
            campaign.last_run_at = now
        return started

    @api.model
    def _cron_launch_scheduled(self):
        due = self.search([("state", "=", "scheduled"), ("scheduled_at", "<=", fields.Datetime.now())])
        for campaign in due:
            try:
                with self.env.cr.savepoint():
                    campaign._check_ready()
                    campaign._start()
            except (UserError, ValidationError) as error:
                campaign.write({"state": "draft"})
                campaign.message_post(body=_("The scheduled launch failed: %(reason)s", reason=error.args[0]))
        return len(due)
