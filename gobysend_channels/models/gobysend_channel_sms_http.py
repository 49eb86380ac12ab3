import json
from urllib.parse import quote

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from odoo.addons.gobysend_automation.exceptions import PermanentSendError

from .. import utils
from .gobysend_channel import MANAGER

DEFAULT_TEMPLATE = '{"to": "{to}", "text": "{body}", "from": "{sender}"}'
PHONE_FORMATS = [
    ("e164", "E.164 (+84912345678)"),
    ("international", "International without + (84912345678)"),
    ("national", "National (0912345678)"),
]


# Each provider extends the channel in a file of its own, as payment providers do.
# pylint: disable=consider-merging-classes-inherited
class GobysendChannel(models.Model):
    """Any SMS gateway with an HTTP API, described by a request template.

    The parameters template is a JSON object; in its texts (and in the URL) the placeholders
    ``{to}``, ``{body}``, ``{subject}``, ``{sender}`` and ``{message_id}`` are replaced, and
    nothing else is interpreted. It is sent as a JSON body, as form fields or as the query string.
    The provider's message id is read from the JSON answer at ``sms_http_id_path``.
    """

    _inherit = "gobysend.channel"

    provider = fields.Selection(selection_add=[("sms_http", "HTTP SMS gateway")], ondelete={"sms_http": "set default"})
    sms_http_url = fields.Char(string="Gateway URL", groups=MANAGER)
    sms_http_method = fields.Selection(
        [("POST", "POST"), ("GET", "GET")], string="HTTP Method", default="POST", groups=MANAGER
    )
    sms_http_encoding = fields.Selection(
        [("json", "JSON body"), ("form", "Form fields"), ("query", "Query string")],
        string="Send Parameters As",
        default="json",
        groups=MANAGER,
    )
    sms_http_template = fields.Text(
        string="Parameters Template",
        default=DEFAULT_TEMPLATE,
        groups=MANAGER,
        help="A JSON object. Placeholders in its texts: {to}, {body}, {subject}, {sender}, {message_id}.",
    )
    sms_http_auth_header = fields.Char(string="Authentication Header", default="Authorization", groups=MANAGER)
    sms_http_auth_value = fields.Char(
        string="Authentication Value", groups=MANAGER, help="For example “Bearer <token>” or “Basic <base64>”."
    )
    sms_http_phone_format = fields.Selection(PHONE_FORMATS, string="Phone Format", default="e164", groups=MANAGER)
    sms_http_id_path = fields.Char(
        string="Message ID Path",
        default="id",
        groups=MANAGER,
        help="Where the gateway's JSON answer holds its message id, e.g. “data.message_id” or “messages[0].id”. "
        "Empty: the gateway answers no id.",
    )
    sms_http_success_path = fields.Char(
        string="Success Path", groups=MANAGER, help="Optional: a path of the JSON answer that tells success…"
    )
    sms_http_success_value = fields.Char(
        string="Success Value", groups=MANAGER, help="…and the value it holds on success, e.g. “ok” or “0”."
    )

    def _get_supported_channel_types(self):
        if self.provider == "sms_http":
            return ("sms",)
        return super()._get_supported_channel_types()

    @api.constrains("sms_http_template", "sms_http_encoding", "sms_http_method")
    def _check_sms_http_template(self):
        for channel in self.sudo().filtered(lambda c: c.provider == "sms_http"):
            try:
                template = json.loads(channel.sms_http_template or "{}")
            except ValueError as error:
                raise ValidationError(_("The parameters template is not valid JSON: %(error)s", error=error)) from None
            if not isinstance(template, dict):
                raise ValidationError(_("The parameters template must be a JSON object."))
            if channel.sms_http_encoding != "json" and any(
                isinstance(value, dict | list) for value in template.values()
            ):
                raise ValidationError(_("Form fields and query strings cannot hold nested objects or lists."))
            if channel.sms_http_method == "GET" and channel.sms_http_encoding != "query":
                raise ValidationError(_("A GET request sends its parameters in the query string."))

    def _sms_http_send(self, message):
        self._check_credentials("sms_http_url")
        values = {
            "to": self._get_contact_phone(message, self.sms_http_phone_format or "e164"),
            "body": message.body or "",
            "subject": message.subject or "",
            "sender": self.sender or "",
            "message_id": str(message.id),
        }
        params = utils.fill_placeholders(json.loads(self.sms_http_template or "{}"), values)
        url = utils.PLACEHOLDER_RE.sub(lambda match: quote(values[match.group(1)], safe=""), self.sms_http_url)
        headers = {}
        if self.sms_http_auth_value:
            headers[self.sms_http_auth_header or "Authorization"] = self.sms_http_auth_value
        kwargs = {"headers": headers}
        if self.sms_http_encoding == "json":
            kwargs["json"] = params
        elif self.sms_http_encoding == "form":
            kwargs["data"] = params
        else:
            kwargs["params"] = params
        hidden = (self.sms_http_auth_value,)
        response = yield from self._provider_request(self.sms_http_method or "POST", url, hidden=hidden, **kwargs)
        self._raise_for_http_status(response, hidden=hidden)
        answer = self._format_answer(response, hidden)
        result = utils.response_json(response)
        if self.sms_http_success_path:
            try:
                success = str(utils.json_path(result, self.sms_http_success_path)) == (
                    self.sms_http_success_value or ""
                )
            except KeyError:
                success = False
            if not success:
                raise PermanentSendError(_("The SMS gateway refused the message."), answer)
        if not self.sms_http_id_path:
            return f"sms-http-{message.id}"
        try:
            provider_message_id = utils.json_path(result, self.sms_http_id_path)
        except KeyError:
            provider_message_id = None
        if provider_message_id in (None, "") or isinstance(provider_message_id, dict | list):
            raise PermanentSendError(
                _("The SMS gateway answered without a message id at “%(path)s”.", path=self.sms_http_id_path), answer
            )
        return str(provider_message_id)
