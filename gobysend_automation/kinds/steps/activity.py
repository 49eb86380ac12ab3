import datetime

from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)


@register(STEPS)
class ActivityStep(StepKind):
    """Create an Odoo activity (a to-do, a call) for the contact's salesperson or a chosen user,
    on the contact or on the record that fired the journey (a lead, an order)."""

    key = "activity"
    label = _lt("Create an activity")
    icon = "fa-tasks"
    sequence = 60
    fields = (
        "activity_type_id",
        "activity_summary",
        "activity_note",
        "activity_days",
        "activity_user",
        "activity_user_id",
        "activity_on",
    )

    def validate(self, step):
        if not step.activity_type_id:
            raise ValidationError(step.env._("Step “%(step)s”: choose the kind of activity.", step=step.display_name))
        if step.activity_user == "user" and not step.activity_user_id:
            raise ValidationError(step.env._("Step “%(step)s”: choose the user to assign.", step=step.display_name))

    def summary(self, step):
        return f"{step.activity_type_id.display_name or ''}: {step.activity_summary or ''}"

    def run(self, batch, step, rows):
        env = batch.env
        Partner = env["res.partner"].sudo()  # sudo: the engine creates activities for every workspace
        fallback = step.campaign_id.create_uid
        deadline = (batch.now + datetime.timedelta(days=step.activity_days or 0)).date()
        values = []
        outcomes = []
        for row in rows:
            partner = Partner.browse(row.partner_id)
            res_model, res_id = "res.partner", row.partner_id
            if step.activity_on == "record" and row.res_model and row.res_id:
                record = env[row.res_model].sudo().browse(row.res_id).exists() if row.res_model in env else None
                if not record:
                    # The journey outlives its record: no activity, the journey goes on.
                    outcomes.append(
                        Outcome.done(reason=env._("Skipped: the record that fired this journey was deleted."))
                    )
                    continue
                res_model, res_id = row.res_model, row.res_id
            outcomes.append(Outcome.done())
            if step.activity_user == "user":
                user = step.activity_user_id
            else:
                user = partner.user_id or partner.commercial_partner_id.user_id or fallback
            values.append(
                {
                    "activity_type_id": step.activity_type_id.id,
                    "summary": step.activity_summary or step.activity_type_id.summary or step.activity_type_id.name,
                    "note": step.activity_note,
                    "date_deadline": deadline,
                    "user_id": user.id,
                    "res_model_id": env["ir.model"]._get_id(res_model),
                    "res_id": res_id,
                }
            )
        env["mail.activity"].sudo().with_context(mail_activity_quick_update=True).create(values)  # sudo: as above
        return outcomes
