"""Message templates: Jinja2 in a sandbox, filled with plain data, never with ORM records.

Templates are written by marketers, so they run in Jinja2's immutable sandbox: no attribute
starting with an underscore, no unsafe callables, no mutation of the data passed in. The data
itself is plain dicts and values — a recordset would hand a template ``unlink()`` and friends.

The sandbox keeps templates away from Python, not from work: ``{{ 'x' * 10**9 }}`` or three
nested loops over ``range(100000)`` would hold a dispatcher for hours. Each rendering therefore
has a budget (``RenderBudget``): a time limit checked at every loop step, call, filter and piece
of output, and a size limit on the output and on every text or list a template builds.
"""

import datetime
import functools
import json
import operator
import re
import threading
import time

import phonenumbers
import pytz
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes, pass_context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

from odoo import _
from odoo.tools import LazyTranslate
from odoo.tools.misc import format_amount, format_date, format_datetime
from odoo.tools.translate import LazyGettext

from .exceptions import InvalidInput

# The budget's reasons are raised far from any environment; ``render`` translates them.
_lt = LazyTranslate(__name__)

# Where the filters find the Odoo environment and the contact's locale during one render.
# Everything the sandbox could reach on it starts with an underscore, so templates cannot.
LOCALE_VARIABLE = "gobysend_locale"
# The most characters one rendering may produce, and the most items (characters of a text,
# elements of a list) any value built on the way may hold. An email of 1 MB is already rare.
MAX_OUTPUT_CHARS = 1_000_000
# How long one rendering may take. Real templates render in milliseconds.
MAX_RENDER_SECONDS = 2.0
# The widest field a format specification ("%10s", "{:>10}") may ask for.
MAX_FORMAT_WIDTH = 1000
# The filter put around every loop's iterable, so that each step of every loop checks the budget.
LOOP_BUDGET_FILTER = "gobysend_loop_budget"
# The filter put around every concatenation ("~"), which measures its result.
TEXT_BUDGET_FILTER = "gobysend_text_budget"
# Output kinds: how the values a template inserts are escaped.
OUTPUT_TEXT, OUTPUT_HTML, OUTPUT_SLACK = "text", "html", "slack"


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


# ----------------------------------------------------------------------
# The budget of one rendering
# ----------------------------------------------------------------------


class TemplateRenderError(Exception):
    """A template could not be rendered for one message; the message fails with this reason."""


class TemplateTooCostly(TemplateRenderError):
    """A template asked for more time or a bigger result than one rendering may have."""


class RenderBudget:
    """The time limit of the rendering running in this thread."""

    _current = threading.local()

    def __init__(self, seconds=MAX_RENDER_SECONDS):
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds

    def __enter__(self):
        # A rendering inside another (the texts of a JSON template) shares the outer one's time.
        self.outer = getattr(self._current, "budget", None)
        if self.outer is not None:
            self.deadline, self.seconds = min(self.deadline, self.outer.deadline), self.outer.seconds
        self._current.budget = self
        return self

    def __exit__(self, *exc_info):
        self._current.budget = self.outer

    @classmethod
    def check(cls):
        budget = getattr(cls._current, "budget", None)
        if budget is not None and time.monotonic() > budget.deadline:
            raise TemplateTooCostly(
                _lt("The template takes longer than %(seconds)s seconds to fill in.", seconds=budget.seconds)
            )


def _too_big():
    return TemplateTooCostly(
        _lt("The template builds a text or list longer than %(count)s characters or items.", count=MAX_OUTPUT_CHARS)
    )


def _check_size(value):
    if isinstance(value, str | list | tuple | dict | set | bytes) and len(value) > MAX_OUTPUT_CHARS:
        raise _too_big()
    return value


def _check_length(length):
    if length > MAX_OUTPUT_CHARS:
        raise _too_big()


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*:([^{}]*)\}")
_NESTED_BRACE_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")


def _check_format_widths(fmt, style):
    """Refuse a format string whose fields ask for more than ``MAX_FORMAT_WIDTH`` characters:
    "%999999999s" or "{:>999999999}" would allocate that much before any size check."""
    if not isinstance(fmt, str):
        return
    if style == "%":
        widths = [number for match in _PERCENT_SPEC.finditer(fmt) for number in match.groups() if number]
    else:
        if _NESTED_BRACE_SPEC.search(fmt):
            raise TemplateTooCostly(_lt("Format fields cannot take their width from an argument."))
        widths = [number for spec in _BRACE_SPEC.findall(fmt) for number in re.findall(r"\d+|\*", spec)]
    for width in widths:
        if width == "*" or int(width) > MAX_FORMAT_WIDTH:
            raise TemplateTooCostly(
                _lt("A format field may be at most %(width)s characters wide.", width=MAX_FORMAT_WIDTH)
            )


def _multiply(left, right):
    for sequence, count in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(count, int):
            _check_length(len(sequence) * max(count, 0))
    return operator.mul(left, right)


