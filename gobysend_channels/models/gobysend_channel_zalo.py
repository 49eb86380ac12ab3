import datetime
import json
import logging

import psycopg2
import pytz

from odoo import _, fields, models
from odoo.exceptions import UserError

from odoo.addons.gobysend_automation.exceptions import PermanentSendError, SendError, TransientSendError

from .. import utils
from .gobysend_channel import MANAGER

_logger = logging.getLogger(__name__)

ZALO_API_URL = "https://business.openapi.zalo.me"
ZALO_OAUTH_URL = "https://oauth.zaloapp.com"
# Refresh the access token this long before Zalo says it expires.
ZALO_REFRESH_MARGIN = datetime.timedelta(minutes=5)
# Zalo issues access tokens for 25 hours; its answers give ``expires_in`` as a string.
ZALO_DEFAULT_EXPIRES_IN = 90000
# What ZNS answer codes mean, from Zalo's error-code table ("Cách xử lý mã lỗi",
# https://zalo.cloud/zns/guidelines/handle-error-code). How each is handled:
#   refresh         the access token is not (or no longer) valid: refresh it once and send again;
#   retry           Zalo says to try again later;
#   morning         ZNS sends nothing at night (22:00-06:00, Vietnam time): retry at 06:00;
#   midnight        a daily quota is spent: retry after midnight, Vietnam time;
#   contact         this contact cannot get the message (number, Zalo account, refusal): failed;
#   setup           the channel's app, OA or template needs a manager's attention: failed.
# Codes -100 to -111 are as Zalo's table lists them; -114, -118, -124, -133, -144 as Zalo's
# answers and public integrations show them; -216 and -220 are the token errors of Zalo's
# Official Account API, which the ZNS endpoint answers too. The others are from public
# integrations and were not checked against Zalo's own table. Any code not listed fails the
# message with Zalo's own text (retrying blindly could send twice).
ZALO_ERRORS = {
    -100: ("retry", "Unknown error"),
    -101: ("setup", "Application invalid"),
    -102: ("setup", "Application not existed"),
    -103: ("setup", "Application not activated"),
    -104: ("setup", "App secret key invalid"),
    -105: ("setup", "Application not linked to any OA"),
    -106: ("setup", "Method unsupported"),
    -107: ("setup", "Message ID invalid"),
    -108: ("contact", "Phone number invalid"),
    -109: ("setup", "Template ID invalid"),
    -110: ("contact", "Zalo version unsupported"),
    -111: ("setup", "Template data empty"),
    -112: ("setup", "Template data invalid"),
    -113: ("setup", "Button invalid"),
    -114: ("contact", "User is inactive, refuses the message or uses an outdated Zalo version"),
    -115: ("setup", "Out of quota"),
    -116: ("setup", "Text invalid"),
    -117: ("setup", "OA or app has no permission for this template"),
    -118: ("contact", "Zalo account not existed"),
    -119: ("contact", "Account cannot receive ZNS messages"),
    -124: ("refresh", "Access token invalid"),
    -131: ("setup", "Template data does not match the template"),
    -133: ("morning", "ZNS messages are not sent at night"),
    -139: ("contact", "User refused this kind of ZNS message"),
    -144: ("midnight", "OA has spent its daily quota"),
    -147: ("midnight", "Template has spent its daily quota"),
    -216: ("refresh", "Access token invalid"),
    -220: ("refresh", "Access token expired or removed"),
}
ZALO_TOKEN_ERRORS = {code for code, (kind, _description) in ZALO_ERRORS.items() if kind == "refresh"}
VIETNAM = pytz.timezone("Asia/Ho_Chi_Minh")
# Where a transaction notes the channels whose Zalo token it is refreshing right now.
ZALO_REFRESHING = "gobysend_zalo_refreshing"


def _seconds_until_vietnam_hour(hour):
    now = datetime.datetime.now(VIETNAM)
    target = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if target <= now:
        target += datetime.timedelta(days=1)
    return int((target - now).total_seconds()) + 60


