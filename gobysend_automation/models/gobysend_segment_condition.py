import datetime
import re

from dateutil.relativedelta import relativedelta

from odoo import _, api, fields, models
from odoo.exceptions import AccessError, UserError, ValidationError
from odoo.osv import expression
from odoo.tools import SQL
from odoo.tools import safe_eval as safe_eval_tools
from odoo.tools.safe_eval import safe_eval

from .gobysend_attribute_value import VALUE_FIELDS
from .gobysend_channel import CHANNEL_TYPES
from .gobysend_event import INTERNAL_EVENTS
from .gobysend_subscription import CHANNELS, CONSENT_STATES

CONDITION_KINDS = [
    ("group", "Group of conditions"),
    ("domain", "Contact filter"),
    ("attribute", "Attribute"),
    ("event", "Performed an event"),
    ("page", "Visited a page"),
    ("message", "Message engagement"),
    ("segment", "Segment membership"),
    ("consent", "Subscription state"),
    ("joined", "Became a contact"),
]
GROUP_OPERATORS = [("and", "All of (AND)"), ("or", "Any of (OR)")]
ATTRIBUTE_OPERATORS = [
    ("eq", "equals"),
    ("ne", "does not equal"),
    ("contains", "contains"),
    ("gt", "is greater than / after"),
    ("lt", "is less than / before"),
    ("between", "is between"),
    ("set", "is set"),
    ("not_set", "is not set"),
    ("last_days", "is within the last N days"),
    ("next_days", "is within the next N days"),
    ("anniversary_today", "has its anniversary today"),
    ("anniversary_month", "has its anniversary this month"),
]
# Which operators make sense for which attribute type.
OPERATORS_BY_TYPE = {
    "string": ("eq", "ne", "contains", "set", "not_set"),
    "number": ("eq", "ne", "gt", "lt", "between", "set", "not_set"),
    "boolean": ("eq", "ne", "set", "not_set"),
    "date": (
        "eq",
        "ne",
        "gt",
        "lt",
        "between",
        "set",
        "not_set",
        "last_days",
        "next_days",
        "anniversary_today",
        "anniversary_month",
    ),
}
OPERATORS_BY_TYPE["datetime"] = OPERATORS_BY_TYPE["date"]
OPERATORS_WITHOUT_VALUE = ("set", "not_set", "last_days", "next_days", "anniversary_today", "anniversary_month")
COUNT_OPERATORS = [("at_least", "at least"), ("at_most", "at most"), ("exactly", "exactly")]
PROPERTY_OPERATORS = [
    ("=", "="),
    ("!=", "≠"),
    (">", ">"),
    (">=", "≥"),
    ("<", "<"),
    ("<=", "≤"),
    ("contains", "contains"),
]
NUMERIC_PROPERTY_OPERATORS = (">", ">=", "<", "<=")
URL_OPERATORS = [("contains", "contains"), ("equals", "equals"), ("starts_with", "starts with")]
ENGAGEMENTS = [
    ("received", "received a message"),
    ("opened", "opened a message"),
    ("clicked", "clicked a message"),
    ("not_opened", "received but did not open a message"),
]
# Message states that mean the message left for the contact.
RECEIVED_STATES = ("sent", "delivered", "opened", "clicked")
PROPERTY_KEY_RE = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
TRUE_VALUES = ("true", "yes", "1")
FALSE_VALUES = ("false", "no", "0")
# What changes about a contact can change whether it meets a condition of each kind (keys of
# ``gobysend_segment.CHANGES``); segment conditions watch what the other segment watches.
WATCHED_CHANGES = {
    "domain": ("contact",),
    "attribute": ("attribute",),
    "event": ("activity",),
    "page": ("activity",),
    # Opened and clicked are events the outbox records.
    "message": ("message", "activity"),
    "consent": ("subscription",),
    "joined": ("subscription",),
}
# What decides which contact fields a condition watches (``_get_watched_partner_fields``).
WATCHED_FIELDS_INPUTS = {"kind", "partner_domain", "segment_id", "parent_id", "child_ids", "other_segment_id"}
# Names a contact filter may use, as in Odoo's own saved filters.
DOMAIN_EVAL_NAMES = ("datetime", "relativedelta", "context_today", "time", "uid")
# Models a contact filter may not reach (names, or prefixes ending with a dot). Gobysend's own
# records belong to workspaces: the segment's other kinds of condition read them, scoped to the
# segment's workspace. User accounts and mail internals (messages, followers, activities,
# discussions) are no contact data, and some of their fields join without access rules.
FILTER_FORBIDDEN_MODELS = ("gobysend.", "mail.", "discuss.", "bus.", "ir.", "res.users", "res.groups")
# Mixins whose fields on contacts are mail internals (followers, messages, activities).
FILTER_FORBIDDEN_MIXINS = ("mail.thread", "mail.activity.mixin")
# Operators that compare a many2one with record ids: they name records without reading them
# (the salesperson is the current user: ``[("user_id", "=", uid)]``).
ID_OPERATORS = ("=", "!=", "in", "not in")
# The context key that carries whose access rights contact filters are evaluated with (a
# user id; 0 when the user who set them no longer exists). Set by ``gobysend.segment``.
FILTER_UID_KEY = "gobysend_filter_uid"


