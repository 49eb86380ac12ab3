import logging
import time

from odoo import _, api, fields, models
from odoo.exceptions import UserError, ValidationError

from odoo.addons.queue_job.job import identity_exact

from .. import sending, transport
from ..exceptions import PermanentSendError, SendError, TransientSendError

_logger = logging.getLogger(__name__)

CHANNEL_TYPES = [
    ("email", "Email"),
    ("sms", "SMS"),
    ("zalo", "Zalo"),
    ("push", "Push"),
    ("slack", "Slack"),
    ("chat", "Chat Bot"),
    ("webhook", "Webhook"),
    ("inapp", "In-app"),
]
# Channels that reach a contact and therefore need the contact's consent.
CONSENT_CHANNEL_TYPES = ("email", "sms", "zalo", "push")
# Messages one dispatch job claims and sends together.
DISPATCH_JOB_BATCH_SIZE = 500
# Seconds a rate-limited channel waits once its budget for the minute is spent.
RATE_LIMIT_PAUSE = 60


class GobysendChannel(models.Model):
    """How a workspace sends on one channel: which provider, as whom, how fast, at what cost.

    Providers follow Odoo's payment-provider pattern: each one adds itself to ``provider``
    and implements ``_<provider>_send(message)``, returning the provider's message id or raising
    ``TransientSendError`` / ``PermanentSendError``. A provider that calls the network makes
    ``_<provider>_send`` a generator that yields its HTTP requests (see ``sending``), so that a
    batch's requests run side by side; one that sends a batch better at once implements
    ``_<provider>_send_batch(messages)``. ``gobysend_channels`` adds the real providers.
    """

    _name = "gobysend.channel"
    _description = "Gobysend Channel"
    _inherit = ["mail.thread", "gobysend.workspace.bound"]
    _order = "workspace_id, sequence, id"

    name = fields.Char(required=True, tracking=True)
    sequence = fields.Integer(default=10)
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", index=True)
    channel_type = fields.Selection(CHANNEL_TYPES, string="Channel", required=True, default="email", tracking=True)
    provider = fields.Selection(
        [("outbox", "Embedded outbox"), ("email", "Odoo email")],
        required=True,
        default="outbox",
        tracking=True,
        help="Embedded outbox: messages are rendered, checked and recorded as sent without leaving Odoo.",
    )
    state = fields.Selection(
        [("test", "Test"), ("enabled", "Enabled"), ("disabled", "Disabled")],
        required=True,
        default="test",
        tracking=True,
        help="Test: only test sends go out. Disabled: nothing is sent; queued messages wait.",
    )
    sender = fields.Char(help="Sender identity: an email address, an SMS brand name, a Zalo OA, a bot name…")
    rate_limit = fields.Integer(string="Messages per Minute", default=600, help="0 means no limit.")
    token_cost = fields.Float(string="Tokens per Message", digits=(16, 2), default=1.0)
    test_partner_id = fields.Many2one("res.partner", string="Test Recipient")
    max_parallel_requests = fields.Integer(
        string="Parallel Requests",
        default=50,
        help="How many requests one dispatcher keeps in flight to the provider, and how many messages it hands "
        "over at a time. Should a dispatcher stop abruptly, only the messages in flight have an unknown fate.",
    )
    dispatch_lanes = fields.Integer(
        string="Parallel Dispatchers",
        default=2,
        help="How many background jobs may send this channel's messages at the same time, on any server.",
    )
    outbox_count = fields.Integer(compute="_compute_outbox_count", string="Outbox Messages")

    _sql_constraints = [
        ("rate_limit_not_negative", "CHECK(rate_limit >= 0)", "The rate limit cannot be negative."),
        ("token_cost_not_negative", "CHECK(token_cost >= 0)", "The token cost cannot be negative."),
        ("max_parallel_requests_positive", "CHECK(max_parallel_requests > 0)", "Parallel requests must be at least 1."),
        ("dispatch_lanes_positive", "CHECK(dispatch_lanes > 0)", "Parallel dispatchers must be at least 1."),
    ]

    def _compute_outbox_count(self):
        counts = dict(
            self.env["gobysend.message"]._read_group([("channel_id", "in", self.ids)], ["channel_id"], ["__count"])
        )
        for channel in self:
            channel.outbox_count = counts.get(channel, 0)

    @api.constrains("provider", "channel_type")
    def _check_provider_channel_type(self):
        for channel in self:
            supported = channel._get_supported_channel_types()
            if supported and channel.channel_type not in supported:
                raise ValidationError(
                    _(
                        "The provider %(provider)s cannot send %(channel)s messages.",
                        provider=dict(self._fields["provider"].selection).get(channel.provider),
                        channel=dict(CHANNEL_TYPES)[channel.channel_type],
                    )
                )

    def _get_supported_channel_types(self):
        """Channel types the provider can serve; empty means all. Providers override this."""
        self.ensure_one()
        if self.provider == "email":
            return ("email",)
        return ()

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------

    def _send_flight(self, real=True, batch_env=None):
        """A ``sending.SendFlight`` for this channel's provider (the embedded outbox when not
        ``real``): messages added to it a slice at a time go out side by side. A provider that
        sends a whole slice at once (``_<provider>_send_batch``) does it in ``batch_env``."""
        self.ensure_one()
        provider = self.provider if real else "outbox"
        send = getattr(self, f"_{provider}_send", None)
        batch_channel = self.with_env(batch_env or self.env)
        send_slice = getattr(batch_channel, f"_{provider}_send_batch", None)
        send_batch = send_slice and (lambda messages: send_slice(messages.with_env(batch_channel.env)))

        failure = None
        if send is None and send_batch is None:
            failure = PermanentSendError(_("The provider %(provider)s cannot send messages.", provider=provider))
        before = getattr(self, f"_{provider}_before_send_batch", None)
        if before is not None and failure is None:
            try:
                self._run_provider_request_steps(before())
            except SendError as error:
                failure = error
        return sending.SendFlight(
            send,
            self.max_parallel_requests,
            self._unexpected_send_error,
            send_batch=send_batch,
            failure=failure,
            allowed_networks=self._get_outbound_allowed_networks(),
        )

    def _send_batch(self, messages):
        """Hand ``messages`` (rendered, checked, all of this channel) to the provider and wait.

        Returns ``{message id: provider message id, or the SendError that stopped it}``.
        """
        flight = self._send_flight()
        flight.add(messages)
        return {key: result for _part, results in flight.finish() for key, result in results.items()}

    def _get_message_token_cost(self):
        """Tokens one message of this channel costs, set on the message when it is queued."""
        self.ensure_one()
        return self.token_cost

    def _has_idempotent_sends(self):
        """Whether the provider recognises a repeated request for a message and sends it once
        (e.g. by a request id of the message's own): only then is a message whose fate is
        unknown sent again automatically. Providers override this."""
        self.ensure_one()
        return False

    def _run_provider_request_steps(self, steps):
        """Run one provider generator to its end now (a button, a token refresh) and return its
        value; raise what stopped it."""
        response = error = None
        while True:
            try:
                request = steps.throw(error) if error is not None else steps.send(response)
            except StopIteration as stop:
                return stop.value
            response, error = sending.perform(request, self._get_outbound_allowed_networks())

    @api.model
    def _get_outbound_allowed_networks(self):
        """The networks besides public addresses that providers' requests may reach, as an Odoo
        administrator listed them (``transport.ALLOWED_NETWORKS_PARAMETER``); none by default, so
        that a URL a manager sets cannot reach the server's own network. Read from the cached
        system parameters, parsed once per value."""
        # sudo: one value that only administrators write; nothing of the caller's input reaches it.
        value = self.env["ir.config_parameter"].sudo().get_param(transport.ALLOWED_NETWORKS_PARAMETER) or ""
        return transport.parse_allowed_networks(value)

    def _unexpected_send_error(self, message, error):
        # A bug or an unforeseen answer while the provider may already have the message: it is
        # failed with the reason, never retried blindly, and the traceback goes to the log.
        _logger.error("Channel %s could not send message %s", self.id, getattr(message, "id", message), exc_info=error)
        return PermanentSendError(
            _(
                "An unexpected error stopped the sending; check with the provider before retrying: %(error)s",
                error=error,
            )
        )

    def _outbox_send(self, message):
        return "outbox-%s" % message.id

    def _email_send_batch(self, messages):
        """Create the batch's emails at once and send them through Odoo's mail queue code, which
        shares one SMTP connection per mail server; bounces come back on each mail."""
        results, mail_values, mailed = {}, [], []
        email_from = self.sender or self.env.company.email_formatted or self.env.user.email_formatted
        for message in messages:
            partner = message.partner_id
            if not partner.email_normalized:
                results[message.id] = PermanentSendError(
                    _("%(contact)s has no valid email address.", contact=partner.display_name)
                )
                continue
            subscription = message._get_subscription()
            mail_values.append(
                {
                    "subject": message.subject or "",
                    "body_html": message.body or "",
                    "email_from": email_from,
                    # The partner alone: mail.mail sends once per recipient and once more for email_to.
                    "recipient_ids": [(4, partner.id)],
                    "headers": dict(
                        subscription._get_email_unsubscribe_headers() if subscription else {},
                        **{"X-Gobysend-Message-Id": str(message.id)},
                    ),
                    "auto_delete": False,
                    "gobysend_message_id": message.id,
                }
            )
            mailed.append(message)
        mails = self.env["mail.mail"].sudo().create(mail_values)
        mails.send(raise_exception=False)
        for message, mail in zip(mailed, mails, strict=True):
            if mail.state == "exception":
                reason = mail.failure_reason or _("The email could not be sent.")
                error_class = (
                    PermanentSendError
                    if mail.failure_type in ("mail_email_invalid", "mail_email_missing")
                    else TransientSendError
                )
                results[message.id] = error_class(reason)
            else:
                results[message.id] = mail.message_id or "mail-%s" % mail.id
        return results

    # ------------------------------------------------------------------
    # Background dispatch (queue_job)
    # ------------------------------------------------------------------

    def _get_job_channel(self):
        """One queue_job channel per provider, so that each provider's pace can be set apart."""
        self.ensure_one()
        return "root.gobysend.%s" % self.provider

    def _enqueue_dispatch_job(self, eta=None, lane=0):
        """Make sure a dispatch job of this channel's ``lane`` is pending. Lanes let up to
        ``dispatch_lanes`` jobs send the channel's messages at once, on any worker or server."""
        self.ensure_one()
        return self.with_delay(
            channel=self._get_job_channel(),
            identity_key=identity_exact,
            eta=eta,
            description=_("Send due messages of %(channel)s", channel=self.display_name),
        )._job_dispatch(lane=lane)

    def _job_dispatch(self, batch_size=DISPATCH_JOB_BATCH_SIZE, time_budget=50.0, lane=0):
        """Send this channel's due messages in batches until none are left or the time budget
        is spent; then hand over to a fresh job so that one job never holds a worker for long.

        Safe to run twice and on several servers at once: each batch is claimed first."""
        self.ensure_one()
        messages = self.env["gobysend.message"]
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < time_budget:
            claimed = messages._claim_due(self, batch_size)
            if not claimed:
                if self.rate_limit and messages._has_due(self):
                    self._enqueue_dispatch_job(eta=RATE_LIMIT_PAUSE, lane=lane)  # this minute's budget is spent
                break
            messages._dispatch_claimed(claimed)
            sent += len(claimed)
        else:
            self._enqueue_dispatch_job(lane=lane)
        return _("%(count)s messages processed.", count=sent)

    def action_send_test(self):
        """Send a test message to the test recipient, through every rule but the channel's state."""
        self.ensure_one()
        partner = self.test_partner_id or self.env.user.partner_id
        if self.state == "disabled":
            raise UserError(_("Enable the channel (or set it to Test) before sending a test."))
        message = self.env["gobysend.message"]._enqueue(
            partner,
            self,
            body=_("This is a test message from %(workspace)s.", workspace=self.workspace_id.name),
            subject=_("Test message"),
            is_test=True,
        )
        # Sent once this request has committed, before its answer leaves: the form opened below
        # shows the provider's answer or error, as a manager testing a channel expects, and a
        # retried request cannot send the test twice.
        message._send_after_commit(message.ids)
        return {
            "type": "ir.actions.act_window",
            "res_model": "gobysend.message",
            "res_id": message.id,
            "view_mode": "form",
        }
