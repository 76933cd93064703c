"""Cron parsing and next-run computation (nanokube.api.cron), checked against hand-worked dates."""
import datetime as dt
import zoneinfo

import pytest

from nanokube.api.cron import CronError, most_recent, next_after, parse

UTC = dt.timezone.utc


def at(y, mo, d, h=0, mi=0):
    return dt.datetime(y, mo, d, h, mi, tzinfo=UTC)


def runs(spec, start, n, tz=None):
    s, out, t = parse(spec), [], start
    for _ in range(n):
        t = next_after(s, t, tz=tz)
        out.append(t)
    return out


def test_fields_ranges_lists_steps():
    s = parse("1,2,10-12 */6 1-31/10 * *")
    assert s.minutes == {1, 2, 10, 11, 12}
    assert s.hours == {0, 6, 12, 18}
    assert s.days == {1, 11, 21, 31}
    assert s.months == set(range(1, 13)) and s.weekdays == set(range(7))
    assert parse("5/20 * * * *").minutes == {5, 25, 45}  # a start with a step runs to the maximum


def test_names_are_case_insensitive():
    s = parse("0 0 * jan-MAR,Dec mon-fri")
    assert s.months == {1, 2, 3, 12}
    assert s.weekdays == {1, 2, 3, 4, 5}


@pytest.mark.parametrize("desc,expr", [("@yearly", "0 0 1 1 *"), ("@annually", "0 0 1 1 *"),
                                       ("@monthly", "0 0 1 * *"), ("@weekly", "0 0 * * 0"),
                                       ("@daily", "0 0 * * *"), ("@midnight", "0 0 * * *"),
                                       ("@hourly", "0 * * * *")])
def test_descriptors(desc, expr):
    assert parse(desc) == parse(expr)


@pytest.mark.parametrize("bad", ["* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *",
                                 "* * * * 7", "*/0 * * * *", "5-1 * * * *", "x * * * *", "@every 5m", "1,,2 * * * *",
                                 "* * * foo *"])
def test_rejects_invalid(bad):
    with pytest.raises(CronError):
        parse(bad)


def test_every_minute_and_step():
    assert runs("*/1 * * * *", at(2026, 1, 1, 10, 5), 2) == [at(2026, 1, 1, 10, 6), at(2026, 1, 1, 10, 7)]
    # Strictly after: a time exactly on the schedule is not returned again.
    assert runs("*/15 * * * *", at(2026, 1, 1, 10, 15), 3) == [at(2026, 1, 1, 10, 30), at(2026, 1, 1, 10, 45),
                                                              at(2026, 1, 1, 11, 0)]
    # Seconds are ignored: 10:05:30 → 10:06.
    assert next_after(parse("* * * * *"), at(2026, 1, 1, 10, 5) + dt.timedelta(seconds=30)) == at(2026, 1, 1, 10, 6)


def test_rollover_day_month_year():
    assert runs("30 23 * * *", at(2026, 12, 31, 23, 30), 1) == [at(2027, 1, 1, 23, 30)]
    assert runs("0 0 1 * *", at(2026, 1, 15), 2) == [at(2026, 2, 1), at(2026, 3, 1)]
    assert runs("@yearly", at(2026, 6, 1), 1) == [at(2027, 1, 1)]
    assert runs("0 0 31 * *", at(2026, 1, 31), 2) == [at(2026, 3, 31), at(2026, 5, 31)]  # skips 30-day months


def test_leap_day_and_never():
    assert runs("0 12 29 2 *", at(2026, 3, 1), 1) == [at(2028, 2, 29, 12)]
    assert next_after(parse("0 0 30 2 *"), at(2026, 1, 1)) is None


def test_weekdays():
    # 2026-11-27 is a Friday.
    assert runs("0 9 * * MON-FRI", at(2026, 11, 27, 9), 2) == [at(2026, 11, 30, 9), at(2026, 12, 1, 9)]
    assert runs("@weekly", at(2026, 11, 27), 1) == [at(2026, 11, 29)]


def test_day_of_month_or_day_of_week_when_both_restricted():
    # Both restricted: the 1st of the month OR any Monday (Vixie cron / robfig semantics).
    got = runs("0 0 1 * MON", at(2026, 11, 27), 3)
    assert got == [at(2026, 11, 30), at(2026, 12, 1), at(2026, 12, 7)]
    # Day-of-week "*": only the day of month counts.
    assert runs("0 0 1 * *", at(2026, 11, 27), 1) == [at(2026, 12, 1)]


def test_time_zone():
    tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")  # UTC+9, no DST
    # 09:00 in Tokyo is 00:00 UTC.
    assert runs("0 9 * * *", at(2026, 11, 27, 1), 1, tz=tokyo) == [at(2026, 11, 28, 0)]
    ny = zoneinfo.ZoneInfo("America/New_York")  # UTC-5 in winter
    assert runs("0 0 * * *", at(2026, 12, 1, 12), 1, tz=ny) == [at(2026, 12, 2, 5)]
    # Day of week is read in the zone: Monday 08:00 Tokyo is Sunday 23:00 UTC.
    assert runs("0 8 * * MON", at(2026, 11, 27), 1, tz=tokyo) == [at(2026, 11, 29, 23)]


def test_most_recent_counts_missed():
    s = parse("*/10 * * * *")
    last, missed = most_recent(s, at(2026, 1, 1, 10, 0), at(2026, 1, 1, 10, 35))
    assert (last, missed) == (at(2026, 1, 1, 10, 30), 3)
    assert most_recent(s, at(2026, 1, 1, 10, 30), at(2026, 1, 1, 10, 39)) == (None, 0)
    # Thousands missed: still the right last time, count capped past the limit.
    last, missed = most_recent(parse("* * * * *"), at(2026, 1, 1), at(2026, 1, 9, 7, 3))
    assert last == at(2026, 1, 9, 7, 3) and missed == 101
