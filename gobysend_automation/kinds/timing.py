"""When a step's moment comes for one contact: after a delay, at a time of day in the contact's
time zone, on an allowed weekday. Shared by the *wait* step and the timing of *send* steps."""

import datetime

import pytz

from ..tools import first_moment_at

UNITS = {
    "minutes": datetime.timedelta(minutes=1),
    "hours": datetime.timedelta(hours=1),
    "days": datetime.timedelta(days=1),
    "weeks": datetime.timedelta(weeks=1),
}
WEEKDAY_FIELDS = ("on_mon", "on_tue", "on_wed", "on_thu", "on_fri", "on_sat", "on_sun")


def allowed_weekdays(step):
    """Weekday numbers (Monday = 0) the step may run on; all of them when none is ticked."""
    days = {number for number, name in enumerate(WEEKDAY_FIELDS) if step[name]}
    return days or set(range(7))


def hour_to_time(value):
    hours = int(value or 0) % 24
    minutes = round(((value or 0) - int(value or 0)) * 60)
    if minutes == 60:
        hours, minutes = (hours + 1) % 24, 0
    return datetime.time(hours, minutes)


def moment(step, now, tz_name):
    """The first moment (naive UTC) at or after ``now`` (naive UTC) at which ``step`` may run
    for a contact of time zone ``tz_name``."""
    tz = pytz.timezone(tz_name or "UTC")
    days = allowed_weekdays(step)
    if step.timing == "delay":
        start = now + UNITS[step.delay_unit or "days"] * (step.delay_amount or 0)
    else:
        start = now
    local = pytz.utc.localize(start).astimezone(tz)
    if step.timing == "time_of_day":
        wall = datetime.datetime.combine(local.date(), hour_to_time(step.time_of_day))
        candidate = first_moment_at(tz, wall)
        if candidate < local:
            candidate = first_moment_at(tz, wall + datetime.timedelta(days=1))
        for _attempt in range(8):
            if candidate.weekday() in days:
                break
            wall = datetime.datetime.combine(
                candidate.date() + datetime.timedelta(days=1), hour_to_time(step.time_of_day)
            )
            candidate = first_moment_at(tz, wall)
        return candidate.astimezone(pytz.utc).replace(tzinfo=None)
    if local.weekday() in days:
        return start
    # The start of the next allowed day, in the contact's time zone.
    day = local.date()
    for _attempt in range(7):
        day += datetime.timedelta(days=1)
        if day.weekday() in days:
            break
    candidate = first_moment_at(tz, datetime.datetime.combine(day, datetime.time(0, 0)))
    return candidate.astimezone(pytz.utc).replace(tzinfo=None)


def anchored_moment(step, anchor, tz_name):
    """The moment (naive UTC) ``step``'s delay before or after ``anchor`` (a date of the record
    or the contact: a ``date``, read as the start of that day in the contact's time zone, or a
    naive UTC ``datetime``), at the step's local time of day when it asks for one."""
    tz = pytz.timezone(tz_name or "UTC")
    if isinstance(anchor, datetime.datetime):
        base = pytz.utc.localize(anchor)
    else:
        base = first_moment_at(tz, datetime.datetime.combine(anchor, datetime.time(0, 0))).astimezone(pytz.utc)
    offset = UNITS[step.delay_unit or "days"] * (step.delay_amount or 0)
    moment = base - offset if step.anchor_direction == "before" else base + offset
    if step.anchor_use_time:
        local_day = moment.astimezone(tz).date()
        moment = first_moment_at(tz, datetime.datetime.combine(local_day, hour_to_time(step.time_of_day)))
    return moment.astimezone(pytz.utc).replace(tzinfo=None)
