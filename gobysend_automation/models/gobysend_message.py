import datetime
import json
import logging
import random
import re

import pytz

from odoo import _, api, fields, models, tools

from .. import templating
from ..exceptions import PermanentSendError, TransientSendError
from .gobysend_channel import CHANNEL_TYPES, CONSENT_CHANNEL_TYPES
from .gobysend_workspace import WEEKDAY_FIELDS

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
# A claimed message still "sending" after this long belongs to a dispatcher that died.
SENDING_TIMEOUT = datetime.timedelta(minutes=10)
BASE_RETRY_DELAY = datetime.timedelta(minutes=1)
DISPATCH_BATCH_SIZE = 500


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
    token_cost = fields.Float(digits=(16, 2), readonly=True)
    idempotency_key = fields.Char(readonly=True)
    res_model = fields.Char(string="Origin Model", readonly=True)
    res_id = fields.Many2oneReference(string="Origin Record", model_field="res_model", readonly=True)
    is_test = fields.Boolean(readonly=True)

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
        templating.check_syntax(body, "body", html=channel.channel_type == "email")
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
                channel.token_cost,
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
        attributes = {}
        for value in values:
            column = value._fields[f"value_{value.value_type}"].name
            attributes[value.key] = value[column]
        return {
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
            "attributes": attributes,
        }

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
    def _render_for(self, workspace, partner, channel_type, subject, body, context=None):
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
        return (
            templating.render(self.env, subject, variables, tz=tz, lang=lang),
            templating.render(self.env, body, variables, html=channel_type == "email", tz=tz, lang=lang),
        )

    # ------------------------------------------------------------------
    # Send-time rules
    # ------------------------------------------------------------------

    def _get_subscription(self):
        self.ensure_one()
        return (
            self.env["gobysend.subscription"]
            .sudo()
            .search([("workspace_id", "=", self.workspace_id.id), ("partner_id", "=", self.partner_id.id)], limit=1)
        )

    def _check_consent(self):
        """The reason this message must not reach the contact, or None."""
        self.ensure_one()
        if self.channel_type not in CONSENT_CHANNEL_TYPES:
            return None
        subscription = self._get_subscription()
        if not subscription:
            return _("The contact is not subscribed to workspace %(workspace)s.", workspace=self.workspace_id.name)
        if subscription._is_opted_out(self.channel_type):
            consent_state = subscription[self.channel_type + "_state"]
            return _(
                "The contact has not consented to %(channel)s messages (%(state)s).",
                channel=dict(CHANNEL_TYPES)[self.channel_type],
                state=consent_state,
            )
        if self.channel_type == "push" and not self.env["gobysend.device"].sudo().search_count(
            [("workspace_id", "=", self.workspace_id.id), ("partner_id", "=", self.partner_id.id)], limit=1
        ):
            return _("The contact has no active device for push messages.")
        return None

    def _check_frequency_cap(self, now):
        self.ensure_one()
        workspace = self.workspace_id
        for cap, days, label in (
            (workspace.frequency_cap_daily, 1, _("day")),
            (workspace.frequency_cap_weekly, 7, _("week")),
        ):
            if not cap:
                continue
            count = self.sudo().search_count(
                [
                    ("workspace_id", "=", workspace.id),
                    ("partner_id", "=", self.partner_id.id),
                    ("channel_type", "=", self.channel_type),
                    ("state", "in", SENT_STATES),
                    ("sent_at", ">", now - datetime.timedelta(days=days)),
                    ("is_test", "=", False),
                ]
            )
            if count >= cap:
                return _(
                    "Frequency cap reached: %(count)s messages on this channel in the last %(period)s (cap %(cap)s).",
                    count=count,
                    period=label,
                    cap=cap,
                )
        return None

    def _next_open_moment(self, now):
        """``now`` when sending is allowed, else the next moment (UTC) that quiet hours and
        sending days allow, in the contact's time zone (the workspace's when unknown)."""
        self.ensure_one()
        workspace = self.workspace_id
        tz = pytz.timezone(self.partner_id.tz or workspace.tz or "UTC")
        local = pytz.utc.localize(now).astimezone(tz)
        start, end = workspace.quiet_hours_start, workspace.quiet_hours_end
        allowed_days = [workspace[name] for name in WEEKDAY_FIELDS]

        def hour_of(moment):
            return moment.hour + moment.minute / 60.0

        def in_quiet_hours(moment):
            if start == end:
                return False
            hour = hour_of(moment)
            return start <= hour < end if start < end else hour >= start or hour < end

        candidate = local
        for _step in range(8 * 24 * 4):  # at most 8 days ahead, in quarter hours
            if allowed_days[candidate.weekday()] and not in_quiet_hours(candidate):
                break
            if not allowed_days[candidate.weekday()]:
                candidate = tz.localize(
                    datetime.datetime.combine(candidate.date() + datetime.timedelta(days=1), datetime.time())
                )
                continue
            end_hours, end_minutes = divmod(round(end * 60), 60)
            quiet_end = candidate.replace(hour=end_hours % 24, minute=end_minutes, second=0, microsecond=0)
            if quiet_end <= candidate:
                quiet_end = tz.localize(
                    datetime.datetime.combine(candidate.date() + datetime.timedelta(days=1), quiet_end.time())
                )
            candidate = quiet_end
        if candidate == local:
            return now
        return candidate.astimezone(pytz.utc).replace(tzinfo=None)

    def _debit_tokens(self):
        """Take the message's cost from the workspace balance; False when it cannot cover it."""
        self.ensure_one()
        if not self.token_cost:
            return True
        # One conditional UPDATE: two dispatchers can never both spend the last tokens.
        self.env["gobysend.workspace"].flush_model(["token_balance"])
        self.env.cr.execute(
            """
            UPDATE gobysend_workspace SET token_balance = token_balance - %s
             WHERE id = %s AND token_balance >= %s
            RETURNING token_balance
            """,
            (self.token_cost, self.workspace_id.id, self.token_cost),
        )
        row = self.env.cr.fetchone()
        self.workspace_id.invalidate_recordset(["token_balance"])
        if not row:
            return False
        self.env["gobysend.token.transaction"].sudo().create(
            {
                "workspace_id": self.workspace_id.id,
                "message_id": self.id,
                "amount": -self.token_cost,
                "balance_after": row[0],
            }
        )
        return True

    def _refund_tokens(self):
        self.ensure_one()
        if not self.token_cost:
            return
        self.env.cr.execute(
            "UPDATE gobysend_workspace SET token_balance = token_balance + %s WHERE id = %s RETURNING token_balance",
            (self.token_cost, self.workspace_id.id),
        )
        balance = self.env.cr.fetchone()[0]
        self.workspace_id.invalidate_recordset(["token_balance"])
        self.env["gobysend.token.transaction"].sudo().create(
            {
                "workspace_id": self.workspace_id.id,
                "message_id": self.id,
                "amount": self.token_cost,
                "balance_after": balance,
            }
        )

    # ------------------------------------------------------------------
    # Dispatch
    # ------------------------------------------------------------------

    def _dispatch(self, now=None):
        """Render, check and send these messages, each to its outcome. Returns self."""
        now = now or fields.Datetime.now()
        for message in self.sudo():
            if message.state not in ("queued", "held"):
                continue
            message._dispatch_one(now)
        return self

    def _dispatch_one(self, now, handover=None):
        """Take this message to its outcome. ``handover(message)``, when given, runs right
        before the provider is called (the claimed dispatch commits there)."""
        channel = self.channel_id
        if channel.state == "disabled" and not self.is_test:
            return
        try:
            subject, body = self._render_for(
                self.workspace_id,
                self.partner_id,
                self.channel_type,
                self.subject_template,
                self.body_template,
                self.render_context,
            )
        except templating.TemplateRenderError as error:
            self.write({"state": "failed", "reason": str(error)})
            return
        self.write({"subject": subject, "body": self._track_links(body)})
        reason = self._check_consent()
        if reason:
            self.write({"state": "skipped", "reason": reason})
            return
        if not self.is_test:
            reason = self._check_frequency_cap(now)
            if reason:
                self.write({"state": "skipped", "reason": reason})
                return
            open_at = self._next_open_moment(now)
            if open_at > now:
                self.write(
                    {
                        "state": "queued",
                        "next_attempt_at": open_at,
                        "reason": _("Rescheduled: quiet hours or a day without sending in the contact's time zone."),
                    }
                )
                return
        if not self._debit_tokens():
            self.write(
                {
                    "state": "held",
                    "reason": _(
                        "Held: the workspace has %(balance)s tokens left, this message costs %(cost)s.",
                        balance=self.workspace_id.token_balance,
                        cost=self.token_cost,
                    ),
                }
            )
            return
        self.attempts += 1
        if handover:
            handover(self)
        try:
            # In test mode nothing leaves Odoo, except the "Send test" messages themselves.
            if channel.state == "test" and not self.is_test:
                provider_message_id = channel._outbox_send(self)
            else:
                provider_message_id = channel._send(self)
        except TransientSendError as error:
            self._refund_tokens()
            if self.attempts >= MAX_ATTEMPTS:
                self.write({"state": "failed", "reason": error.reason, "provider_answer": error.provider_answer})
            else:
                delay = error.retry_after or BASE_RETRY_DELAY * (2 ** (self.attempts - 1))
                if isinstance(delay, int | float):
                    delay = datetime.timedelta(seconds=delay)
                jitter = datetime.timedelta(seconds=random.uniform(0, delay.total_seconds() * 0.2))
                self.write(
                    {
                        "state": "queued",
                        "next_attempt_at": now + delay + jitter,
                        "reason": error.reason,
                        "provider_answer": error.provider_answer,
                    }
                )
            return
        except PermanentSendError as error:
            self._refund_tokens()
            self.write({"state": "failed", "reason": error.reason, "provider_answer": error.provider_answer})
            return
        self.write({"state": "sent", "sent_at": now, "provider_message_id": provider_message_id, "reason": False})

    # ------------------------------------------------------------------
    # Dispatch at scale: claim, hand over, record — each step its own transaction
    # ------------------------------------------------------------------
    #
    # A dispatcher claims due messages (queued -> sending) in a short committed transaction, so
    # that no other dispatcher, on this server or another, can take them. It then takes each
    # claimed message to its outcome in its own transaction, committing once more right before
    # the provider is called ("handed over"). A dispatcher killed at any point leaves each of
    # its messages in one of three states, all safe:
    #   - outcome committed: done, never touched again;
    #   - claimed, not handed over: it surely never reached the provider; recovery queues it again;
    #   - handed over, no outcome: it may have reached the provider; recovery marks it failed
    #     with that reason instead of sending it a second time, and a manager decides.

    @api.model
    def _claim_due(self, channel, limit, now=None):
        """Claim up to ``limit`` due messages of ``channel`` and return their ids (committed)."""
        now = now or fields.Datetime.now()
        with self.env.registry.cursor() as cr:
            # READ COMMITTED for this one statement's transaction: FOR UPDATE then re-reads a row
            # another dispatcher just claimed and drops it, where repeatable read would fail.
            # (In test mode the cursor is a savepoint inside the test's transaction.)
            if not self.env.registry.in_test_mode():
                cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            # A materialized CTE: the LIMIT must be applied once; inside "IN (subquery)" the
            # planner may run the subquery more than once and claim more rows than asked.
            cr.execute(
                """
                WITH due AS MATERIALIZED (
                    SELECT id FROM gobysend_message
                     WHERE channel_id = %(channel)s AND state = 'queued' AND next_attempt_at <= %(now)s
                     ORDER BY next_attempt_at, id
                     LIMIT %(limit)s
                       FOR UPDATE SKIP LOCKED
                )
                UPDATE gobysend_message message
                   SET state = 'sending', sending_started_at = %(now)s, handed_over_at = NULL, write_date = %(now)s
                  FROM due
                 WHERE message.id = due.id AND message.state = 'queued'
                RETURNING message.id
                """,
                {"now": now, "channel": channel.id, "limit": limit},
            )
            return sorted(row[0] for row in cr.fetchall())

    @api.model
    def _dispatch_claimed(self, message_id, now=None):
        """Take one claimed message to its outcome in transactions of its own."""
        now = now or fields.Datetime.now()
        with self.env.registry.cursor() as cr:
            message = self.with_env(self.env(cr=cr)).sudo().browse(message_id)
            if message.state != "sending":
                return message.state

            def handover(msg):
                msg.handed_over_at = now
                msg.env.cr.commit()  # commit-ok: from here on the provider may have the message

            # The message stays "sending" until its outcome is known: were it "queued" when the
            # hand-over commits, another dispatcher could claim it and send it again.
            message._dispatch_one(now, handover=handover)
            if message.state == "sending":  # the channel was disabled meanwhile: nothing happened
                message.write({"state": "queued", "reason": _("Waiting: the channel is disabled.")})
            return message.state

    @api.model
    def _recover_interrupted(self, now=None):
        """Settle the messages of dispatchers that died (see the protocol above)."""
        now = now or fields.Datetime.now()
        stale = now - SENDING_TIMEOUT
        never_handed = self.sudo().search(
            [("state", "=", "sending"), ("handed_over_at", "=", False), ("sending_started_at", "<", stale)]
        )
        never_handed.write(
            {
                "state": "queued",
                "next_attempt_at": now,
                "reason": _("Requeued: its dispatcher stopped before sending it."),
            }
        )
        maybe_sent = self.sudo().search(
            [("state", "=", "sending"), ("handed_over_at", "!=", False), ("handed_over_at", "<", stale)]
        )
        maybe_sent.write(
            {
                "state": "failed",
                "reason": _(
                    "Interrupted while the provider had it: it may or may not have arrived, so it is not sent again "
                    "automatically. Check with the provider, then retry it if needed."
                ),
            }
        )
        return len(never_handed), len(maybe_sent)

    @api.model
    def _cron_dispatch(self):
        """Every minute: settle interrupted messages and start a dispatch job for each channel
        with due messages. The jobs do the sending, on as many servers as run queue_job."""
        now = fields.Datetime.now()
        self._recover_interrupted(now)
        self.env.cr.execute(
            "SELECT DISTINCT channel_id FROM gobysend_message WHERE state = 'queued' AND next_attempt_at <= %s",
            (now,),
        )
        channels = self.env["gobysend.channel"].sudo().browse([row[0] for row in self.env.cr.fetchall()])
        for channel in channels.filtered(lambda c: c.state != "disabled"):
            channel._enqueue_dispatch_job()
        return len(channels)

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
        return changed

    def _get_open_token(self):
        self.ensure_one()
        return tools.hmac(self.env(su=True), "gobysend-message-open", self.id)

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
        if self.channel_type == "email":
            body = render._shorten_links(body, {}, blacklist=blacklist, base_url=base_url)
        else:
            body = render._shorten_links_text(body, {}, blacklist=blacklist, base_url=base_url)
        body = re.sub(
            re.escape(base_url) + r"/r/([A-Za-z0-9]+)(?![A-Za-z0-9/])",
            lambda match: f"{base_url}/r/{match.group(1)}/g/{self.id}",
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