# Each provider extends the channel in a file of its own, as payment providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """Zalo Notification Service (ZNS) template messages of a Zalo Official Account.

    ZNS sends only templates approved by Zalo. The message body is a JSON object whose texts are
    templates, filled in one by one and written back as JSON by Gobysend (a contact's data can
    never change its structure): either the template's parameters, sent with the channel's
    template id, e.g. ``{"customer_name": "{{ contact.name }}", "order_code": "{{ record.name }}"}``,
    or ``{"template_id": "…", "template_data": {…}}`` to choose the template per message.
    """

    _inherit = "gobysend.channel"

    provider = fields.Selection(selection_add=[("zalo", "Zalo ZNS")], ondelete={"zalo": "set default"})
    zalo_api_url = fields.Char(string="Zalo ZNS API URL", default=ZALO_API_URL, groups=MANAGER)
    zalo_oauth_url = fields.Char(string="Zalo OAuth URL", default=ZALO_OAUTH_URL, groups=MANAGER)
    zalo_app_id = fields.Char(string="Zalo App ID", groups=MANAGER)
    zalo_app_secret = fields.Char(string="Zalo App Secret Key", groups=MANAGER)
    # Stored in gobysend.provider.token: renewed in a transaction of their own (see there).
    zalo_access_token = fields.Char(
        groups=MANAGER, copy=False, compute="_compute_zalo_tokens", inverse="_inverse_zalo_tokens"
    )
    zalo_refresh_token = fields.Char(
        groups=MANAGER,
        copy=False,
        compute="_compute_zalo_tokens",
        inverse="_inverse_zalo_tokens",
        help="Single use: each refresh returns a new one, stored here.",
    )
    zalo_token_expires_at = fields.Datetime(
        string="Zalo Access Token Expiry",
        groups=MANAGER,
        copy=False,
        compute="_compute_zalo_tokens",
        inverse="_inverse_zalo_tokens",
    )
    zalo_template_id = fields.Char(
        string="ZNS Template ID", groups=MANAGER, help="Used when the message body does not name its template."
    )
    zalo_development_mode = fields.Boolean(
        string="ZNS Development Mode",
        groups=MANAGER,
        help="Send in development mode: only to the administrators of the Zalo app, free of charge.",
    )

    def _zalo_token_record(self):
        # sudo: the tokens are the channel's own, and these fields are for managers only.
        return self.env["gobysend.provider.token"].sudo().search([("channel_id", "=", self.id)], limit=1)

    def _compute_zalo_tokens(self):
        # sudo: the tokens of these channels only; the fields themselves are for managers only.
        tokens = {
            token.channel_id.id: token
            for token in self.env["gobysend.provider.token"].sudo().search([("channel_id", "in", self.ids)])
        }
        for channel in self:
            token = tokens.get(channel.id)
            channel.zalo_access_token = token.access_token if token else False
            channel.zalo_refresh_token = token.refresh_token if token else False
            channel.zalo_token_expires_at = token.expires_at if token else False

    def _inverse_zalo_tokens(self):
        for channel in self:
            values = {
                "access_token": channel.zalo_access_token,
                "refresh_token": channel.zalo_refresh_token,
                "expires_at": channel.zalo_token_expires_at,
            }
            token = channel._zalo_token_record()
            if token:
                token.write(values)
            elif any(values.values()):
                token.create(dict(values, channel_id=channel.id))

    def _get_supported_channel_types(self):
        if self.provider == "zalo":
            return ("zalo",)
        return super()._get_supported_channel_types()

    # ------------------------------------------------------------------
    # Access token
    # ------------------------------------------------------------------

    def _zalo_token_is_fresh(self):
        return bool(
            self.zalo_access_token
            and self.zalo_token_expires_at
            and self.zalo_token_expires_at > fields.Datetime.now() + ZALO_REFRESH_MARGIN
        )

    def _zalo_get_access_token(self):
        self.ensure_one()
        if not self._zalo_token_is_fresh():
            yield from self._zalo_refresh_access_token()
        return self.zalo_access_token

    def _zalo_before_send_batch(self):
        # Refresh once for the whole batch rather than once per message of it.
        yield from self._zalo_get_access_token()

    def _zalo_refresh_access_token(self):
        """Trade the refresh token for new tokens and store them on the channel at once.

        A refresh token is single use: Zalo forgets the old one as soon as it answers. The new
        tokens are therefore committed in a transaction of their own, before anything else of
        the batch (or of the request) happens: were they only written in the batch's transaction,
        a later failure of the batch would roll them back and leave the channel with a spent
        token. The channel's row is locked in that transaction, so that two dispatchers never
        spend the token both; the one that finds the row locked retries later, with the new tokens.
        """
        self.ensure_one()
        self._check_credentials("zalo_app_id", "zalo_app_secret", "zalo_refresh_token")
        # Within one transaction the row lock does not keep two messages of a batch apart.
        refreshing = self.env.cr.cache.setdefault(ZALO_REFRESHING, set())
        if self.id in refreshing:
            raise TransientSendError(_("The Zalo access token is being refreshed by another process."))
        refreshing.add(self.id)
        try:
            # Committed when the block ends: the old refresh token is spent, the new one must
            # outlive any rollback of the caller's transaction.
            with self.env.registry.cursor() as cr:
                # sudo: the tokens are read and written by the dispatcher (or a manager's button,
                # who may write them anyway); the channel is the one this call was made on.
                channel = self.with_env(self.env(cr=cr)).sudo()
                tokens = yield from channel._zalo_refresh_access_token_locked()
        finally:
            refreshing.discard(self.id)
        # This transaction may not see the other one's commit yet (repeatable read): it is told.
        self.env.cache.update(self, self._fields["zalo_access_token"], [tokens["zalo_access_token"]])
        self.env.cache.update(self, self._fields["zalo_refresh_token"], [tokens["zalo_refresh_token"]])
        self.env.cache.update(self, self._fields["zalo_token_expires_at"], [tokens["zalo_token_expires_at"]])
        return tokens["zalo_access_token"]

    def _zalo_refresh_access_token_locked(self):
        """In the refreshing transaction: lock the tokens, refresh, write; return the new tokens."""
        try:
            with self.env.cr.savepoint():
                self.env.cr.execute(
                    "SELECT id FROM gobysend_provider_token WHERE channel_id = %s FOR UPDATE NOWAIT", (self.id,)
                )
        except (psycopg2.errors.LockNotAvailable, psycopg2.errors.SerializationFailure):
            raise TransientSendError(_("The Zalo access token is being refreshed by another process.")) from None
        # The token as this transaction reads it now: another dispatcher may have rotated it
        # since the batch read the channel.
        self._check_credentials("zalo_refresh_token")
        hidden = (self.zalo_app_secret, self.zalo_refresh_token)
        # A token request sends no message: after a time-out the message may be tried again.
        response = yield from self._provider_request(
            "POST",
            (self.zalo_oauth_url or ZALO_OAUTH_URL).rstrip("/") + "/v4/oa/access_token",
            hidden=hidden,
            retry_safe=True,
            headers={"secret_key": self.zalo_app_secret},
            data={"app_id": self.zalo_app_id, "refresh_token": self.zalo_refresh_token, "grant_type": "refresh_token"},
        )
        result = utils.response_json(response)
        if response.status_code == 429 or response.status_code >= 500:
            self._raise_for_http_status(response, _("Zalo could not refresh the access token now."), hidden)
        if not isinstance(result, dict) or not result.get("access_token"):
            reason = (result or {}).get("error_description") or (result or {}).get("error_name") or response.reason
            raise PermanentSendError(
                _(
                    "Zalo refused to refresh the access token (%(reason)s): authorize the Official Account again "
                    "and paste its new tokens on channel %(channel)s.",
                    reason=reason,
                    channel=self.name,
                ),
                self._format_answer(response, hidden),
            )
        try:
            expires_in = int(result.get("expires_in") or ZALO_DEFAULT_EXPIRES_IN)
        except (TypeError, ValueError):
            expires_in = ZALO_DEFAULT_EXPIRES_IN
        tokens = {
            "zalo_access_token": result["access_token"],
            "zalo_refresh_token": result.get("refresh_token") or self.zalo_refresh_token,
            "zalo_token_expires_at": fields.Datetime.now() + datetime.timedelta(seconds=expires_in),
        }
        self._zalo_token_record().write(
            {
                "access_token": tokens["zalo_access_token"],
                "refresh_token": tokens["zalo_refresh_token"],
                "expires_at": tokens["zalo_token_expires_at"],
            }
        )
        self.env.flush_all()
        _logger.info("Refreshed the Zalo access token of channel %s", self.id)
        return tokens

    def action_zalo_refresh_token(self):
        """Refresh now (managers: the tokens are theirs to read and write)."""
        self.ensure_one()
        try:
            self._run_provider_request_steps(self._zalo_refresh_access_token())
        except SendError as error:
            raise UserError(error.reason) from None
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"type": "success", "message": _("The Zalo access token was refreshed.")},
        }

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------

    def _zalo_prepare_payload(self, message):
        try:
            content = json.loads(message.body or "")
        except ValueError:
            content = None
        if not isinstance(content, dict):
            raise PermanentSendError(
                _(
                    "A Zalo ZNS message body must be a JSON object: the template's parameters, or template_id and "
                    "template_data."
                )
            )
        if "template_data" in content:
            template_id = content.get("template_id") or self.zalo_template_id
            template_data = content["template_data"]
        else:
            template_id = self.zalo_template_id
            template_data = content
        if not template_id:
            raise PermanentSendError(_("Channel %(channel)s has no ZNS template id.", channel=self.name))
        if not isinstance(template_data, dict):
            raise PermanentSendError(_("The ZNS template data must be a JSON object."))
        payload = {
            "phone": self._get_vietnamese_phone(message, "international"),
            "template_id": str(template_id),
            "template_data": template_data,
            "tracking_id": str(message.id),
        }
        if self.zalo_development_mode:
            payload["mode"] = "development"
        return payload

    def _zalo_send(self, message):
        payload = self._zalo_prepare_payload(message)
        token = yield from self._zalo_get_access_token()
        response, result = yield from self._zalo_post_template(payload, token)
        if result.get("error") in ZALO_TOKEN_ERRORS:
            # Revoked or expired before its time: refresh once and try again.
            token = (
                self.zalo_access_token
                if self.zalo_access_token != token  # another message of the batch refreshed it already
                else (yield from self._zalo_refresh_access_token())
            )
            response, result = yield from self._zalo_post_template(payload, token)
        answer = self._format_answer(response, (token,))
        error = result.get("error")
        if error == 0 and (result.get("data") or {}).get("msg_id"):
            return str(result["data"]["msg_id"])
        raise self._zalo_error(error, result.get("message"), answer)

    def _zalo_error(self, code, message, answer):
        """The SendError for a ZNS answer with error ``code`` (see ``ZALO_ERRORS``)."""
        kind, description = ZALO_ERRORS.get(code, (None, None))
        reason = _(
            "Zalo refused the message: %(message)s (error %(code)s).",
            message=message or description or _("no message"),
            code=code,
        )
        if kind == "morning":
            return TransientSendError(reason, answer, _seconds_until_vietnam_hour(6))
        if kind == "midnight":
            return TransientSendError(reason, answer, _seconds_until_vietnam_hour(0))
        if kind in ("retry", "refresh"):
            # A token refused again right after its refresh: Zalo's side, worth a later try.
            return TransientSendError(reason, answer)
        if kind == "setup":
            reason = _(
                "%(reason)s Check the Zalo app, Official Account and ZNS template of channel %(channel)s.",
                reason=reason,
                channel=self.name,
            )
        return PermanentSendError(reason, answer)

    def _zalo_post_template(self, payload, token):
        response = yield from self._provider_request(
            "POST",
            (self.zalo_api_url or ZALO_API_URL).rstrip("/") + "/message/template",
            hidden=(token,),
            headers={"access_token": token},
            json=payload,
        )
        self._raise_for_http_status(response, hidden=(token,))
        result = utils.response_json(response)
        if not isinstance(result, dict):
            raise PermanentSendError(
                _("Zalo answered something that is not JSON."), self._format_answer(response, (token,))
            )
        return response, result
