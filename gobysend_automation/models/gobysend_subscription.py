from werkzeug.urls import url_encode

from odoo import _, api, fields, models, tools
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from ..tools import pg_array, secrets_match

CHANNELS = ("email", "sms", "zalo", "push")
CHANNEL_LABELS = {"email": "Email", "sms": "SMS", "zalo": "Zalo", "push": "Push"}
CONSENT_STATES = [
    ("subscribed", "Subscribed"),
    ("unsubscribed", "Unsubscribed"),
    ("pending", "Pending Confirmation"),
    ("bounced", "Bounced"),
]
CONSENT_SOURCES = [
    ("api", "Tracking API"),
    ("manual", "Set by a user"),
    ("import", "Import"),
    ("record", "Odoo record"),
    ("form", "Sign-up form"),
    ("double_opt_in", "Double opt-in confirmation"),
    ("unsubscribe_link", "Unsubscribe link"),
    ("one_click", "One-click unsubscribe"),
    ("preference_page", "Preference page"),
    ("blacklist", "Odoo blacklist"),
    ("bounce", "Bounce"),
]
TOKEN_SCOPE = "gobysend-subscription"
BLACKLIST_FLAGS = ("is_blacklisted", "phone_sanitized_blacklisted", "phone_blacklisted", "mobile_blacklisted")
# Odoo's blacklist of each channel that has one: {channel: (table, its column, the partner's
# field it holds)}.
BLACKLISTS = {
    "email": ("mail_blacklist", "email", "email_normalized"),
    "sms": ("phone_blacklist", "number", "phone_sanitized"),
}

ALL_CHANNELS = "all"


def initial_consent_records(states):
    """The (channel, state) records that prove the consent a subscription starts with, from
    its ``states`` ({channel: state}): one record for all channels when they start in the same
    state, as they mostly do, else one per channel. A subscription is created per contact, by
    the thousand in an import, and each record is a row with two foreign keys to check."""
    if len(set(states.values())) == 1:
        return [(ALL_CHANNELS, next(iter(states.values())))]
    return list(states.items())


