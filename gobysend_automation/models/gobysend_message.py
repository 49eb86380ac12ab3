import collections
import contextlib
import datetime
import json
import logging
import random
import re

import pytz
from psycopg2.extensions import ISOLATION_LEVEL_READ_COMMITTED

from odoo import _, api, fields, models, tools
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

from .. import claims, templating
from ..exceptions import PermanentSendError, SendError, TransientSendError
from ..tools import first_moment_at
from .gobysend_channel import CHANNEL_TYPES, CONSENT_CHANNEL_TYPES, DISPATCH_JOB_BATCH_SIZE
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


class DispatchSteps:
    """Where a dispatch batch records its progress: by default in the batch's own transaction."""

    def __init__(self, now):
        self.now = now

    def batch_env(self, env):
        """The environment of providers that send a slice at once (they write, e.g. mails)."""
        return env

    def slice_size(self, channel, messages):
        """How many of ``messages`` are handed over to ``channel``'s provider at a time."""
        return len(messages)

    def store_rendered(self, ready, rendered):
        """Keep the rendering ``{id: (subject, body)}`` of the messages about to be sent."""
        ready._store_rendered(rendered)

    def prepared(self, ready):
        """The rules are applied and the tokens of ``ready`` debited; nothing has left yet."""

    def hand_over(self, part):
        """``part`` is about to go to the provider; return the messages that may go (all of it,
        unless the batch's claim lost some of them)."""
        part.write({"handed_over_at": self.now})
        return part

    def record(self, part, results):
        """What the provider answered for ``part``."""
        part._record_send_results(results, self.now)

    def done(self):
        """Every slice has its outcome."""


