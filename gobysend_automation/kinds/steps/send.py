from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from ...exceptions import InvalidInput
from .. import STEPS, Outcome, StepKind, register, timing

_lt = LazyTranslate(__name__)


@register(STEPS)
class SendStep(StepKind):
    """Put a message for the contact into the outbox, through a channel of the workspace, now,
    after a delay or at a local time on an allowed weekday. The outbox's rules (consent, caps,
    quiet hours, tokens) apply when it is dispatched: there is no second send path."""

    key = "send"
    label = _lt("Send a message")
    icon = "fa-paper-plane"
    sequence = 10
    sends = True
    fields = (
        "channel_id",
        "template_id",
        "subject",
        "body",
        "timing",
        "delay_amount",
        "delay_unit",
        "time_of_day",
        *timing.WEEKDAY_FIELDS,
    )

    def validate(self, step):
        if step.timing == "anchor":
            raise ValidationError(
                step.env._(
                    "Step “%(step)s”: to send relative to a date, put a wait step relative to the date before it.",
                    step=step.display_name,
                )
            )
        if not step.channel_id:
            raise ValidationError(step.env._("Step “%(step)s”: choose the channel to send on.", step=step.display_name))
        if step.channel_id.workspace_id != step.campaign_id.workspace_id:
            raise ValidationError(
                step.env._(
                    "Step “%(step)s”: channel “%(channel)s” belongs to another workspace.",
                    step=step.display_name,
                    channel=step.channel_id.display_name,
                )
            )
        if step.template_id and step.template_id.workspace_id != step.campaign_id.workspace_id:
            raise ValidationError(
                step.env._("Step “%(step)s”: its template belongs to another workspace.", step=step.display_name)
            )
        if not (step.body or step.template_id.body):
            raise ValidationError(
                step.env._("Step “%(step)s”: write the message or choose a template.", step=step.display_name)
            )
        step._check_template()
        if step.channel_id.channel_type == "inapp":
            try:
                step.env["gobysend.message"]._inapp_check_settings(step._inapp_settings())
            except InvalidInput as error:
                raise ValidationError(
                    step.env._("Step “%(step)s”: %(reason)s", step=step.display_name, reason=error.message)
                ) from None

    def summary(self, step):
        return f"{step.channel_id.display_name or ''}: {step.subject or step.template_id.name or ''}".strip(": ")

    def run(self, batch, step, rows):
        outcomes = {}
        due = []
        for row in rows:
            if step.timing != "now" and row.wait_until is None:
                until = timing.moment(step, batch.now, row.tz)
                if until > batch.now:
                    outcomes[row.id] = Outcome.wait(until)
                    continue
            due.append(row)
        if due:
            subject = step.subject if step.body else step.template_id.subject
            body = step.body or step.template_id.body
            extra = {"inapp": step._inapp_settings()} if step.channel_id.channel_type == "inapp" else None
            messages = batch.enqueue_messages(step, due, subject, body, extra_context=extra)
            for row in due:
                outcomes[row.id] = Outcome.done(message_id=messages.get(row.id))
        return [outcomes[row.id] for row in rows]
