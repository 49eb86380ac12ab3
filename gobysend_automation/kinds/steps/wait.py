import collections
import datetime

from odoo import fields
from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register, timing

_lt = LazyTranslate(__name__)

# A journey waiting for a date looks at it again at least this often: a date moved earlier
# wakes it in time, a date moved later keeps it waiting.
ANCHOR_RECHECK = datetime.timedelta(days=1)


@register(STEPS)
class WaitStep(StepKind):
    """Hold the journey: for a duration, until a time of day in the contact's time zone, until
    an allowed weekday, or until a moment relative to a date of the triggering record or of the
    contact ("3 days before the contract ends")."""

    key = "wait"
    label = _lt("Wait")
    icon = "fa-hourglass-half"
    sequence = 20
    fields = (
        "timing",
        "delay_amount",
        "delay_unit",
        "time_of_day",
        *timing.WEEKDAY_FIELDS,
        "anchor_source",
        "anchor_field_id",
        "anchor_attribute_id",
        "anchor_direction",
        "anchor_use_time",
    )

    def validate(self, step):
        env = step.env
        if step.timing == "now":
            raise ValidationError(
                env._("Step “%(step)s”: say how long to wait, or until when.", step=step.display_name)
            )
        if step.timing != "anchor":
            return
        if step.anchor_source == "attribute":
            attribute = step.anchor_attribute_id
            if not attribute or attribute.value_type not in ("date", "datetime"):
                raise ValidationError(
                    env._("Step “%(step)s”: choose a date attribute of the contact.", step=step.display_name)
                )
            if attribute.workspace_id != step.campaign_id.workspace_id:
                raise ValidationError(
                    env._("Step “%(step)s”: the attribute belongs to another workspace.", step=step.display_name)
                )
            return
        field = step.anchor_field_id
        if not field or field.ttype not in ("date", "datetime"):
            raise ValidationError(
                env._("Step “%(step)s”: choose a date field of the triggering record.", step=step.display_name)
            )
        if step.campaign_id.model_id and field.model_id != step.campaign_id.model_id:
            raise ValidationError(
                env._(
                    "Step “%(step)s”: the field “%(field)s” is not a field of the campaign's records (%(model)s).",
                    step=step.display_name,
                    field=field.field_description,
                    model=step.campaign_id.model_id.name,
                )
            )

    def summary(self, step):
        units = dict(step._fields["delay_unit"]._description_selection(step.env))
        if step.timing == "delay":
            return f"{step.delay_amount} {units.get(step.delay_unit)}"
        if step.timing == "time_of_day":
            at = timing.hour_to_time(step.time_of_day)
            return f"{at:%H:%M}"
        if step.timing == "anchor":
            directions = dict(step._fields["anchor_direction"]._description_selection(step.env))
            date = (
                step.anchor_attribute_id.display_name
                if step.anchor_source == "attribute"
                else step.anchor_field_id.field_description
            )
            text = (
                f"{step.delay_amount} {units.get(step.delay_unit)} {directions.get(step.anchor_direction, '')} {date}"
            )
            if step.anchor_use_time:
                text += f" {timing.hour_to_time(step.time_of_day):%H:%M}"
            return text
        return str(self.label)

    def run(self, batch, step, rows):
        if step.timing == "anchor":
            return self._run_anchored(batch, step, rows)
        outcomes = []
        for row in rows:
            if row.wait_until is None:
                until = timing.moment(step, batch.now, row.tz)
            else:
                until = row.wait_until
            outcomes.append(Outcome.done() if until <= batch.now else Outcome.wait(until))
        return outcomes

    def _run_anchored(self, batch, step, rows):
        """The date is read anew each time the step runs, so that the wake-up follows it. A date
        already past lets the journey go on at once; no date at all, too (with the reason)."""
        env = batch.env
        anchors = self._anchors(batch, step, rows)
        outcomes = []
        for row in rows:
            anchor = anchors.get(row.id)
            if not anchor:
                outcomes.append(Outcome.done(reason=env._("No date to wait for: the step was skipped.")))
                continue
            moment = timing.anchored_moment(step, anchor, row.tz)
            if moment > batch.now:
                outcomes.append(Outcome.wait(min(moment, batch.now + ANCHOR_RECHECK)))
            elif row.wait_until is None:
                outcomes.append(Outcome.done(reason=env._("The moment had already passed: the journey went on.")))
            else:
                outcomes.append(Outcome.done())
        return outcomes

    def _anchors(self, batch, step, rows):
        """``{journey id: date or naive UTC datetime}`` for ``rows``, set-based."""
        env = batch.env
        if step.anchor_source == "attribute":
            attribute = step.anchor_attribute_id
            column = "value_date" if attribute.value_type == "date" else "value_datetime"
            # sudo: the journeys' own contacts' value of the step's attribute, of its workspace
            values = (
                env["gobysend.attribute.value"]
                .sudo()
                .search_read(
                    [("attribute_id", "=", attribute.id), ("partner_id", "in", [row.partner_id for row in rows])],
                    ["partner_id", column],
                )
            )
            by_partner = {value["partner_id"][0]: value[column] for value in values}
            return {row.id: by_partner.get(row.partner_id) for row in rows}
        field = step.anchor_field_id
        by_record = collections.defaultdict(dict)
        ids = collections.defaultdict(list)
        for row in rows:
            if row.res_model == field.model and row.res_id:
                ids[row.res_model].append(row.res_id)
        for model, record_ids in ids.items():
            # sudo: one date field of the records that fired this campaign's journeys
            for record in env[model].sudo().browse(record_ids).exists():
                by_record[model][record.id] = record[field.name]
        anchors = {}
        for row in rows:
            value = by_record[row.res_model].get(row.res_id) if row.res_model else None
            if value is None and row.res_id:
                # The record was deleted: the date of its snapshot, when the trigger kept one.
                value = self._from_snapshot(field, (row.context or {}).get("record") or {})
            anchors[row.id] = value or None
        return anchors

    def _from_snapshot(self, field, snapshot):
        value = snapshot.get(field.name)
        if not value or not isinstance(value, str):
            return None
        try:
            return fields.Datetime.to_datetime(value) if field.ttype == "datetime" else fields.Date.to_date(value[:10])
        except ValueError:
            return None
