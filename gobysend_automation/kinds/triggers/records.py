"""Record triggers: on new data, on changed data, on new or changed data.

A campaign fired by records of a model (a sales order, a lead, a contact) owns a
``base.automation`` rule on that model, which Odoo runs in the writer's transaction: its "before"
and "after" filters and watched fields pick the records, and its server action hands them over to
the campaign in one line (``gobysend.campaign._enter_from_records``; Odoo runs the campaigns'
rules from a cache and makes that call directly, see ``models/base_automation.py``). What
happens to them then (noted for the engine, who may see them, which contact they reach, what
the templates see) is in ``record_entries``.

The filters are a workspace member's input that Odoo evaluates as the writer (any user, the
administrator included) and, for the "before" filter, with superuser rights: they are therefore
plain data only (field paths, operators and literal values, ``uid``), never expressions that call
anything, and every field they name must be readable by the member who set them.
"""

import ast

from odoo.exceptions import AccessError, ValidationError
from odoo.osv import expression
from odoo.tools.translate import LazyTranslate

from ...models.gobysend_segment_condition import FILTER_FORBIDDEN_MODELS, ID_OPERATORS
from .. import TRIGGERS, TriggerKind, register
from . import record_entries

_lt = LazyTranslate(__name__)

# The one line of the owned rule's server action: everything else is Python of this module.
ACTION_CODE = 'env["gobysend.campaign"].browse(%d)._enter_from_records(records)'
# Names a record filter may use besides literals: the writer's user id, as in Odoo's own rules.
FILTER_NAMES = {"uid"}
# Syntax a record filter may contain: lists and tuples of literals, a minus sign, and ``uid``.
FILTER_NODES = (ast.Expression, ast.List, ast.Tuple, ast.Constant, ast.UnaryOp, ast.USub, ast.Name, ast.Load)


