"""Cron schedules as CronJobs use them: parsing and next-run computation (pure, no I/O).

Standard five fields (minute hour day-of-month month day-of-week) with ranges, lists, steps
and names (JAN..DEC, SUN..SAT), plus the ``@yearly``/``@monthly``/``@weekly``/``@daily``/
``@hourly`` descriptors, as robfig/cron's standard parser (what kube-controller-manager uses)
reads them — including its rule that when both day fields are restricted a day matching
*either* is a match. Times are computed on the wall clock of the CronJob's time zone with
``zoneinfo``; the key design choice is that a schedule is a set of allowed values per field,
and ``next_after`` walks forward field by field (month, day, hour, minute) instead of minute
by minute. Daylight-saving transitions are not treated specially.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                          "nov", "dec"))}
DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
# (name, min, max, names)
FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, MONTHS),
          ("day of week", 0, 6, DAYS))
MAX_YEARS = 5  # no match within this many years: the schedule never fires (e.g. Feb 30)


class CronError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_star: bool  # day-of-month was "*" (or "?")
    weekday_star: bool

    def day_matches(self, d: dt.date) -> bool:
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow

    def matches(self, t: dt.datetime) -> bool:
        return (t.minute in self.minutes and t.hour in self.hours and t.month in self.months
                and self.day_matches(t.date()))


def _value(s: str, lo: int, hi: int, names: dict[str, int], field: str) -> int:
    if s.lower() in names:
        return names[s.lower()]
    try:
        v = int(s)
    except ValueError:
        raise CronError(f"failed to parse int from {s}: invalid {field}") from None
    if v < lo:
        raise CronError(f"beginning of range ({v}) below minimum ({lo}): {s}")
    if v > hi:
        raise CronError(f"end of range ({v}) above maximum ({hi}): {s}")
    return v


def _field(expr: str, field: str, lo: int, hi: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    out: set[int] = set()
    star = False
    for part in expr.split(","):
        if not part:
            raise CronError(f"empty element in {field}: {expr}")
        rng, _, step_s = part.partition("/")
        step = 1
        if step_s:
            try:
                step = int(step_s)
            except ValueError:
                raise CronError(f"failed to parse int from {step_s}: invalid step") from None
            if step <= 0:
                raise CronError(f"step of range should be a positive number: {part}")
        if rng in ("*", "?"):
            start, end = lo, hi
            star = star or step == 1
        else:
            a, dash, b = rng.partition("-")
            start = _value(a, lo, hi, names, field)
            end = _value(b, lo, hi, names, field) if dash else (hi if step_s else start)
            if start > end:
                raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {part}")
        out.update(range(start, end + 1, step))
    return frozenset(out), star


def parse(spec: str) -> Schedule:
    """Parse a standard cron expression or descriptor; raises CronError with robfig's wording."""
    s = spec.strip()
    if s.startswith("@"):
        if s.lower() not in DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {s}")
        s = DESCRIPTORS[s.lower()]
    parts = s.split()
    if len(parts) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(parts)}: [{' '.join(parts)}]")
    vals = [_field(p, name, lo, hi, names) for p, (name, lo, hi, names) in zip(parts, FIELDS)]
    return Schedule(minutes=vals[0][0], hours=vals[1][0], days=vals[2][0], months=vals[3][0], weekdays=vals[4][0],
                    day_star=vals[2][1], weekday_star=vals[4][1])


def next_after(sched: Schedule, t: dt.datetime, *, tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """The first scheduled time strictly after ``t`` (aware), as an aware UTC datetime, or None
    if the schedule never fires. The schedule reads the wall clock of ``tz`` (default UTC)."""
    zone = tz or dt.timezone.utc
    local = t.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0) + dt.timedelta(minutes=1)
    limit = local.year + MAX_YEARS
    while local.year <= limit:
        if local.month not in sched.months:
            y, m = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
            local = dt.datetime(y, m, 1)
            continue
        if not sched.day_matches(local.date()):
            local = dt.datetime(local.year, local.month, local.day) + dt.timedelta(days=1)
            continue
        if local.hour not in sched.hours:
            local = local.replace(minute=0) + dt.timedelta(hours=1)
            continue
        if local.minute not in sched.minutes:
            local += dt.timedelta(minutes=1)
            continue
        return local.replace(tzinfo=zone).astimezone(dt.timezone.utc)
    return None


def most_recent(sched: Schedule, earliest: dt.datetime, now: dt.datetime, *, tz: dt.tzinfo | None = None,
                max_missed: int = 100) -> tuple[dt.datetime | None, int]:
    """The latest scheduled time in (earliest, now] and how many were due in that window;
    counting stops past ``max_missed`` (the controller only warns about "too many missed")."""
    last, missed = None, 0
    t = next_after(sched, earliest, tz=tz)
    while t is not None and t <= now:
        last, missed = t, missed + 1
        if missed > max_missed:
            break
        t = next_after(sched, t, tz=tz)
    else:
        return last, missed
    # Too many to walk: look for the last run in growing windows just before now.
    for window in (dt.timedelta(hours=1), dt.timedelta(days=1), dt.timedelta(days=32), dt.timedelta(days=366)):
        start = max(earliest, now - window)
        t = next_after(sched, start, tz=tz)
        found = None
        while t is not None and t <= now:
            found, t = t, next_after(sched, t, tz=tz)
        if found is not None:
            return found, missed
    return last, missed
