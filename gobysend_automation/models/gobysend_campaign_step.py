import secrets

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from .. import kinds, templating
from ..exceptions import InvalidInput
from ..kinds.steps import partner_field
from ..kinds.timing import UNITS
from .gobysend_campaign import rates

# Steps whose events the ingest looks up in registry caches (``_get_awaited_events``,
# ``_get_goal_events``), and the fields of theirs those caches read.
AWAITING_KINDS = ("wait_event", "goal")
AWAITING_FIELDS = {"kind", "event_name", "event_filter", "goal_type"}


class GobysendCampaignStep(models.Model):
    """One step of a campaign's workflow.

    Steps form a tree: a step hangs under its parent on one of the parent's branches (a
    condition's "yes" and "no"), or at the top of the workflow; steps of one branch run in
    ``sequence`` order. A journey that finishes the last step of a branch goes on with the step
    after the branch's parent. Step kinds are registered in ``kinds``.
    """

    _name = "gobysend.campaign.step"
    _description = "Gobysend Campaign Step"
    _order = "campaign_id, parent_id, branch, sequence, id"
    _parent_store = True

    campaign_id = fields.Many2one("gobysend.campaign", required=True, ondelete="cascade", index=True)
    workspace_id = fields.Many2one(related="campaign_id.workspace_id", store=True, index=True)
    parent_id = fields.Many2one(
        "gobysend.campaign.step",
        string="After Step",
        ondelete="cascade",
        index=True,
        domain="[('campaign_id', '=', campaign_id)]",
    )
    parent_path = fields.Char(index=True)
    child_ids = fields.One2many("gobysend.campaign.step", "parent_id", string="Branch Steps")
    branch = fields.Char(help="The branch of the parent step this step hangs on (e.g. yes / no).")
    sequence = fields.Integer(default=10)
    name = fields.Char(compute="_compute_name", store=True, readonly=False)
    kind = fields.Selection(kinds.step_selection, required=True, default="send")
    summary = fields.Char(compute="_compute_summary")
    kind_fields = fields.Char(compute="_compute_summary", help="The fields the step's kind uses.")
    kind_icon = fields.Char(compute="_compute_summary")

    # Send
    channel_id = fields.Many2one(
        "gobysend.channel", ondelete="restrict", domain="[('workspace_id', '=', workspace_id)]"
    )
    channel_type = fields.Selection(related="channel_id.channel_type", string="Channel Type")
    template_id = fields.Many2one(
        "gobysend.message.template", ondelete="set null", domain="[('workspace_id', '=', workspace_id)]"
    )
    subject = fields.Char(help="Jinja2; also sees record, old, changes, data and event.")
    body = fields.Text(help="Jinja2 with contact, workspace and the trigger's record, old, changes, data and event.")

    # In-app messages: how the app shows them
    inapp_kind = fields.Selection([("banner", "Banner"), ("popup", "Pop-up")], string="Display")
    inapp_link = fields.Char(string="Link", help="Where the banner or pop-up leads (http or https).")
    inapp_image_url = fields.Char(string="Image URL")

    # Condition (yes / no)
    condition_kind = fields.Selection(
        [
            ("attribute", "Attribute value"),
            ("contact", "Contact fields"),
            ("segment", "In a segment"),
            ("tag", "Has a tag"),
            ("engagement", "Engagement with an earlier message"),
        ],
        string="Check",
        default="attribute",
    )
    attribute_id = fields.Many2one(
        "gobysend.attribute", ondelete="restrict", domain="[('workspace_id', '=', workspace_id)]"
    )
    attribute_operator = fields.Selection(
        [
            ("eq", "is"),
            ("ne", "is not"),
            ("gt", "greater than"),
            ("lt", "less than"),
            ("contains", "contains"),
            ("set", "is set"),
            ("not_set", "is not set"),
        ],
        string="Operator",
        default="eq",
    )
    attribute_value = fields.Char(string="Value", help="Numbers with a dot, dates as YYYY-MM-DD, yes/no.")
    partner_domain = fields.Char(string="Contact Filter", default="[]")
    segment_id = fields.Many2one(
        "gobysend.segment", ondelete="restrict", domain="[('workspace_id', '=', workspace_id)]"
    )
    tag_id = fields.Many2one("res.partner.category", string="Tag", ondelete="restrict")
    engagement = fields.Selection(
        [
            ("delivered", "Delivered"),
            ("opened", "Opened"),
            ("clicked", "Clicked"),
            ("clicked_link", "Clicked a link"),
            ("not_opened", "Not opened within"),
            ("bounced", "Bounced"),
        ],
        default="opened",
    )
    engagement_step_id = fields.Many2one(
        "gobysend.campaign.step",
        string="Message of Step",
        ondelete="set null",
        domain="[('campaign_id', '=', campaign_id), ('kind', '=', 'send')]",
    )
    engagement_link = fields.Char(
        string="Link Contains",
        help="The clicked link's address contains this text, e.g. /summer-sale or utm_content=banner.",
    )
    engagement_hours = fields.Integer(string="Within (hours)", default=48)

    # Random split
    split_shares = fields.Char(
        string="Shares (%)", default="50,50", help="Percentages of the branches A, B, C…, e.g. 50,50 or 20,30,50."
    )

    # Wait for an event
    event_name = fields.Char(string="Event")
    event_filter = fields.Char(string="Event Properties", help="e.g. total > 500")

    # Actions
    tag_action = fields.Selection([("add", "Add"), ("remove", "Remove")], default="add")
    activity_type_id = fields.Many2one("mail.activity.type", string="Activity", ondelete="restrict")
    activity_summary = fields.Char(string="Activity Summary")
    activity_note = fields.Text(string="Note")
    activity_days = fields.Integer(string="Due In (days)", default=0)
    activity_user = fields.Selection(
        [("salesperson", "The contact's salesperson"), ("user", "A chosen user")],
        string="Assign To",
        default="salesperson",
    )
    activity_user_id = fields.Many2one("res.users", string="User", ondelete="set null")
    activity_on = fields.Selection(
        [("contact", "The contact"), ("record", "The record that fired the journey")],
        string="On",
        default="contact",
    )
    lead_stage_id = fields.Many2one("crm.stage", string="Move Lead To", ondelete="restrict")

    # Goal: reached by an event (event_name, event_filter) or a condition on the contact (the
    # condition fields above).
    goal_type = fields.Selection(
        [("event", "An event performed"), ("condition", "A condition becoming true")],
        string="Goal Reached By",
        default="event",
        help="Journeys reaching the goal anywhere in the workflow jump to this step, count as converted and go on "
        "with the steps after it: as soon as the event is stored, or within a minute of the condition becoming "
        "true. Journeys coming to it in sequence without reaching the goal exit here.",
    )

    # Update a contact field (kind "partner_field"): one of the fields administrators allow.
    partner_field_id = fields.Many2one(
        "ir.model.fields",
        string="Contact Field",
        ondelete="set null",
        domain="[('model', '=', 'res.partner'), ('id', 'in', allowed_partner_field_ids)]",
    )
    partner_field_type = fields.Selection(related="partner_field_id.ttype", string="Field Type")
    partner_field_value = fields.Char(
        string="New Value",
        help="Numbers with a dot, dates as YYYY-MM-DD, yes/no; a choice by its name or label; a linked record "
        "(a country, a title) by its name or code. Empty clears the field.",
    )
    allowed_partner_field_ids = fields.Many2many(
        "ir.model.fields", compute="_compute_allowed_partner_field_ids", string="Allowed Contact Fields"
    )

    # Copy or move to a list (kind "list"): static segments.
    list_action = fields.Selection(
        [("copy", "Copy to the list"), ("move", "Move to the list")], string="List Action", default="copy"
    )
    list_id = fields.Many2one(
        "gobysend.segment",
        string="List",
        ondelete="restrict",
        domain="[('workspace_id', '=', workspace_id), ('segment_type', '=', 'static')]",
    )
    list_source_id = fields.Many2one(
        "gobysend.segment",
        string="Remove From List",
        ondelete="restrict",
        domain="[('workspace_id', '=', workspace_id), ('segment_type', '=', 'static')]",
    )

    # Create an opportunity (kind "opportunity").
    opportunity_name = fields.Char(
        string="Opportunity Name",
        default="{{ contact.name }}",
        help="Jinja2 with contact, workspace and the trigger's record, data and event.",
    )
    opportunity_user_id = fields.Many2one(
        "res.users",
        string="Salesperson",
        ondelete="set null",
        help="Empty: the contact's own salesperson.",
    )
    opportunity_team_id = fields.Many2one("crm.team", string="Sales Team", ondelete="set null")
    opportunity_revenue = fields.Float(string="Expected Revenue")

    # Call a webhook (kinds/steps/webhook.py); "Notify the team" uses channel_id, subject and body
    hook_url = fields.Char(string="Webhook URL", help="Where the signed JSON is posted (http or https).")
    hook_secret = fields.Char(
        string="Signing Secret",
        groups="gobysend_automation.group_gobysend_manager",
        copy=False,
        default=lambda self: secrets.token_urlsafe(32),
        help="Signs each call: header X-Gobysend-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "
        '"<unix time>.<body>">.',
    )
    hook_payload = fields.Text(
        string="Extra JSON",
        help='A JSON object whose texts are templates, sent as "extra", e.g. {"order": "{{ data.order_id }}"}.',
    )
    hook_retry_delays = fields.Char(
        string="Retry After (minutes)",
        default="1,5,30",
        help="Minutes to wait before each new attempt after a failure; then the journey fails. Empty: no retry.",
    )

    # When (send and wait)
    timing = fields.Selection(
        [
            ("now", "Immediately"),
            ("delay", "After a delay"),
            ("time_of_day", "At a time of day"),
            ("weekday", "On an allowed weekday"),
            ("anchor", "Relative to a date"),
        ],
        string="When",
        default="now",
        required=True,
    )
    delay_amount = fields.Integer(string="Wait", default=1)
    delay_unit = fields.Selection(
        [("minutes", "Minutes"), ("hours", "Hours"), ("days", "Days"), ("weeks", "Weeks")], default="days"
    )
    time_of_day = fields.Float(string="Time", default=9.0, help="In the contact's time zone.")
    on_mon = fields.Boolean(string="Mon", default=True)
    on_tue = fields.Boolean(string="Tue", default=True)
    on_wed = fields.Boolean(string="Wed", default=True)
    on_thu = fields.Boolean(string="Thu", default=True)
    on_fri = fields.Boolean(string="Fri", default=True)
    on_sat = fields.Boolean(string="Sat", default=True)
    on_sun = fields.Boolean(string="Sun", default=True)

    # Wait relative to a date (kinds/steps/wait.py, kinds/timing.py: anchored_moment)
    anchor_source = fields.Selection(
        [("record", "A date of the triggering record"), ("attribute", "A date attribute of the contact")],
        string="Date Of",
        default="record",
    )
    campaign_model_id = fields.Many2one(related="campaign_id.model_id", string="Triggering Model")
    anchor_field_id = fields.Many2one(
        "ir.model.fields",
        string="Date Field",
        ondelete="cascade",
        domain="[('model_id', '=', campaign_model_id), ('ttype', 'in', ('date', 'datetime'))]",
        help="Read again each time the step runs: when the record's date changes, the wake-up follows it.",
    )
    anchor_attribute_id = fields.Many2one(
        "gobysend.attribute",
        string="Date Attribute",
        ondelete="restrict",
        domain="[('workspace_id', '=', workspace_id), ('value_type', 'in', ('date', 'datetime'))]",
    )
    anchor_direction = fields.Selection(
        [("before", "Before"), ("after", "After")], string="Direction", default="before"
    )
    anchor_use_time = fields.Boolean(string="At a Local Time", help="Go on at this time of the contact's day.")

    # Statistics
    journeys_here = fields.Integer(compute="_compute_statistics", string="Waiting Here")
    done_count = fields.Integer(compute="_compute_statistics", string="Done")
    sent_count = fields.Integer(compute="_compute_statistics", string="Sent")
    opened_count = fields.Integer(compute="_compute_statistics", string="Opened")
    clicked_count = fields.Integer(compute="_compute_statistics", string="Clicked")
    entered_count = fields.Integer(
        compute="_compute_statistics", string="Entered", help="Journeys that came to this step."
    )
    completed_count = fields.Integer(
        compute="_compute_statistics", string="Completed", help="Journeys that went on after this step."
    )
    exited_count = fields.Integer(compute="_compute_statistics", string="Exited Here")
    failed_count = fields.Integer(
        compute="_compute_statistics", string="Failed", help="Journeys that failed here, and messages that failed."
    )
    converted_count = fields.Integer(
        compute="_compute_statistics",
        string="Converted",
        help="Journeys that went through this step and reached the campaign's goal then or later.",
    )
    delivered_count = fields.Integer(compute="_compute_statistics", string="Delivered")
    bounced_count = fields.Integer(compute="_compute_statistics", string="Bounced")
    conversion_rate = fields.Float(
        compute="_compute_statistics", help="Journeys converted out of those that came to this step."
    )
    open_rate = fields.Float(compute="_compute_statistics", help="Messages opened (or clicked) out of those sent.")
    click_rate = fields.Float(compute="_compute_statistics", help="Messages clicked out of those sent.")

    @api.depends("kind", "channel_id", "template_id")
    def _compute_name(self):
        for step in self:
            if step.name:
                continue
            kind = kinds.STEPS.get(step.kind)
            step.name = str(kind.label) if kind else step.kind

    @api.depends("kind", "channel_id", "template_id", "subject")
    def _compute_summary(self):
        for step in self:
            kind = kinds.STEPS.get(step.kind)
            step.summary = kind.summary(step) if kind else ""
            step.kind_fields = " ".join(kind.fields) if kind else ""
            step.kind_icon = kind.icon if kind else ""

    def _compute_statistics(self):
        stats = self.env["gobysend.journey"]._step_statistics(self.ids)
        for step in self:
            figures = stats.get(step.id, {})
            step.journeys_here = figures.get("here", 0)
            step.done_count = figures.get("done", 0)
            step.sent_count = figures.get("sent", 0)
            step.opened_count = figures.get("opened", 0)
            step.clicked_count = figures.get("clicked", 0)
            step.entered_count = figures.get("entered", 0)
            step.completed_count = figures.get("completed", 0)
            step.exited_count = figures.get("exited", 0)
            step.failed_count = figures.get("failed", 0)
            step.converted_count = figures.get("converted", 0)
            step.delivered_count = figures.get("delivered", 0)
            step.bounced_count = figures.get("bounced", 0)
            step.conversion_rate = step.converted_count / step.entered_count if step.entered_count else 0.0
            step.open_rate, step.click_rate = rates(step.sent_count, step.opened_count, step.clicked_count)

    @api.depends("kind")
    def _compute_allowed_partner_field_ids(self):
        allowed = partner_field.allowed_fields(self.env)
        for step in self:
            step.allowed_partner_field_ids = allowed

    @api.onchange("template_id")
    def _onchange_template_id(self):
        if self.template_id:
            self.subject = self.template_id.subject
            self.body = self.template_id.body

    @api.constrains(
        "kind",
        "channel_id",
        "template_id",
        "body",
        "subject",
        "parent_id",
        "branch",
        "timing",
        "delay_amount",
        "delay_unit",
        "campaign_id",
        "condition_kind",
        "attribute_id",
        "attribute_operator",
        "attribute_value",
        "partner_domain",
        "segment_id",
        "tag_id",
        "engagement",
        "engagement_step_id",
        "engagement_hours",
        "split_shares",
        "event_name",
        "event_filter",
        "tag_action",
        "activity_type_id",
        "activity_user",
        "activity_user_id",
        "lead_stage_id",
        "hook_url",
        "hook_payload",
        "anchor_source",
        "anchor_field_id",
        "anchor_attribute_id",
        "hook_retry_delays",
        "inapp_kind",
        # Update a contact field, copy or move to a list, create an opportunity
        "partner_field_id",
        "partner_field_value",
        "list_action",
        "list_id",
        "list_source_id",
        "opportunity_name",
        "opportunity_user_id",
        "opportunity_team_id",
        "opportunity_revenue",
        "inapp_link",
        "inapp_image_url",
        "goal_type",
    )
    def _check_step(self):
        for step in self:
            kind = kinds.STEPS.get(step.kind)
            if not kind:
                raise ValidationError(_("Step “%(step)s” has an unknown kind.", step=step.display_name))
            parent = step.parent_id
            if parent and parent.campaign_id != step.campaign_id:
                raise ValidationError(_("A step can only follow a step of its own campaign."))
            if parent:
                parent_kind = kinds.STEPS.get(parent.kind)
                if parent_kind and parent_kind.terminal:
                    raise ValidationError(
                        _("Nothing can follow step “%(step)s”: it ends the journey.", step=parent.display_name)
                    )
                labels = parent_kind.branch_labels(parent) if parent_kind else ()
                if labels and step.branch not in labels:
                    raise ValidationError(
                        _(
                            "Step “%(step)s” must hang on one of the branches of “%(parent)s”: %(branches)s.",
                            step=step.display_name,
                            parent=parent.display_name,
                            branches=", ".join(labels),
                        )
                    )
                if kind.allowed_parents is not None and parent.kind not in kind.allowed_parents:
                    raise ValidationError(
                        _(
                            "A “%(kind)s” step cannot follow a “%(parent)s” step.",
                            kind=kind.label,
                            parent=parent_kind.label if parent_kind else parent.kind,
                        )
                    )
            if step.timing == "delay" and step.delay_amount < 0:
                raise ValidationError(_("Step “%(step)s”: a delay cannot be negative.", step=step.display_name))
            if step.delay_unit and step.delay_unit not in UNITS:
                raise ValidationError(_("Step “%(step)s” has an unknown delay unit.", step=step.display_name))
            kind.validate(step)

    def action_rotate_hook_secret(self):
        for step in self:
            step.hook_secret = secrets.token_urlsafe(32)
        return True

    def _inapp_settings(self):
        """The in-app display settings of the step's messages (see gobysend.message's in-app part)."""
        self.ensure_one()
        settings = {"kind": self.inapp_kind, "link": self.inapp_link, "image_url": self.inapp_image_url}
        return {key: value for key, value in settings.items() if value}

    @api.model_create_multi
    def create(self, vals_list):
        steps = super().create(vals_list)
        if any(step.kind in AWAITING_KINDS and step.campaign_id.state == "running" for step in steps):
            self.env.registry.clear_cache()  # the awaited (or goal) events of the workspace changed
        return steps

    def write(self, vals):
        awaited = AWAITING_FIELDS & set(vals) and any(step.kind in AWAITING_KINDS for step in self)
        result = super().write(vals)
        if awaited or (AWAITING_FIELDS & set(vals) and any(step.kind in AWAITING_KINDS for step in self)):
            self.env.registry.clear_cache()
        return result

    def unlink(self):
        awaited = any(step.kind in AWAITING_KINDS for step in self)
        result = super().unlink()
        if awaited:
            self.env.registry.clear_cache()
        return result

    def _check_template(self):
        """Check the subject and body as templates of the step's channel."""
        self.ensure_one()
        try:
            templating.check_syntax(self.subject, "subject")
            templating.check_syntax(
                self.body,
                "body",
                html=self.channel_id.channel_type == "email",
                channel_type=self.channel_id.channel_type,
            )
        except InvalidInput as error:
            raise ValidationError(
                _("Step “%(step)s”: %(reason)s", step=self.display_name, reason=error.message)
            ) from None

    # ------------------------------------------------------------------
    # The tree
    # ------------------------------------------------------------------

    def _first_of(self, campaign, parent=None, branch=None):
        """The first step of ``parent``'s ``branch`` (the top of the workflow without parent)."""
        steps = campaign.step_ids.filtered(
            lambda step: step.parent_id == (parent or self.browse()) and (step.branch or False) == (branch or False)
        )
        return steps.sorted(lambda step: (step.sequence, step.id))[:1]

    def _next_step(self, branch=None):
        """The step a journey goes to once this one is done (along ``branch`` when this step
        has branches); an empty recordset when the journey is complete."""
        self.ensure_one()
        if branch:
            first = self._first_of(self.campaign_id, self, branch)
            if first:
                return first
        node = self
        while node:
            siblings = node.campaign_id.step_ids.filtered(
                lambda step, node=node: (
                    step.parent_id == node.parent_id and (step.branch or False) == (node.branch or False)
                )
            ).sorted(lambda step: (step.sequence, step.id))
            later = siblings.filtered(lambda step, node=node: (step.sequence, step.id) > (node.sequence, node.id))
            if later:
                return later[0]
            node = node.parent_id
        return self.browse()
