import collections
import contextlib
import datetime
import logging
import random

from psycopg2.extensions import ISOLATION_LEVEL_READ_COMMITTED

from odoo import _, api, fields, models, tools
from odoo.tools import SQL

from .. import claims, templating
from ..exceptions import PermanentSendError, SendError, TransientSendError
from .gobysend_channel import DISPATCH_JOB_BATCH_SIZE
from .gobysend_message import (
    BASE_RETRY_DELAY,
    DISPATCH_BATCH_SIZE,
    DISPATCH_LOOKUPS,
    LINK_RACE_ATTEMPTS,
    MAX_ATTEMPTS,
    MESSAGE_CLAIMS,
    RATE_LOCK_CLASS,
    TrackedLinkRace,
)

_logger = logging.getLogger(__name__)


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


class GobysendMessageDispatch(models.Model):
    """Dispatch: batches of due messages claimed (``claims``), checked against the send-time
    rules, rendered and handed to the channel's provider, each step in its own transaction;
    recovery of the batches of dispatchers that stopped."""

    _inherit = "gobysend.message"

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
