import datetime

from odoo.exceptions import ValidationError
from odoo.tools import SQL
from odoo.tools.translate import LazyTranslate

from ...exceptions import InvalidInput
from ...models.gobysend_message import SENT_STATES
from ...tools import coerce_attribute_value
from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)

ENGAGED_STATES = {
    "delivered": ("delivered", "opened", "clicked"),
    "opened": ("opened", "clicked"),
    "clicked": ("clicked",),
    "bounced": ("bounced",),
}
SQL_OPERATORS = {"eq": "=", "ne": "<>", "gt": ">", "lt": "<"}


@register(STEPS)
class ConditionStep(StepKind):
    """Yes or no, checked for each contact when the journey reaches the step: an attribute's
    value, the contact's fields (an Odoo domain), membership of a segment, a tag, or what the
    contact did with the message of an earlier step."""

    key = "condition"
    label = _lt("Condition")
    icon = "fa-code-fork"
    sequence = 30
    branches = ("yes", "no")
    branch_names = {"yes": _lt("Yes"), "no": _lt("No")}
    fields = (
        "condition_kind",
        "attribute_id",
        "attribute_operator",
        "attribute_value",
        "partner_domain",
        "segment_id",
        "tag_id",
        "engagement",
        "engagement_step_id",
        "engagement_hours",
        "engagement_link",
    )

    def validate(self, step):
        env = step.env
        kind = step.condition_kind
        if kind == "attribute":
            if not step.attribute_id:
                raise ValidationError(env._("Step “%(step)s”: choose the attribute to check.", step=step.display_name))
            if step.attribute_id.workspace_id != step.campaign_id.workspace_id:
                raise ValidationError(
                    env._("Step “%(step)s”: the attribute belongs to another workspace.", step=step.display_name)
                )
            if step.attribute_operator not in ("set", "not_set"):
                self._attribute_value(step)
        elif kind == "segment":
            if not step.segment_id or step.segment_id.workspace_id != step.campaign_id.workspace_id:
                raise ValidationError(
                    env._("Step “%(step)s”: choose a segment of the campaign's workspace.", step=step.display_name)
                )
        elif kind == "tag" and not step.tag_id:
            raise ValidationError(env._("Step “%(step)s”: choose the tag to check.", step=step.display_name))
        elif kind == "engagement":
            earlier = step.engagement_step_id
            if not earlier or earlier.campaign_id != step.campaign_id or earlier.kind != "send":
                raise ValidationError(
                    env._(
                        "Step “%(step)s”: choose a step of this campaign that sends the message to check.",
                        step=step.display_name,
                    )
                )
            if step.engagement == "clicked_link" and not (step.engagement_link or "").strip():
                raise ValidationError(
                    env._(
                        "Step “%(step)s”: write the part of the link's address to look for, e.g. /summer-sale.",
                        step=step.display_name,
                    )
                )
        elif kind == "contact":
            step.campaign_id._get_contact_filter(text=step.partner_domain)

    def summary(self, step):
        labels = dict(step._fields["condition_kind"]._description_selection(step.env))
        detail = {
            "attribute": f"{step.attribute_id.key or ''} {step.attribute_operator or ''} {step.attribute_value or ''}",
            "segment": step.segment_id.display_name or "",
            "tag": step.tag_id.display_name or "",
            "engagement": " ".join(
                part
                for part in (
                    step.engagement,
                    step.engagement_link if step.engagement == "clicked_link" else None,
                    step.engagement_step_id.display_name,
                )
                if part
            ),
            "contact": step.partner_domain or "",
        }.get(step.condition_kind, "")
        return f"{labels.get(step.condition_kind, '')}: {detail}".strip()

    def _attribute_value(self, step):
        try:
            value = step.attribute_value
            if step.attribute_id.value_type == "boolean":
                value = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}.get(
                    (value or "").strip().lower(), value
                )
            elif step.attribute_id.value_type == "number":
                value = float(value) if value not in (None, False, "") else value
            return coerce_attribute_value(step.attribute_id.value_type, value, "value")
        except (InvalidInput, ValueError):
            raise ValidationError(
                step.env._(
                    "Step “%(step)s”: “%(value)s” is not a %(type)s value.",
                    step=step.display_name,
                    value=step.attribute_value,
                    type=step.attribute_id.value_type,
                )
            ) from None

    def run(self, batch, step, rows):
        ids = [row.id for row in rows]
        outcomes = {}
        kind = step.condition_kind
        cr = batch.env.cr
        if kind == "engagement" and step.engagement == "not_opened":
            matched = self._not_opened(batch, step, rows, outcomes)
        elif kind == "engagement" and step.engagement == "clicked_link":
            # The clicks of the earlier message are the contact's "message_clicked" events, with
            # the link's address (``gobysend.message._apply_receipt``).
            cr.execute(
                """
                SELECT DISTINCT m.journey_id FROM gobysend_message m
                  JOIN gobysend_event e ON e.workspace_id = m.workspace_id AND e.partner_id = m.partner_id
                                       AND e.name = 'message_clicked' AND e.properties->>'message_id' = m.id::text
                 WHERE m.journey_id = ANY(%s) AND m.campaign_step_id = %s
                   AND strpos(e.properties->>'url', %s) > 0
                """,
                (ids, step.engagement_step_id.id, step.engagement_link.strip()),
            )
            matched = {row[0] for row in cr.fetchall()}
        elif kind == "engagement":
            cr.execute(
                """
                SELECT DISTINCT m.journey_id FROM gobysend_message m
                 WHERE m.journey_id = ANY(%s) AND m.campaign_step_id = %s AND m.state IN %s
                """,
                (ids, step.engagement_step_id.id, ENGAGED_STATES[step.engagement]),
            )
            matched = {row[0] for row in cr.fetchall()}
        elif kind == "contact":
            Partner = step.campaign_id._contacts_model()
            domain = step.campaign_id._get_contact_filter(text=step.partner_domain)
            partner_ids = set(Partner.search([*domain, ("id", "in", [row.partner_id for row in rows])]).ids)
            matched = {row.id for row in rows if row.partner_id in partner_ids}
        else:
            cr.execute(SQL("SELECT j.id FROM gobysend_journey j WHERE j.id = ANY(%s) AND %s", ids, self._test(step)))
            matched = {row[0] for row in cr.fetchall()}
        for row in rows:
            if row.id not in outcomes:
                outcomes[row.id] = Outcome.done("yes" if row.id in matched else "no")
        return [outcomes[row.id] for row in rows]

    def _test(self, step):
        """The test, as SQL on the journey ``j``."""
        if step.condition_kind == "segment":
            return SQL(
                """EXISTS (SELECT 1 FROM gobysend_segment_membership m
                            WHERE m.segment_id = %s AND m.partner_id = j.partner_id AND m.left_at IS NULL)""",
                step.segment_id.id,
            )
        if step.condition_kind == "tag":
            return SQL(
                """EXISTS (SELECT 1 FROM res_partner_res_partner_category_rel r
                            WHERE r.category_id = %s AND r.partner_id = j.partner_id)""",
                step.tag_id.id,
            )
        attribute = step.attribute_id
        column = SQL.identifier("v", f"value_{attribute.value_type}")
        exists = SQL(
            "SELECT 1 FROM gobysend_attribute_value v WHERE v.attribute_id = %s AND v.partner_id = j.partner_id",
            attribute.id,
        )
        if step.attribute_operator == "set":
            return SQL("EXISTS (%s AND %s IS NOT NULL)", exists, column)
        if step.attribute_operator == "not_set":
            return SQL("NOT EXISTS (%s AND %s IS NOT NULL)", exists, column)
        value = self._attribute_value(step)
        if step.attribute_operator == "contains":
            return SQL("EXISTS (%s AND %s::text ILIKE %s)", exists, column, f"%{value}%")
        return SQL("EXISTS (%s AND %s %s %s)", exists, column, SQL(SQL_OPERATORS[step.attribute_operator]), value)

    def _not_opened(self, batch, step, rows, outcomes):
        """Yes when the earlier message was sent at least N hours ago and is still not opened;
        a journey whose message was sent more recently waits until the N hours are over."""
        cr = batch.env.cr
        cr.execute(
            """
            SELECT m.journey_id, m.state, m.sent_at FROM gobysend_message m
             WHERE m.journey_id = ANY(%s) AND m.campaign_step_id = %s
            """,
            ([row.id for row in rows], step.engagement_step_id.id),
        )
        found = {journey_id: (state, sent_at) for journey_id, state, sent_at in cr.fetchall()}
        hours = datetime.timedelta(hours=step.engagement_hours or 0)
        matched = set()
        for row in rows:
            state, sent_at = found.get(row.id, (None, None))
            if state in ("queued", "held", "sending"):
                # Not sent yet: asked again once it could have been opened.
                outcomes[row.id] = Outcome.wait(batch.now + max(hours, datetime.timedelta(hours=1)))
                continue
            if state in ("opened", "clicked") or state not in SENT_STATES:
                continue
            if sent_at and sent_at + hours > batch.now:
                outcomes[row.id] = Outcome.wait(sent_at + hours)
                continue
            matched.add(row.id)
        return matched
