import collections
import datetime

import pytz

from odoo import _, api, models

from ..tools import first_moment_at
from .gobysend_channel import CHANNEL_TYPES, CONSENT_CHANNEL_TYPES
from .gobysend_message import (
    CAP_LOCK_CLASS,
    SENT_STATES,
)
from .gobysend_workspace import WEEKDAY_FIELDS


class GobysendMessageRules(models.Model):
    """The outbox's send-time rules: consent, frequency caps, quiet hours and sending days in
    the contact's time zone, and the token ledger. Dispatch applies them to each batch."""

    _inherit = "gobysend.message"

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
