import datetime
import logging
import time

from odoo import _, api, fields, models
from odoo.exceptions import UserError, ValidationError

from odoo.addons.queue_job.job import identity_exact

from ..exceptions import PermanentSendError, TransientSendError

_logger = logging.getLogger(__name__)

CHANNEL_TYPES = [
    ("email", "Email"),
    ("sms", "SMS"),
    ("zalo", "Zalo"),
    ("push", "Push"),
    ("slack", "Slack"),
    ("chat", "Chat Bot"),
    ("webhook", "Webhook"),
]
# Channels that reach a contact and therefore need the contact's consent.
CONSENT_CHANNEL_TYPES = ("email", "sms", "zalo", "push")


class GobysendChannel(models.Model):
    """How a workspace sends on one channel: which provider, as whom, how fast, at what cost.

    Providers follow Odoo's payment-provider pattern: each one adds itself to ``provider``
    and implements ``_<provider>_send(message)``, returning the provider's message id or raising
    ``TransientSendError`` / ``PermanentSendError``. ``gobysend_channels`` adds the real ones.
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
    outbox_count = fields.Integer(compute="_compute_outbox_count", string="Outbox Messages")

    _sql_constraints = [
        ("rate_limit_not_negative", "CHECK(rate_limit >= 0)", "The rate limit cannot be negative."),
        ("token_cost_not_negative", "CHECK(token_cost >= 0)", "The token cost cannot be negative."),
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

    def _send(self, message):
        """Hand one rendered message to the provider; return the provider's message id."""
        self.ensure_one()
        method = getattr(self, f"_{self.provider}_send", None)
        if method is None:
            raise PermanentSendError(_("The provider %(provider)s cannot send messages.", provider=self.provider))
        return method(message)

    def _outbox_send(self, message):
        return "outbox-%s" % message.id

    def _email_send(self, message):
        partner = message.partner_id
        if not partner.email_normalized:
            raise PermanentSendError(_("%(contact)s has no valid email address.", contact=partner.display_name))
        subscription = message._get_subscription()
        headers = subscription._get_email_unsubscribe_headers() if subscription else {}
        mail = (
            self.env["mail.mail"]
            .sudo()
            .create(
                {
                    "subject": message.subject or "",
                    "body_html": message.body or "",
                    "email_from": self.sender or self.env.company.email_formatted or self.env.user.email_formatted,
                    # The partner alone: mail.mail sends once per recipient and once more for email_to.
                    "recipient_ids": [(4, partner.id)],
                    "headers": headers,
                    "auto_delete": False,
                    "gobysend_message_id": message.id,
                }
            )
        )
        # Sent by Odoo's own mail queue and SMTP servers; bounces come back on the mail.
        mail.send(raise_exception=False)
        if mail.state == "exception":
            reason = mail.failure_reason or _("The email could not be sent.")
            if mail.failure_type in ("mail_email_invalid", "mail_email_missing"):
                raise PermanentSendError(reason)
            raise TransientSendError(reason)
        return mail.message_id or "mail-%s" % mail.id

    # ------------------------------------------------------------------
    # Background dispatch (queue_job)
    # ------------------------------------------------------------------

    def _get_job_channel(self):
        """One queue_job channel per provider, so that each provider's pace can be set apart."""
        self.ensure_one()
        return "root.gobysend.%s" % self.provider

    def _enqueue_dispatch_job(self, eta=None):
        self.ensure_one()
        return self.with_delay(
            channel=self._get_job_channel(),
            identity_key=identity_exact,
            eta=eta,
            description=_("Send due messages of %(channel)s", channel=self.display_name),
        )._job_dispatch()

    def _rate_budget(self, now):
        """How many more messages this channel may send in the current minute."""
        self.ensure_one()
        if not self.rate_limit:
            return None
        recent = (
            self.env["gobysend.message"]
            .sudo()
            .search_count(
                [
                    ("channel_id", "=", self.id),
                    ("handed_over_at", ">", now - datetime.timedelta(minutes=1)),
                ]
            )
        )
        return max(0, self.rate_limit - recent)

    def _job_dispatch(self, batch_size=100, time_budget=50.0):
        """Send this channel's due messages in batches until none are left or the time budget
        is spent; then hand over to a fresh job so that one job never holds a worker for long."""
        self.ensure_one()
        messages = self.env["gobysend.message"]
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < time_budget:
            now = fields.Datetime.now()
            budget = self._rate_budget(now)
            if budget == 0:
                self._enqueue_dispatch_job(eta=60)
                break
            claimed = messages._claim_due(self, batch_size if budget is None else min(batch_size, budget), now)
            if not claimed:
                break
            for message_id in claimed:
                messages._dispatch_claimed(message_id)
            sent += len(claimed)
        else:
            self._enqueue_dispatch_job()
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
        message._dispatch()
        return {
            "type": "ir.actions.act_window",
            "res_model": "gobysend.message",
            "res_id": message.id,
            "view_mode": "form",
        }
