import datetime
import json
from urllib.parse import urlsplit

from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from ... import templating
from ...exceptions import InvalidInput
from ...tools import retry_delays
from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)

# A journey waiting on its call is woken by the call's job; should that wake-up be lost (a job
# that died), the journey looks again this long after the call was due.
RECHECK_AFTER = datetime.timedelta(minutes=15)
MAX_RETRIES = 10


@register(STEPS)
class WebhookStep(StepKind):
    """POST the journey (contact, campaign, step, the trigger's record / data / event and an
    optional JSON template) to a URL, signed like the webhook channel's requests, through the
    guarded transport. The call is made by a background job, never in the journey batch's
    transaction (see ``models/gobysend_journey_call.py``); the journey waits on the step until the
    call succeeded (it goes on), or failed after its retries (the journey fails with the reason)."""

    key = "webhook"
    label = _lt("Call a webhook")
    icon = "fa-plug"
    sequence = 70
    fields = ("hook_url", "hook_secret", "hook_payload", "hook_retry_delays")

    def validate(self, step):
        env = step.env
        url = (step.hook_url or "").strip()
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 (a port that is not a number raises)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc
        except ValueError:
            valid = False
        if not valid or url != step.hook_url or any(char.isspace() for char in url):
            raise ValidationError(
                env._(
                    "Step “%(step)s”: the webhook URL must be an http or https address, e.g. "
                    "https://example.com/hooks/gobysend.",
                    step=step.display_name,
                )
            )
        try:
            delays = retry_delays(step.hook_retry_delays)
        except ValueError as error:
            raise ValidationError(
                env._(
                    "Step “%(step)s”: “%(value)s” is not a number of minutes; write the retry delays as whole "
                    "minutes separated by commas, e.g. 1,5,30.",
                    step=step.display_name,
                    value=error.args[0],
                )
            ) from None
        if len(delays) > MAX_RETRIES:
            raise ValidationError(
                env._("Step “%(step)s”: at most %(count)s retries.", step=step.display_name, count=MAX_RETRIES)
            )
        if step.hook_payload:
            try:
                template = json.loads(step.hook_payload)
            except ValueError:
                template = None
            if not isinstance(template, dict):
                raise ValidationError(
                    env._(
                        'Step “%(step)s”: the extra JSON must be a JSON object, e.g. {"order": "{{ data.order_id }}"}.',
                        step=step.display_name,
                    )
                )
            try:
                for path, text in templating._json_leaves(template, "extra"):
                    templating.check_syntax(text, path)
            except InvalidInput as error:
                raise ValidationError(
                    env._("Step “%(step)s”: %(reason)s", step=step.display_name, reason=error.message)
                ) from None

    def summary(self, step):
        host = urlsplit(step.hook_url or "").hostname
        return f"POST {host}" if host else str(self.label)

    def run(self, batch, step, rows):
        Call = batch.env["gobysend.journey.call"]
        calls = Call._calls_of(step, rows)
        outcomes = {}
        payloads = {}
        for row in rows:
            if row.id in calls:
                continue
            try:
                payloads[row.id] = self._payload(batch, step, row)
            except templating.TemplateRenderError as error:
                outcomes[row.id] = Outcome.fail(str(error))
        queued = [row for row in rows if row.id in payloads]
        Call._queue(step, queued, payloads, batch.now)
        calls.update({row.id: ("queued", None, batch.now) for row in queued})
        due = False
        for row in rows:
            if row.id in outcomes:
                continue
            state, reason, next_at = calls[row.id]
            if state == "done":
                outcomes[row.id] = Outcome.done()
            elif state == "failed":
                outcomes[row.id] = Outcome.fail(reason)
            else:
                next_at = max(next_at or batch.now, batch.now)
                # A call still "sending" when the journey looks again belongs to a worker that
                # died: the job recovers it (see the call model) before making the due calls.
                due = due or state == "sending" or next_at <= batch.now
                outcomes[row.id] = Outcome.wait(next_at + RECHECK_AFTER)
        if due:
            Call._enqueue_perform()
        return [outcomes[row.id] for row in rows]

    def _payload(self, batch, step, row):
        """The JSON body of ``row``'s call: fixed when queued, so that every attempt sends the same."""
        env = batch.env
        partner = env["res.partner"].sudo().browse(row.partner_id)  # sudo: the journey's own contact
        workspace = step.campaign_id.workspace_id
        context = row.context or {}
        extra = None
        if step.hook_payload:
            variables = dict(context)
            variables.update(
                {
                    "contact": env["gobysend.message"]._contact_variables(workspace, partner),
                    "workspace": {"name": workspace.name},
                    "event": context.get("event") or {},
                    "record": context.get("record") or {},
                    "data": context.get("data") or {},
                }
            )
            extra = json.loads(
                templating.render_json(env, step.hook_payload, variables, tz=row.tz, name=step.display_name)
            )
        payload = {
            "type": "journey.step",
            "id": f"journey-{row.id}-{step.id}-{row.iteration}",
            "workspace": {"id": workspace.id, "name": workspace.name},
            "campaign": {"id": step.campaign_id.id, "name": step.campaign_id.name},
            "step": {"id": step.id, "name": step.name},
            "journey": {"id": row.id, "iteration": row.iteration, "is_test": row.is_test},
            "contact": {
                "id": partner.id,
                "name": partner.name,
                "email": partner.email or None,
                "phone": partner.phone or partner.mobile or None,
            },
            "origin": {"model": row.res_model, "id": row.res_id} if row.res_model else None,
            "record": context.get("record"),
            "data": context.get("data"),
            "event": context.get("event"),
            "extra": extra,
        }
        return json.dumps(payload, default=str, ensure_ascii=False)
