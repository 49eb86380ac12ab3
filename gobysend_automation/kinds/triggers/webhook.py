"""The webhook trigger: another system starts a journey by calling the campaign's own URL.

``POST /gobysend/campaign/<webhook_uuid>`` with the campaign's secret in the ``X-Gobysend-Secret``
header and a JSON body naming the contact as the tracking API does (``id``, the workspace's
customer id; ``email``; ``phone``), an optional ``data`` object that the templates read as
``data``, and an optional ``idempotency_key`` that makes a retried call answer with the journey
the first call started. The HTTP side lives in ``controllers/campaign_webhook.py``; the rules
live here, so that they can be read (and tested) without HTTP.

A contact the workspace does not know yet is created, as the tracking API's ``identify`` creates
it (a new contact of this workspace, never an Odoo user's, a company's or another workspace's
partner); a known contact is never changed by a webhook call.
"""

import logging

from odoo import SUPERUSER_ID
from odoo.tools.translate import LazyTranslate

from ...exceptions import ContactNotWritable, InvalidInput
from .. import TRIGGERS, TriggerKind, register

_lt = LazyTranslate(__name__)
_logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Gobysend-Secret"
# The largest body a webhook call may send: a contact and the data of one journey.
MAX_BODY_BYTES = 64 * 1024
BODY_KEYS = ("id", "email", "phone", "data", "idempotency_key")
MAX_KEY_LENGTH = 200


@register(TRIGGERS)
class WebhookTrigger(TriggerKind):
    """Started by another system calling the campaign's URL for one contact."""

    key = "webhook"
    label = _lt("Webhook")
    icon = "fa-plug"
    sequence = 60
    fields = ("webhook_url", "webhook_secret")
    help = _lt(
        "Another system starts a journey by POSTing JSON to the webhook URL with the secret in the "
        "“X-Gobysend-Secret” header: the contact as id (your customer id), email or phone, an optional “data” "
        "object that the templates read as {{ data.… }}, and an optional “idempotency_key” so that a retried call "
        "starts no second journey. A contact the workspace does not know yet is created; a known one is not "
        "changed. The call is answered with the journey's id; nothing is sent while it is answered."
    )

    def receive(self, campaign, payload):
        """Start the journey a webhook call asks for; ``payload`` is the parsed JSON body.

        Returns (HTTP status, answer). Raises ``InvalidInput`` (naming the field) for bad input,
        ``ContactNotWritable`` for a contact the workspace holds no more, and a unique violation
        when another call created the same contact at the same moment (the caller runs this
        again, and then finds it).
        """
        env = campaign.env
        if not isinstance(payload, dict):
            raise InvalidInput("body", env._("The body must be a JSON object."))
        unknown = sorted(set(payload) - set(BODY_KEYS))
        if unknown:
            raise InvalidInput(
                unknown[0],
                env._(
                    "Unknown key “%(key)s”: a webhook body holds id, email or phone, data and idempotency_key.",
                    key=unknown[0],
                ),
            )
        data = payload.get("data")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise InvalidInput("data", env._("“data” must be a JSON object of key/value pairs."))
        idempotency_key = payload.get("idempotency_key")
        if idempotency_key is not None and (
            not isinstance(idempotency_key, str) or not idempotency_key.strip() or len(idempotency_key) > MAX_KEY_LENGTH
        ):
            raise InvalidInput(
                "idempotency_key",
                env._(
                    "The idempotency key must be a non-empty string of at most %(max)s characters.", max=MAX_KEY_LENGTH
                ),
            )
        ingest = env["gobysend.ingest"]
        ingest._check_storable({"data": data, "idempotency_key": idempotency_key})
        workspace = campaign.workspace_id
        partner, created = self._get_contact(campaign, ingest._read_contact_ref(workspace, payload))
        answer = {"contact_id": partner.id, "created_contact": created}
        # The engine's own user (OdooBot, as its scheduled actions) starts the journeys and owns
        # the job that runs them, not the anonymous caller of a public URL.
        Journey = env["gobysend.journey"].with_user(SUPERUSER_ID)
        if idempotency_key:
            earlier = self._journey_of_key(campaign, partner, idempotency_key)
            if earlier:
                return 202, dict(answer, journey_id=earlier, duplicate=True)
        context = {"data": data}
        if idempotency_key:
            context["webhook"] = {"idempotency_key": idempotency_key}
        entry = {
            "partner_id": partner.id,
            "context": context,
            # With "every time", the key alone keeps a retried call from starting a second
            # journey, also when two calls race (the journeys' unique entry key).
            "key": f"w{partner.id}:{idempotency_key}" if idempotency_key else None,
        }
        # run=False: the background engine runs the first step after this request commits.
        ids = Journey._enter(campaign, [entry], run=False)
        if ids:
            return 202, dict(answer, journey_id=ids[0], duplicate=False)
        earlier = idempotency_key and self._journey_of_key(campaign, partner, idempotency_key)
        if earlier:
            return 202, dict(answer, journey_id=earlier, duplicate=True)
        env.cr.execute(
            "SELECT id FROM gobysend_journey WHERE campaign_id = %s AND entry_key = %s",
            (campaign.id, Journey._entry_key(campaign, entry)),
        )
        row = env.cr.fetchone()
        return 200, dict(
            answer,
            journey_id=row and row[0],
            duplicate=False,
            detail=env._(
                "No journey was started: the campaign's re-entry policy (“%(policy)s”) does not let this contact "
                "in again.",
                policy=dict(campaign._fields["reentry"]._description_selection(env))[campaign.reentry],
            ),
        )

    def _get_contact(self, campaign, ref):
        """The workspace's contact named by ``ref``, created when unknown (as ``identify`` does)."""
        env = campaign.env
        ingest = env["gobysend.ingest"]
        workspace = campaign.workspace_id
        subscription = ingest._find_subscription(workspace, ref)
        field = next(key for key in ("id", "email", "phone") if ref[key])
        if subscription:
            if not subscription.active or not subscription.partner_id.active:
                raise ContactNotWritable(
                    field, env._("This contact was removed from the workspace or archived; it cannot enter campaigns.")
                )
            return subscription.partner_id, False
        partner_vals = {key: ref[key] for key in ("email", "phone") if ref[key]}
        # Two calls creating the same contact at once collide here (see ``_claim_new_contact``):
        # a unique violation or a serialization failure, after which the controller runs the
        # call again, and it finds the contact.
        with env.cr.savepoint():
            ingest._claim_new_contact(workspace, ref)
            subscription = ingest._create_subscription(workspace, ref, partner_vals)
            env.flush_all()
        return subscription.partner_id, True

    @staticmethod
    def _journey_of_key(campaign, partner, idempotency_key):
        """The journey an earlier call with ``idempotency_key`` started for ``partner``, if any.

        Looked up in the journeys' trigger context, among the contact's journeys of this campaign
        (few, found through the partner index): the entry key does not carry it under the
        policies that key journeys by contact, and "once at a time" clears that key when the
        journey ends."""
        campaign.env.flush_all()
        campaign.env.cr.execute(
            """
            SELECT id FROM gobysend_journey
             WHERE campaign_id = %s AND partner_id = %s AND NOT is_test
               AND trigger_context -> 'webhook' ->> 'idempotency_key' = %s
             ORDER BY id LIMIT 1
            """,
            (campaign.id, partner.id, idempotency_key),
        )
        row = campaign.env.cr.fetchone()
        return row and row[0]
