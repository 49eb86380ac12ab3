"""The periodic trigger: daily, weekly, monthly or yearly, at a time of the workspace's time zone.

The campaign owns a scheduled action (``ir.cron``) whose code is one call,
``model.browse(<id>)._run_periodic()``. Each run evaluates the audience (segments, tags, contact
filter) at that moment and, depending on ``date_source``, keeps:

- ``none``: the whole audience;
- ``birthday_month``: the contacts whose date (the chosen date field of the contact, or the chosen
  date attribute; the contact's own birthday when neither is chosen) falls in the month of the
  run (a monthly campaign, run on its first day);
- ``field`` / ``attribute``: the contacts whose date, moved by ``date_offset_days`` and repeating
  every year, is the day of the run. A date of 29 February counts on 28 February in years
  without one.

Dates are compared as dates of the workspace's time zone (a date-and-time value is read there
first). The matching contacts are selected in SQL and enter journeys set-based, each with a key
of the run's date (the day of the scheduled moment the run serves, also when it starts late), so
that a run executed twice starts nothing twice.

Odoo's scheduler moves a cron's next call by a fixed interval in UTC, which drifts by an hour
across daylight-saving changes and slips from the 31st to the 28th after February; the campaign
computes the next call itself (``next_run``, through ``tools.first_moment_at``) and
``ir.cron._reschedule_later`` keeps it.
"""

import calendar
import datetime

import pytz

from odoo import fields
from odoo.exceptions import AccessError, ValidationError
from odoo.tools import SQL
from odoo.tools.translate import LazyTranslate

from ...tools import first_moment_at
from .. import TRIGGERS, TriggerKind, register

_lt = LazyTranslate(__name__)

# Odoo's own interval of each period: only shown on the scheduled action, the campaign moves it.
CRON_INTERVALS = {"daily": (1, "days"), "weekly": (1, "weeks"), "monthly": (1, "months"), "yearly": (12, "months")}
# Contacts entered into journeys per statement of one run.
ENTER_CHUNK = 5000


def split_time(run_time):
    """(hours, minutes) of a float time of day (9.5 → 9:30)."""
    minutes = round(run_time * 60)
    return divmod(minutes, 60)


def anniversary_days(target):
    """The month-days ("MM-DD") of the dates whose yearly anniversary falls on ``target``: its
    own, and 29 February on 28 February of a year without one."""
    days = [target.strftime("%m-%d")]
    if target.month == 2 and target.day == 28 and not calendar.isleap(target.year):
        days.append("02-29")
    return days


