import datetime

from odoo import fields
from odoo.exceptions import ValidationError
from odoo.models import BaseModel
from odoo.osv import expression
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)

# The contact fields workflows may write, as an administrator lists them (field names separated
# by commas), and the list a database starts with: what marketing learns about a person (job
# title, language, city, country, industry), never how Odoo and the workspaces tell contacts
# apart (name, email, phone) nor who handles them (salesperson, company).
ALLOWED_PARAMETER = "gobysend_automation.workflow_partner_fields"
DEFAULT_ALLOWED = "function,title,lang,city,country_id,industry_id"
# Simple stored fields only: one value, written as it is.
WRITABLE_TYPES = ("char", "text", "selection", "boolean", "integer", "float", "date", "many2one")
# Never, whatever the list says: they decide who a contact is (the identity the tracking API
# matches, consent and blacklists), whether it exists, and which company or account it belongs to.
NEVER_WRITTEN = frozenset(
    {
        "name",
        "email",
        "email_normalized",
        "phone",
        "mobile",
        "phone_sanitized",
        "active",
        "company_id",
        "parent_id",
        "commercial_partner_id",
        "user_id",
        "is_company",
        "type",
        "gobysend_origin_workspace_id",
    }
)
TRUE_WORDS = ("1", "true", "yes", "y", "on")
FALSE_WORDS = ("0", "false", "no", "n", "off")


def writable_field(env, name):
    """The ``res.partner`` field ``name`` when a workflow could write it (stored, simple, not
    computed from others, not one of ``NEVER_WRITTEN``), else None."""
    field = env["res.partner"]._fields.get(name)
    if (
        field is None
        or name in NEVER_WRITTEN
        or field.type not in WRITABLE_TYPES
        or not field.store
        or (field.compute and field.readonly)
        or field.related
    ):
        return None
    return field


def allowed_field_names(env):
    """The names of the contact fields administrators allow workflows to write (and could)."""
    # sudo: reads the administrators' setting, which every workflow step obeys.
    value = env["ir.config_parameter"].sudo().get_param(ALLOWED_PARAMETER, DEFAULT_ALLOWED)
    names = [name.strip() for name in (value or "").split(",")]
    return [name for name in dict.fromkeys(names) if name and writable_field(env, name)]


def allowed_fields(env):
    """``allowed_field_names`` as ``ir.model.fields`` records."""
    # sudo: field descriptions, readable by the steps' authors anyway
    return (
        env["ir.model.fields"].sudo().search([("model", "=", "res.partner"), ("name", "in", allowed_field_names(env))])
    )


def parse_value(step, field, text, env=None):
    """``text`` as a value of ``field``, or raise ``ValidationError`` naming the step."""
    env = env or step.env
    text = (text or "").strip()
    if not text:
        return False

    def refuse(expected):
        raise ValidationError(
            env._(
                "Step “%(step)s”: “%(value)s” is not %(expected)s for the contact field “%(field)s”.",
                step=step.display_name,
                value=text,
                expected=expected,
                field=field._description_string(env),
            )
        )

    if field.type in ("char", "text"):
        if field.size and len(text) > field.size:
            refuse(env._("a text of at most %(size)s characters", size=field.size))
        return text
    if field.type == "boolean":
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        refuse(env._("yes or no"))
    if field.type == "integer":
        try:
            return int(text)
        except ValueError:
            refuse(env._("a whole number"))
    if field.type == "float":
        try:
            return float(text)
        except ValueError:
            refuse(env._("a number"))
    if field.type == "date":
        try:
            return fields.Date.to_string(datetime.date.fromisoformat(text))
        except ValueError:
            refuse(env._("a date as YYYY-MM-DD"))
    if field.type == "selection":
        options = field._description_selection(env)
        for key, label in options:
            if text == key or text.lower() == str(label).lower():
                return key
        refuse(env._("one of %(options)s", options=", ".join(str(label) for _key, label in options)))
    if field.type == "many2one":
        # Looked up with the rights of whoever asks (the author saving the step): a value is a
        # record they can read, named exactly (case aside) by one of its names (a country's
        # name or code). Not name_search: it also returns near matches.
        Comodel = env[field.comodel_name]
        names = [
            name
            for name in (Comodel._rec_names_search or [Comodel._rec_name])
            # A value longer than a sized field (a country's code) would be cut to its size.
            if name in Comodel._fields and len(text) <= (Comodel._fields[name].size or len(text))
        ]
        exact = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        domain = expression.OR([[(name, "=ilike", exact)] for name in names])
        found = Comodel.search(domain, limit=2)
        if len(found) != 1:
            refuse(env._("the name of exactly one record") if found else env._("the name of an existing record"))
        return found.id
    refuse(env._("a value that can be written"))
    return None


