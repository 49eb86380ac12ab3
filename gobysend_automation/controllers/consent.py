"""Public consent pages: double opt-in confirmation, unsubscribe and preferences.

Every link carries an HMAC over the database secret (see ``gobysend.subscription._get_token``);
a missing, wrong or tampered token gets a plain error page and changes nothing.
"""

from odoo import _, http
from odoo.http import request

from ..models.gobysend_subscription import CHANNELS


class GobysendConsentController(http.Controller):
    def _get_subscription(self, subscription_id, token, purpose, channel=""):
        subscription = request.env["gobysend.subscription"].sudo().browse(subscription_id).exists()
        if not subscription or not subscription._check_token(purpose, token, channel):
            return None
        # The pages speak the contact's language, not the anonymous visitor's default.
        lang = subscription.partner_id.lang
        if lang and request.env["res.lang"]._get_code(lang):
            request.update_context(lang=lang)
        return subscription

    def _invalid_link(self):
        return request.render(
            "gobysend_automation.consent_invalid_link",
            {"message": _("This link is invalid or has been tampered with. Nothing was changed.")},
            status=403,
        )

    def _client_ip(self):
        return request.httprequest.remote_addr

    @http.route(
        "/gobysend/confirm/<int:subscription_id>",
        type="http",
        auth="public",
        methods=["GET", "POST"],
        website=False,
        sitemap=False,
    )
    def confirm(self, subscription_id, token=None, **kwargs):
        """Double opt-in. A GET only shows a button: mail scanners and link previews open
        every link of an email, and must not confirm anyone. The button POSTs the signed token
        with Odoo's CSRF token (checked by Odoo for this route, as for mass_mailing's own
        confirmation of an unsubscription), so that another site cannot confirm in a visitor's name."""
        subscription = self._get_subscription(subscription_id, token, "confirm")
        if not subscription:
            return self._invalid_link()
        if request.httprequest.method == "POST":
            subscription.action_confirm(ip_address=self._client_ip())
            return request.render("gobysend_automation.consent_confirmed", {"subscription": subscription})
        return request.render(
            "gobysend_automation.consent_confirm",
            {
                "subscription": subscription,
                "token": token,
                "action": f"/gobysend/confirm/{subscription.id}",
                "csrf_token": request.csrf_token(),
            },
        )

    @http.route(
        "/gobysend/unsubscribe/<int:subscription_id>/<string:channel>",
        type="http",
        auth="public",
        methods=["GET", "POST"],
        csrf=False,
        sitemap=False,
    )
    def unsubscribe(self, subscription_id, channel, token=None, **post):
        if channel not in CHANNELS:
            return self._invalid_link()
        subscription = self._get_subscription(subscription_id, token, "unsubscribe", channel)
        if not subscription:
            return self._invalid_link()
        if request.httprequest.method == "POST" and post.get("List-Unsubscribe") == "One-Click":
            # RFC 8058: mail clients POST here without any user interaction or cookies.
            subscription._set_consent(channel, "unsubscribed", "one_click", ip_address=self._client_ip())
            return request.make_response("", status=200)
        if request.httprequest.method == "POST" and post.get("confirm"):
            subscription._set_consent(channel, "unsubscribed", "unsubscribe_link", ip_address=self._client_ip())
            return self._render_preferences(subscription, unsubscribed_channel=channel)
        # A plain GET changes nothing: mail scanners open links, people press buttons.
        return request.render(
            "gobysend_automation.consent_unsubscribe",
            {
                "subscription": subscription,
                "channel": channel,
                "channel_label": self._channel_labels()[channel],
                "token": token,
                "preferences_url": subscription._get_preferences_url(),
            },
        )

    @http.route(
        "/gobysend/preferences/<int:subscription_id>",
        type="http",
        auth="public",
        methods=["GET", "POST"],
        csrf=False,
        sitemap=False,
    )
    def preferences(self, subscription_id, token=None, **post):
        subscription = self._get_subscription(subscription_id, token, "preferences")
        if not subscription:
            return self._invalid_link()
        saved = False
        if request.httprequest.method == "POST":
            for channel in CHANNELS:
                wanted = "subscribed" if post.get(channel) == "on" else "unsubscribed"
                current = subscription[f"{channel}_state"]
                if current == "bounced" or current == wanted or (current == "pending" and wanted == "subscribed"):
                    continue
                subscription._set_consent(channel, wanted, "preference_page", ip_address=self._client_ip())
            saved = True
        return self._render_preferences(subscription, saved=saved)

    def _channel_labels(self):
        """Channel names in the language of the page."""
        field = request.env["gobysend.consent.log"]._fields["channel"]
        return dict(field._description_selection(request.env))

    def _render_preferences(self, subscription, saved=False, unsubscribed_channel=None):
        labels = self._channel_labels()
        return request.render(
            "gobysend_automation.consent_preferences",
            {
                "subscription": subscription,
                "channels": [(channel, labels[channel], subscription[f"{channel}_state"]) for channel in CHANNELS],
                "token": subscription._get_token("preferences"),
                "saved": saved,
                "unsubscribed_channel": unsubscribed_channel and labels[unsubscribed_channel],
            },
        )