class RecordTrigger(TriggerKind):
    """Shared by the three record triggers; ``automation_trigger`` is base.automation's."""

    automation_trigger = None
    record_based = True
    icon = "fa-database"
    fields = ("model_id", "partner_path", "email_path", "trigger_field_ids", "filter_pre_domain", "filter_domain")
    # A creation has no "before": base.automation does not check it then.
    uses_before = True

    # ------------------------------------------------------------------
    # Settings
    # ------------------------------------------------------------------

    def validate(self, campaign):
        env = campaign.env
        if not campaign.model_id:
            raise ValidationError(env._("Choose the model whose records fire campaign “%(name)s”.", name=campaign.name))
        Model = self.records_model(campaign)
        if Model is None:
            raise ValidationError(
                env._(
                    "Campaign “%(name)s”: the user who set its filters no longer exists; set them again.",
                    name=campaign.name,
                )
            )
        model_label = campaign.sudo().model_id.name
        if Model._transient or Model._abstract or is_forbidden_model(Model._name):
            raise ValidationError(
                env._(
                    "Records of %(model)s cannot fire a campaign: they are not business data of the workspace "
                    "(user accounts, messages, Gobysend's own records and technical records are out of reach).",
                    model=model_label,
                )
            )
        if not Model.has_access("read"):
            raise ValidationError(
                env._(
                    "%(user)s cannot read %(model)s records, so they cannot fire a campaign set by them.",
                    user=Model.env.user.name,
                    model=model_label,
                )
            )
        self._validate_contact_path(campaign, Model)
        self._validate_trigger_fields(campaign, Model)
        before = campaign.filter_pre_domain if self.uses_before else False
        check_filter(Model, before, env._("Before"))
        check_filter(Model, campaign.filter_domain, env._("After"))

    def _validate_contact_path(self, campaign, Model):
        env = campaign.env
        partner_path = (campaign.partner_path or "").strip()
        email_path = (campaign.email_path or "").strip()
        if not partner_path and not email_path:
            raise ValidationError(
                env._(
                    "Campaign “%(name)s”: choose how a record of %(model)s reaches its contact: the path to the "
                    "contact (e.g. partner_id) or a field holding an email address (e.g. email_from).",
                    name=campaign.name,
                    model=campaign.sudo().model_id.name,
                )
            )
        if partner_path:
            record_entries.partner_path_fields(Model, partner_path)
        if email_path:
            field = Model._fields.get(email_path)
            if field is None or field.type != "char" or not field.is_accessible(Model.env):
                raise ValidationError(
                    env._(
                        "“%(path)s” is not a readable text field of %(model)s holding an email address.",
                        path=email_path,
                        model=campaign.sudo().model_id.name,
                    )
                )

    def _validate_trigger_fields(self, campaign, Model):
        env = campaign.env
        if not campaign.trigger_field_ids:
            raise ValidationError(
                env._(
                    "Campaign “%(name)s”: choose at least one required field: the campaign fires when a record is "
                    "created with it set, or when it changes.",
                    name=campaign.name,
                )
            )
        for field in campaign.sudo().trigger_field_ids:  # sudo: field metadata, for their names
            model_field = Model._fields.get(field.name)
            if field.model_id != campaign.model_id or model_field is None:
                raise ValidationError(
                    env._(
                        "Field “%(field)s” is not a field of %(model)s.",
                        field=field.field_description,
                        model=campaign.sudo().model_id.name,
                    )
                )
            if not model_field.store or not model_field.is_accessible(Model.env):
                raise ValidationError(
                    env._(
                        "Field “%(field)s” of %(model)s cannot be watched: only stored fields that %(user)s can "
                        "read can fire a campaign.",
                        field=field.field_description,
                        model=campaign.sudo().model_id.name,
                        user=Model.env.user.name,
                    )
                )

    @staticmethod
    def records_model(campaign):
        """The campaign's model with the rights of who set its filters; None when nobody has them."""
        uid = campaign._get_filter_uid()
        model_name = campaign.model_name
        if not uid or not model_name or model_name not in campaign.env:
            return None
        return campaign.env[model_name].with_user(uid).with_context(active_test=False)

    # ------------------------------------------------------------------
    # The owned automation rule
    # ------------------------------------------------------------------

    def activate(self, campaign):
        self.validate(campaign)
        # sudo: managers may not edit automation rules or server actions. These are the
        # campaign's own: fixed values, a one-line call with the campaign's id, and filters
        # checked above to be plain data over fields the campaign's author can read.
        automation = campaign.sudo().automation_id
        values = {
            "name": campaign.env._("Campaign: %(name)s", name=campaign.name),
            "model_id": campaign.model_id.id,
            "trigger": self.automation_trigger,
            "trigger_field_ids": [(6, 0, campaign.trigger_field_ids.ids)],
            "filter_pre_domain": (campaign.filter_pre_domain or False) if self.uses_before else False,
            "filter_domain": campaign.filter_domain or False,
            "gobysend_campaign_id": campaign.id,
            "active": True,
        }
        if automation and automation.model_id != campaign.model_id:
            # The rule's actions must act on its model: a new model gets a new rule.
            actions = automation.action_server_ids
            automation.unlink()
            actions.exists().unlink()
            automation = automation.browse()
        if automation:
            automation.write(values)
            automation.action_server_ids.write({"code": ACTION_CODE % campaign.id})
            return automation
        # The action is created on its own: created through the rule's one2many, Odoo would
        # create it with the rights of the campaign's user.
        automation = campaign.env["base.automation"].sudo().create(values)
        campaign.env["ir.actions.server"].sudo().create(
            {
                "name": campaign.env._("Start journeys of campaign %(name)s", name=campaign.name),
                "model_id": campaign.model_id.id,
                "state": "code",
                "usage": "base_automation",
                "base_automation_id": automation.id,
                "code": ACTION_CODE % campaign.id,
            }
        )
        campaign.sudo().automation_id = automation
        return automation

    def deactivate(self, campaign):
        automation = campaign.sudo().automation_id  # sudo: the campaign's own rule, see activate
        if automation.active:
            automation.active = False

    def hand_over(self, campaign, records):
        record_entries.hand_over(campaign, records)


@register(TRIGGERS)
class NewRecordTrigger(RecordTrigger):
    key = "on_create"
    label = _lt("On new data")
    icon = "fa-plus-square"
    sequence = 30
    automation_trigger = "on_create"
    uses_before = False
    fields = ("model_id", "partner_path", "email_path", "trigger_field_ids", "filter_domain")
    help = _lt(
        "Fires when a record of the chosen model is created with one of the required fields set, and it matches "
        "the “After” filter. The record reaches its contact through the path to the contact (or its email "
        "address when that path is empty); a contact not yet in the workspace joins it. Templates see the "
        "record's fields as “record” and the required fields set as “changes”."
    )


@register(TRIGGERS)
class ChangedRecordTrigger(RecordTrigger):
    key = "on_write"
    label = _lt("On changed data")
    icon = "fa-pencil-square"
    sequence = 31
    automation_trigger = "on_write"
    help = _lt(
        "Fires when one of the required fields of a record of the chosen model changes, when the record matched "
        "the “Before” filter before the change and matches the “After” filter after it (e.g. an order going "
        "from processing to delivered). Templates see the record's fields as “record”, the watched fields' "
        "earlier values as “old” and the names of those that changed as “changes”."
    )