def check_field(step, env=None):
    """The field ``step`` writes, once checked to be allowed; raise ``ValidationError`` else."""
    env = env or step.env
    name = step.partner_field_id.name
    if not name:
        raise ValidationError(env._("Step “%(step)s”: choose the contact field to update.", step=step.display_name))
    if name not in allowed_field_names(env):
        raise ValidationError(
            env._(
                "Step “%(step)s”: the contact field “%(field)s” is not one that workflows may update; an "
                "administrator lists those in the Gobysend settings.",
                step=step.display_name,
                field=step.partner_field_id.field_description,
            )
        )
    return env["res.partner"]._fields[name]


@register(STEPS)
class PartnerFieldStep(StepKind):
    """Write one field of the contact, among those an administrator allows. Only the workspace
    that owns a contact changes its own fields (the rule of the tracking API): other contacts
    are skipped, with the reason in the step log, and their journeys go on."""

    key = "partner_field"
    label = _lt("Update a contact field")
    icon = "fa-user-circle-o"
    sequence = 56
    fields = ("partner_field_id", "partner_field_value")

    def validate(self, step):
        field = check_field(step)
        parse_value(step, field, step.partner_field_value)

    def summary(self, step):
        value = step.partner_field_value or step.env._("(empty)")
        return f"{step.partner_field_id.field_description or ''} = {value}"

    def run(self, batch, step, rows):
        env = batch.env
        try:
            field = check_field(step, env)
            # sudo: the step's author checked the value under their own rights when saving.
            value = parse_value(step, field, step.partner_field_value, env=env(su=True))
        except ValidationError as error:
            # An administrator took the field off the list since (or its value no longer
            # reads): the journeys stop with the reason rather than writing it.
            return [Outcome.fail(error.args[0]) for _row in rows]
        workspace = step.campaign_id.workspace_id
        Partner = env["res.partner"].sudo()  # sudo: the engine's own; ownership is checked below
        partners = Partner.browse(sorted({row.partner_id for row in rows}))
        refusals = env["gobysend.ingest"]._contact_ownership_refusals(workspace, partners)
        reasons = {
            "archived": env._("Skipped: the contact is archived."),
            "account": env._("Skipped: the contact is an Odoo user or company, whose fields workflows never change."),
            "other_origin": env._(
                "Skipped: the contact was created through another workspace, which alone changes its fields."
            ),
            "shared": env._(
                "Skipped: the contact is shared with other workspaces; none of them alone changes its fields."
            ),
        }
        owned = partners.filtered(lambda partner: partner.id not in refusals)
        # The step has one value: one write for the whole group, through the ORM, so that
        # segments and record-change campaigns hear of it.
        changed = owned.filtered(lambda partner: _stored(partner[field.name]) != value)
        if changed:
            changed.write({field.name: value})
        return [
            Outcome.done(reason=reasons[refusals[row.partner_id]] if row.partner_id in refusals else None)
            for row in rows
        ]


def _stored(value):
    if isinstance(value, BaseModel):
        return value.id or False
    if isinstance(value, datetime.date):
        return fields.Date.to_string(value)
    return value
