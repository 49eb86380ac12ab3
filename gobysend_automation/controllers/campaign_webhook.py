"""The campaigns' webhook URLs: ``POST /gobysend/campaign/<webhook_uuid>``.

The rules (body, contact, idempotency) are the webhook trigger's (``kinds/triggers/webhook.py``);
this controller authenticates the call, reads a bounded body and turns refusals into JSON answers
shaped as the tracking API's: ``{"detail": [{"loc": ["body", <field>], "msg": …, "type": …}]}``,
or ``{"detail": <sentence>}`` when no field is at fault. A refused call leaves nothing behind.
"""

import json
import logging
import random
import time
from io import BytesIO

from psycopg2 import IntegrityError, errorcodes
from werkzeug.exceptions import RequestEntityTooLarge

from odoo import _, http
from odoo.http import request
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY

from ..exceptions import ContactNotWritable, InvalidInput
from ..kinds import TRIGGERS
from ..kinds.triggers.webhook import MAX_BODY_BYTES, SECRET_HEADER
from ..tools import secrets_match

_logger = logging.getLogger(__name__)

READ_SIZE = 16 * 1024
# A call that collides with another one creating the same contact runs again this many times.
MAX_ATTEMPTS = 5


class BodyTooLarge(Exception):
    pass


class GobysendCampaignWebhookController(http.Controller):
    def _answer(self, status, data):
        if status >= 400:
            # Nothing a refused call wrote may stay.
            request.env.cr.rollback()
            request.env.invalidate_all()
            _logger.info("Campaign webhook answered %s to %s", status, request.httprequest.path)
        return request.make_json_response(data, status=status)

    def _field_error(self, status, field, message, kind):
        return self._answer(status, {"detail": [{"loc": ["body", field], "msg": message, "type": kind}]})

    def _read_body(self):
        """The body as bytes, at most ``MAX_BODY_BYTES`` (chunked bodies counted as they arrive),
        read once per request: Odoo runs a request again after a serialization failure."""
        try:
            httprequest = request.httprequest._HTTPRequest__wrapped
        except AttributeError:
            httprequest = request.httprequest
        body = getattr(httprequest, "_gobysend_webhook_body", None)
        if body is not None:
            return body
        buffer = BytesIO()
        try:
            stream = httprequest._get_stream_for_parsing()
            too_large = httprequest.content_length is not None and httprequest.content_length > MAX_BODY_BYTES
            while not too_large and (chunk := stream.read(READ_SIZE)):
                buffer.write(chunk)
                too_large = buffer.tell() > MAX_BODY_BYTES
        except RequestEntityTooLarge:
            raise BodyTooLarge() from None
        if too_large:
            # Read what is left without keeping it, so that the client, still sending, receives
            # the answer instead of a reset connection (Odoo's own request size limit bounds this).
            try:
                while stream.read(READ_SIZE):
                    pass
            except (RequestEntityTooLarge, OSError) as error:
                _logger.debug("Stopped reading a refused webhook body: %s", error)
            raise BodyTooLarge()
        httprequest._gobysend_webhook_body = body = buffer.getvalue()
        return body

    @http.route(
        "/gobysend/campaign/<string:webhook_uuid>",
        type="http",
        auth="public",
        methods=["POST"],
        csrf=False,
        save_session=False,
        sitemap=False,
    )
    def campaign_webhook(self, webhook_uuid, **_kwargs):
        # sudo: a public URL; the campaign is found by its unguessable address and the call is
        # then authenticated by the campaign's own secret before anything else is read or written.
        campaign = (
            request.env["gobysend.campaign"]
            .sudo()
            .search([("webhook_uuid", "=", webhook_uuid), ("trigger_kind", "=", "webhook")], limit=1)
        )
        if not campaign:
            return self._answer(404, {"detail": _("No campaign webhook at this address.")})
        if not secrets_match(campaign.webhook_secret, request.httprequest.headers.get(SECRET_HEADER)):
            return self._answer(
                401, {"detail": _("Missing or wrong secret: send the campaign's secret in “%s”.", SECRET_HEADER)}
            )
        if campaign.state != "running":
            state = dict(campaign._fields["state"]._description_selection(campaign.env))[campaign.state]
            return self._answer(
                409,
                {
                    "detail": _(
                        "Campaign “%(campaign)s” is not running (%(state)s): it starts no journeys now.",
                        campaign=campaign.name,
                        state=state,
                    )
                },
            )
        try:
            body = self._read_body()
        except BodyTooLarge:
            return self._answer(
                413, {"detail": _("The request body is larger than %(max)s bytes.", max=MAX_BODY_BYTES)}
            )
        try:
            payload = json.loads(body.decode())
        except (UnicodeDecodeError, ValueError, RecursionError):
            return self._field_error(
                400, "body", _("The request body must be a JSON object encoded in UTF-8."), "invalid_json"
            )
        kind = TRIGGERS["webhook"]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                status, answer = kind.receive(campaign, payload)
                return self._answer(status, answer)
            except ContactNotWritable as error:
                return self._field_error(409, error.field, error.message, type(error).__name__)
            except InvalidInput as error:
                status = 400 if error.field == "body" else 422
                return self._field_error(status, error.field, error.message, type(error).__name__)
            except (IntegrityError, *PG_CONCURRENCY_EXCEPTIONS_TO_RETRY) as error:
                if attempt == MAX_ATTEMPTS or (
                    isinstance(error, IntegrityError) and error.pgcode != errorcodes.UNIQUE_VIOLATION
                ):
                    raise
                request.env.cr.rollback()
                request.env.invalidate_all()
                _logger.info("A campaign webhook call collided with a concurrent one (%s); running it again", error)
                time.sleep(random.uniform(0, 0.05 * 2**attempt))
        raise AssertionError("unreachable")
