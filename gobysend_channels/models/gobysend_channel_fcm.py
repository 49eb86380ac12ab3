import datetime
import json
import logging
import time
from urllib.parse import quote

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from odoo.addons.gobysend_automation.exceptions import (
    PermanentSendError,
    SendError,
    TransientSendError,
    UncertainSendError,
)

from .. import utils
from .gobysend_channel import MANAGER

_logger = logging.getLogger(__name__)

FCM_API_URL = "https://fcm.googleapis.com"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Renew the cached OAuth token this long before it expires.
FCM_TOKEN_MARGIN = datetime.timedelta(minutes=2)
SERVICE_ACCOUNT_KEYS = ("project_id", "private_key", "client_email", "token_uri")
# FCM error codes meaning the device token will never work again for this project.
FCM_DEAD_TOKEN_CODES = {"UNREGISTERED", "SENDER_ID_MISMATCH"}


class PartialPushError(TransientSendError):
    """Some devices have the push message, others are worth trying again later: ``delivered``
    (``{device id: FCM message name}``) is kept on the message so that the next attempt skips them."""

    def __init__(self, reason, provider_answer=None, retry_after=None, delivered=None):
        super().__init__(reason, provider_answer, retry_after)
        self.delivered = delivered or {}


def _fcm_error(response):
    """(status, errorCode, message, field violations) of an FCM v1 error answer."""
    error = (utils.response_json(response) or {}).get("error") or {}
    error_code = None
    violations = []
    for detail in error.get("details") or []:
        if not isinstance(detail, dict):
            continue
        error_code = detail.get("errorCode") or error_code
        violations += [violation.get("field", "") for violation in detail.get("fieldViolations") or []]
    return error.get("status"), error_code, error.get("message") or "", violations