@register(TRIGGERS)
class PeriodicTrigger(TriggerKind):
    """Runs on a schedule over the audience, or over the contacts whose date comes round."""

    key = "periodic"
    label = _lt("Periodic")
    icon = "fa-calendar"
    sequence = 70
    uses_audience = True
    fields = ("period", "segment_ids", "tag_ids", "partner_domain")
    help = _lt(
        "Runs daily, weekly, monthly or yearly at the chosen time of the workspace's time zone. Each run takes the "
        "contacts of the audience at that moment (segments, tags and contact filter): all of them, those whose "
        "birthday (the contact's own, or the date field or attribute chosen) is in the month of the run (run it "
        "monthly, on the 1st), or those whose date (a date field of "
        "the contact or a date attribute) comes round that day, moved by the offset (−3: three days before). "
        "A date of 29 February counts on 28 February in years without one. Choose the re-entry “Every time” for a "
        "journey at each run; a run executed twice starts no journey twice."
    )

    # ------------------------------------------------------------------
    # Settings
    # ------------------------------------------------------------------

    def validate(self, campaign):
        env = campaign.env
        if not campaign.period:
            raise ValidationError(
                env._("Periodic campaign “%(name)s” needs a period (field “Period”).", name=campaign.name)
            )
        if not 0 <= campaign.run_time < 24:
            raise ValidationError(
                env._(
                    "Periodic campaign “%(name)s” needs a time of day between 00:00 and 23:59 (field “At”).",
                    name=campaign.name,
                )
            )
        if campaign.period == "weekly" and not campaign.run_weekday:
            raise ValidationError(env._("Weekly campaign “%(name)s” needs a weekday (field “On”).", name=campaign.name))
        if campaign.period in ("monthly", "yearly") and not 1 <= campaign.run_monthday <= 31:
            raise ValidationError(
                env._(
                    "Campaign “%(name)s” needs a day of the month between 1 and 31 (field “Day of Month”); "
                    "in shorter months it runs on their last day.",
                    name=campaign.name,
                )
            )
        if campaign.period == "yearly" and not 1 <= campaign.run_month <= 12:
            raise ValidationError(
                env._("Campaign “%(name)s” needs a month between 1 and 12 (field “Month”).", name=campaign.name)
            )
        source = campaign.date_source or "none"
        if source == "birthday_month" and campaign.period != "monthly":
            raise ValidationError(
                env._(
                    "Campaign “%(name)s” greets the birthdays of the month: run it monthly (field “Period”), "
                    "on the 1st.",
                    name=campaign.name,
                )
            )
        if source in ("field", "birthday_month") and campaign.date_field_id:
            self._check_date_field(campaign)
        if source in ("attribute", "birthday_month") and campaign.date_attribute_id:
            self._check_date_attribute(campaign)
        if source == "field" and not campaign.date_field_id:
            raise ValidationError(
                env._("Campaign “%(name)s” needs the contact's date field (field “Date Field”).", name=campaign.name)
            )
        if source == "attribute" and not campaign.date_attribute_id:
            raise ValidationError(
                env._("Campaign “%(name)s” needs a date attribute (field “Date Attribute”).", name=campaign.name)
            )
        if source in ("field", "attribute") and abs(campaign.date_offset_days) > 366:
            raise ValidationError(
                env._(
                    "Campaign “%(name)s”: the offset (field “Offset (days)”) is at most 366 days either way.",
                    name=campaign.name,
                )
            )

    def _check_date_field(self, campaign):
        env = campaign.env
        field = campaign.date_field_id
        model_field = env["res.partner"]._fields.get(field.name)
        if (
            field.model != "res.partner"
            or not model_field
            or model_field.type not in ("date", "datetime")
            or not model_field.store
            or model_field.company_dependent
        ):
            raise ValidationError(
                env._(
                    "“%(field)s” is not a stored date field of contacts (field “Date Field”).",
                    field=field.field_description,
                )
            )

    def _check_date_attribute(self, campaign):
        attribute = campaign.date_attribute_id
        if attribute.workspace_id != campaign.workspace_id or attribute.value_type not in ("date", "datetime"):
            raise ValidationError(
                campaign.env._(
                    "“%(attribute)s” is not a date attribute of this workspace (field “Date Attribute”).",
                    attribute=attribute.display_name,
                )
            )

    # ------------------------------------------------------------------
    # The owned scheduled action
    # ------------------------------------------------------------------

    def activate(self, campaign):
        """Create or update the campaign's scheduled action, next called at the next run."""
        env = campaign.env
        interval_number, interval_type = CRON_INTERVALS[campaign.period]
        values = {
            "name": env._("Campaign: %(campaign)s", campaign=campaign.name),
            "interval_number": interval_number,
            "interval_type": interval_type,
            "nextcall": self.next_run(campaign, fields.Datetime.now()),
            "active": bool(campaign.active),
        }
        # sudo: the campaign's own scheduled action; its managers cannot write crons, and its
        # code is fixed here (one call on this campaign), never taken from user input.
        cron = campaign.sudo().cron_id
        if cron:
            cron.write(values)
            return
        model = env["ir.model"]._get("gobysend.campaign")
        campaign.sudo().cron_id = (
            env["ir.cron"]
            .sudo()
            .create(
                dict(
                    values,
                    model_id=model.id,
                    state="code",
                    code=f"model.browse({campaign.id})._run_periodic()",
                    user_id=env.ref("base.user_root").id,
                    priority=20,
                )
            )
        )

    def deactivate(self, campaign):
        cron = campaign.sudo().cron_id  # sudo: the campaign's own scheduled action, as in activate
        if cron:
            cron.active = False

    # ------------------------------------------------------------------
    # When
    # ------------------------------------------------------------------

    def next_run(self, campaign, after):
        """The first scheduled moment strictly after ``after`` (naive UTC), as naive UTC."""
        after_utc = pytz.utc.localize(after)
        start = self._local_date(campaign, after) - datetime.timedelta(days=1)
        for moment in self._moments(campaign, start):
            if moment > after_utc:
                return moment.astimezone(pytz.utc).replace(tzinfo=None)
        raise AssertionError("no next run")

    def run_date(self, campaign, now):
        """The local date of the run that ``now`` (naive UTC) serves: the day of the latest
        scheduled moment at or before it. A run the scheduler starts late, past midnight, is
        still the previous day's; started again or by hand later, it is the same run."""
        now_utc = pytz.utc.localize(now)
        today = self._local_date(campaign, now)
        span = {"daily": 2, "weekly": 8, "monthly": 31}.get(campaign.period, 366)
        served = None
        for moment in self._moments(campaign, today - datetime.timedelta(days=span)):
            if moment <= now_utc:
                served = moment.date()
        return served or today

    def _local_date(self, campaign, moment):
        return pytz.utc.localize(moment).astimezone(pytz.timezone(campaign.workspace_id.tz or "UTC")).date()

    def _moments(self, campaign, start):
        """The scheduled moments (aware, in the workspace's time zone) from the day ``start`` on."""
        tz = pytz.timezone(campaign.workspace_id.tz or "UTC")
        hours, minutes = split_time(campaign.run_time)
        wall = datetime.time(hours, minutes) if hours < 24 else datetime.time(23, 59)
        for day in self._run_days(campaign, start):
            yield first_moment_at(tz, datetime.datetime.combine(day, wall))

    def _run_days(self, campaign, start):
        """The local days the campaign runs on, from ``start`` on (a few years' worth)."""
        if campaign.period == "daily":
            for offset in range(3):
                yield start + datetime.timedelta(days=offset)
        elif campaign.period == "weekly":
            weekday = int(campaign.run_weekday or 0)
            first = start + datetime.timedelta(days=(weekday - start.weekday()) % 7)
            for offset in range(3):
                yield first + datetime.timedelta(weeks=offset)
        elif campaign.period == "monthly":
            year, month = start.year, start.month
            for _n in range(3):
                last = calendar.monthrange(year, month)[1]
                yield datetime.date(year, month, min(campaign.run_monthday, last))
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        else:
            month = campaign.run_month or 1
            for year in range(start.year, start.year + 3):
                last = calendar.monthrange(year, month)[1]
                yield datetime.date(year, month, min(campaign.run_monthday, last))

    # ------------------------------------------------------------------
    # Who
    # ------------------------------------------------------------------

    def run_partner_ids(self, campaign, run_date, now=None):
        """The ids of the contacts one run on ``run_date`` (a local date) starts journeys for;
        the contact filter's relative dates are read at ``now``."""
        query = campaign._get_audience_query(now)
        source = campaign.date_source or "none"
        if source != "none":
            # SQL: month-and-day arithmetic on dates, which a domain cannot express; the
            # contacts' dates are compared in one statement, whatever the audience's size.
            if source == "birthday_month":
                condition = SQL("EXTRACT(MONTH FROM %s) = %s", SQL("d.day"), run_date.month)
            else:
                target = run_date - datetime.timedelta(days=campaign.date_offset_days)
                condition = SQL("to_char(d.day, 'MM-DD') = ANY(%s)", anniversary_days(target))
            query.add_where(
                SQL(
                    "%s IN (SELECT d.partner_id FROM (%s) AS d (partner_id, day) WHERE %s)",
                    SQL.identifier(query.table, "id"),
                    self._dated_contacts(campaign),
                    condition,
                )
            )
        campaign.env.flush_all()
        campaign.env.cr.execute(
            SQL("SELECT array_agg(id ORDER BY id) FROM (%s) AS run", query.select(SQL.identifier(query.table, "id")))
        )
        return campaign.env.cr.fetchone()[0] or []

    def count_audience(self, campaign):
        """The contacts of the next run: the audience the form shows, and what launching checks
        the token balance against (a birthday campaign pays for one day's birthdays at a time,
        not for every contact at once)."""
        self.validate(campaign)
        now = fields.Datetime.now()
        moment = self.next_run(campaign, now)
        return len(self.run_partner_ids(campaign, self.run_date(campaign, moment), moment))

    def _dated_contacts(self, campaign):
        """SQL of (partner id, local date) of the contacts having the campaign's date."""
        tz = campaign.workspace_id.tz or "UTC"
        field = campaign.date_field_id
        if campaign.date_source == "birthday_month" and not field and not campaign.date_attribute_id:
            # The contact's own birthday, which the tracking API's "birthday" key writes.
            field = campaign.env["ir.model.fields"]._get("res.partner", "gobysend_birthday")
        if field and campaign.date_source in ("field", "birthday_month"):
            Partner = campaign._contacts_model()
            # The date is read with the rights of whoever set the campaign's filters, as the
            # rest of its audience (a field restricted to some groups stays closed to others).
            if Partner.env.uid:
                try:
                    Partner.check_field_access_rights("read", [field.name])
                except AccessError:
                    raise ValidationError(
                        campaign.env._(
                            "Whoever set this campaign's filters may not read the contacts' field “%(field)s” "
                            "(field “Date Field”).",
                            field=field.field_description,
                        )
                    ) from None
            column = SQL.identifier("p", field.name)
            if field.ttype == "datetime":
                column = SQL("(%s AT TIME ZONE 'UTC' AT TIME ZONE %s)::date", column, tz)
            return SQL("SELECT p.id, %s FROM res_partner p WHERE %s IS NOT NULL", column, column)
        attribute = campaign.date_attribute_id
        if attribute.value_type == "datetime":
            column = SQL("(v.value_datetime AT TIME ZONE 'UTC' AT TIME ZONE %s)::date", tz)
        else:
            column = SQL("v.value_date")
        return SQL(
            "SELECT v.partner_id, %s FROM gobysend_attribute_value v WHERE v.attribute_id = %s AND %s IS NOT NULL",
            column,
            attribute.id,
            column,
        )

    # ------------------------------------------------------------------
    # A run
    # ------------------------------------------------------------------

    def run(self, campaign, now):
        """One run at ``now`` (naive UTC): journeys for the contacts it selects, keyed by the run's
        date; the journeys' first steps run in the background. Returns the journeys started."""
        run_date = self.run_date(campaign, now)
        partner_ids = self.run_partner_ids(campaign, run_date, now)
        Journey = campaign.env["gobysend.journey"]
        started = []
        context = {"data": {"run_date": run_date.isoformat()}}
        for start in range(0, len(partner_ids), ENTER_CHUNK):
            chunk = partner_ids[start : start + ENTER_CHUNK]
            started += Journey._enter(
                campaign,
                [{"partner_id": pid, "context": context, "key": f"run{run_date.isoformat()}:{pid}"} for pid in chunk],
                run=False,
            )
        return started
