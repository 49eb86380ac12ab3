"""Engagement coming back from messages: clicks on tracked links and email opens."""

import base64

from werkzeug.exceptions import NotFound

from odoo import http
from odoo.http import request

from ..tools import secrets_match

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class GobysendTrackingController(http.Controller):
    @http.route(
        ["/r/<string:code>/g/<int:message_id>", "/r/<string:code>/g/<int:message_id>/<string:token>"],
        type="http",
        auth="public",
        sitemap=False,
    )
    def tracked_click(self, code, message_id, token=None, **kwargs):
        """A click on a shortened link of one message: counted on the link and on the message.

        The link is signed for its message (``_get_click_token``). A link without a valid
        signature — forged, or sent before links were signed — still leads to its page, but
        records nothing: the click cannot be told from anyone's guess.
        """
        redirect_url = request.env["link.tracker"].sudo().get_url_from_code(code)
        if not redirect_url:
            raise NotFound()
        # sudo: a public page; the message is only read to check the signature, then updated
        # by the receipt logic, which is what the signature allows.
        message = request.env["gobysend.message"].sudo().browse(message_id).exists()
        signed = bool(message and token and secrets_match(message._get_click_token(code), token))
        if signed and not request.env["ir.http"].is_a_bot():
            request.env["link.tracker.click"].sudo().add_click(
                code, ip=request.httprequest.remote_addr, country_code=request.geoip.country_code
            )
            message._apply_receipt("clicked", f"click-{message.id}-{code}", url=redirect_url)
        return request.redirect(redirect_url, code=302, local=False)

    @http.route("/gobysend/track/open/<int:message_id>/<string:token>.gif", type="http", auth="public", sitemap=False)
    def tracked_open(self, message_id, token, **kwargs):
        message = request.env["gobysend.message"].sudo().browse(message_id).exists()
        if message and secrets_match(message._get_open_token(), token):
            message._apply_receipt("opened", f"open-{message.id}")
        return request.make_response(
            PIXEL, headers=[("Content-Type", "image/gif"), ("Cache-Control", "no-store, max-age=0")]
        )
