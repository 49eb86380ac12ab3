import datetime

from odoo import _, api, fields, models

from ..exceptions import InvalidInput, UnknownMessage
from .gobysend_channel_inapp import INAPP_DISPLAY_KINDS, INAPP_PROVIDER_PREFIX
from .gobysend_subscription import CHANNELS as CONSENT_CHANNELS

# States of an in-app message that the app may show: made available, then seen or clicked.
INAPP_AVAILABLE_STATES = ("delivered", "opened", "clicked")
# Engagement the app reports, and the receipt each one is recorded as (dismissed has none:
# the message keeps its state and is no longer listed).
INAPP_ACTIONS = {"seen": "opened", "clicked": "clicked", "dismissed": None}
# The most messages one GET /inapp answers with, newest first.
MAX_INAPP_MESSAGES = 50
MAX_URL_LENGTH = 2048
# The key of a message's render context that holds its in-app settings.
INAPP_CONTEXT_KEY = "inapp"


class GobysendMessage(models.Model):
    """In-app messages in the outbox: sent by the in-app provider, they become available to the
    business's app (``GET /inapp``) until they expire or the contact dismisses them.

    The in-app settings of a message travel in its render context under ``inapp``:
    ``{"kind": "banner" | "popup", "link": url, "image_url": url, "expires_at": ISO 8601
    (UTC unless it names an offset), "validity_days": n}``; all optional, the channel
    provides the kind and the validity otherwise.
    """

    _inherit = "gobysend.message"

    inapp_kind = fields.Selection(INAPP_DISPLAY_KINDS, string="Display", readonly=True)
    inapp_link = fields.Char(string="Link", readonly=True)
    inapp_image_url = fields.Char(string="Image URL", readonly=True)
    inapp_expires_at = fields.Datetime(
        string="Shown Until", readonly=True, help="After this moment the app no longer receives the message."
    )
    inapp_dismissed_at = fields.Datetime(string="Dismissed On", readonly=True)

    # ------------------------------------------------------------------
    # Enqueue and send
    # ------------------------------------------------------------------

    @api.model
    def _enqueue(self, partner, channel, body, subject=None, context=None, **kwargs):
        if channel.channel_type == "inapp":
            context = dict(context or {})
            context[INAPP_CONTEXT_KEY] = self._inapp_check_settings(context.get(INAPP_CONTEXT_KEY))
        return super()._enqueue(partner, channel, body, subject=subject, context=context, **kwargs)

    @api.model
    def _inapp_check_settings(self, settings):
        """The in-app settings of a message, checked and normalised, or raise ``InvalidInput``
        naming the setting: nothing is queued with a setting the app could not use."""
        if settings is None:
            return {}
        if not isinstance(settings, dict):
            raise InvalidInput("inapp", _("The in-app settings must be a dictionary."))
        unknown = set(settings) - {"kind", "link", "image_url", "expires_at", "validity_days"}
        if unknown:
            raise InvalidInput(
                f"inapp.{sorted(unknown)[0]}",
                _("Unknown in-app setting “%(name)s”.", name=sorted(unknown)[0]),
            )
        checked = {}
        kind = settings.get("kind")
        if kind is not None:
            if kind not in dict(INAPP_DISPLAY_KINDS):
                raise InvalidInput("inapp.kind", _("The display must be banner or popup, not %(value)r.", value=kind))
            checked["kind"] = kind
        for name in ("link", "image_url"):
            url = settings.get(name)
            if url is None or url == "":
                continue
            # The app opens or loads it: only web addresses, never javascript: or data: URLs.
            if not isinstance(url, str) or not url.lower().startswith(("https://", "http://")):
                raise InvalidInput(f"inapp.{name}", _("%(name)s must be an http(s) address.", name=name))
            if len(url) > MAX_URL_LENGTH:
                raise InvalidInput(
                    f"inapp.{name}", _("%(name)s is longer than %(max)s characters.", name=name, max=MAX_URL_LENGTH)
                )
            checked[name] = url
        expires_at = settings.get("expires_at")
        if expires_at is not None:
            checked["expires_at"] = fields.Datetime.to_string(self._inapp_parse_moment(expires_at))
        validity_days = settings.get("validity_days")
        if validity_days is not None:
            if isinstance(validity_days, bool) or not isinstance(validity_days, int) or validity_days < 0:
                raise InvalidInput("inapp.validity_days", _("The validity must be a whole number of days, 0 or more."))
            checked["validity_days"] = validity_days
        return checked

    @api.model
    def _inapp_parse_moment(self, value):
        """A naive UTC datetime from a datetime or an ISO 8601 text (UTC unless it names an offset)."""
        moment = value
        if isinstance(value, str):
            try:
                moment = datetime.datetime.fromisoformat(value)
            except ValueError:
                moment = None
        if not isinstance(moment, datetime.datetime):
            raise InvalidInput(
                "inapp.expires_at", _("“%(value)s” is not a date and time in ISO 8601 format.", value=value)
            )
        if moment.tzinfo is not None:
            moment = moment.astimezone(datetime.UTC).replace(tzinfo=None)
        return moment.replace(microsecond=0)

    def _inapp_settings(self):
        self.ensure_one()
        return (self.render_context or {}).get(INAPP_CONTEXT_KEY) or {}

    def _check_consent(self):
        """In-app messages need no consent: they show inside the business's own app. They are
        still never shown to a contact who is not (or no longer) one of the workspace's, nor to
        one who unsubscribed from every channel: that contact asked for no marketing at all."""
        self.ensure_one()
        if self.channel_type != "inapp":
            return super()._check_consent()
        subscription = self._get_subscription()
        if not subscription:
            return _("The contact is not subscribed to workspace %(workspace)s.", workspace=self.workspace_id.name)
        if all(subscription[f"{channel}_state"] == "unsubscribed" for channel in CONSENT_CHANNELS):
            return _("The contact unsubscribed from every channel; in-app messages are not shown either.")
        expires_at = self._inapp_settings().get("expires_at")
        if expires_at and fields.Datetime.to_datetime(expires_at) <= fields.Datetime.now():
            return _("The in-app message expired before it could be shown.")
        return None

    def _next_open_moment(self, now):
        # Quiet hours keep phones silent at night; an in-app message makes no sound, it waits
        # in the app until the contact opens it.
        if self.channel_type == "inapp":
            return now
        return super()._next_open_moment(now)

    def _store_sent(self, provider_message_ids, now):
        super()._store_sent(provider_message_ids, now)
        available = self.filtered(
            lambda message: (
                message.channel_type == "inapp"
                and (message.provider_message_id or "").startswith(INAPP_PROVIDER_PREFIX)
            )
        )
        # Grouped by their values: a bulk send writes them all at once.
        for values, messages in available.grouped(lambda message: message._inapp_available_values(now)).items():
            messages.write(dict(values, state="delivered"))

    def _inapp_available_values(self, now):
        """What the app shows of this message once it is available, as a hashable tuple of items."""
        self.ensure_one()
        settings = self._inapp_settings()
        channel = self.channel_id
        expires_at = settings.get("expires_at")
        if expires_at:
            expires_at = fields.Datetime.to_datetime(expires_at)
        else:
            days = settings.get("validity_days", channel.inapp_validity_days)
            expires_at = now + datetime.timedelta(days=days) if days else False
        return tuple(
            {
                "inapp_kind": settings.get("kind") or channel.inapp_display_kind or "banner",
                "inapp_link": settings.get("link") or False,
                "inapp_image_url": settings.get("image_url") or False,
                "inapp_expires_at": expires_at,
            }.items()
        )

    # ------------------------------------------------------------------
    # The app's side: list and engagement (see routers/inapp.py)
    # ------------------------------------------------------------------

    @api.model
    def _inapp_active_messages(self, workspace, partner, now=None):
        """The in-app messages ``partner`` may see now in ``workspace``: available, neither
        dismissed nor expired, newest first."""
        now = now or fields.Datetime.now()
        # sudo: the caller (the tracking API) holds the workspace's key; the domain keeps to that
        # workspace and contact.
        return self.sudo().search(
            [
                ("workspace_id", "=", workspace.id),
                ("partner_id", "=", partner.id),
                ("channel_type", "=", "inapp"),
                ("state", "in", INAPP_AVAILABLE_STATES),
                ("inapp_dismissed_at", "=", False),
                "|",
                ("inapp_expires_at", "=", False),
                ("inapp_expires_at", ">", now),
            ],
            order="create_date desc, id desc",
            limit=MAX_INAPP_MESSAGES,
        )

    @api.model
    def _inapp_find(self, workspace, message_id):
        """``workspace``'s available in-app message ``message_id``, or an empty recordset: a
        message of another workspace, of another channel or not sent yet is not found."""
        # sudo: the domain keeps to the workspace of the caller's key.
        return self.sudo().search(
            [
                ("id", "=", message_id),
                ("workspace_id", "=", workspace.id),
                ("channel_type", "=", "inapp"),
                ("state", "in", INAPP_AVAILABLE_STATES),
            ],
            limit=1,
        )

    def _inapp_record_action(self, action, now=None):
        """Record what the contact did with this in-app message; repeating it changes nothing."""
        self.ensure_one()
        now = now or fields.Datetime.now()
        event_key = f"gobysend-inapp-{self.id}-{action}"
        status = INAPP_ACTIONS[action]
        if status:
            self._apply_receipt(status, event_key, timestamp=now, url=self.inapp_link or None)
            return
        message = self.sudo()
        if not message.inapp_dismissed_at:
            message.write({"inapp_dismissed_at": now})
        self.env["gobysend.ingest"].sudo()._insert_events(
            message.workspace_id,
            [
                {
                    "partner_id": message.partner_id.id,
                    "name": "message_dismissed",
                    "kind": "event",
                    "timestamp": now,
                    "properties": {
                        "message_id": message.id,
                        "channel": message.channel_type,
                        "channel_id": message.channel_id.id,
                    },
                    "message_id": event_key,
                    "url": None,
                    "title": None,
                    "referrer": None,
                }
            ],
        )

    @api.model
    def _inapp_api_list(self, workspace, params):
        """``GET /inapp``: the active in-app messages of the contact that ``params`` names
        (id, email or phone); an unknown contact raises ``UnknownContact``."""
        partner = self.env["gobysend.ingest"]._get_contact(workspace, params)
        messages = self._inapp_active_messages(workspace, partner)
        return {
            "contact_id": partner.id,
            "messages": [
                {
                    "id": message.id,
                    "kind": message.inapp_kind or "banner",
                    "subject": message.subject or "",
                    "body": message.body or "",
                    "link": message.inapp_link or None,
                    "image_url": message.inapp_image_url or None,
                    "state": message.state,
                    "created_at": message.create_date,
                    "expires_at": message.inapp_expires_at or None,
                }
                for message in messages
            ],
        }

    @api.model
    def _inapp_api_engage(self, workspace, message_id, action):
        """``POST /inapp/{id}/{action}``: record ``action`` (see ``INAPP_ACTIONS``) on the
        workspace's in-app message ``message_id``."""
        if action not in INAPP_ACTIONS:
            raise InvalidInput(
                "action", _("The action must be seen, clicked or dismissed, not %(value)r.", value=action)
            )
        message = self._inapp_find(workspace, message_id)
        if not message:
            raise UnknownMessage(
                "message_id", _("No in-app message %(id)s has been sent in this workspace.", id=message_id)
            )
        message._inapp_record_action(action)
        return {"id": message.id, "state": message.state, "dismissed": bool(message.inapp_dismissed_at)}
