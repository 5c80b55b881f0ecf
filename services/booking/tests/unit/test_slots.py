"""Working hours and slot generation: time zones, DST, step grid, overlap subtraction."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from carebridge_booking.domain import (
    Clinician,
    Interval,
    Licence,
    TimeWindow,
    free_slots,
    slot_problem,
    windows_overlap,
    working_intervals,
)

NY = ZoneInfo("America/New_York")
HOUR = timedelta(hours=1)
STEP = timedelta(minutes=30)
EVERY_DAY = range(7)


def clinician(
    windows: tuple[tuple[str, str], ...] = (("09:00", "17:00"),),
    days: range | tuple[int, ...] = EVERY_DAY,
    zone: str = "America/New_York",
    licences: tuple[Licence, ...] = (Licence("NY"),),
) -> Clinician:
    parsed = tuple(TimeWindow(time.fromisoformat(a), time.fromisoformat(b)) for a, b in windows)
    return Clinician(
        id="psy-test",
        role="psychiatrist",
        time_zone=zone,
        licences=licences,
        working_hours={day: parsed for day in days},
    )


def ny(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=NY)


def utc(y: int, m: int, d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=UTC)


def slots(
    who: Clinician,
    start: datetime,
    end: datetime,
    *,
    length: timedelta = HOUR,
    state: str = "NY",
    now: datetime | None = None,
    busy: tuple[Interval, ...] = (),
) -> list[Interval]:
    return free_slots(
        who,
        state=state,
        length=length,
        step=STEP,
        start=start,
        end=end,
        now=now or start - timedelta(days=30),
        busy=busy,
    )


# 2026-03-08: US spring forward (02:00 EST -> 03:00 EDT); 2026-11-01: fall back.
@pytest.mark.parametrize(
    ("day", "window", "expected"),
    [
        # an ordinary Monday in winter (EST, UTC-5) and in summer (EDT, UTC-4)
        (date(2026, 1, 12), ("09:00", "17:00"), (utc(2026, 1, 12, 14), utc(2026, 1, 12, 22))),
        (date(2026, 7, 13), ("09:00", "17:00"), (utc(2026, 7, 13, 13), utc(2026, 7, 13, 21))),
        # DST day, window clear of the switch: same wall clock, new offset
        (date(2026, 3, 8), ("09:00", "17:00"), (utc(2026, 3, 8, 13), utc(2026, 3, 8, 21))),
        # spring forward inside the window: 4 wall-clock hours are 3 real hours
        (date(2026, 3, 8), ("00:00", "04:00"), (utc(2026, 3, 8, 5), utc(2026, 3, 8, 8))),
        # fall back inside the window: 4 wall-clock hours are 5 real hours
        (date(2026, 11, 1), ("00:00", "04:00"), (utc(2026, 11, 1, 4), utc(2026, 11, 1, 9))),
    ],
)
def test_working_interval_is_wall_clock_in_the_clinicians_zone(
    day: date, window: tuple[str, str], expected: tuple[datetime, datetime]
) -> None:
    who = clinician((window,))
    start = datetime.combine(day, time(0), NY)
    found = working_intervals(who, start, start + timedelta(days=1))
    assert Interval(*expected) in found


def test_a_window_inside_the_spring_forward_gap_moves_past_it_like_the_wall_clock() -> None:
    who = clinician((("02:00", "02:30"), ("09:00", "10:00")))
    start = ny(2026, 3, 8, 0)
    found = working_intervals(who, start, start + timedelta(hours=20))
    # 02:00 does not exist that day; read with the old offset it is 03:00 EDT
    assert found == [
        Interval(utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 30)),
        Interval(utc(2026, 3, 8, 13), utc(2026, 3, 8, 14)),
    ]


def test_only_days_with_working_hours_yield_intervals() -> None:
    weekdays = clinician(days=(0, 1, 2, 3, 4))
    start = ny(2026, 1, 10, 0)  # a Saturday
    found = working_intervals(weekdays, start, start + timedelta(days=3))
    assert [i.start.astimezone(NY).date() for i in found] == [date(2026, 1, 12)]


@pytest.mark.parametrize(
    ("length", "expected_starts"),
    [
        (HOUR, ["09:00", "09:30", "10:00", "10:30", "11:00"]),
        (timedelta(minutes=30), ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30"]),
        (timedelta(minutes=53), ["09:00", "09:30", "10:00", "10:30", "11:00"]),
        (timedelta(hours=3), ["09:00"]),
        (timedelta(hours=4), []),
    ],
)
def test_slots_lie_on_the_step_grid_and_fit_whole(
    length: timedelta, expected_starts: list[str]
) -> None:
    who = clinician((("09:00", "12:00"),))
    found = slots(who, ny(2026, 1, 12, 0), ny(2026, 1, 13, 0), length=length)
    assert [s.start.astimezone(NY).strftime("%H:%M") for s in found] == expected_starts
    assert all(s.end - s.start == length for s in found)


def test_grid_is_anchored_at_the_window_start() -> None:
    who = clinician((("09:15", "11:15"),))
    found = slots(who, ny(2026, 1, 12, 0), ny(2026, 1, 13, 0))
    assert [s.start.astimezone(NY).strftime("%H:%M") for s in found] == [
        "09:15",
        "09:45",
        "10:15",
    ]


def test_slots_across_spring_forward_count_real_time() -> None:
    who = clinician((("00:00", "04:00"),))
    found = slots(who, ny(2026, 3, 8, 0), ny(2026, 3, 9, 0))
    # 3 real hours, 60-minute visits on a 30-minute grid: 5 slots
    local = [s.start.astimezone(NY).strftime("%H:%M") for s in found]
    assert local == ["00:00", "00:30", "01:00", "01:30", "03:00"]
    assert all(s.end - s.start == HOUR for s in found)


def test_slots_across_fall_back_include_the_repeated_hour() -> None:
    who = clinician((("00:00", "03:00"),))
    found = slots(who, ny(2026, 11, 1, 0), ny(2026, 11, 2, 0))
    # 4 real hours: 00:00 EDT .. 03:00 EST
    assert len(found) == 7
    assert found[0].start == utc(2026, 11, 1, 4)
    assert found[-1].end == utc(2026, 11, 1, 8)


@pytest.mark.parametrize(
    ("busy", "expected_starts"),
    [
        ((), ["09:00", "09:30", "10:00", "10:30", "11:00"]),
        # a booked 09:30-10:30 removes every slot overlapping it
        ((Interval(ny(2026, 1, 12, 9, 30), ny(2026, 1, 12, 10, 30)),), ["10:30", "11:00"]),
        # touching edges are not overlaps ([) ranges): 08:00-09:00 and 12:00-13:00 remove nothing
        (
            (
                Interval(ny(2026, 1, 12, 8), ny(2026, 1, 12, 9)),
                Interval(ny(2026, 1, 12, 12), ny(2026, 1, 12, 13)),
            ),
            ["09:00", "09:30", "10:00", "10:30", "11:00"],
        ),
        # a one-minute overlap at the end of 11:00-12:00 removes only that slot
        (
            (Interval(ny(2026, 1, 12, 11, 59), ny(2026, 1, 12, 12, 30)),),
            ["09:00", "09:30", "10:00", "10:30"],
        ),
        # an odd 53-minute booking at 10:00 removes 09:30, 10:00 and 10:30
        ((Interval(ny(2026, 1, 12, 10), ny(2026, 1, 12, 10, 53)),), ["09:00", "11:00"]),
    ],
)
def test_booked_intervals_are_subtracted(
    busy: tuple[Interval, ...], expected_starts: list[str]
) -> None:
    who = clinician((("09:00", "12:00"),))
    found = slots(who, ny(2026, 1, 12, 0), ny(2026, 1, 13, 0), busy=busy)
    assert [s.start.astimezone(NY).strftime("%H:%M") for s in found] == expected_starts


def test_past_slots_are_not_offered() -> None:
    who = clinician((("09:00", "12:00"),))
    found = slots(who, ny(2026, 1, 12, 0), ny(2026, 1, 13, 0), now=ny(2026, 1, 12, 10, 1))
    assert [s.start.astimezone(NY).strftime("%H:%M") for s in found] == ["10:30", "11:00"]


def test_slots_start_within_the_requested_range() -> None:
    who = clinician((("09:00", "12:00"),))
    found = slots(who, ny(2026, 1, 12, 9, 30), ny(2026, 1, 12, 10, 30))
    assert [s.start.astimezone(NY).strftime("%H:%M") for s in found] == ["09:30", "10:00"]


def test_no_slots_after_the_licence_expiry_date() -> None:
    who = clinician(licences=(Licence("NY", date(2026, 1, 13)),))
    found = slots(who, ny(2026, 1, 12, 0), ny(2026, 1, 16, 0))
    days = sorted({s.start.astimezone(NY).date() for s in found})
    assert days == [date(2026, 1, 12), date(2026, 1, 13)]


def test_no_slots_for_a_state_without_licence() -> None:
    who = clinician(licences=(Licence("NY"),))
    assert slots(who, ny(2026, 1, 12, 0), ny(2026, 1, 13, 0), state="NJ") == []


def test_slots_follow_the_clinicians_zone_not_utc() -> None:
    la = clinician((("09:00", "10:00"),), zone="America/Los_Angeles", licences=(Licence("CA"),))
    found = slots(la, utc(2026, 1, 12, 0), utc(2026, 1, 14, 0), state="CA")
    assert [s.start for s in found] == [utc(2026, 1, 12, 17), utc(2026, 1, 13, 17)]


@pytest.mark.parametrize(
    ("starts_at", "length", "expected"),
    [
        (ny(2026, 1, 12, 9), HOUR, None),
        (ny(2026, 1, 12, 16), HOUR, None),
        (ny(2026, 1, 12, 16, 30), HOUR, "outside_working_hours"),  # would end 17:30
        (ny(2026, 1, 12, 8, 30), HOUR, "outside_working_hours"),
        (ny(2026, 1, 12, 20), HOUR, "outside_working_hours"),
        (ny(2026, 1, 12, 9, 10), HOUR, "not_on_slot_grid"),
        (ny(2026, 1, 12, 9) + timedelta(seconds=1), HOUR, "not_on_slot_grid"),
        (ny(2026, 1, 12, 16, 30), timedelta(minutes=30), None),
        (ny(2026, 1, 10, 10), HOUR, "outside_working_hours"),  # Saturday
        (ny(2026, 3, 8, 10), HOUR, None),  # DST day, after the switch
    ],
)
def test_slot_problem(starts_at: datetime, length: timedelta, expected: str | None) -> None:
    weekdays = clinician(days=(0, 1, 2, 3, 4, 6))
    assert slot_problem(weekdays, starts_at, length, STEP) == expected


def test_slot_problem_accepts_any_offset_for_the_same_instant() -> None:
    who = clinician()
    assert slot_problem(who, utc(2026, 1, 12, 14), HOUR, STEP) is None


@pytest.mark.parametrize(
    ("windows", "overlap"),
    [
        ((("09:00", "12:00"), ("13:00", "17:00")), False),
        ((("09:00", "12:00"), ("12:00", "17:00")), False),
        ((("13:00", "17:00"), ("09:00", "13:30")), True),
    ],
)
def test_windows_overlap(windows: tuple[tuple[str, str], ...], overlap: bool) -> None:
    parsed = [TimeWindow(time.fromisoformat(a), time.fromisoformat(b)) for a, b in windows]
    assert windows_overlap(parsed) is overlap
