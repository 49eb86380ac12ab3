import datetime

from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)

# Channels that post to the team (a Slack channel, a chat bot's group), not to the contact.
TEAM_CHANNEL_TYPES = ("slack", "chat")
SENT_STATES = ("sent", "delivered", "opened", "clicked")
ENDED_STATES = ("failed", "bounced", "cancelled", "skipped")
# How soon a journey looks again at a notification still in the outbox.
RECHECK_AFTER = datetime.timedelta(minutes=1)


@register(STEPS)
class NotifyStep(StepKind):
    """Tell the team about the contact on a Slack or chat-bot channel of the workspace.

    The notification is an outbox message on that channel, addressed to the channel's own
    destination (the Slack webhook's channel, the bot's chat): the channels addon's provider
    sends it in the outbox's own jobs, with the outbox's retries and its care for requests whose
    fate is unknown, and nothing is sent in the journey batch's transaction. The journey waits on
    the step until the message is sent (it goes on) or failed for good (the journey fails with
    the message's reason)."""

    key = "notify"
    label = _lt("Notify the team")
    icon = "fa-bullhorn"
    sequence = 72
    fields = ("channel_id", "subject", "body")

    def validate(self, step):
        env = step.env
        channel = step.channel_id
        if not channel or channel.channel_type not in TEAM_CHANNEL_TYPES:
            raise ValidationError(
                env._("Step “%(step)s”: choose a Slack or chat-bot channel to notify.", step=step.display_name)
            )
        if channel.workspace_id != step.campaign_id.workspace_id:
            raise ValidationError(
                env._(
                    "Step “%(step)s”: channel “%(channel)s” belongs to another workspace.",
                    step=step.display_name,
                    channel=channel.display_name,
                )
            )
        if not step.body:
            raise ValidationError(env._("Step “%(step)s”: write the notification.", step=step.display_name))
        step._check_template()

    def summary(self, step):
        text = (step.subject or step.body or "").strip().splitlines()
        first = text[0] if text else ""
        return f"{step.channel_id.display_name or ''}: {first[:60]}".strip(": ")

    def run(self, batch, step, rows):
        cr = batch.env.cr
        keys = {f"journey-{row.id}-{step.id}-{row.iteration}": row.id for row in rows}
        batch.env.flush_all()
        cr.execute(
            """
            SELECT journey_id, id, state, reason, next_attempt_at FROM gobysend_message
             WHERE workspace_id = %s AND idempotency_key = ANY(%s)
            """,
            (step.campaign_id.workspace_id.id, list(keys)),
        )
        messages = {journey_id: rest for journey_id, *rest in cr.fetchall()}
        new = [row for row in rows if row.id not in messages]
        if new:
            queued = batch.enqueue_messages(step, new, step.subject or None, step.body)
            messages.update(
                {journey_id: (message_id, "queued", None, batch.now) for journey_id, message_id in queued.items()}
            )
        outcomes = []
        for row in rows:
            message_id, state, reason, next_at = messages[row.id]
            if state in SENT_STATES:
                outcomes.append(Outcome.done(message_id=message_id))
            elif state in ENDED_STATES:
                outcomes.append(
                    Outcome.fail(reason or batch.env._("The notification was not sent (%(state)s).", state=state))
                )
            else:
                outcomes.append(Outcome.wait(max(next_at or batch.now, batch.now) + RECHECK_AFTER))
        return outcomes