# Each provider extends the channel in a file of its own, as payment providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """Firebase Cloud Messaging HTTP v1, authenticated with a Google service account.

    A push message goes to every active device of the contact in the workspace. Devices that
    FCM reports as unregistered (or whose token it calls invalid) are deactivated.
    """

    _inherit = "gobysend.channel"

    provider = fields.Selection(selection_add=[("fcm", "Firebase Cloud Messaging")], ondelete={"fcm": "set default"})
    fcm_base_url = fields.Char(string="FCM API URL", default=FCM_API_URL, groups=MANAGER)
    fcm_service_account = fields.Text(
        string="Service Account Key (JSON)",
        groups=MANAGER,
        help="The JSON key file of a Google service account allowed to send with Firebase Cloud Messaging.",
    )
    fcm_access_token = fields.Char(string="FCM Access Token", groups=MANAGER, copy=False)
    fcm_token_expires_at = fields.Datetime(string="FCM Access Token Expiry", groups=MANAGER, copy=False)

    def _get_supported_channel_types(self):
        if self.provider == "fcm":
            return ("push",)
        return super()._get_supported_channel_types()

    @api.constrains("fcm_service_account")
    def _check_fcm_service_account(self):
        for channel in self.sudo().filtered("fcm_service_account"):
            channel._fcm_read_service_account(ValidationError)

    def write(self, vals):
        if "fcm_service_account" in vals:
            # A new key means a new identity: the cached token belongs to the old one.
            vals = dict(vals, fcm_access_token=False, fcm_token_expires_at=False)
        return super().write(vals)

    def _fcm_read_service_account(self, error_class=PermanentSendError):
        self.ensure_one()
        try:
            account = json.loads(self.fcm_service_account or "")
        except ValueError:
            account = None
        if not isinstance(account, dict) or any(not account.get(key) for key in SERVICE_ACCOUNT_KEYS):
            raise error_class(
                _(
                    "The service account key of channel %(channel)s must be the JSON key file of a Google service "
                    "account (with %(keys)s).",
                    channel=self.name,
                    keys=", ".join(SERVICE_ACCOUNT_KEYS),
                )
            )
        return account

    # ------------------------------------------------------------------
    # OAuth access token
    # ------------------------------------------------------------------

    def _fcm_get_access_token(self, force=False):
        """A valid OAuth access token: the cached one, or a new one for a signed JWT."""
        self.ensure_one()
        now = fields.Datetime.now()
        if (
            not force
            and self.fcm_access_token
            and self.fcm_token_expires_at
            and self.fcm_token_expires_at > now + FCM_TOKEN_MARGIN
        ):
            return self.fcm_access_token
        account = self._fcm_read_service_account()
        issued_at = int(time.time())
        claims = {
            "iss": account["client_email"],
            "scope": FCM_SCOPE,
            "aud": account["token_uri"],
            "iat": issued_at,
            "exp": issued_at + 3600,
        }
        try:
            assertion = utils.sign_jwt_rs256(claims, account["private_key"], account.get("private_key_id"))
        except (ValueError, TypeError):
            raise PermanentSendError(
                _("The private key of the service account of channel %(channel)s cannot be read.", channel=self.name)
            ) from None
        # A token request sends nothing: repeating it after a time-out is safe.
        response = yield from self._provider_request(
            "POST",
            account["token_uri"],
            retry_safe=True,
            data={"grant_type": JWT_BEARER_GRANT, "assertion": assertion},
        )
        result = utils.response_json(response) or {}
        if response.status_code >= 300 or not result.get("access_token"):
            self._raise_for_http_status(
                response,
                _(
                    "Google refused the service account of channel %(channel)s: %(error)s",
                    channel=self.name,
                    error=result.get("error_description") or result.get("error") or response.reason,
                ),
            )
            raise PermanentSendError(_("Google answered without an access token."), self._format_answer(response))
        expires_in = int(result.get("expires_in") or 3600)
        self.write(
            {
                "fcm_access_token": result["access_token"],
                "fcm_token_expires_at": now + datetime.timedelta(seconds=expires_in),
            }
        )
        return result["access_token"]

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------

    def _fcm_before_send_batch(self):
        # One OAuth token for the whole batch rather than one per message of it.
        if self.fcm_service_account:
            yield from self._fcm_get_access_token()

    def _fcm_payload(self, message, device):
        notification = {"body": message.body or ""}
        if message.subject:
            notification["title"] = message.subject
        return {
            "message": {
                "token": device.token,
                "notification": notification,
                "data": {"gobysend_message_id": str(message.id)},
            }
        }

    def _fcm_send(self, message):
        self._check_credentials("fcm_service_account")
        account = self._fcm_read_service_account()
        devices = (
            self.env["gobysend.device"]
            .sudo()
            .search(
                [
                    ("workspace_id", "=", message.workspace_id.id),
                    ("partner_id", "=", message.partner_id.id),
                    ("active", "=", True),
                ],
                order="last_seen desc, id desc",
            )
        )
        # Devices that got the message at an earlier attempt do not get it twice.
        already = {int(device_id): name for device_id, name in (message.push_deliveries or {}).items()}
        devices = devices.filtered(lambda device: device.id not in already)
        if not devices and already:
            return next(iter(already.values()))
        if not devices:
            raise PermanentSendError(_("The contact has no active device for push messages."))
        url = "%s/v1/projects/%s/messages:send" % (
            (self.fcm_base_url or FCM_API_URL).rstrip("/"),
            quote(account["project_id"], safe=""),
        )
        delivered, errors, dead = {}, [], self.env["gobysend.device"]
        token = yield from self._fcm_get_access_token()
        # Devices whose request may have arrived although no answer came back: never sent again
        # automatically, like a message whose fate is unknown.
        maybe_delivered = {}
        for device in devices:
            payload = self._fcm_payload(message, device)
            # A device that cannot be reached fails alone: the devices before it keep their
            # delivery, so that a retry does not send to them again.
            try:
                response = yield from self._provider_request(
                    "POST", url, hidden=(token,), headers={"Authorization": f"Bearer {token}"}, json=payload
                )
                if response.status_code == 401:
                    # Revoked before its expiry: take a new token once and try again.
                    token = yield from self._fcm_get_access_token(force=True)
                    response = yield from self._provider_request(
                        "POST", url, hidden=(token,), headers={"Authorization": f"Bearer {token}"}, json=payload
                    )
            except UncertainSendError as error:
                errors.append(error)
                maybe_delivered[device.id] = f"fcm-{message.id}-{device.id}"
                continue
            except SendError as error:
                errors.append(error)
                continue
            if response.status_code < 300:
                name = (utils.response_json(response) or {}).get("name") or f"fcm-{message.id}-{device.id}"
                delivered[device.id] = name
                continue
            status, error_code, error_message, violations = _fcm_error(response)
            if error_code in FCM_DEAD_TOKEN_CODES or (
                status == "INVALID_ARGUMENT"
                and ("message.token" in violations or "registration token" in error_message.lower())
            ):
                dead |= device
                continue
            try:
                self._raise_for_http_status(
                    response,
                    _("Firebase refused the message: %(error)s", error=error_message or error_code or status),
                    (token,),
                )
            except (TransientSendError, PermanentSendError) as error:
                errors.append(error)
        if dead:
            _logger.info("Deactivating %s push devices that FCM no longer knows", len(dead))
            dead.write({"active": False})
        transient = [error for error in errors if isinstance(error, TransientSendError)]
        names = [*already.values(), *delivered.values()]
        if transient and names:
            # Try the devices that may still take it later; those that have it are remembered.
            raise PartialPushError(
                _(
                    "Delivered to %(delivered)s device(s); %(waiting)s will be tried again: %(reason)s",
                    delivered=len(names),
                    waiting=len(transient),
                    reason=transient[0].reason,
                ),
                transient[0].provider_answer,
                transient[0].retry_after,
                delivered={**delivered, **maybe_delivered},
            )
        if names:
            return names[0]
        # Nothing surely went out: fail when a device may have it (a manager decides), retry when
        # any device may still take it later, else fail.
        uncertain = [error for error in errors if isinstance(error, UncertainSendError)]
        if errors:
            raise (uncertain or transient or errors)[0]
        raise PermanentSendError(
            _(
                "Firebase no longer knows any device of the contact: %(count)s devices were deactivated.",
                count=len(dead),
            )
        )