class CommittedDispatchSteps(DispatchSteps):
    """The steps of a claimed batch, each committed before the next one can matter.

    The batch's own transaction commits once, when the rules are applied: from then on it only
    reads, so the records it read stay in its cache for the whole batch. Hand-overs and outcomes
    go through a second transaction (``journal``), committed right before each slice leaves:
    committing the batch's own transaction there would empty its cache, and every slice would
    read its messages, channel and workspace again.
    """

    def __init__(self, now, journal, claim):
        super().__init__(now)
        self.journal = journal
        self.claim = claim
        self.rendered = {}

    def batch_env(self, env):
        return env(cr=self.journal.cr)

    def slice_size(self, channel, messages):
        # A dispatcher that dies leaves at most the slices in flight with a fate unknown.
        return channel.max_parallel_requests

    def store_rendered(self, ready, rendered):
        # Stored with the hand-over: one row version less per message. A message that is never
        # handed over goes back to the queue and is rendered again.
        self.rendered.update(rendered)

    def prepared(self, ready):
        ready.env.flush_all()
        # Raises ClaimLost, and the rule outcomes and debits are rolled back, when recovery took
        # the batch meanwhile.
        self.claim.beat(ready.env.cr, fields.Datetime.now())
        ready.env.cr.commit()  # commit-ok: rule outcomes and debits, before anything is handed over

    def hand_over(self, part):
        # With the previous slices' outcomes: from this commit on the provider may have these
        # messages. The providers read the rendering from here (this transaction has not read
        # these messages since the rules were applied). The beat comes first: past it, recovery
        # cannot take the claim before this commit, and the hand-over takes only the messages
        # the claim still holds.
        self.journal.flush_all()
        self.claim.beat(self.journal.cr, fields.Datetime.now())
        handed = part.with_env(self.journal)._store_rendered(self.rendered, handed_over_at=self.now, claim=self.claim)
        self.journal.flush_all()
        self.journal.cr.commit()  # commit-ok: see above
        return part.browse(handed)

    def record(self, part, results):
        # Only what the claim still holds: an outcome never overwrites what recovery decided.
        held = self.claim.lock_held(self.journal.cr, part.ids)
        part.browse(held).with_env(self.journal)._record_send_results(results, self.now)

    def done(self):
        self.journal.flush_all()
        self.claim.beat(self.journal.cr, fields.Datetime.now())
        self.journal.cr.commit()  # commit-ok: the last slices' outcomes


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

    # ------------------------------------------------------------------
    # Send-time rules
    # ------------------------------------------------------------------

    def _get_subscription(self):
        self.ensure_one()
        lookups = self._dispatch_lookups()
        key = (self.workspace_id.id, self.partner_id.id)
        if lookups is not None and key in lookups["subscriptions"]:
            return lookups["subscriptions"][key]
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
        if self.channel_type == "push" and not self._has_active_device():
            return _("The contact has no active device for push messages.")
        return None

    def _has_active_device(self):
        self.ensure_one()
        lookups = self._dispatch_lookups()
        key = (self.workspace_id.id, self.partner_id.id)
        if lookups is not None and "devices" in lookups:
            return key in lookups["devices"]
        return bool(
            self.env["gobysend.device"]
            .sudo()
            .search_count([("workspace_id", "=", key[0]), ("partner_id", "=", key[1])], limit=1)
        )

    def _capped(self):
        """The messages a frequency cap applies to (none, without a look at each message, when
        none of their workspaces has a cap: the common case of a dispatch batch)."""
        capped_workspaces = self.workspace_id.filtered(
            lambda workspace: workspace.frequency_cap_daily or workspace.frequency_cap_weekly
        )
        if not capped_workspaces:
            return self.browse()
        return self.filtered(lambda m: not m.is_test and m.workspace_id in capped_workspaces)

    def _lock_capped_contacts(self):
        """Serialise the frequency-cap checks of these messages' contacts with those of other
        dispatchers until this transaction commits: each then counts what the other let through."""
        partner_ids = sorted(set(self._capped().partner_id.ids))
        if partner_ids:
            # Taken in one order by everyone, so that two batches cannot wait for each other.
            self.env.cr.execute(
                "SELECT pg_advisory_xact_lock(%s, partner_id) FROM unnest(%s::int[]) AS partner_id ORDER BY partner_id",
                (CAP_LOCK_CLASS, partner_ids),
            )

    def _sent_counts(self, now):
        """How many messages the contacts of these messages were sent on each channel type
        within the last day and week: ``{(workspace id, partner id, channel type): [day, week]}``.
        Messages that other dispatchers let through and are still sending count too: they carry
        the time their rules passed as ``sent_at``."""
        counts = collections.defaultdict(lambda: [0, 0])
        capped = self._capped()
        if not capped:
            return counts
        base = [
            ("workspace_id", "in", capped.workspace_id.ids),
            ("partner_id", "in", capped.partner_id.ids),
            ("state", "in", (*SENT_STATES, "sending")),
            ("is_test", "=", False),
        ]
        for position, days in ((0, 1), (1, 7)):
            groups = self.sudo()._read_group(
                [*base, ("sent_at", ">", now - datetime.timedelta(days=days))],
                ["workspace_id", "partner_id", "channel_type"],
                ["__count"],
            )
            for workspace, partner, channel_type, count in groups:
                counts[workspace.id, partner.id, channel_type][position] = count
        return counts

    def _check_frequency_cap(self, counts):
        """The reason this message would exceed a frequency cap, or None. ``counts`` comes from
        ``_sent_counts``."""
        self.ensure_one()
        workspace = self.workspace_id
        sent = counts[workspace.id, self.partner_id.id, self.channel_type]
        for cap, count, period in (
            (workspace.frequency_cap_daily, sent[0], "day"),
            (workspace.frequency_cap_weekly, sent[1], "week"),
        ):
            if cap and count >= cap:
                return _(
                    "Frequency cap reached: %(count)s messages on this channel in the last %(period)s (cap %(cap)s).",
                    count=count,
                    period=_("day") if period == "day" else _("week"),
                    cap=cap,
                )
        return None

    @api.model
    def _sending_window(self, workspace):
        """(quiet hours start, end, [allowed weekday flags]) of ``workspace``, read once per batch."""
        lookups = self._dispatch_lookups()
        windows = lookups.setdefault("windows", {}) if lookups is not None else {}
        if workspace.id not in windows:
            windows[workspace.id] = (
                workspace.quiet_hours_start,
                workspace.quiet_hours_end,
                [workspace[name] for name in WEEKDAY_FIELDS],
            )
        return windows[workspace.id]

    def _next_open_moment(self, now):
        """``now`` when sending is allowed, else the next moment (UTC) that quiet hours and
        sending days allow, in the contact's time zone (the workspace's when unknown).

        Quiet hours and days are wall-clock times: each next candidate is a local date and time
        placed on the time line by the zone's rules of that day (``tools.first_moment_at``), never
        an earlier moment's UTC offset carried over a daylight-saving change.
        """
        self.ensure_one()
        workspace = self.workspace_id
        start, end, allowed_days = self._sending_window(workspace)
        if start == end and all(allowed_days):
            return now  # the workspace sends at any time
        tz = pytz.timezone(self.partner_id.tz or workspace.tz or "UTC")
        local = pytz.utc.localize(now).astimezone(tz)
        end_time = datetime.time(*divmod(round(end * 60) % (24 * 60), 60))

        def in_quiet_hours(moment):
            if start == end:
                return False
            hour = moment.hour + moment.minute / 60.0
            return start <= hour < end if start < end else hour >= start or hour < end

        candidate = local
        for _step in range(8 * 24 * 4):  # at most 8 days ahead, in quarter hours
            if allowed_days[candidate.weekday()] and not in_quiet_hours(candidate):
                break
            if not allowed_days[candidate.weekday()]:
                next_day = candidate.date() + datetime.timedelta(days=1)
                candidate = first_moment_at(tz, datetime.datetime.combine(next_day, datetime.time()))
                continue
            quiet_end = datetime.datetime.combine(candidate.date(), end_time)
            if quiet_end <= candidate.replace(tzinfo=None):
                quiet_end += datetime.timedelta(days=1)
            candidate = first_moment_at(tz, quiet_end)
        if candidate == local:
            return now
        return candidate.astimezone(pytz.utc).replace(tzinfo=None)

    def _debit_tokens(self):
        """Take the cost of these messages from their workspaces' balances, each debit on the
        ledger; return the messages that the balance could not cover (nothing taken for them)."""
        uncovered = self.browse()
        ledger = []
        for workspace, messages in self.filtered("token_cost").grouped("workspace_id").items():
            total = sum(messages.mapped("token_cost"))
            balance_after = self._take_tokens(workspace, total)
            if balance_after is not None:
                # The whole batch fit: spread the one debit over the ledger, message by message.
                balance = balance_after + total
                for message in messages:
                    balance -= message.token_cost
                    ledger.append(message._token_entry(-message.token_cost, balance))
                continue
            for message in messages:  # it did not: take what the balance covers, in order
                balance_after = self._take_tokens(workspace, message.token_cost)
                if balance_after is None:
                    uncovered |= message
                else:
                    ledger.append(message._token_entry(-message.token_cost, balance_after))
        self._write_ledger(ledger)
        return uncovered

    @api.model
    def _take_tokens(self, workspace, amount):
        """Debit ``amount`` when the balance covers it; return the new balance, or None."""
        # One conditional UPDATE: two dispatchers can never both spend the last tokens.
        workspace.flush_recordset(["token_balance"])
        self.env.cr.execute(
            """
            UPDATE gobysend_workspace SET token_balance = token_balance - %s
             WHERE id = %s AND token_balance >= %s
            RETURNING token_balance
            """,
            (amount, workspace.id, amount),
        )
        row = self.env.cr.fetchone()
        workspace.invalidate_recordset(["token_balance"])
        return row[0] if row else None

    def _refund_tokens(self):
        """Give back what these messages were debited, each refund on the ledger."""
        ledger = []
        for workspace, messages in self.filtered("token_cost").grouped("workspace_id").items():
            total = sum(messages.mapped("token_cost"))
            self.env.cr.execute(
                """
                UPDATE gobysend_workspace SET token_balance = token_balance + %s
                 WHERE id = %s
                RETURNING token_balance
                """,
                (total, workspace.id),
            )
            balance = self.env.cr.fetchone()[0] - total
            workspace.invalidate_recordset(["token_balance"])
            for message in messages:
                balance += message.token_cost
                ledger.append(message._token_entry(message.token_cost, balance))
        self._write_ledger(ledger)

    @api.model
    def _write_ledger(self, entries):
        """Add ``entries`` (from ``_token_entry``) to the token ledger."""
        if not entries:
            return
        # One INSERT for a batch's debits: through the ORM, creating them cost more than the rest
        # of the bookkeeping of the batch together.
        self.env.cr.execute(
            """
            INSERT INTO gobysend_token_transaction (workspace_id, message_id, amount, balance_after,
                                                    create_uid, create_date, write_uid, write_date)
            SELECT entry.workspace_id, entry.message_id, entry.amount, entry.balance_after,
                   %s, now() at time zone 'UTC', %s, now() at time zone 'UTC'
              FROM unnest(%s::int[], %s::int[], %s::numeric[], %s::numeric[])
                   AS entry(workspace_id, message_id, amount, balance_after)
            """,
            (
                self.env.uid,
                self.env.uid,
                [entry["workspace_id"] for entry in entries],
                [entry["message_id"] for entry in entries],
                [entry["amount"] for entry in entries],
                [entry["balance_after"] for entry in entries],
            ),
        )
        self.env["gobysend.token.transaction"].invalidate_model()

    def _token_entry(self, amount, balance_after):
        return {
            "workspace_id": self.workspace_id.id,
            "message_id": self.id,
            "amount": amount,
            "balance_after": balance_after,
        }

    # ------------------------------------------------------------------
    # Dispatch
    # ------------------------------------------------------------------
    #
    # Messages are dispatched in batches: what the rules need about the batch's contacts is
    # read in a few queries, the rules run message by message in memory, the tokens of the
    # whole batch are debited at once, and the provider gets the batch's messages side by side
    # (see ``gobysend.channel._send_batch``).

    def _dispatch_lookups(self):
        """What the running dispatch batch has read about its contacts, or None outside one."""
        return self.env.cr.cache.get(DISPATCH_LOOKUPS)

    @contextlib.contextmanager
    def _dispatch_lookups_for_batch(self):
        """Read the subscriptions, attribute values and devices of these messages' contacts
        once, for the rules, the templates and the providers of this batch."""
        pairs = {(message.workspace_id.id, message.partner_id.id) for message in self}
        domain = [("workspace_id", "in", self.workspace_id.ids), ("partner_id", "in", self.partner_id.ids)]
        subscriptions = {
            (subscription.workspace_id.id, subscription.partner_id.id): subscription
            for subscription in self.env["gobysend.subscription"].sudo().search(domain, order="id desc")
        }
        Subscription = self.env["gobysend.subscription"].sudo()
        attributes = collections.defaultdict(dict)
        for value in self.env["gobysend.attribute.value"].sudo().search(domain):
            attributes[value.workspace_id.id, value.partner_id.id][value.key] = value[f"value_{value.value_type}"]
        devices = set()
        if "push" in self.mapped("channel_type"):
            devices = {
                (workspace.id, partner.id)
                for workspace, partner in self.env["gobysend.device"]
                .sudo()
                ._read_group(domain, ["workspace_id", "partner_id"])
            }
        lookups = {
            "contacts": {},
            "subscriptions": {pair: subscriptions.get(pair, Subscription) for pair in pairs},
            "attributes": {pair: attributes.get(pair, {}) for pair in pairs},
            "devices": devices,
        }
        outer = self.env.cr.cache.get(DISPATCH_LOOKUPS)
        self.env.cr.cache[DISPATCH_LOOKUPS] = lookups
        try:
            yield lookups
        finally:
            if outer is None:
                self.env.cr.cache.pop(DISPATCH_LOOKUPS, None)
            else:
                self.env.cr.cache[DISPATCH_LOOKUPS] = outer

    def _dispatch(self, now=None):
        """Render, check and send these messages (the queued and held ones), each to its
        outcome. Returns self."""
        now = now or fields.Datetime.now()
        messages = self.sudo().filtered(lambda m: m.state in ("queued", "held"))
        for batch in tools.split_every(DISPATCH_BATCH_SIZE, messages.ids, self.sudo().browse):
            batch._dispatch_batch(now)
        return self

    def _dispatch_batch(self, now, steps=None):
        """Take these messages to their outcomes, recording each step with ``steps`` (a
        ``DispatchSteps``; the claimed dispatch commits them one by one). Messages of a
        disabled channel are left as they are."""
        steps = steps or DispatchSteps(now)
        messages = self.filtered(lambda m: m.is_test or m.channel_id.state != "disabled")
        if not messages:
            return
        with messages._dispatch_lookups_for_batch():
            ready = messages._apply_send_rules_once_links_exist(now, steps)
            if not ready:
                steps.prepared(ready)
                return
            # In test mode nothing leaves Odoo, except the "Send test" messages themselves.
            flights = [
                (channel._send_flight(real, batch_env=steps.batch_env(self.env)), channel, group)
                for (channel, real), group in ready.grouped(
                    lambda m: (m.channel_id, m.is_test or m.channel_id.state == "enabled")
                ).items()
            ]
            # Refreshed provider tokens are kept from here on, with the rule outcomes and debits.
            steps.prepared(ready)
            for flight, channel, group in flights:
                # Handed over a slice at a time: a dispatcher that dies leaves at most the slices
                # in flight with a fate unknown; the rest either has its outcome or surely never
                # left. The next slice is prepared while the previous one is in flight.
                for part in tools.split_every(steps.slice_size(channel, group), group.ids, group.browse):
                    flight.drain_waiting()
                    handed = steps.hand_over(part)
                    if handed:
                        flight.add(handed)
                    for done, results in flight.completed():
                        steps.record(done, results)
                for done, results in flight.finish():
                    steps.record(done, results)
            steps.done()

    def _apply_send_rules_once_links_exist(self, now, steps):
        """``_apply_send_rules``, again from the start when another dispatcher created one of
        the batch's tracked links meanwhile: the next attempt finds that link and uses it."""
        for attempt in range(1, LINK_RACE_ATTEMPTS + 1):
            try:
                # One savepoint per batch, not per link: the race is rare, the links are many.
                with self.env.cr.savepoint():
                    return self._apply_send_rules(now, steps)
            except TrackedLinkRace as race:
                self.env.invalidate_all()
                if attempt == LINK_RACE_ATTEMPTS:
                    raise race.__cause__ from None
                _logger.info("A tracked link was created by another dispatcher; applying the rules again.")
        return self.browse()

    def _apply_send_rules(self, now, steps):
        """Render each message and check it against the send-time rules; give the messages that
        may not go out now their outcome, debit the others' tokens and return those, their
        rendering kept with ``steps``."""
        self._lock_capped_contacts()
        counts = self._sent_counts(now)
        rendered = {}
        for message in self:
            try:
                subject, body = message._render_for(
                    message.workspace_id,
                    message.partner_id,
                    message.channel_type,
                    message.subject_template,
                    message.body_template,
                    message.render_context,
                )
            except templating.TemplateRenderError as error:
                message.write({"state": "failed", "reason": str(error)})
                continue
            body = message._track_links(body)
            reason = message._check_consent()
            if not reason and not message.is_test:
                reason = message._check_frequency_cap(counts)
            if reason:
                message.write({"subject": subject, "body": body, "state": "skipped", "reason": reason})
                continue
            if not message.is_test:
                open_at = message._next_open_moment(now)
                if open_at > now:
                    message.write(
                        {
                            "state": "queued",
                            "next_attempt_at": open_at,
                            "reason": _(
                                "Rescheduled: quiet hours or a day without sending in the contact's time zone."
                            ),
                        }
                    )
                    continue
                sent = counts[message.workspace_id.id, message.partner_id.id, message.channel_type]
                sent[0] += 1
                sent[1] += 1
            rendered[message.id] = (subject, body)
        checked = self.browse(list(rendered))
        uncovered = checked._debit_tokens()
        # Counted by the frequency caps of other dispatchers from the commit of these rules on,
        # until the message has its outcome (see _sent_counts).
        (checked - uncovered)._capped().write({"sent_at": now})
        for message in uncovered:
            subject, body = rendered.pop(message.id)
            message.write(
                {
                    "subject": subject,
                    "body": body,
                    "state": "held",
                    "reason": _(
                        "Held: the workspace has %(balance)s tokens left, this message costs %(cost)s.",
                        balance=message.workspace_id.token_balance,
                        cost=message.token_cost,
                    ),
                }
            )
        ready = checked - uncovered
        steps.store_rendered(ready, rendered)
        return ready

    def _store_rendered(self, rendered, handed_over_at=None, claim=None):
        """Store each message's rendering ``{id: (subject, body)}`` and count the attempt; with
        ``handed_over_at``, mark them handed over to the provider at that time too. With
        ``claim``, only the messages it still holds; returns the ids of those stored."""
        if not self:
            return []
        self.flush_recordset()
        ids = self.ids
        # One UPDATE for the batch where the ORM would send one per message: each has its own text.
        self.env.cr.execute(
            SQL(
                """
                UPDATE gobysend_message message
                   SET subject = rendered.subject, body = rendered.body, attempts = message.attempts + 1,
                       handed_over_at = COALESCE(%s, message.handed_over_at),
                       write_date = now() at time zone 'UTC', write_uid = %s
                  FROM unnest(%s::int[], %s::varchar[], %s::text[]) AS rendered(id, subject, body)
                 WHERE message.id = rendered.id AND %s
                RETURNING message.id
                """,
                handed_over_at,
                self.env.uid,
                ids,
                [rendered[i][0] for i in ids],
                [rendered[i][1] for i in ids],
                claim.held_condition("message") if claim else SQL("TRUE"),
            )
        )
        stored = [row[0] for row in self.env.cr.fetchall()]
        self.invalidate_recordset(["subject", "body", "attempts", "handed_over_at", "write_date", "write_uid"])
        return stored

    def _store_sent(self, provider_message_ids, now):
        """Mark these messages sent, each with its provider message id ``{id: provider id}``."""
        if not self:
            return
        self.flush_recordset()
        ids = self.ids
        # One UPDATE for the batch where the ORM would send one per message: each has its own id.
        self.env.cr.execute(
            """
            UPDATE gobysend_message message
               SET state = 'sent', sent_at = %s, reason = NULL, provider_message_id = answer.provider_message_id,
                   write_date = now() at time zone 'UTC', write_uid = %s
              FROM unnest(%s::int[], %s::varchar[]) AS answer(id, provider_message_id)
             WHERE message.id = answer.id
            RETURNING message.partner_id
            """,
            (now, self.env.uid, ids, [provider_message_ids[i] for i in ids]),
        )
        partner_ids = [row[0] for row in self.env.cr.fetchall()]
        self.invalidate_recordset(["state", "sent_at", "reason", "provider_message_id", "write_date", "write_uid"])
        # "Received a message" segments now hold for these contacts.
        self.env["gobysend.segment"]._mark_dirty(partner_ids, "message")

    def _record_send_results(self, results, now):
        """Record what the provider answered for each of these messages (``results`` from
        ``gobysend.channel._send_batch``); give back the tokens of those that did not go out."""
        not_sent = self.browse()
        sent = {}
        for message in self:
            result = results.get(message.id)
            if result is None:
                result = PermanentSendError(_("The provider gave no answer for this message."))
            if not isinstance(result, SendError):
                sent[message.id] = str(result)
                continue
            not_sent |= message
            if isinstance(result, TransientSendError) and message.attempts < MAX_ATTEMPTS:
                delay = result.retry_after or BASE_RETRY_DELAY * (2 ** (message.attempts - 1))
                if isinstance(delay, int | float):
                    delay = datetime.timedelta(seconds=delay)
                jitter = datetime.timedelta(seconds=random.uniform(0, delay.total_seconds() * 0.2))
                message.write(
                    {
                        "state": "queued",
                        "next_attempt_at": now + delay + jitter,
                        "sent_at": False,
                        "reason": result.reason,
                        "provider_answer": result.provider_answer,
                    }
                )
            else:
                message.write(
                    {
                        "state": "failed",
                        "sent_at": False,
                        "reason": result.reason,
                        "provider_answer": result.provider_answer,
                    }
                )
        self.browse(list(sent))._store_sent(sent, now)
        not_sent._refund_tokens()

    # ------------------------------------------------------------------
    # Dispatch at scale: claim, hand over, record — each step its own transaction
    # ------------------------------------------------------------------
    #
    # A dispatcher claims a batch of due messages (queued -> sending, see ``claims``) in a short
    # committed transaction, so that no other dispatcher, on this server or another, can take
    # them. It then checks the batch and hands it to the provider a slice at a time, committing
    # right before each slice goes out ("handed over", with the previous slice's outcomes), and
    # once more at the end. Each of these commits beats the claim's heartbeat first, and every
    # write to the messages is conditional on the claim still holding them: a dispatcher whose
    # claim recovery took (it stopped beating for ``claims.STALE_AFTER``, e.g. paused or hung)
    # stops without sending. A dispatcher stopped at any point leaves each of its messages in one
    # of three states, all safe:
    #   - outcome committed: done, never touched again;
    #   - claimed, not handed over: it surely never reached the provider; recovery queues it again;
    #   - handed over, no outcome: it may have reached the provider; recovery marks it failed
    #     with that reason instead of sending it a second time, and a manager decides (unless
    #     the provider deduplicates retries: then it is queued again).

    @api.model
    def _claim_due(self, channel, limit, now=None):
        """Claim up to ``limit`` due messages of ``channel`` and return the ``claims.Claim``
        (committed). With a rate limit, no more than the channel may still send in this minute."""
        now = now or fields.Datetime.now()
        with self.env.registry.cursor() as cr:
            # READ COMMITTED for this one statement's transaction: FOR UPDATE then re-reads a row
            # another dispatcher just claimed and drops it, where repeatable read would fail.
            # (In test mode the cursor is a savepoint inside the test's transaction.)
            if not self.env.registry.in_test_mode():
                cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            if channel.rate_limit:
                # One claimer of the channel at a time, so that two dispatchers cannot both take
                # the same remaining budget; counted are the messages handed over in the last
                # minute and those claimed by others that may still be.
                cr.execute("SELECT pg_advisory_xact_lock(%s, %s)", (RATE_LOCK_CLASS, channel.id))
                cr.execute(
                    """
                    SELECT count(*) FROM gobysend_message
                     WHERE channel_id = %s
                       AND (handed_over_at > %s OR (state = 'sending' AND handed_over_at IS NULL))
                    """,
                    (channel.id, now - datetime.timedelta(minutes=1)),
                )
                limit = min(limit, max(0, channel.rate_limit - cr.fetchone()[0]))
                if not limit:
                    return claims.Claim(MESSAGE_CLAIMS, None, [])
            return self._claim(
                cr, SQL("channel_id = %s AND state = 'queued' AND next_attempt_at <= %s", channel.id, now), limit, now
            )

    @api.model
    def _claim(self, cr, condition, limit, now):
        return MESSAGE_CLAIMS.claim(
            cr,
            condition,
            SQL("next_attempt_at, id"),
            limit,
            # sent_at marks the messages that passed the frequency caps (see _sent_counts).
            SQL("sending_started_at = %s, handed_over_at = NULL, sent_at = NULL, write_date = %s", now, now),
            now=now,
        )

    @api.model
    def _dispatch_claimed(self, claim, now=None):
        """Take the messages of ``claim`` to their outcomes in transactions of their own."""
        now = now or fields.Datetime.now()
        try:
            with self.env.registry.cursor() as cr:
                if not self.env.registry.in_test_mode():
                    # Dispatchers of one workspace all debit its token balance: under READ
                    # COMMITTED the conditional UPDATE waits for the other one and re-checks the
                    # balance, where repeatable read would fail the whole batch.
                    cr.connection.set_isolation_level(ISOLATION_LEVEL_READ_COMMITTED)
                # Locked until the rules' outcomes commit: recovery waits for them.
                held = claim.lock_held(cr)
                messages = self.with_env(self.env(cr=cr)).sudo().browse(held)
                with self.env.registry.cursor() as journal_cr:
                    if not self.env.registry.in_test_mode():
                        journal_cr.connection.set_isolation_level(ISOLATION_LEVEL_READ_COMMITTED)
                    journal = messages.env(cr=journal_cr)
                    # The messages stay "sending" until their outcome is known: were they "queued"
                    # when the hand-over commits, another dispatcher could claim them and send them again.
                    messages._dispatch_batch(now, CommittedDispatchSteps(now, journal, claim))
                # The journal changed what this transaction had read.
                messages.invalidate_recordset()
                # The channel was disabled meanwhile: nothing happened to these.
                claim.release(
                    cr,
                    messages.ids,
                    SQL("state = 'queued', reason = %s", _("Waiting: the channel is disabled.")),
                    SQL("target.handed_over_at IS NULL"),
                )
                claim.end(cr)
                messages.invalidate_recordset()
                return messages
        except claims.ClaimLost:
            # Recovery settled the batch while this dispatcher was stopped: it owns nothing any more.
            _logger.warning("A dispatch batch stopped: its claim %s went stale and was recovered.", claim.token)
            return self.browse()
        except Exception:
            # What surely never reached the provider goes back to the queue now rather than
            # when recovery finds it; what may have reached it is left to recovery.
            self._release_unhanded(claim)
            raise

    @api.model
    def _release_unhanded(self, claim):
        with self.env.registry.cursor() as cr:
            held = claim.lock_held(cr)
            messages = self.env(cr=cr)["gobysend.message"].sudo().browse(held)
            messages.filtered(lambda message: not message.handed_over_at)._requeue_unhanded()
            # The handed over ones, fate unknown, are settled by the next recovery.
            claim.end(cr)

    def _requeue_unhanded(self, now=None, reason=None):
        """Queue again claimed messages that surely never reached the provider (or whose
        provider deduplicates a retry), giving back the tokens their batch debited for them."""
        debited = (
            self.env["gobysend.token.transaction"]
            .sudo()
            ._read_group([("message_id", "in", self.ids)], ["message_id"], ["amount:sum"])
        )
        self.browse([message.id for message, amount in debited if amount < 0])._refund_tokens()
        self.write(
            {
                "state": "queued",
                "claim_token": False,
                "sent_at": False,
                "next_attempt_at": now or fields.Datetime.now(),
                "reason": reason or _("Requeued: its dispatcher stopped before sending it."),
            }
        )

    @api.model
    def _recover_interrupted(self, now=None):
        """Settle the messages of dispatchers that stopped beating (see the protocol above)."""
        now = now or fields.Datetime.now()
        self.env.flush_all()
        orphans = self.sudo().browse(MESSAGE_CLAIMS.revoke_stale(self.env.cr, now))
        orphans.invalidate_recordset()
        never_handed = orphans.filtered(lambda message: not message.handed_over_at)
        never_handed._requeue_unhanded(now)
        handed = orphans - never_handed
        retry_safe = handed.filtered(lambda message: message.channel_id._has_idempotent_sends())
        retry_safe._requeue_unhanded(
            now, _("Requeued: its dispatcher stopped; the provider ignores a repeated request for it.")
        )
        maybe_sent = handed - retry_safe
        maybe_sent.write(
            {
                "state": "failed",
                "claim_token": False,
                "sent_at": False,
                "reason": _(
                    "Interrupted while the provider had it: it may or may not have arrived, so it is not sent again "
                    "automatically. Check with the provider, then retry it if needed."
                ),
            }
        )
        return len(never_handed | retry_safe), len(maybe_sent)

    @api.model
    def _send_after_commit(self, message_ids):
        """Send these queued messages once the current transaction has committed, through the
        claimed dispatch. Sending inside an HTTP request's transaction would send again when
        Odoo retries the request after a serialization failure; after the commit, the request
        can no longer be retried, and a rolled back request forgets these callbacks."""
        registry, uid, context = self.env.registry, self.env.uid, dict(self.env.context)

        def send():
            with registry.cursor() as cr:
                env = api.Environment(cr, uid, context)
                try:
                    env["gobysend.message"]._send_now(message_ids)
                except Exception:  # the request has committed: report on the messages, not to the client
                    _logger.exception("Could not send messages %s after the request", message_ids)

        self.env.cr.postcommit.add(send)

    @api.model
    def _send_now(self, message_ids):
        """Claim these messages (the queued ones) and take them to their outcomes."""
        now = fields.Datetime.now()
        with self.env.registry.cursor() as cr:
            claim = self._claim(cr, SQL("id = ANY(%s) AND state = 'queued'", list(message_ids)), len(message_ids), now)
        if claim:
            self._dispatch_claimed(claim, now)

    @api.model
    def _cron_dispatch(self):
        """Every minute: settle interrupted messages and start a dispatch job for each channel
        with due messages. The jobs do the sending, on as many servers as run queue_job."""
        now = fields.Datetime.now()
        self._recover_interrupted(now)
        due = dict(
            self.sudo()._read_group(
                [("state", "=", "queued"), ("next_attempt_at", "<=", now)], ["channel_id"], ["__count"]
            )
        )
        for channel, count in due.items():
            if channel.state == "disabled":
                continue
            batches = -(-count // DISPATCH_JOB_BATCH_SIZE)
            for lane in range(min(channel.dispatch_lanes, batches)):
                channel._enqueue_dispatch_job(lane=lane)
        return len(due)

    @api.model
    def _has_due(self, channel, now=None):
        return bool(
            self.sudo().search_count(
                [
                    ("channel_id", "=", channel.id),
                    ("state", "=", "queued"),
                    ("next_attempt_at", "<=", now or fields.Datetime.now()),
                ],
                limit=1,
            )
        )

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
