"""Engagement coming back from messages: clicks on tracked links and email opens."""

import base64

from werkzeug.exceptions import NotFound

from odoo import http
from odoo.http import request
from odoo.tools import consteq

# A transparent 1x1 GIF.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


class GobysendTrackingController(http.Controller):
    @http.route("/r/<string:code>/g/<int:message_id>", type="http", auth="public", sitemap=False)
    def tracked_click(self, code, message_id, **kwargs):
        """A click on a shortened link of one message: counted on the link and on the message."""
        redirect_url = request.env["link.tracker"].sudo().get_url_from_code(code)
        if not redirect_url:
            raise NotFound()
        if not request.env["ir.http"].is_a_bot():
            request.env["link.tracker.click"].sudo().add_click(
                code, ip=request.httprequest.remote_addr, country_code=request.geoip.country_code
            )
            message = request.env["gobysend.message"].sudo().browse(message_id).exists()
            if message:
                message._apply_receipt("clicked", f"click-{message.id}-{code}", url=redirect_url)
        return request.redirect(redirect_url, code=302, local=False)

    @http.route("/gobysend/track/open/<int:message_id>/<string:token>.gif", type="http", auth="public", sitemap=False)
    def tracked_open(self, message_id, token, **kwargs):
        message = request.env["gobysend.message"].sudo().browse(message_id).exists()
        if message and consteq(message._get_open_token(), token):
            message._apply_receipt("opened", f"open-{message.id}")
        return request.make_response(
            PIXEL, headers=[("Content-Type", "image/gif"), ("Cache-Control", "no-store, max-age=0")]
        )