class GobysendSubscription(models.Model):
    """A contact's membership of a workspace, with its consent per channel.

    Consent changes go through ``_set_consent`` so that each one is logged with its source as
    proof, mirrored in the chatter, and propagated to Odoo's own email and phone blacklists; an
    import's go through ``_set_consents``, which does the same for many at once, without the
    chatter's tracking message.
    """

    _name = "gobysend.subscription"
    _description = "Gobysend Subscription"
    _inherit = ["mail.thread"]
    _rec_name = "partner_id"
    _order = "create_date desc, id desc"

    # Not indexed alone, nor is the customer id: the unique indexes on the workspace and the
    # contact, and on the workspace and the customer id, serve every search by workspace and
    # every lookup of a customer id, which is always within a workspace.
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", tracking=True)
    partner_id = fields.Many2one("res.partner", string="Contact", required=True, ondelete="cascade", index=True)
    external_id = fields.Char(
        string="Customer ID",
        help="The business's own identifier of this contact, used by the tracking API.",
    )
    email = fields.Char(related="partner_id.email", string="Email")
    phone = fields.Char(related="partner_id.phone", string="Phone")
    email_state = fields.Selection(
        CONSENT_STATES, string="Email Consent", default="subscribed", required=True, tracking=True
    )
    sms_state = fields.Selection(
        CONSENT_STATES, string="SMS Consent", default="subscribed", required=True, tracking=True
    )
    zalo_state = fields.Selection(
        CONSENT_STATES, string="Zalo Consent", default="subscribed", required=True, tracking=True
    )
    push_state = fields.Selection(
        CONSENT_STATES, string="Push Consent", default="subscribed", required=True, tracking=True
    )
    source = fields.Selection(CONSENT_SOURCES, default="manual", readonly=True)
    confirmed_at = fields.Datetime(string="Confirmed On", readonly=True)
    confirmation_sent_at = fields.Datetime(string="Confirmation Sent On", readonly=True)
    consent_log_ids = fields.One2many("gobysend.consent.log", "subscription_id", string="Consent History")
    active = fields.Boolean(default=True)

    _sql_constraints = [
        ("partner_uniq", "unique(workspace_id, partner_id)", "A contact can be subscribed only once per workspace."),
        ("external_id_uniq", "unique(workspace_id, external_id)", "Customer IDs must be unique within a workspace."),
    ]

    def init(self):
        # "Is this contact one of the workspace's?", asked by every segment evaluation for each
        # contact that meets the conditions: answered from this index alone, without reading
        # the subscription to see whether it is archived.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS gobysend_subscription_workspace_contact_idx
                ON gobysend_subscription (workspace_id, partner_id) WHERE active
            """
        )

    @api.depends("partner_id", "workspace_id")
    def _compute_display_name(self):
        for subscription in self:
            subscription.display_name = "%s (%s)" % (
                subscription.partner_id.display_name,
                subscription.workspace_id.name,
            )

    @api.model_create_multi
    def create(self, vals_list):
        # Defaults first: a workspace given through the context must count as well.
        vals_list = [self._add_missing_default_values(vals) for vals in vals_list]
        workspaces = self.env["gobysend.workspace"].browse(
            [vals["workspace_id"] for vals in vals_list if vals.get("workspace_id")]
        )
        double_opt_in = {workspace.id for workspace in workspaces.sudo() if workspace.double_opt_in}
        if not self.env.context.get("gobysend_skip_double_opt_in"):
            for vals in vals_list:
                if vals.get("workspace_id") not in double_opt_in:
                    continue
                # Nobody is subscribed to such a workspace before confirming, whatever the
                # creator sent: forms send every field's default value along.
                for channel in CHANNELS:
                    if vals.get(f"{channel}_state", "subscribed") == "subscribed":
                        vals[f"{channel}_state"] = "pending"
        subscriptions = super().create(vals_list)
        subscriptions.partner_id._gobysend_flag_subscribed()
        self.env["gobysend.consent.log"].sudo().create(
            [
                {"subscription_id": subscription.id, "channel": channel, "state": state, "source": subscription.source}
                for subscription in subscriptions
                for channel, state in initial_consent_records(
                    {channel: subscription[f"{channel}_state"] for channel in CHANNELS}
                )
            ]
        )
        for subscription in subscriptions:
            for channel in ("email", "sms"):
                if subscription[f"{channel}_state"] == "unsubscribed":
                    subscription._sync_blacklists(channel, "unsubscribed")
        subscriptions.filtered(lambda s: s.email_state == "pending" and s.partner_id.email)._send_confirmation()
        self.env["gobysend.segment"]._mark_dirty(subscriptions.partner_id.ids, "subscription")
        return subscriptions

    def write(self, vals):
        for field_name in ("workspace_id", "partner_id"):
            if field_name in vals and any(subscription[field_name].id != vals[field_name] for subscription in self):
                # Consent was given by this contact to this workspace: it cannot be handed over.
                raise ValidationError(
                    _(
                        "The contact and the workspace of a subscription cannot change: its consent was given by "
                        "that contact to that workspace. Create a new subscription instead."
                    )
                )
        changed = {channel: vals[f"{channel}_state"] for channel in CHANNELS if f"{channel}_state" in vals}
        if changed and not self.env.context.get("gobysend_consent_logged"):
            # Edits made in the form are consent changes too: route them through the log.
            for subscription in self:
                for channel, state in changed.items():
                    subscription._set_consent(channel, state, "manual")
            vals = {key: value for key, value in vals.items() if key not in {f"{c}_state" for c in changed}}
            if not vals:
                return True
        result = super().write(vals)
        # Consent and archiving change who the workspace's contacts are and what they consent to.
        self.env["gobysend.segment"]._mark_dirty(self.partner_id.ids, "subscription")
        return result

    def unlink(self):
        # Marked before: a contact without a subscription left is only marked for its memberships.
        self.env["gobysend.segment"]._mark_dirty(self.partner_id.ids, "subscription")
        return super().unlink()

    # ------------------------------------------------------------------
    # Consent
    # ------------------------------------------------------------------

    @api.model
    def _check_consent(self, channel, state):
        if channel not in CHANNELS:
            raise ValidationError(_("“%(channel)s” is not a consent channel.", channel=channel))
        if state not in dict(CONSENT_STATES):
            raise ValidationError(_("“%(state)s” is not a consent state.", state=state))

    def _set_consent(self, channel, state, source, ip_address=None, note=None):
        """Change one channel's consent, log it as proof and keep Odoo's blacklists in step."""
        self._check_consent(channel, state)
        field_name = f"{channel}_state"
        for subscription in self:
            if subscription[field_name] == state:
                continue
            subscription.with_context(gobysend_consent_logged=True).write({field_name: state})
            self.env["gobysend.consent.log"].sudo().create(
                {
                    "subscription_id": subscription.id,
                    "channel": channel,
                    "state": state,
                    "source": source,
                    "ip_address": ip_address,
                    "note": note,
                }
            )
            subscription._sync_blacklists(channel, state)
        return True

    @api.model
    def _set_consents(self, changes, source, note=None):
        """``_set_consent`` for many subscriptions at once, as an import gives it: ``changes``
        is [(subscription id, channel, state)], one per subscription and channel. Returns the
        ids of the contacts whose consent changed; queuing them for the segments is the
        caller's.

        Plain SQL: one update per channel, leaving the subscriptions that hold the state
        already, and one insert of the consent records that prove the changes. Contact by
        contact, each change cost a write with its tracking message, a record and a chatter
        message on the blacklist: an import changing the consent of a list crawled at some
        fifty contacts a second. As Odoo's own import does by default, no tracking message is
        posted: the consent records are the proof. Opt-outs join Odoo's blacklists at once;
        an address that is blacklisted and subscribes again leaves the blacklist as one by
        one (``_sync_blacklists``), where another workspace's opt-out does not keep it."""
        by_channel = {}
        for subscription_id, channel, state in changes:
            self._check_consent(channel, state)
            ids, states = by_channel.setdefault(channel, ([], []))
            ids.append(subscription_id)
            states.append(state)
        if not by_channel:
            return set()
        self.flush_model([f"{channel}_state" for channel in by_channel])
        now = self.env.cr.now()
        changed = []  # (subscription id, partner id, channel, state)
        for channel, (ids, states) in by_channel.items():
            self.env.cr.execute(
                SQL(
                    """
                    UPDATE gobysend_subscription s
                       SET %(column)s = t.state, write_uid = %(uid)s, write_date = %(now)s
                      FROM unnest(%(ids)s::int[], %(states)s::varchar[]) AS t(id, state)
                     WHERE s.id = t.id AND s.%(column)s IS DISTINCT FROM t.state
                 RETURNING s.id, s.partner_id, t.state
                    """,
                    column=SQL.identifier(f"{channel}_state"),
                    uid=self.env.uid,
                    now=now,
                    ids=pg_array(ids),
                    states=pg_array(states),
                )
            )
            changed += [
                (subscription_id, partner_id, channel, state)
                for subscription_id, partner_id, state in self.env.cr.fetchall()
            ]
        self.invalidate_model([f"{channel}_state" for channel in by_channel] + ["write_uid", "write_date"])
        if not changed:
            return set()
        self.env.cr.execute(
            """
            INSERT INTO gobysend_consent_log (subscription_id, channel, state, source, note, create_uid, create_date)
                 SELECT subscription_id, channel, state, %s, %s, %s, %s
                   FROM unnest(%s::int[], %s::varchar[], %s::varchar[]) AS t(subscription_id, channel, state)
            """,
            (
                source,
                note,
                self.env.uid,
                now,
                pg_array([row[0] for row in changed]),
                pg_array([row[2] for row in changed]),
                pg_array([row[3] for row in changed]),
            ),
        )
        self.env["gobysend.consent.log"].invalidate_model()
        self.env["gobysend.ingest"]._add_to_blacklists(
            [
                partner_id
                for _s, partner_id, channel, state in changed
                if channel == "email" and state == "unsubscribed"
            ],
            [partner_id for _s, partner_id, channel, state in changed if channel == "sms" and state == "unsubscribed"],
        )
        self._remove_from_blacklists(
            [
                (subscription_id, partner_id, channel)
                for subscription_id, partner_id, channel, state in changed
                if channel in ("email", "sms") and state == "subscribed"
            ]
        )
        return {partner_id for _s, partner_id, _c, _state in changed}

    @api.model
    def _remove_from_blacklists(self, subscribing):
        """Take the addresses and numbers of ``subscribing`` ([(subscription id, partner id,
        channel)], subscribed again on email or SMS) off Odoo's blacklists, unless another
        subscription of the same address or number (of any workspace, archived ones too)
        still holds an opt-out that the shared blacklist enforces: ``_sync_blacklists`` and
        ``_other_workspaces_opted_out`` for many at once, one statement per blacklist. Called
        after the subscriptions' states were written."""
        for channel, (table, column, source) in BLACKLISTS.items():
            pairs = [(subscription_id, partner_id) for subscription_id, partner_id, c in subscribing if c == channel]
            if not pairs:
                continue
            self.env.cr.execute(
                SQL(
                    """
                    UPDATE %(table)s b SET active = false, write_uid = %(uid)s, write_date = %(now)s
                      FROM unnest(%(subscription_ids)s::int[], %(partner_ids)s::int[]) AS t(subscription_id, partner_id)
                      JOIN res_partner p ON p.id = t.partner_id
                     WHERE b.%(column)s = p.%(source)s AND b.active
                       AND NOT EXISTS (SELECT 1
                                         FROM res_partner other
                                         JOIN gobysend_subscription s ON s.partner_id = other.id
                                        WHERE other.%(source)s = p.%(source)s AND s.id <> t.subscription_id
                                          AND s.%(state)s = 'unsubscribed')
                    """,
                    table=SQL.identifier(table),
                    column=SQL.identifier(column),
                    source=SQL.identifier(source),
                    state=SQL.identifier(f"{channel}_state"),
                    uid=self.env.uid,
                    now=self.env.cr.now(),
                    subscription_ids=pg_array([pair[0] for pair in pairs]),
                    partner_ids=pg_array([pair[1] for pair in pairs]),
                )
            )
        if subscribing:
            self.env["mail.blacklist"].invalidate_model()
            self.env["phone.blacklist"].invalidate_model()
            partners = self.env["res.partner"]
            partners.invalidate_model([name for name in BLACKLIST_FLAGS if name in partners._fields])

    def _sync_blacklists(self, channel, state):
        self.ensure_one()
        partner = self.partner_id
        message = _("Consent changed in Gobysend workspace %(workspace)s.", workspace=self.workspace_id.name)
        if channel == "email" and partner.email_normalized:
            blacklist = self.env["mail.blacklist"].sudo()
            if state == "unsubscribed":
                blacklist._add(partner.email_normalized, message=message)
            elif (
                state == "subscribed"
                and blacklist.search_count([("email", "=", partner.email_normalized)], limit=1)
                and not self._other_workspaces_opted_out("email")
            ):
                blacklist._remove(partner.email_normalized, message=message)
        elif channel == "sms" and partner.phone_sanitized:
            blacklist = self.env["phone.blacklist"].sudo()
            if state == "unsubscribed":
                blacklist._add([partner.phone_sanitized], message=message)
            elif (
                state == "subscribed"
                and blacklist.search_count([("number", "=", partner.phone_sanitized)], limit=1)
                and not self._other_workspaces_opted_out("sms")
            ):
                blacklist._remove([partner.phone_sanitized], message=message)
        else:
            return
        # The partners' blacklist flags are computed from these tables but cached per record.
        partners = self.env["res.partner"]
        partners.invalidate_model([name for name in BLACKLIST_FLAGS if name in partners._fields])

    def _other_workspaces_opted_out(self, channel):
        """Whether another subscription of the same address still holds an opt-out that the
        shared blacklist enforces. The blacklists work per address, so every contact with this
        address counts, and so do archived subscriptions: an opt-out is never dropped silently."""
        self.ensure_one()
        partners = self.env["res.partner"].sudo().with_context(active_test=False)
        if channel == "email":
            partners = partners.search([("email_normalized", "=", self.partner_id.email_normalized)])
        else:
            partners = partners.search([("phone_sanitized", "=", self.partner_id.phone_sanitized)])
        return bool(
            self.sudo()
            .with_context(active_test=False)
            .search_count(
                [
                    ("partner_id", "in", (partners | self.partner_id).ids),
                    ("id", "!=", self.id),
                    (f"{channel}_state", "=", "unsubscribed"),
                ],
                limit=1,
            )
        )

    def _is_opted_out(self, channel):
        """True when a message on ``channel`` must not reach this contact."""
        self.ensure_one()
        if channel in CHANNELS and self[f"{channel}_state"] != "subscribed":
            return True
        if channel == "email" and self.partner_id.is_blacklisted:
            return True
        if channel == "sms" and self.partner_id.phone_sanitized_blacklisted:
            return True
        return False

    def action_confirm(self, source="double_opt_in", ip_address=None):
        """Flip every pending channel to subscribed: the contact confirmed their address."""
        for subscription in self:
            pending = [channel for channel in CHANNELS if subscription[f"{channel}_state"] == "pending"]
            if not pending:
                # A second click on the link: keep the first confirmation as the proof.
                continue
            for channel in pending:
                subscription._set_consent(channel, "subscribed", source, ip_address=ip_address)
            subscription.sudo().confirmed_at = fields.Datetime.now()
        return True

    def action_send_confirmation(self):
        missing = self.filtered(lambda s: not s.partner_id.email)
        if missing:
            raise ValidationError(
                _(
                    "%(contact)s has no email address to send a confirmation to.",
                    contact=missing[0].partner_id.display_name,
                )
            )
        self._send_confirmation()
        return True

    def _send_confirmation(self):
        template = self.env.ref("gobysend_automation.mail_template_double_opt_in", raise_if_not_found=False)
        if not template:
            return
        for subscription in self:
            template.sudo().send_mail(subscription.id, email_layout_xmlid="mail.mail_notification_light")
            subscription.sudo().confirmation_sent_at = fields.Datetime.now()

    # ------------------------------------------------------------------
    # Signed links
    # ------------------------------------------------------------------

    def _get_token(self, purpose, channel=""):
        self.ensure_one()
        return tools.hmac(self.env(su=True), TOKEN_SCOPE, (purpose, self.id, channel))

    def _check_token(self, purpose, token, channel=""):
        self.ensure_one()
        return bool(token) and secrets_match(self._get_token(purpose, channel), token)

    def _get_base_url(self):
        return self.env["ir.config_parameter"].sudo().get_param("web.base.url", "").rstrip("/")

    def _get_confirm_url(self):
        self.ensure_one()
        return "%s/gobysend/confirm/%s?%s" % (
            self._get_base_url(),
            self.id,
            url_encode({"token": self._get_token("confirm")}),
        )

    def _get_unsubscribe_url(self, channel):
        """One link per contact and channel; it opens the preference page and works for one-click."""
        self.ensure_one()
        return "%s/gobysend/unsubscribe/%s/%s?%s" % (
            self._get_base_url(),
            self.id,
            channel,
            url_encode({"token": self._get_token("unsubscribe", channel)}),
        )

    def _get_preferences_url(self):
        self.ensure_one()
        return "%s/gobysend/preferences/%s?%s" % (
            self._get_base_url(),
            self.id,
            url_encode({"token": self._get_token("preferences")}),
        )

    def _get_email_unsubscribe_headers(self):
        """RFC 2369 / RFC 8058 headers for emails sent to this contact."""
        self.ensure_one()
        return {
            "List-Unsubscribe": "<%s>" % self._get_unsubscribe_url("email"),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
