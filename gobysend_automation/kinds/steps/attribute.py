from odoo.exceptions import ValidationError
from odoo.tools import SQL
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register
from .condition import ConditionStep

_lt = LazyTranslate(__name__)


@register(STEPS)
class SetAttributeStep(StepKind):
    """Set an attribute of the contact in the workspace (typed, as the API sets it)."""

    key = "set_attribute"
    label = _lt("Update an attribute")
    icon = "fa-pencil"
    sequence = 55
    fields = ("attribute_id", "attribute_value")

    def validate(self, step):
        if not step.attribute_id or step.attribute_id.workspace_id != step.campaign_id.workspace_id:
            raise ValidationError(
                step.env._("Step “%(step)s”: choose an attribute of the campaign's workspace.", step=step.display_name)
            )
        ConditionStep()._attribute_value(step)

    def summary(self, step):
        return f"{step.attribute_id.key or ''} = {step.attribute_value or ''}"

    def run(self, batch, step, rows):
        attribute = step.attribute_id
        value = ConditionStep()._attribute_value(step)
        column = SQL.identifier(f"value_{attribute.value_type}")
        partner_ids = sorted({row.partner_id for row in rows})
        # One upsert for the group: the ORM would write the values one contact at a time.
        batch.env.cr.execute(
            SQL(
                """
                INSERT INTO gobysend_attribute_value (attribute_id, partner_id, %(column)s, write_date)
                SELECT %(attribute)s, p, %(value)s, %(now)s
                  FROM unnest(%(partners)s::int[]) AS p
                    ON CONFLICT (attribute_id, partner_id)
                    DO UPDATE SET %(column)s = EXCLUDED.%(column)s, write_date = EXCLUDED.write_date
                """,
                column=column,
                attribute=attribute.id,
                value=value,
                now=batch.now,
                partners=partner_ids,
            )
        )
        batch.env["gobysend.attribute.value"].invalidate_model()
        batch.env["gobysend.segment"]._mark_dirty(partner_ids, "attribute")
        return [Outcome.done() for _row in rows]
