import datetime
import json
import logging
import re

from odoo import _, api, fields, models, tools
from odoo.exceptions import UserError, ValidationError

from .. import claims, templating
from .gobysend_channel import CHANNEL_TYPES, CONSENT_CHANNEL_TYPES

# Channels whose bodies carry links people click: shortened and counted per message.
LINK_TRACKED_CHANNEL_TYPES = ("email", "sms", "zalo", "push")

_logger = logging.getLogger(__name__)

MESSAGE_STATES = [
    ("queued", "Queued"),
    ("held", "Held"),
    ("sending", "Sending"),
    ("sent", "Sent"),
    ("delivered", "Delivered"),
    ("opened", "Opened"),
    ("clicked", "Clicked"),
    ("failed", "Failed"),
    ("bounced", "Bounced"),
    ("cancelled", "Cancelled"),
    ("skipped", "Skipped"),
]
# States of a message that reached the provider: they count against frequency caps.
SENT_STATES = ("sent", "delivered", "opened", "clicked", "bounced")
# What a receipt may report, and from which states of the message it moves it forward. A
# message never goes back: a late "delivered" after an "opened" changes nothing, but the
# event is still recorded.
RECEIPT_TRANSITIONS = {
    "delivered": ("sent",),
    "opened": ("sent", "delivered"),
    "clicked": ("sent", "delivered", "opened"),
    "bounced": ("sent", "delivered"),
    "failed": ("sent",),
}
MAX_ATTEMPTS = 5
# Dispatchers claim messages by moving them to "sending" (see ``claims``).
MESSAGE_CLAIMS = claims.ClaimedTable("gobysend_message", "sending")
BASE_RETRY_DELAY = datetime.timedelta(minutes=1)
DISPATCH_BATCH_SIZE = 500
# Where a dispatch batch keeps what it read about its contacts (on the cursor, for the batch).
DISPATCH_LOOKUPS = "gobysend_dispatch_lookups"
# First key of the advisory lock that serialises the claims of a rate-limited channel.
RATE_LOCK_CLASS = 7_301_001
# What a message is, set once when it is queued: rewriting one would send it to someone else,
# over another workspace's channel, or at another price (the ledger debits ``token_cost``).
IMMUTABLE_MESSAGE_FIELDS = ("partner_id", "channel_id", "channel_type", "token_cost")
# First key of the advisory locks that serialise the frequency-cap checks of one contact.
CAP_LOCK_CLASS = 7_301_002
# How often a batch applies its rules again when another dispatcher created one of its tracked
# links at the same moment.
LINK_RACE_ATTEMPTS = 3
# Hex digits of the signature in a tracked link (see _get_click_token).
CLICK_TOKEN_LENGTH = 16


class TrackedLinkRace(Exception):
    """Another transaction created a tracked link this one was creating (link.tracker checks
    that links are unique by a search, not by an index)."""