@register(TRIGGERS)
class NewOrChangedRecordTrigger(RecordTrigger):
    key = "on_create_or_write"
    label = _lt("On new or changed data")
    icon = "fa-refresh"
    sequence = 32
    automation_trigger = "on_create_or_write"
    help = _lt(
        "Fires when a record of the chosen model is created with one of the required fields set, or when one of "
        "them changes; the “Before” filter applies to changes only. Templates see “record”, “old” and "
        "“changes”."
    )


# ----------------------------------------------------------------------
# Filters
# ----------------------------------------------------------------------


def names_ids_only(value):
    values = value if isinstance(value, list | tuple) else [value]
    return all(item is False or (isinstance(item, int) and not isinstance(item, bool)) for item in values)


def is_forbidden_model(model_name):
    return any(
        model_name.startswith(forbidden) if forbidden.endswith(".") else model_name == forbidden
        for forbidden in FILTER_FORBIDDEN_MODELS
    )


def parse_filter(text):
    """The filter ``text`` as a domain, when it is plain data; raise ``ValueError`` otherwise."""
    tree = ast.parse(text.strip(), mode="eval")
    for node in ast.walk(tree):
        if not isinstance(node, FILTER_NODES):
            raise ValueError(node.__class__.__name__)
        if isinstance(node, ast.Name) and node.id not in FILTER_NAMES:
            raise ValueError(node.id)
    # Only literals and ``uid`` are left: any user id stands for it in the check.
    domain = ast.literal_eval(_UidAsLiteral().visit(tree))
    if not isinstance(domain, list | tuple):
        raise ValueError(type(domain).__name__)
    return list(domain)


class _UidAsLiteral(ast.NodeTransformer):
    def visit_Name(self, node):
        return ast.copy_location(ast.Constant(1), node)


def check_filter(Model, text, label):
    """Refuse a "before" / "after" filter on ``Model`` (with the rights of who set it) that is
    not plain data, names a field that does not exist or that they cannot read, or leaves the
    business data for user accounts, messages or Gobysend's own records."""
    env = Model.env
    if not text or text.strip() in ("", "[]"):
        return []
    try:
        domain = parse_filter(text)
    except (SyntaxError, ValueError):
        raise ValidationError(
            env._(
                "The “%(filter)s” filter must be a list of conditions on fields with plain values, such as "
                '[("stage_id.is_won", "=", True)]; it cannot compute anything.',
                filter=label,
            )
        ) from None
    for leaf in domain:
        if expression.is_operator(leaf) or leaf in (expression.TRUE_LEAF, expression.FALSE_LEAF):
            continue
        if not isinstance(leaf, list | tuple) or len(leaf) != 3 or not isinstance(leaf[0], str):
            raise ValidationError(
                env._("The “%(filter)s” filter has an unreadable condition: %(leaf)s", filter=label, leaf=leaf)
            )
        check_filter_path(Model, leaf, label)
    try:
        expression.expression(domain, Model)
    except (AccessError, ValueError, TypeError, AssertionError) as error:
        raise ValidationError(
            env._(
                "The “%(filter)s” filter cannot be used: %(error)s",
                filter=label,
                error=getattr(error, "args", [error])[0],
            )
        ) from None
    return domain


def check_filter_path(Model, leaf, label):
    env = Model.env
    path, operator, value = leaf
    names = path.split(".")
    current = Model
    for position, name in enumerate(names):
        field = current._fields.get(name)
        if field is None:
            raise ValidationError(
                env._(
                    "The “%(filter)s” filter uses “%(path)s”, but %(model)s has no field “%(field)s”.",
                    filter=label,
                    path=path,
                    model=current._description,
                    field=name,
                )
            )
        if not field.is_accessible(env):
            raise ValidationError(
                env._(
                    "The “%(filter)s” filter cannot use “%(path)s”: %(user)s cannot read field “%(field)s” of "
                    "%(model)s.",
                    filter=label,
                    path=path,
                    user=env.user.name,
                    field=field.string,
                    model=current._description,
                )
            )
        if not field.relational:
            return
        last = position == len(names) - 1
        if last and field.type == "many2one" and operator in ID_OPERATORS and names_ids_only(value):
            # Compares the record's own column with ids (the salesperson is the writer: uid):
            # nothing of the other model is read.
            return
        comodel = env[field.comodel_name]
        if is_forbidden_model(comodel._name) or not comodel.has_access("read"):
            raise ValidationError(
                env._(
                    "The “%(filter)s” filter cannot use “%(path)s”: %(model)s records are out of its reach.",
                    filter=label,
                    path=path,
                    model=comodel._description,
                )
            )
        current = comodel