def _power(left, right):
    # 10 ** 10**8 is a number of 300 million bits: computing it alone takes minutes.
    if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        if right * abs(left).bit_length() > 64 * 1024:
            raise TemplateTooCostly(_lt("The template computes a number that is too large."))
    return operator.pow(left, right)


def _add(left, right):
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        _check_length(len(left) + len(right))
    return operator.add(left, right)


def _modulo(left, right):
    _check_format_widths(left, "%")
    return _check_size(operator.mod(left, right))


# str methods whose result can be far longer than the text they are called on.
def _check_str_method(method, args):
    text = getattr(method, "__self__", None)
    if not isinstance(text, str):
        return
    name = getattr(method, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
        _check_length(args[0])
    elif name == "expandtabs":
        _check_length(len(text) * (args[0] if args and isinstance(args[0], int) else 8))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = (len(text) + 1) if not args[0] else text.count(args[0])
        _check_length(len(text) + count * len(args[1]))
    elif name == "join" and args and isinstance(args[0], list | tuple):
        _check_length(sum(len(item) for item in args[0] if isinstance(item, str)) + len(text) * len(args[0]))


def _budgeted_filter(function, name):
    """``function`` (a filter) checking the budget before and the size of its result after."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        RenderBudget.check()
        values = [arg for arg in (*args, *kwargs.values()) if isinstance(arg, int) and not isinstance(arg, bool)]
        if name in ("center", "indent", "truncate", "wordwrap") and any(value > MAX_OUTPUT_CHARS for value in values):
            raise _too_big()
        if name == "indent":
            text = next((arg for arg in args if isinstance(arg, str)), "")
            width = next(iter(values), 4)
            _check_length(len(text) + text.count("\n") * width)
        elif name == "replace":
            strings = [arg for arg in args if isinstance(arg, str)]
            if len(strings) >= 3:
                text, old, new = strings[-3:]
                _check_length(len(text) + ((len(text) + 1) if not old else text.count(old)) * len(new))
        elif name == "format":
            _check_format_widths(next((arg for arg in args if isinstance(arg, str)), None), "%")
        return _check_size(function(*args, **kwargs))

    return wrapper


def _loop_budget(iterable):
    """Each step of a template's loop checks the time left."""
    for item in iterable:
        RenderBudget.check()
        yield item


def _check_text_size(value):
    RenderBudget.check()
    return _check_size(value)


class _BudgetTransformer(NodeTransformer):
    """Every loop steps through the budget, also one whose body writes nothing; every ``~``
    (which the sandbox does not intercept) has its result measured."""

    def visit_For(self, node):
        node = self.generic_visit(node)
        node.iter = nodes.Filter(node.iter, LOOP_BUDGET_FILTER, [], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node):
        node = self.generic_visit(node)
        return nodes.Filter(node, TEXT_BUDGET_FILTER, [], [], None, None, lineno=node.lineno)


class BoundedSandboxedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox, with every rendering held to its ``RenderBudget``."""

    intercepted_binops = frozenset(["*", "**", "+", "%"])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.binop_table.update({"*": _multiply, "**": _power, "+": _add, "%": _modulo})

    def _parse(self, source, name, filename):
        tree = _BudgetTransformer().visit(super()._parse(source, name, filename))
        tree.set_environment(self)
        return tree

    def call_binop(self, context, operator, left, right):
        RenderBudget.check()
        return super().call_binop(context, operator, left, right)

    def call(__self, __context, __obj, *args, **kwargs):
        RenderBudget.check()
        _check_str_method(__obj, args)
        if getattr(__obj, "__name__", "") in ("format", "format_map"):
            _check_format_widths(getattr(getattr(__obj, "__wrapped__", None), "__self__", None), "{")
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def getattr(self, obj, attribute):
        RenderBudget.check()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        RenderBudget.check()
        return super().getitem(obj, argument)


def _slack_escape(value):
    """Slack's own escaping of ``&``, ``<`` and ``>``: a value can then neither ping
    ``<!channel>`` nor make a link; the template's own markup stays as written."""
    if value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _make_environment(output):
    environment = BoundedSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=output == OUTPUT_HTML,
        keep_trailing_newline=True,
        finalize=_slack_escape if output == OUTPUT_SLACK else None,
    )
    environment.filters.update(
        {"date": _filter_date, "datetime": _filter_datetime, "money": _filter_money, "phone": _filter_phone}
    )
    environment.filters = {name: _budgeted_filter(function, name) for name, function in environment.filters.items()}
    # lipsum(n=100000) writes megabytes of filler at once; a message has no use for it.
    environment.globals.pop("lipsum", None)
    environment.filters[LOOP_BUDGET_FILTER] = _loop_budget
    environment.filters[TEXT_BUDGET_FILTER] = _check_text_size
    return environment


# Built once: compiling a template is the expensive part, binding data is cheap.
_ENVIRONMENTS = {output: _make_environment(output) for output in (OUTPUT_TEXT, OUTPUT_HTML, OUTPUT_SLACK)}


