import logging

from odoo import http
from odoo.http import request

from odoo.addons.gobysend_automation.exceptions import InvalidInput

from .. import utils

_logger = logging.getLogger(__name__)


class GobysendReceiptController(http.Controller):
    """Signed endpoints through which providers (or the business's systems) report what became of
    the messages: delivered, failed, opened, clicked, bounced.

    A request that cannot be authenticated — no or a wrong signature, a timestamp outside the
    five-minute window, a replay — is refused with a 4xx and changes nothing.
    """

    def _answer(self, status, data):
        return request.make_json_response(data, status=status)

    def _refuse(self, error):
        status = 409 if error.code == "replayed" else 401
        return self._answer(status, {"error": error.code, "detail": str(error)})

    def _get_channel(self, channel_id):
        return request.env["gobysend.channel"].sudo().browse(channel_id).exists()

    @http.route(
        "/gobysend/receipts/<int:channel_id>",
        type="http",
        auth="public",
        methods=["POST"],
        csrf=False,
        save_session=False,
    )
    def receipt(self, channel_id, **_kwargs):
        channel = self._get_channel(channel_id)
        if not channel:
            return self._answer(404, {"error": "not_found", "detail": "No such channel."})
        body = request.httprequest.get_data()
        try:
            result = channel._process_signed_receipts(body, request.httprequest.headers.get(utils.SIGNATURE_HEADER))
        except utils.SignatureError as error:
            _logger.info("Refused a receipt for channel %s: %s", channel_id, error.code)
            return self._refuse(error)
        except InvalidInput as error:
            return self._answer(400, {"error": "invalid_input", "field": error.field, "detail": error.message})
        return self._answer(200, result)

    @http.route(
        "/gobysend/receipts/<int:channel_id>/twilio",
        type="http",
        auth="public",
        methods=["POST"],
        csrf=False,
        save_session=False,
    )
    def twilio_status(self, channel_id, **_kwargs):
        channel = self._get_channel(channel_id)
        if not channel:
            return self._answer(404, {"error": "not_found", "detail": "No such channel."})
        httprequest = request.httprequest
        params = httprequest.form.to_dict(flat=False)
        # Twilio signs the URL it called; behind a proxy that is the callback URL it was given.
        urls = [httprequest.url, channel._get_twilio_status_callback_url()]
        try:
            result = channel._twilio_process_status_callback(
                httprequest.headers.get("X-Twilio-Signature"), urls, params
            )
        except utils.SignatureError as error:
            _logger.info("Refused a Twilio status callback for channel %s: %s", channel_id, error.code)
            return self._refuse(error)
        return self._answer(200, result)
