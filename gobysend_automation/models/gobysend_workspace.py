import secrets

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

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
        tracking=True,
        help="Tokens available to pay for messages sent from this workspace.",
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
        workspaces = super().create(vals_list)
        self.env["gobysend.segment"]._create_predefined(workspaces)
        return workspaces

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
        self.ensure_one()
        return normalize_phone(number, self.country_id.code or "VN", field_name=field_name)