class GobysendMessage(models.Model):
    """The outbox: one message for one contact on one channel, from queued to its outcome.

    Everything that sends goes through ``_enqueue``; dispatch renders, checks the send-time
    rules (consent, frequency caps, quiet hours and sending days, tokens) and hands the message
    to the channel's provider.
    """

    _name = "gobysend.message"
    _inherit = ["gobysend.workspace.bound"]
    _description = "Gobysend Message"
    _order = "id desc"
    _rec_name = "subject"

    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", index=True, readonly=True)
    partner_id = fields.Many2one(
        "res.partner", string="Contact", required=True, ondelete="cascade", index=True, readonly=True
    )
    channel_id = fields.Many2one("gobysend.channel", required=True, ondelete="cascade", index=True, readonly=True)
    channel_type = fields.Selection(CHANNEL_TYPES, required=True, readonly=True)
    state = fields.Selection(MESSAGE_STATES, required=True, default="queued", index=True, readonly=True)
    reason = fields.Char(readonly=True, help="Why the message was skipped, held, rescheduled or failed.")
    subject_template = fields.Char(readonly=True)
    body_template = fields.Text(readonly=True)
    render_context = fields.Json(readonly=True, help="Event properties and record values the template may use.")
    subject = fields.Char(readonly=True)
    body = fields.Text(readonly=True)
    provider_message_id = fields.Char(string="Provider Message ID", readonly=True, index="btree_not_null")
    provider_answer = fields.Text(readonly=True)
    attempts = fields.Integer(readonly=True)
    next_attempt_at = fields.Datetime(string="Not Before", readonly=True, default=fields.Datetime.now)
    sent_at = fields.Datetime(readonly=True)
    sending_started_at = fields.Datetime(readonly=True, help="When a dispatcher claimed the message.")
    handed_over_at = fields.Datetime(
        readonly=True, help="When the message was handed to the provider; unset while it surely has not reached it."
    )
    claim_token = fields.Char(
        readonly=True, copy=False, index="btree_not_null", help="The claim of the dispatcher sending it (see claims)."
    )
    token_cost = fields.Float(digits=(16, 2), readonly=True)
    idempotency_key = fields.Char(readonly=True)
    res_model = fields.Char(string="Origin Model", readonly=True)
    res_id = fields.Many2oneReference(string="Origin Record", model_field="res_model", readonly=True)
    is_test = fields.Boolean(readonly=True)
    campaign_id = fields.Many2one("gobysend.campaign", readonly=True, index="btree_not_null", ondelete="set null")
    campaign_step_id = fields.Many2one(
        "gobysend.campaign.step", string="Campaign Step", readonly=True, index="btree_not_null", ondelete="set null"
    )
    journey_id = fields.Many2one("gobysend.journey", readonly=True, index="btree_not_null", ondelete="set null")

    _sql_constraints = [
        (
            "idempotency_key_uniq",
            "unique(workspace_id, idempotency_key)",
            "A message with this idempotency key already exists in the workspace.",
        )
    ]

    def init(self):
        # The dispatcher's question: what is due now, oldest first.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS gobysend_message_due_idx
                ON gobysend_message (next_attempt_at, id) WHERE state = 'queued'
            """
        )
        # A rate-limited channel's question: how many did it hand over in the last minute.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS gobysend_message_handover_idx
                ON gobysend_message (channel_id, handed_over_at) WHERE handed_over_at IS NOT NULL
            """
        )

    @api.constrains("channel_id", "workspace_id")
    def _check_channel_workspace(self):
        for message in self:
            if message.channel_id.workspace_id != message.workspace_id:
                raise ValidationError(
                    _(
                        "Channel “%(channel)s” belongs to another workspace than the message.",
                        channel=message.channel_id.display_name,
                    )
                )

    def write(self, vals):
        # Refused to everyone, superuser included: nothing in the outbox rewrites them, and record
        # rules would not stop a manager from pointing a message at another workspace's records.
        for name in set(IMMUTABLE_MESSAGE_FIELDS) & set(vals):
            field = self._fields[name]
            new_value = field.convert_to_cache(vals[name], self)
            # sudo: only compares the current values, to refuse the write; nothing is returned.
            if any(field.convert_to_cache(message[name], self) != new_value for message in self.sudo()):
                raise UserError(
                    _(
                        "The %(field)s of a message cannot change once it is queued: cancel the message and "
                        "send a new one instead.",
                        field=field.string,
                    )
                )
        return super().write(vals)

    # ------------------------------------------------------------------
    # Enqueue
    # ------------------------------------------------------------------

    @api.model
    def _enqueue(
        self,
        partner,
        channel,
        body,
        subject=None,
        context=None,
        idempotency_key=None,
        not_before=None,
        origin=None,
        is_test=False,
    ):
        """Put one message for ``partner`` on ``channel`` into the outbox and return it.

        Enqueuing the same ``idempotency_key`` twice in a workspace returns the first message.
        ``body`` and ``subject`` are templates, filled in at send time with ``context``.
        """
        channel.ensure_one()
        partner.ensure_one()
        templating.check_syntax(subject, "subject")
        templating.check_syntax(body, "body", html=channel.channel_type == "email", channel_type=channel.channel_type)
        now = fields.Datetime.now()
        # ON CONFLICT DO NOTHING makes a repeated key a no-op even when two callers race;
        # under Odoo's repeatable-read isolation a concurrent insert surfaces as a
        # serialization failure, which Odoo retries. The ORM cannot express this.
        self.env.flush_all()
        self.env.cr.execute(
            """
            INSERT INTO gobysend_message (workspace_id, partner_id, channel_id, channel_type, state, subject_template,
                                          body_template, render_context, attempts, next_attempt_at, token_cost,
                                          idempotency_key, res_model, res_id, is_test,
                                          create_uid, create_date, write_uid, write_date)
            VALUES (%s, %s, %s, %s, 'queued', %s, %s, %s::jsonb, 0, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
            RETURNING id
            """,
            (
                channel.workspace_id.id,
                partner.id,
                channel.id,
                channel.channel_type,
                subject,
                body,
                json.dumps(context or {}, default=str),
                not_before or now,
                channel._get_message_token_cost(),
                idempotency_key,
                origin._name if origin else None,
                origin.id if origin else None,
                is_test,
                self.env.uid,
                now,
                self.env.uid,
                now,
            ),
        )
        row = self.env.cr.fetchone()
        if row:
            return self.browse(row[0])
        return self.search([("workspace_id", "=", channel.workspace_id.id), ("idempotency_key", "=", idempotency_key)])

    # ------------------------------------------------------------------
    # Rendering
    # ------------------------------------------------------------------

    @api.model
    def _contact_variables(self, workspace, partner):
        """The contact as plain data: partner fields and the workspace's attributes."""
        lookups = self._dispatch_lookups()
        key = (workspace.id, partner.id)
        if lookups is not None and key in lookups["contacts"]:
            return self._copy_contact_variables(lookups["contacts"][key])
        if lookups is not None and key in lookups["attributes"]:
            subscription, attributes = lookups["subscriptions"][key], lookups["attributes"][key]
        else:
            subscription = (
                self.env["gobysend.subscription"]
                .sudo()
                .search([("workspace_id", "=", workspace.id), ("partner_id", "=", partner.id)], limit=1)
            )
            values = (
                self.env["gobysend.attribute.value"]
                .sudo()
                .search([("workspace_id", "=", workspace.id), ("partner_id", "=", partner.id)])
            )
            attributes = {value.key: value[f"value_{value.value_type}"] for value in values}
        variables = {
            "id": partner.id,
            "customer_id": subscription.external_id or None,
            "name": partner.name or "",
            "first_name": self._given_name(partner, workspace),
            "email": partner.email or "",
            "phone": partner.phone or "",
            "city": partner.city or "",
            "country": partner.country_id.name or "",
            "country_code": partner.country_id.code or "",
            "lang": partner.lang or "",
            "birthday": partner.gobysend_birthday or None,
            "attributes": dict(attributes),
        }
        if lookups is not None:
            lookups["contacts"][key] = self._copy_contact_variables(variables)
        return variables

    @api.model
    def _copy_contact_variables(self, variables):
        # Plain values and one dict of attributes: a copy that a caller may change freely.
        return dict(variables, attributes=dict(variables["attributes"]))

    @api.model
    def _given_name(self, partner, workspace):
        """The name to greet a contact by. Vietnamese names put the family name first and the
        given name last (Nguyễn Thị Lan is Lan); most others put the given name first."""
        words = (partner.name or "").split()
        if not words:
            return ""
        country = partner.country_id or workspace.country_id
        return words[-1] if country.code == "VN" else words[0]

    @api.model
    def _render_for(self, workspace, partner, channel_type, subject, body, context=None, name=None):
        """``(subject, body)`` filled in for ``partner``; ``name`` (a template's) is named in
        the errors. Zalo bodies are JSON templates, written with a serializer (see ``templating``)."""
        variables = dict(context or {})
        variables.update(
            {
                "contact": self._contact_variables(workspace, partner),
                "workspace": {"name": workspace.name},
                "event": variables.get("event") or {},
                "record": variables.get("record") or {},
            }
        )
        tz = partner.tz or workspace.tz
        lang = partner.lang or self.env.lang
        output = templating.output_for(channel_type)
        if channel_type == "zalo":
            rendered_body = templating.render_json(self.env, body, variables, tz=tz, lang=lang, name=name)
        else:
            rendered_body = templating.render(self.env, body, variables, tz=tz, lang=lang, output=output, name=name)
        # An email's subject is a header, not HTML; a Slack subject is Slack text like its body.
        subject_output = output if output == templating.OUTPUT_SLACK else templating.OUTPUT_TEXT
        rendered_subject = templating.render(
            self.env, subject, variables, tz=tz, lang=lang, output=subject_output, name=name
        )
        return rendered_subject, rendered_body

    def action_retry(self):
        retriable = self.filtered(lambda m: m.state in ("failed", "held"))
        retriable.write({"state": "queued", "next_attempt_at": fields.Datetime.now(), "reason": False})
        return True

    def action_cancel(self):
        self.filtered(lambda m: m.state in ("queued", "held")).write({"state": "cancelled"})
        return True

    # ------------------------------------------------------------------
    # Engagement: receipts, opens, clicks, bounces
    # ------------------------------------------------------------------

    @api.model
    def _get_receipt_statuses(self):
        return tuple(RECEIPT_TRANSITIONS)

    def _apply_receipt(self, status, event_key, timestamp=None, reason=None, url=None):
        """Record what the provider reported about this message.

        The message moves forward (``RECEIPT_TRANSITIONS``), a bounce marks the contact's consent
        on the channel as bounced, and an event ``message_<status>`` is recorded on the contact
        once per ``event_key`` (a repeated receipt is stored once). Returns whether the state changed.
        """
        self.ensure_one()
        message = self.sudo()
        changed = message.state in RECEIPT_TRANSITIONS[status]
        if changed:
            values = {"state": status}
            if status in ("failed", "bounced"):
                values["reason"] = reason or _("The provider reported the message as %(status)s.", status=status)
            message.write(values)
        if status == "bounced" and message.channel_type in CONSENT_CHANNEL_TYPES:
            subscription = message._get_subscription()
            if subscription:
                subscription._set_consent(
                    message.channel_type, "bounced", "bounce", note=reason or _("Bounce reported by the provider.")
                )
        properties = {"message_id": message.id, "channel": message.channel_type, "channel_id": message.channel_id.id}
        if url:
            properties["url"] = url
        if reason:
            properties["reason"] = reason
        self.env["gobysend.ingest"].sudo()._insert_events(
            message.workspace_id,
            [
                {
                    "partner_id": message.partner_id.id,
                    "name": f"message_{status}",
                    "kind": "event",
                    "timestamp": timestamp or fields.Datetime.now(),
                    "properties": properties,
                    "message_id": event_key,
                    "url": None,
                    "title": None,
                    "referrer": None,
                }
            ],
        )
        # Campaigns started by engagement with this message's campaign.
        self.env["gobysend.campaign"]._start_engagement_journeys(message, status)
        return changed

    def _get_open_token(self):
        self.ensure_one()
        return tools.hmac(self.env(su=True), "gobysend-message-open", self.id)

    def _get_click_token(self, code):
        """The signature of this message's tracked link ``code``: without it, anyone could
        record clicks on any message by guessing ids. Shortened to keep SMS links short; 64 bits
        are plenty against guessing one link's signature online."""
        self.ensure_one()
        return tools.hmac(self.env(su=True), "gobysend-message-click", f"{self.id}:{code}")[:CLICK_TOKEN_LENGTH]

    def _track_links(self, body):
        """Shorten the links of a rendered body with Odoo's link tracker, each short link
        naming this message, so that a click on any channel is counted on the message too.
        Emails also get an open-tracking pixel."""
        self.ensure_one()
        if not body or self.channel_type not in LINK_TRACKED_CHANNEL_TYPES:
            return body
        render = self.env["mail.render.mixin"].sudo()
        base_url = self.get_base_url()
        blacklist = ["/gobysend/unsubscribe/", "/gobysend/preferences/", "/gobysend/confirm/"]
        try:
            if self.channel_type == "email":
                body = render._shorten_links(body, {}, blacklist=blacklist, base_url=base_url)
            else:
                body = render._shorten_links_text(body, {}, blacklist=blacklist, base_url=base_url)
        except UserError as error:
            # Mostly "must be unique": another dispatcher created the same link meanwhile.
            raise TrackedLinkRace(str(error)) from error
        body = re.sub(
            re.escape(base_url) + r"/r/([A-Za-z0-9]+)(?![A-Za-z0-9/])",
            lambda match: f"{base_url}/r/{match.group(1)}/g/{self.id}/{self._get_click_token(match.group(1))}",
            body,
        )
        if self.channel_type == "email":
            pixel = '<img src="%s/gobysend/track/open/%s/%s.gif" alt="" width="1" height="1" style="display:none"/>' % (
                base_url,
                self.id,
                self._get_open_token(),
            )
            body = body.replace("</body>", pixel + "</body>") if "</body>" in body else body + pixel
        return body