@functools.lru_cache(maxsize=512)
def _compile(source, output):
    return _ENVIRONMENTS[output].from_string(source)


def _json_leaves(value, path="body"):
    """``(path, text)`` of every text in a parsed JSON template, keys included."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", key
            yield from _json_leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_leaves(item, f"{path}[{index}]")


def _parse_json_template(source, field_name):
    try:
        template = json.loads(source)
    except ValueError:
        template = None
    if not isinstance(template, dict):
        raise InvalidInput(
            field_name,
            _(
                'A Zalo body is a JSON object whose texts are templates, e.g. {"name": "{{ contact.name }}"}: '
                "the values are filled in one by one and the JSON is written by Gobysend, so contact data cannot "
                "change its structure."
            ),
        )
    return template


def output_for(channel_type):
    """How a channel's bodies escape what a template inserts into them."""
    return {"email": OUTPUT_HTML, "slack": OUTPUT_SLACK}.get(channel_type, OUTPUT_TEXT)


def check_syntax(source, field_name="body", html=False, channel_type=None):
    """Raise ``InvalidInput`` with the line and reason when ``source`` is not a valid template."""
    if not source:
        return
    sources = [(field_name, source)]
    if channel_type == "zalo" and field_name == "body":
        sources = list(_json_leaves(_parse_json_template(source, field_name), field_name))
    for path, text in sources:
        try:
            _ENVIRONMENTS[OUTPUT_HTML if html else OUTPUT_TEXT].parse(text)
        except TemplateSyntaxError as error:
            raise InvalidInput(
                path,
                _("The template has an error on line %(line)s: %(reason)s", line=error.lineno, reason=error.message),
            ) from None


def render(env, source, variables, html=False, tz=None, lang=None, output=None, name=None):
    """Render ``source`` with ``variables`` (plain data) for one contact.

    ``tz`` and ``lang`` are the contact's: the date filters show moments in the contact's own
    time zone and language. ``output`` (``output_for(channel_type)``; HTML with ``html``) says
    how inserted values are escaped. Any failure becomes ``TemplateRenderError`` with the reason,
    naming the template ``name`` when given; a template over its budget, ``TemplateTooCostly``.
    """
    if not source:
        return ""
    output = output or (OUTPUT_HTML if html else OUTPUT_TEXT)
    try:
        template = _compile(source, output)
        variables = dict(variables, **{LOCALE_VARIABLE: _RenderLocale(env, tz, lang)})
        with RenderBudget():
            # Streamed, so that the output is measured while it grows rather than once whole.
            chunks, length = [], 0
            for chunk in template.generate(variables):
                length += len(chunk)
                _check_length(length)
                RenderBudget.check()
                chunks.append(chunk)
            return "".join(chunks)
    except TemplateRenderError as error:
        error_class, reason = type(error), _translate(env, error.args[0] if error.args else error)
    except SecurityError as error:
        error_class = TemplateRenderError
        reason = _translate(env, _lt("The template tried something that is not allowed: %(reason)s", reason=error))
    except (OverflowError, MemoryError, RecursionError) as error:
        # A range over MAX_RANGE, a value too big to build, a macro calling itself without end.
        error_class = TemplateTooCostly
        reason = _translate(
            env, _lt("The template asks for too much work: %(reason)s", reason=str(error) or type(error).__name__)
        )
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as error:
        error_class = TemplateRenderError
        reason = _translate(env, _lt("The template could not be filled in: %(reason)s", reason=error))
    if name and not reason.startswith(_template_prefix(env, name)):
        reason = _template_prefix(env, name) + reason
    raise error_class(reason)


def render_json(env, source, variables, tz=None, lang=None, name=None):
    """Render a JSON template (Zalo ZNS bodies): each text of the JSON object ``source`` is a
    template of its own, and the result is written with ``json.dumps``, so that a value with
    quotes or braces stays a value and never adds or changes a key."""
    if not source:
        return ""
    try:
        template = _parse_json_template(source, "body")
    except InvalidInput as error:
        raise TemplateRenderError((_template_prefix(env, name) if name else "") + error.message) from None
    with RenderBudget():
        filled = _render_json_value(env, template, variables, tz, lang, name)
    text = json.dumps(filled, ensure_ascii=False)
    _check_length(len(text))
    return text


def _render_json_value(env, value, variables, tz, lang, name):
    if isinstance(value, str):
        return render(env, value, variables, tz=tz, lang=lang, name=name)
    if isinstance(value, dict):
        return {
            _render_json_value(env, key, variables, tz, lang, name): _render_json_value(
                env, item, variables, tz, lang, name
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_render_json_value(env, item, variables, tz, lang, name) for item in value]
    return value


def _translate(env, reason):
    if isinstance(reason, LazyGettext):
        return env._(reason) if env is not None else str(reason)
    return str(reason)


def _template_prefix(env, name):
    prefix = _lt("Template “%(name)s”: ", name=name)
    return env._(prefix) if env is not None else str(prefix)
