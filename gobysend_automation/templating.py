"""Message templates: Jinja2 in a sandbox, filled with plain data, never with ORM records.

Templates are written by marketers, so they run in Jinja2's immutable sandbox: no attribute
starting with an underscore, no unsafe callables, no mutation of the data passed in. The data
itself is plain dicts and values — a recordset would hand a template ``unlink()`` and friends.
"""

import datetime
import functools

import phonenumbers
import pytz
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from odoo import _
from odoo.tools.misc import format_amount, format_date, format_datetime

from .exceptions import InvalidInput

# Where the filters find the Odoo environment and the contact's locale during one render.
# Everything the sandbox could reach on it starts with an underscore, so templates cannot.
LOCALE_VARIABLE = "gobysend_locale"


class _RenderLocale:
    __slots__ = ("_env", "_lang", "_tz")

    def __init__(self, env, tz, lang):
        self._env = env
        self._tz = tz
        self._lang = lang


def _locale(context):
    return context.get(LOCALE_VARIABLE)


@pass_context
def _filter_date(context, value, date_format="medium"):
    """A date, or a moment shown as the date it is in the contact's time zone."""
    if not value:
        return ""
    locale = _locale(context)
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value) if len(value) > 10 else datetime.date.fromisoformat(value)
    if isinstance(value, datetime.datetime):
        value = _to_local(value, locale._tz).date()
    return format_date(locale._env, value, lang_code=locale._lang, date_format=date_format)


@pass_context
def _filter_datetime(context, value, dt_format="medium"):
    """A moment in the contact's time zone and language."""
    if not value:
        return ""
    locale = _locale(context)
    if isinstance(value, str):
        value = datetime.datetime.fromisoformat(value)
    return format_datetime(locale._env, value, tz=locale._tz, dt_format=dt_format, lang_code=locale._lang)


@pass_context
def _filter_money(context, amount, currency_code=None):
    """An amount with its currency's symbol and decimals, in the contact's language."""
    locale = _locale(context)
    env = locale._env
    currency = env["res.currency"].sudo().search([("name", "=", currency_code)], limit=1) if currency_code else None
    currency = currency or env.company.currency_id
    return format_amount(env, float(amount or 0.0), currency, lang_code=locale._lang)


def _filter_phone(number, region="VN"):
    """A phone number in international format, or the input unchanged when it is not one."""
    if not number:
        return ""
    try:
        parsed = phonenumbers.parse(str(number), region)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def _to_local(moment, tz):
    if moment.tzinfo is None:
        moment = pytz.utc.localize(moment)
    return moment.astimezone(pytz.timezone(tz or "UTC"))


def _make_environment(autoescape):
    environment = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
    )
    environment.filters.update(
        {"date": _filter_date, "datetime": _filter_datetime, "money": _filter_money, "phone": _filter_phone}
    )
    return environment


# Built once: compiling a template is the expensive part, binding data is cheap.
_ENVIRONMENTS = {False: _make_environment(False), True: _make_environment(True)}


@functools.lru_cache(maxsize=512)
def _compile(source, html):
    return _ENVIRONMENTS[html].from_string(source)


class TemplateRenderError(Exception):
    """A template could not be rendered for one message; the message fails with this reason."""


def check_syntax(source, field_name="body", html=False):
    """Raise ``InvalidInput`` with the line and reason when ``source`` is not a valid template."""
    if not source:
        return
    try:
        _ENVIRONMENTS[bool(html)].parse(source)
    except TemplateSyntaxError as error:
        raise InvalidInput(
            field_name,
            _("The template has an error on line %(line)s: %(reason)s", line=error.lineno, reason=error.message),
        ) from None


def render(env, source, variables, html=False, tz=None, lang=None):
    """Render ``source`` with ``variables`` (plain data) for one contact.

    ``tz`` and ``lang`` are the contact's: the date filters show moments in the contact's own
    time zone and language. Any failure becomes ``TemplateRenderError`` with the reason.
    """
    if not source:
        return ""
    try:
        template = _compile(source, bool(html))
        return template.render(dict(variables, **{LOCALE_VARIABLE: _RenderLocale(env, tz, lang)}))
    except SecurityError as error:
        raise TemplateRenderError(
            _("The template tried something that is not allowed: %(reason)s", reason=error)
        ) from None
    except TemplateError as error:
        raise TemplateRenderError(_("The template could not be filled in: %(reason)s", reason=error)) from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as error:
        raise TemplateRenderError(_("The template could not be filled in: %(reason)s", reason=error)) from None
