import secrets

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, ValidationError

from odoo.addons.base.models.res_partner import _tz_get

from ..tools import count_related, normalize_phone, related_list_action

WEEKDAY_FIELDS = (
    "send_on_monday",
    "send_on_tuesday",
    "send_on_wednesday",
    "send_on_thursday",
    "send_on_friday",
    "send_on_saturday",
    "send_on_sunday",
)


class GobysendWorkspace(models.Model):
    """A workspace holds one business line's contacts, data, settings and API keys.

    Every record that belongs to a workspace carries ``workspace_id`` and is hidden from users
    who are not members of that workspace (see ``security/gobysend_rules.xml``).
    """

    _name = "gobysend.workspace"
    _description = "Gobysend Workspace"
    _inherit = ["mail.thread"]
    _order = "sequence, name, id"

    name = fields.Char(required=True, tracking=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True, tracking=True)
    color = fields.Integer()
    description = fields.Text()
    member_ids = fields.Many2many(
        "res.users",
        "gobysend_workspace_member_rel",
        "workspace_id",
        "user_id",
        string="Members",
        default=lambda self: self.env.user,
        help="Only members see this workspace's contacts, activity and settings.",
    )
    tz = fields.Selection(
        _tz_get,
        string="Timezone",
        required=True,
        default=lambda self: self.env.user.tz or "Asia/Ho_Chi_Minh",
        help="Used for contacts whose own timezone is unknown.",
    )
    country_id = fields.Many2one(
        "res.country",
        string="Default Country",
        default=lambda self: self.env.ref("base.vn", raise_if_not_found=False),
        help="Phone numbers written without a country prefix are read as numbers of this country.",
    )
    token_balance = fields.Float(
        digits=(16, 2),
        default=0.0,
        readonly=True,
        copy=False,
        tracking=True,
        help="Tokens available to pay for messages sent from this workspace. It changes only through the "
        "token ledger: top-ups by an administrator, and the sends it pays for.",
    )
    double_opt_in = fields.Boolean(
        string="Require Double Opt-in",
        help="New contacts receive an email with a confirmation link and stay pending until they confirm.",
    )
    # Settings used by the sending pipeline.
    quiet_hours_start = fields.Float(
        default=21.0, help="Start of the nightly window during which nothing is sent (contact's local time)."
    )
    quiet_hours_end = fields.Float(default=8.0, help="End of the nightly quiet window (contact's local time).")
    send_on_monday = fields.Boolean(string="Monday", default=True)
    send_on_tuesday = fields.Boolean(string="Tuesday", default=True)
    send_on_wednesday = fields.Boolean(string="Wednesday", default=True)
    send_on_thursday = fields.Boolean(string="Thursday", default=True)
    send_on_friday = fields.Boolean(string="Friday", default=True)
    send_on_saturday = fields.Boolean(string="Saturday", default=True)
    send_on_sunday = fields.Boolean(string="Sunday", default=True)
    frequency_cap_daily = fields.Integer(
        string="Daily Cap per Channel",
        help="Most messages one contact may receive per channel and day; 0 means no cap.",
    )
    frequency_cap_weekly = fields.Integer(
        string="Weekly Cap per Channel",
        help="Most messages one contact may receive per channel and week; 0 means no cap.",
    )
    api_rate_limit = fields.Integer(
        string="API Requests per Minute",
        default=6000,
        help="Most requests one API key may make per minute; further requests get HTTP 429.",
    )
    api_key_ids = fields.One2many("gobysend.api.key", "workspace_id", string="API Keys")
    subscription_ids = fields.One2many("gobysend.subscription", "workspace_id", string="Subscriptions")
    attribute_ids = fields.One2many("gobysend.attribute", "workspace_id", string="Attributes")
    subscription_count = fields.Integer(compute="_compute_counts", string="Contacts")
    event_count = fields.Integer(compute="_compute_counts", string="Events")
    device_count = fields.Integer(compute="_compute_counts", string="Devices")

    _sql_constraints = [
        ("api_rate_limit_positive", "CHECK(api_rate_limit > 0)", "The API rate limit must be a positive number."),
        (
            "frequency_caps_not_negative",
            "CHECK(frequency_cap_daily >= 0 AND frequency_cap_weekly >= 0)",
            "Frequency caps cannot be negative.",
        ),
    ]

    def _compute_counts(self):
        for model, field in (
            ("gobysend.subscription", "subscription_count"),
            ("gobysend.event", "event_count"),
            ("gobysend.device", "device_count"),
        ):
            counts = count_related(self, model, "workspace_id")
            for workspace in self:
                workspace[field] = counts.get(workspace, 0)

    @api.model_create_multi
    def create(self, vals_list):
        if not self.env.su and any(vals.get("token_balance") for vals in vals_list):
            raise AccessError(self._balance_refusal())
        workspaces = super().create(vals_list)
        self.env["gobysend.segment"]._create_predefined(workspaces)
        workspaces.filtered("token_balance")._record_balance_change(
            dict.fromkeys(workspaces, 0.0), _("Opening balance")
        )
        return workspaces

    def write(self, vals):
        if "token_balance" not in vals:
            return super().write(vals)
        # Only code running as superuser (data files, scripts, tests) sets a balance outright,
        # and even then the ledger records the difference: it always adds up to the balance.
        if not self.env.su:
            raise AccessError(self._balance_refusal())
        before = {workspace: workspace.token_balance for workspace in self}
        result = super().write(vals)
        self._record_balance_change(before, _("Balance set directly"))
        return result

    def _balance_refusal(self):
        return _(
            "A workspace's token balance changes only through its token ledger: an administrator tops it up "
            "(Top Up on the workspace), and each send debits it."
        )

    def _record_balance_change(self, before, note):
        entries = [
            {
                "workspace_id": workspace.id,
                "amount": workspace.token_balance - before[workspace],
                "balance_after": workspace.token_balance,
                "note": note,
            }
            for workspace in self
            if workspace.token_balance != before[workspace]
        ]
        # sudo: the ledger is written by the code that moves a balance, never by users.
        self.env["gobysend.token.transaction"].sudo().create(entries)

    @api.model
    def _create_missing_predefined_segments(self):
        """Give workspaces that existed before segments their predefined segments."""
        self.env["gobysend.segment"]._create_predefined(self.sudo().with_context(active_test=False).search([]))

    @api.constrains("quiet_hours_start", "quiet_hours_end")
    def _check_quiet_hours(self):
        for workspace in self:
            for value in (workspace.quiet_hours_start, workspace.quiet_hours_end):
                if not 0 <= value <= 24:
                    raise ValidationError(_("Quiet hours must be times of day between 00:00 and 24:00."))

    @api.constrains(*WEEKDAY_FIELDS)
    def _check_weekdays(self):
        for workspace in self:
            if not any(workspace[name] for name in WEEKDAY_FIELDS):
                raise ValidationError(
                    _("Workspace “%(name)s” must allow sending on at least one weekday.", name=workspace.name)
                )

    def api_key_create(self, name):
        """Create an API key for this workspace and return its plaintext, which is never stored.

        Public so that a manager can create keys over XML-RPC as well as from the form.
        """
        self.ensure_one()
        self.check_access("write")
        if not self.env.user.has_group("gobysend_automation.group_gobysend_manager"):
            raise ValidationError(_("Only Gobysend managers can create API keys."))
        if not (name or "").strip():
            raise ValidationError(_("Give the API key a name, so that you can tell it apart later."))
        plaintext = "gbs_%s_%s" % (secrets.token_hex(4), secrets.token_urlsafe(32))
        self.env["gobysend.api.key"].sudo().create(
            {
                "workspace_id": self.id,
                "name": name.strip(),
                "prefix": plaintext[:12],
                "key_hash": self.env["gobysend.api.key"]._hash_key(plaintext),
            }
        )
        return plaintext

    def top_up(self, amount, note=None):
        """Add ``amount`` tokens to the balance, recorded on the ledger; for Odoo administrators.
        Return the id of the ledger entry.

        Public so that billing scripts can top up over XML-RPC as well as from the form.
        """
        self.ensure_one()
        if not self.env.user.has_group("base.group_system"):
            raise AccessError(_("Only Odoo administrators can top up a workspace's tokens."))
        self.check_access("write")
        if not amount or amount <= 0:
            raise ValidationError(_("A top-up adds a positive number of tokens."))
        # One UPDATE relative to the stored balance: dispatchers debit it the same way at any
        # moment (see gobysend.message), and a read-then-write through the ORM would undo a
        # debit made in between.
        self.flush_recordset(["token_balance"])
        self.env.cr.execute(
            "UPDATE gobysend_workspace SET token_balance = COALESCE(token_balance, 0) + %s WHERE id = %s "
            "RETURNING token_balance",
            (amount, self.id),
        )
        balance_after = self.env.cr.fetchone()[0]
        self.invalidate_recordset(["token_balance"])
        # sudo: the ledger is read-only to users; the caller is an administrator (checked above).
        entry = (
            self.env["gobysend.token.transaction"]
            .sudo()
            .create(
                {
                    "workspace_id": self.id,
                    "amount": amount,
                    "balance_after": balance_after,
                    "note": (note or "").strip() or _("Top-up"),
                }
            )
        )
        self.message_post(
            body=_(
                "%(amount)s tokens added by %(user)s; the balance is now %(balance)s.",
                amount=amount,
                user=self.env.user.name,
                balance=balance_after,
            )
        )
        return entry.id

    def action_open_contact_import_wizard(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Import Contacts"),
            "res_model": "gobysend.contact.import.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"default_workspace_id": self.id},
        }

    def action_open_top_up_wizard(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Top Up Tokens"),
            "res_model": "gobysend.token.top.up.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"default_workspace_id": self.id},
        }

    def action_view_token_ledger(self):
        action = self._action_open_related("gobysend.token.transaction", _("Token Ledger"))
        action["context"] = {"create": False}
        return action

    def action_open_api_key_wizard(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("New API Key"),
            "res_model": "gobysend.api.key.wizard",
            "view_mode": "form",
            "target": "new",
            "context": {"default_workspace_id": self.id},
        }

    def _action_open_related(self, model, name):
        self.ensure_one()
        return related_list_action(self, model, "workspace_id", name)

    def action_view_subscriptions(self):
        return self._action_open_related("gobysend.subscription", _("Contacts"))

    def action_view_events(self):
        return self._action_open_related("gobysend.event", _("Events"))

    def action_view_devices(self):
        return self._action_open_related("gobysend.device", _("Devices"))

    def _normalize_phone(self, number, field_name="phone"):
        """Return ``number`` in E.164 using this workspace's default country, or raise."""
        return normalize_phone(number, self._get_phone_region(), field_name=field_name)

    def _get_phone_region(self):
        """The region of phone numbers written without a country prefix."""
        self.ensure_one()
        return self.country_id.code or "VN"