class GobysendSegmentCondition(models.Model):
    """One condition of a segment, or a group of conditions combined with AND or OR.

    Every condition compiles to a domain on ``res.partner`` (``_get_partner_domain``); the
    conditions on activity become ``("id", "in", <subquery>)`` leaves built from the ORM's
    ``_search``, so that a whole segment is one SQL query the database plans at once.
    """

    _name = "gobysend.segment.condition"
    _description = "Gobysend Segment Condition"
    _order = "sequence, id"

    segment_id = fields.Many2one("gobysend.segment", string="Segment Described", ondelete="cascade", index=True)
    parent_id = fields.Many2one("gobysend.segment.condition", string="Group", ondelete="cascade", index=True)
    child_ids = fields.One2many("gobysend.segment.condition", "parent_id", string="Conditions")
    workspace_id = fields.Many2one(
        "gobysend.workspace", compute="_compute_workspace_id", store=True, recursive=True, index=True
    )
    sequence = fields.Integer(default=10)
    kind = fields.Selection(CONDITION_KINDS, required=True, default="domain")
    group_operator = fields.Selection(GROUP_OPERATORS, string="Combine", default="and")
    # Contact filter
    partner_domain = fields.Char(string="Contact Filter", default="[]")
    # Attribute
    attribute_id = fields.Many2one("gobysend.attribute", ondelete="restrict")
    attribute_type = fields.Selection(related="attribute_id.value_type", string="Attribute Type")
    attribute_operator = fields.Selection(ATTRIBUTE_OPERATORS, string="Operator", default="eq")
    value = fields.Char(help="Numbers with a dot for decimals, dates as YYYY-MM-DD, yes/no for booleans.")
    value_to = fields.Char(string="And", help="The upper bound of “is between”.")
    # Behaviour
    event_name = fields.Char(help="Leave empty for any activity of the contact.")
    count_operator = fields.Selection(COUNT_OPERATORS, string="How Often", default="at_least")
    count = fields.Integer(string="Times", default=1)
    days = fields.Integer(
        string="Within the Last (days)", default=30, help="0 means ever; for date attributes, the N of “N days”."
    )
    property_key = fields.Char(string="Property", help="A key of the event's properties, e.g. total.")
    property_operator = fields.Selection(PROPERTY_OPERATORS, default="=")
    property_value = fields.Char()
    url_operator = fields.Selection(URL_OPERATORS, string="URL", default="contains")
    url_value = fields.Char(string="URL Text")
    engagement = fields.Selection(ENGAGEMENTS, default="opened")
    channel_type = fields.Selection(CHANNEL_TYPES, string="Channel", help="Leave empty for any channel.")
    # Segment membership and consent
    other_segment_id = fields.Many2one("gobysend.segment", string="Segment", ondelete="restrict")
    negate = fields.Boolean(string="Not", help="Match the contacts that do not meet this condition.")
    consent_channel = fields.Selection(
        [(channel, channel.capitalize() if channel != "sms" else "SMS") for channel in CHANNELS],
        help="Leave empty for any channel.",
    )
    consent_state = fields.Selection(CONSENT_STATES, default="subscribed")
    summary = fields.Char(compute="_compute_summary")

    @api.depends("segment_id.workspace_id", "parent_id.workspace_id")
    def _compute_workspace_id(self):
        for condition in self:
            condition.workspace_id = (condition.parent_id.workspace_id or condition.segment_id.workspace_id).id

    @api.depends(
        "kind",
        "group_operator",
        "child_ids",
        "partner_domain",
        "attribute_id",
        "attribute_operator",
        "value",
        "value_to",
        "event_name",
        "count_operator",
        "count",
        "days",
        "property_key",
        "property_operator",
        "property_value",
        "url_operator",
        "url_value",
        "engagement",
        "channel_type",
        "other_segment_id",
        "negate",
        "consent_channel",
        "consent_state",
    )
    def _compute_summary(self):
        for condition in self:
            condition.summary = condition._describe()

    def _describe(self):
        self.ensure_one()
        selection = self._selection_label
        window = _("within the last %(days)s days", days=self.days) if self.days else _("ever")
        if self.kind == "group":
            text = _("%(combine)s %(count)s conditions", combine=selection("group_operator"), count=len(self.child_ids))
        elif self.kind == "domain":
            text = _("Contact filter %(domain)s", domain=self.partner_domain or "[]")
        elif self.kind == "attribute":
            text = "%s %s %s" % (
                self.attribute_id.display_name or "?",
                selection("attribute_operator"),
                self._attribute_operand_text(),
            )
        elif self.kind == "event":
            text = _(
                "Performed %(event)s %(how)s %(count)s times %(window)s",
                event=self.event_name or _("any event"),
                how=selection("count_operator"),
                count=self.count,
                window=window,
            )
            if self.property_key:
                text += " (%s %s %s)" % (self.property_key, self.property_operator, self.property_value or "")
        elif self.kind == "page":
            text = _(
                "Visited a page whose URL %(how)s “%(url)s” %(window)s",
                how=selection("url_operator"),
                url=self.url_value or "",
                window=window,
            )
        elif self.kind == "message":
            text = _(
                "%(engagement)s on %(channel)s %(window)s",
                engagement=selection("engagement"),
                channel=selection("channel_type") or _("any channel"),
                window=window,
            )
        elif self.kind == "segment":
            text = _("Member of %(segment)s", segment=self.other_segment_id.display_name or "?")
        elif self.kind == "consent":
            text = _(
                "%(state)s on %(channel)s",
                state=selection("consent_state"),
                channel=selection("consent_channel") or _("any channel"),
            )
        else:
            text = _("Became a contact within the last %(days)s days", days=self.days)
        return (_("NOT %(condition)s", condition=text)) if self.negate else text

    def _selection_label(self, field_name):
        return dict(self._fields[field_name]._description_selection(self.env)).get(self[field_name]) or ""

    def _attribute_operand_text(self):
        if self.attribute_operator in ("last_days", "next_days"):
            return _("(%(days)s days)", days=self.days)
        if self.attribute_operator in OPERATORS_WITHOUT_VALUE:
            return ""
        if self.attribute_operator == "between":
            return _("%(low)s and %(high)s", low=self.value or "?", high=self.value_to or "?")
        return self.value or ""

    # ------------------------------------------------------------------
    # Validation
    # ------------------------------------------------------------------

    @api.constrains(
        "kind",
        "segment_id",
        "parent_id",
        "partner_domain",
        "attribute_id",
        "attribute_operator",
        "value",
        "value_to",
        "event_name",
        "count",
        "days",
        "property_key",
        "property_operator",
        "property_value",
        "url_value",
        "other_segment_id",
    )
    def _check_condition(self):
        for condition in self:
            if bool(condition.segment_id) == bool(condition.parent_id):
                raise ValidationError(_("A condition belongs either to a segment or to a group of conditions."))
            condition._validate()
        self._get_root_segments()._check_no_cycle()

    # ------------------------------------------------------------------
    # CRUD: whoever changes the conditions becomes the user whose rights evaluate them, and the
    # contact fields that segments watch are looked up again
    # ------------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        conditions = super().create(vals_list)
        conditions._get_root_segments()._set_filter_user()
        self.env["gobysend.segment"]._forget_watched_partner_fields()
        return conditions

    def write(self, vals):
        self._check_stays_in_workspace(vals)
        result = super().write(vals)
        self._get_root_segments()._set_filter_user()
        if WATCHED_FIELDS_INPUTS & set(vals):
            self.env["gobysend.segment"]._forget_watched_partner_fields()
        return result

    def _check_stays_in_workspace(self, vals):
        """Record rules check a write against the condition as it was: moving it under another
        workspace's segment would change an audience its author cannot see."""
        targets = self.env["gobysend.workspace"]
        # sudo: only the workspaces are read, to compare them with the conditions' own.
        if vals.get("segment_id"):
            targets |= self.env["gobysend.segment"].sudo().browse(vals["segment_id"]).workspace_id
        if vals.get("parent_id"):
            targets |= self.sudo().browse(vals["parent_id"]).workspace_id
        if targets and any(condition.workspace_id != targets for condition in self.sudo()):
            raise UserError(_("A condition cannot move to a segment of another workspace."))

    def unlink(self):
        segments = self._get_root_segments()
        result = super().unlink()
        segments.exists()._set_filter_user()
        self.env["gobysend.segment"]._forget_watched_partner_fields()
        return result

    def _validate(self):
        """Raise a ``ValidationError`` with a sentence a marketer understands when this condition
        cannot be evaluated. Works on unsaved records too (the form's live count calls it)."""
        self.ensure_one()
        workspace = self._get_workspace()
        if self.kind == "group":
            if not self.child_ids:
                raise ValidationError(
                    _("A group of conditions is empty: add at least one condition to it, or remove it.")
                )
            for child in self.child_ids:
                child._validate()
        elif self.kind == "domain":
            self._get_contact_filter()
        elif self.kind == "attribute":
            self._validate_attribute(workspace)
        elif self.kind in ("event", "page", "message", "joined"):
            if self.days < 0:
                raise ValidationError(_("The number of days cannot be negative."))
            if self.kind == "event":
                if self.count < 0:
                    raise ValidationError(_("The number of times cannot be negative."))
                self._property_filter_sql(SQL.identifier("e"))
            if self.kind == "page" and not (self.url_value or "").strip():
                raise ValidationError(_("Say which text the visited page's URL must contain."))
            if self.kind == "joined" and self.days <= 0:
                raise ValidationError(_("Say within how many days the contact must have joined."))
        elif self.kind == "segment":
            if not self.other_segment_id:
                raise ValidationError(_("Choose the segment the contact must be a member of."))
            if workspace and self.other_segment_id.workspace_id != workspace:
                raise ValidationError(
                    _(
                        "Segment “%(segment)s” belongs to another workspace.",
                        segment=self.other_segment_id.display_name,
                    )
                )

    def _validate_attribute(self, workspace):
        attribute = self.attribute_id
        if not attribute:
            raise ValidationError(_("Choose the attribute the condition is about."))
        if workspace and attribute.workspace_id != workspace:
            raise ValidationError(
                _("Attribute “%(attribute)s” belongs to another workspace.", attribute=attribute.display_name)
            )
        allowed = OPERATORS_BY_TYPE[attribute.value_type]
        if self.attribute_operator not in allowed:
            labels = dict(self._fields["attribute_operator"]._description_selection(self.env))
            type_labels = dict(attribute._fields["value_type"]._description_selection(self.env))
            raise ValidationError(
                _(
                    "“%(operator)s” does not apply to attribute “%(attribute)s”, which holds %(type)s values; "
                    "use one of: %(allowed)s.",
                    operator=labels[self.attribute_operator],
                    attribute=attribute.display_name,
                    type=type_labels[attribute.value_type].lower(),
                    allowed=", ".join(labels[operator] for operator in allowed),
                )
            )
        if self.attribute_operator in ("last_days", "next_days") and self.days <= 0:
            raise ValidationError(_("Say how many days the date must be within."))
        self._attribute_operands()

    def _parse_value(self, text):
        """``text`` read as a value of the attribute's type, or a ValidationError."""
        attribute = self.attribute_id
        value_type = attribute.value_type
        text = (text or "").strip()
        if not text:
            raise ValidationError(
                _("Give a value to compare attribute “%(attribute)s” with.", attribute=attribute.display_name)
            )
        try:
            if value_type == "number":
                return float(text)
            if value_type == "boolean":
                if text.lower() in TRUE_VALUES:
                    return True
                if text.lower() in FALSE_VALUES:
                    return False
                raise ValueError(text)
            if value_type == "date":
                return fields.Date.to_date(text)
            if value_type == "datetime":
                return fields.Datetime.to_datetime(text if len(text) > 10 else text + " 00:00:00")
        except ValueError:
            type_labels = dict(attribute._fields["value_type"]._description_selection(self.env))
            raise ValidationError(
                _(
                    "“%(value)s” is not a valid value for attribute “%(attribute)s”, which holds %(type)s values.",
                    value=text,
                    attribute=attribute.display_name,
                    type=type_labels[value_type].lower(),
                )
            ) from None
        return text

    def _attribute_operands(self):
        if self.attribute_operator in OPERATORS_WITHOUT_VALUE:
            return ()
        if self.attribute_operator == "between":
            return (self._parse_value(self.value), self._parse_value(self.value_to))
        return (self._parse_value(self.value),)

    def _get_contact_filter(self, workspace=None, now=None):
        """The contact filter as a domain, checked against the fields contacts really have and
        against what the user whose rights evaluate it may read (``_contacts_model``); ``now`` is
        the moment the segment is evaluated at (the current time by default)."""
        Partner = self._contacts_model()
        try:
            domain = safe_eval(self.partner_domain or "[]", self._domain_eval_context(Partner.env, workspace, now))
        except Exception as error:
            raise ValidationError(
                _("The contact filter cannot be read: %(error)s", error=getattr(error, "args", [error])[0])
            ) from None
        if not isinstance(domain, list | tuple):
            raise ValidationError(_("The contact filter must be a list of conditions."))
        self._check_filter_paths(domain, Partner, "")
        try:
            expression.expression(domain, Partner)
        except AccessError as error:
            raise ValidationError(_("The contact filter cannot be used: %(error)s", error=error.args[0])) from None
        except (ValueError, TypeError, AssertionError) as error:
            raise ValidationError(
                _("The contact filter cannot be used: %(error)s", error=getattr(error, "args", [error])[0])
            ) from None
        return list(domain)

    def _check_filter_paths(self, domain, model, prefix):
        """Refuse a filter whose field paths leave contact data (``FILTER_FORBIDDEN_MODELS``,
        ``FILTER_FORBIDDEN_MIXINS``), use fields or models that ``model``'s user cannot read,
        or cross fields that join without access rules; ``any`` sub-filters are checked on
        their own model. ``prefix`` is the path that led to ``model``, for the messages."""
        for leaf in domain:
            if expression.is_operator(leaf) or leaf in (expression.TRUE_LEAF, expression.FALSE_LEAF):
                continue
            if not isinstance(leaf, list | tuple) or len(leaf) != 3 or not isinstance(leaf[0], str):
                raise ValidationError(_("The contact filter has an unreadable condition: %(leaf)s", leaf=leaf))
            path, operator, value = leaf
            names = path.split(".")
            current = model
            for position, name in enumerate(names):
                full_path = ".".join(filter(None, [prefix, *names[: position + 1]]))
                field = current._fields.get(name)
                if field is None:
                    if position and name in models.READ_GROUP_NUMBER_GRANULARITY:
                        break
                    raise ValidationError(
                        _(
                            "The contact filter uses “%(path)s”, but %(model)s has no field “%(field)s”.",
                            path=full_path,
                            model=current._description,
                            field=name,
                        )
                    )
                self._check_filter_field(current, field, full_path)
                if not field.relational:
                    break
                comodel = current.env[field.comodel_name]
                last = position == len(names) - 1
                if last and field.type == "many2one" and operator in ID_OPERATORS and self._names_ids_only(value):
                    # A column of the record itself: nothing of the other model is read. (Not so
                    # for x2many fields, whose ids Odoo looks up without access rules.)
                    break
                if self._is_forbidden_filter_model(comodel._name):
                    raise self._forbidden_path_error(full_path, comodel)
                if getattr(field, "auto_join", False):
                    raise ValidationError(
                        _(
                            "The contact filter cannot use “%(path)s”: field “%(field)s” of %(model)s is read "
                            "without access rules.",
                            path=full_path,
                            field=field.string,
                            model=current._description,
                        )
                    )
                if not comodel.has_access("read"):
                    raise ValidationError(
                        _(
                            "The contact filter cannot use “%(path)s”: you have no access to %(model)s.",
                            path=full_path,
                            model=comodel._description,
                        )
                    )
                if last and operator in ("any", "not any") and isinstance(value, list | tuple):
                    self._check_filter_paths(value, comodel, full_path)
                current = comodel

    def _check_filter_field(self, model, field, path):
        if not field.is_accessible(model.env):
            raise ValidationError(
                _(
                    "The contact filter cannot use “%(path)s”: you have no access to field “%(field)s” of %(model)s.",
                    path=path,
                    field=field.string,
                    model=model._description,
                )
            )
        magic = {*models.MAGIC_COLUMNS, "display_name"}
        if field.name not in magic and any(
            field.name in model.env[mixin]._fields for mixin in FILTER_FORBIDDEN_MIXINS if mixin in model.env
        ):
            raise ValidationError(
                _(
                    "The contact filter cannot use “%(path)s”: followers, messages and activities are out of a "
                    "contact filter's reach.",
                    path=path,
                )
            )

    @staticmethod
    def _names_ids_only(value):
        values = value if isinstance(value, list | tuple) else [value]
        return all(item is False or (isinstance(item, int) and not isinstance(item, bool)) for item in values)

    @staticmethod
    def _is_forbidden_filter_model(model_name):
        return any(
            model_name.startswith(forbidden) if forbidden.endswith(".") else model_name == forbidden
            for forbidden in FILTER_FORBIDDEN_MODELS
        )

    def _forbidden_path_error(self, path, model):
        if model._name.startswith("gobysend."):
            return ValidationError(
                _(
                    "The contact filter cannot use “%(path)s”: %(model)s belongs to workspaces. Use a condition "
                    "of the segment instead (attribute, event, message engagement, subscription state or segment "
                    "membership), which stays within this segment's workspace.",
                    path=path,
                    model=model._description,
                )
            )
        return ValidationError(
            _(
                "The contact filter cannot use “%(path)s”: %(model)s records (user accounts, messages and other "
                "internal records) are out of a contact filter's reach.",
                path=path,
                model=model._description,
            )
        )

    def _contacts_model(self):
        """``res.partner`` with the access rights contact filters are evaluated with: those of
        the user the segment names (``FILTER_UID_KEY``), else the current user's. Record rules
        thus apply to the contacts and to every record a filter's path reaches."""
        Partner = self.env["res.partner"]
        uid = self.env.context.get(FILTER_UID_KEY)
        return Partner.with_user(uid) if uid else Partner

    def _domain_eval_context(self, env=None, workspace=None, now=None):
        env = env or self.env
        # The filter's "today" is the workspace's date at the moment evaluated, as for the date
        # conditions: not the date in the zone of whoever runs the evaluation (the scheduled
        # rebuild's user, a manager's preview), nor today's date when a past moment is rebuilt.
        workspace = workspace or self._get_workspace()
        today = fields.Date.context_today(self.with_context(tz=workspace.tz), now)
        return {
            "datetime": safe_eval_tools.datetime,
            "relativedelta": relativedelta,
            "context_today": lambda: today,
            "time": safe_eval_tools.time,
            "uid": env.uid,
        }

    def _property_filter_sql(self, alias):
        """The SQL test of an event's property filter (the ORM cannot compare inside JSON)."""
        key = (self.property_key or "").strip()
        if not key:
            return None
        if not PROPERTY_KEY_RE.match(key):
            raise ValidationError(_("“%(key)s” is not a property name: use letters, digits, _ and - only.", key=key))
        value = (self.property_value or "").strip()
        column = SQL("%s.properties", alias)
        number = None
        try:
            number = float(value)
        except ValueError:
            if self.property_operator in NUMERIC_PROPERTY_OPERATORS:
                raise ValidationError(
                    _(
                        "Property “%(key)s” is compared with “%(operator)s”, which needs a number, not “%(value)s”.",
                        key=key,
                        operator=self.property_operator,
                        value=value,
                    )
                ) from None
        if self.property_operator == "contains":
            return SQL("(%s ->> %s) ILIKE %s", column, key, "%" + value.replace("%", r"\%").replace("_", r"\_") + "%")
        if number is not None:
            # Only JSON numbers are cast: a text property never breaks the query.
            numeric = SQL(
                "(CASE WHEN jsonb_typeof(%s -> %s) = 'number' THEN (%s ->> %s)::numeric END)", column, key, column, key
            )
            if self.property_operator == "!=":
                return SQL("(%s IS DISTINCT FROM %s)", numeric, number)
            return SQL("(%s %s %s)", numeric, SQL(self.property_operator), number)
        if self.property_operator == "!=":
            return SQL("((%s ->> %s) IS DISTINCT FROM %s)", column, key, value)
        return SQL("((%s ->> %s) = %s)", column, key, value)

    # ------------------------------------------------------------------
    # Compilation
    # ------------------------------------------------------------------

    def _get_root_segment(self):
        self.ensure_one()
        node = self
        while node.parent_id:
            node = node.parent_id
        return node.segment_id

    def _get_root_segments(self):
        segments = self.env["gobysend.segment"]
        for condition in self:
            segments |= condition._get_root_segment()
        return segments

    def _get_workspace(self):
        return self._get_root_segment().workspace_id

    def _get_partner_domain(self, workspace, now, scope=None):
        """This condition as a domain on ``res.partner`` for the contacts of ``workspace``.

        ``scope`` (contact ids) is repeated inside every subquery: the database cannot push
        the outer restriction into a grouped subquery, and the incremental update must read
        only the activity of the contacts it re-evaluates.
        """
        self.ensure_one()
        self._validate()
        method = getattr(self, f"_domain_{self.kind}")
        domain = method(workspace, now, scope)
        if self.negate:
            domain = (
                ["!", *expression.normalize_domain(domain)] if self.kind == "domain" else self._exclude(domain, scope)
            )
        return domain

    @api.model
    def _combine(self, conditions, operator, workspace, now, scope=None):
        domains = [condition._get_partner_domain(workspace, now, scope) for condition in conditions]
        if not domains:
            return expression.TRUE_DOMAIN
        return expression.OR(domains) if operator == "or" else expression.AND(domains)

    def _domain_group(self, workspace, now, scope):
        return self._combine(self.child_ids, self.group_operator, workspace, now, scope)

    def _domain_domain(self, workspace, now, scope):
        if self.env.context.get(FILTER_UID_KEY) == 0:
            # Nobody's rights to evaluate it with (the user who set it was deleted): it matches
            # no one until someone saves the conditions again.
            return expression.FALSE_DOMAIN
        return self._get_contact_filter(workspace, now)

    def _since(self, now):
        return now - datetime.timedelta(days=self.days) if self.days else None

    @staticmethod
    def _scoped(domain, scope):
        return [*domain, ("partner_id", "in", list(scope))] if scope is not None else domain

    def _exclude(self, domain, scope):
        """The contacts that do not match ``domain``, as an anti-join.

        The ORM negates a subquery into ``id NOT IN (subquery)``, which PostgreSQL can only
        hash when the whole subquery fits in ``work_mem``; otherwise it rescans the subquery
        for every contact, which takes hours on a million contacts with a large activity
        subquery. ``NOT EXISTS`` becomes an anti-join that can spill to disk instead.
        """
        if len(domain) == 1 and domain[0][:2] == ("id", "in") and isinstance(domain[0][2], SQL):
            matching = SQL("SELECT x.* FROM %s AS x", domain[0][2])
        else:
            # The domain may hold contact filters: evaluated with their author's rights.
            query = self._contacts_model().with_context(active_test=False)._search(domain)
            matching = query.select(SQL.identifier(query.table, "id"))
        return [
            (
                "id",
                "in",
                SQL(
                    "(SELECT p.id FROM %s WHERE NOT EXISTS "
                    "(SELECT 1 FROM (%s) AS matching (partner_id) WHERE matching.partner_id = p.id))",
                    # Scoped, the candidates are the given contacts themselves: filtering
                    # res_partner with "= ANY(ids)" would compare each probe with every id.
                    SQL("unnest(%s::int[]) AS p (id)", list(scope)) if scope is not None else SQL("res_partner p"),
                    matching,
                ),
            )
        ]

    @staticmethod
    def _partner_ids_in(query, column="partner_id"):
        return [("id", "in", query.subselect(SQL.identifier(query.table, column)))]

    def _domain_attribute(self, workspace, now, scope):
        attribute = self.attribute_id
        column = VALUE_FIELDS[attribute.value_type]
        Value = self.env["gobysend.attribute.value"].sudo()
        base = [("attribute_id", "=", attribute.id)]
        operator = self.attribute_operator
        operands = self._attribute_operands()
        is_date = attribute.value_type in ("date", "datetime")
        today = fields.Date.context_today(self.with_context(tz=workspace.tz), now)
        if attribute.value_type == "boolean":
            # An unset boolean column reads as false: ask for the value explicitly.
            condition = [(column, "=", operands[0])] if operator == "eq" else [(column, "=", not operands[0])]
        elif operator in ("set", "not_set"):
            condition = []
        elif operator in ("eq", "ne") and attribute.value_type == "string":
            # Text compares as people read it: "gold" equals "Gold".
            escaped = operands[0].replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
            condition = [(column, "=ilike", escaped)]
            if operator == "ne":
                condition = ["!", *condition]
        elif operator == "eq":
            condition = self._date_equals(column, operands[0]) if is_date else [(column, "=", operands[0])]
        elif operator == "ne":
            if is_date:
                condition = ["!", *self._date_equals(column, operands[0])]
            else:
                condition = [(column, "!=", operands[0])]
        elif operator == "contains":
            condition = [(column, "ilike", operands[0])]
        elif operator == "gt":
            condition = [(column, ">", operands[0])]
        elif operator == "lt":
            condition = [(column, "<", operands[0])]
        elif operator == "between":
            condition = [(column, ">=", operands[0]), (column, "<=", operands[1])]
        elif operator == "last_days":
            condition = self._date_range(column, today - datetime.timedelta(days=self.days), today)
        elif operator == "next_days":
            condition = self._date_range(column, today, today + datetime.timedelta(days=self.days))
        elif operator == "anniversary_today":
            condition = [(f"{column}.month_number", "=", today.month), (f"{column}.day_of_month", "=", today.day)]
        else:  # anniversary_month
            condition = [(f"{column}.month_number", "=", today.month)]
        if is_date or attribute.value_type == "string":
            condition = [(column, "!=", False), *condition]
        domain = self._partner_ids_in(Value._search(expression.AND([self._scoped(base, scope), condition])))
        return self._exclude(domain, scope) if operator == "not_set" else domain

    def _date_equals(self, column, value):
        if self.attribute_id.value_type == "datetime":
            return self._date_range(column, value.date(), value.date())
        return [(column, "=", value)]

    def _date_range(self, column, first_day, last_day):
        if self.attribute_id.value_type == "datetime":
            return [
                (column, ">=", datetime.datetime.combine(first_day, datetime.time.min)),
                (column, "<", datetime.datetime.combine(last_day + datetime.timedelta(days=1), datetime.time.min)),
            ]
        return [(column, ">=", first_day), (column, "<=", last_day)]

    def _domain_event(self, workspace, now, scope):
        Event = self.env["gobysend.event"].sudo()
        domain = [("workspace_id", "=", workspace.id)]
        if self.event_name:
            domain.append(("name", "=", self.event_name.strip()))
        else:
            domain.append(("name", "not in", INTERNAL_EVENTS))
        since = self._since(now)
        if since:
            domain.append(("timestamp", ">=", since))
        query = Event._search(self._scoped(domain, scope))
        property_filter = self._property_filter_sql(SQL.identifier(query.table))
        if property_filter:
            query.add_where(property_filter)
        partner = SQL.identifier(query.table, "partner_id")
        if self.count_operator == "at_least":
            if self.count <= 0:
                return expression.TRUE_DOMAIN
            if self.count == 1:
                return self._partner_ids_in(query)
            query.groupby = partner
            query.having = SQL("count(*) >= %s", self.count)
            return [("id", "in", SQL("(%s)", query.select(partner)))]
        if self.count_operator == "exactly" and self.count > 0:
            query.groupby = partner
            query.having = SQL("count(*) = %s", self.count)
            return [("id", "in", SQL("(%s)", query.select(partner)))]
        # At most N (exactly 0 included): not among those who did it more often.
        if self.count == 0:
            return self._exclude(self._partner_ids_in(query), scope)
        query.groupby = partner
        query.having = SQL("count(*) > %s", self.count)
        return self._exclude([("id", "in", SQL("(%s)", query.select(partner)))], scope)

    def _domain_page(self, workspace, now, scope):
        url = self.url_value.strip()
        # Segment transitions are no page views; saying so lets the activity index serve.
        domain = [("workspace_id", "=", workspace.id), ("kind", "=", "page"), ("name", "not in", INTERNAL_EVENTS)]
        if self.url_operator == "equals":
            domain.append(("url", "=", url))
        elif self.url_operator == "starts_with":
            domain.append(("url", "=like", url.replace("%", r"\%").replace("_", r"\_") + "%"))
        else:
            domain.append(("url", "ilike", url))
        since = self._since(now)
        if since:
            domain.append(("timestamp", ">=", since))
        return self._partner_ids_in(self.env["gobysend.event"].sudo()._search(self._scoped(domain, scope)))

    def _domain_message(self, workspace, now, scope):
        since = self._since(now)
        received = [("workspace_id", "=", workspace.id), ("state", "in", RECEIVED_STATES)]
        if self.channel_type:
            received.append(("channel_type", "=", self.channel_type))
        if since:
            received.append(("sent_at", ">=", since))
        received_domain = self._partner_ids_in(
            self.env["gobysend.message"].sudo()._search(self._scoped(received, scope))
        )
        if self.engagement == "received":
            return received_domain
        opened = self._engagement_event_domain(
            workspace, "message_clicked" if self.engagement == "clicked" else "message_opened", since, scope
        )
        if self.engagement == "not_opened":
            return expression.AND([received_domain, self._exclude(opened, scope)])
        return opened

    def _engagement_event_domain(self, workspace, name, since, scope):
        domain = [("workspace_id", "=", workspace.id), ("name", "=", name)]
        if since:
            domain.append(("timestamp", ">=", since))
        query = self.env["gobysend.event"].sudo()._search(self._scoped(domain, scope))
        if self.channel_type:
            # The outbox writes the channel into the engagement event's properties.
            query.add_where(SQL("%s.properties ->> 'channel' = %s", SQL.identifier(query.table), self.channel_type))
        return self._partner_ids_in(query)

    def _domain_segment(self, workspace, now, scope):
        Membership = self.env["gobysend.segment.membership"].sudo()
        query = Membership._search(
            self._scoped([("segment_id", "=", self.other_segment_id.id), ("left_at", "=", False)], scope)
        )
        return self._partner_ids_in(query)

    def _domain_consent(self, workspace, now, scope):
        channels = [self.consent_channel] if self.consent_channel else list(CHANNELS)
        states = expression.OR([[(f"{channel}_state", "=", self.consent_state)] for channel in channels])
        Subscription = self.env["gobysend.subscription"].sudo()
        return self._partner_ids_in(
            Subscription._search(expression.AND([[("workspace_id", "=", workspace.id)], states]))
        )

    def _domain_joined(self, workspace, now, scope):
        Subscription = self.env["gobysend.subscription"].sudo()
        query = Subscription._search(
            self._scoped(
                [("workspace_id", "=", workspace.id), ("create_date", ">=", now - datetime.timedelta(days=self.days))],
                scope,
            )
        )
        return self._partner_ids_in(query)

    def _depends_on_time(self):
        """Whether the condition can change by time passing alone (kept true by the scheduled refresh)."""
        for condition in self:
            if condition.kind == "group" and condition.child_ids._depends_on_time():
                return True
            if condition.kind in ("event", "page", "message") and condition.days:
                return True
            if condition.kind == "joined":
                return True
            if condition.kind == "attribute" and condition.attribute_operator in (
                "last_days",
                "next_days",
                "anniversary_today",
                "anniversary_month",
            ):
                return True
            if condition.kind == "domain":
                return True  # filters can name dates relative to today
        return False

    def _leaf_conditions(self, visited):
        """The conditions that test something themselves, found in these conditions' groups and
        followed into the segments they use; ``visited`` holds the segments already followed
        (cycles are refused on save, but a form may hold one before that)."""
        for condition in self:
            if condition.kind == "group":
                yield from condition.child_ids._leaf_conditions(visited)
            elif condition.kind == "segment":
                other = condition.other_segment_id
                if other and other.id not in visited:
                    visited.add(other.id)
                    yield from other.condition_ids._leaf_conditions(visited)
            else:
                yield condition

    def _get_watched_changes(self, visited):
        """The kinds of change (keys of ``gobysend_segment.CHANGES``) these conditions watch."""
        watched = set()
        for condition in self._leaf_conditions(visited):
            watched.update(WATCHED_CHANGES[condition.kind])
        return watched

    def _get_watched_partner_fields(self, visited):
        """Names of the contact fields these conditions' contact filters test (the first field
        of each path: a write of the contact itself changes no other). A filter that cannot be
        read is left out: it cannot be evaluated either, so no change moves anyone by it."""
        names = set()
        for condition in self._leaf_conditions(visited):
            if condition.kind != "domain":
                continue
            try:
                domain = condition._get_contact_filter()
            except ValidationError:
                continue
            for leaf in domain:
                if expression.is_operator(leaf) or leaf in (expression.TRUE_LEAF, expression.FALSE_LEAF):
                    continue
                names.add(leaf[0].split(".")[0])
                if leaf[1] in ("child_of", "parent_of"):
                    # Hierarchy operators follow the parent links, whatever field they name.
                    names.add(self.env["res.partner"]._parent_name)
        return names

    def _has_contact_filter(self):
        return any(
            condition.kind == "domain" or (condition.kind == "group" and condition.child_ids._has_contact_filter())
            for condition in self
        )

    def _get_referenced_segments(self):
        segments = self.env["gobysend.segment"]
        for condition in self:
            if condition.kind == "segment":
                segments |= condition.other_segment_id
            elif condition.kind == "group":
                segments |= condition.child_ids._get_referenced_segments()
        return segments
