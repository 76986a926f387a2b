"""Wage normalisation: every wage type to a monthly KRW figure.

Hourly and daily wages depend on how many days a month are worked, which Worknet states as
the holiday type (``holidayTpNm``): 주5일근무, 주6일근무, 격주 토요일 근무, ...
"""

from __future__ import annotations

import re

WEEKS_PER_MONTH = 365.0 / 7.0 / 12.0  # 4.345
HOURS_PER_DAY = 8.0
# Korean labour law pays a weekly paid holiday (주휴수당) of one day's hours to full-time
# hourly workers; the statutory monthly figure for 40 h/week is 209 h.
STATUTORY_MONTHLY_HOURS_40H = 209.0

_DEFAULT_DAYS_PER_WEEK = 5.0


def days_per_week(holiday_type: str | None) -> float:
    """Working days per week implied by a Worknet holiday type (default 5)."""
    if not holiday_type:
        return _DEFAULT_DAYS_PER_WEEK
    text = holiday_type.replace(" ", "")
    if "격주" in text:  # alternate Saturdays
        return 5.5
    m = re.search(r"주(\d(?:\.\d)?)일", text)
    if m:
        return min(7.0, max(1.0, float(m.group(1))))
    return _DEFAULT_DAYS_PER_WEEK


def working_days_per_month(holiday_type: str | None) -> float:
    """Average working days per month for a holiday type."""
    return days_per_week(holiday_type) * WEEKS_PER_MONTH


def monthly_wage(wage_type: str | None, amount: int | None, holiday_type: str | None = None) -> int | None:
    """Normalise ``amount`` of ``wage_type`` to KRW per month; ``None`` when unknown."""
    if amount is None or wage_type is None:
        return None
    days = working_days_per_month(holiday_type)
    if wage_type == "monthly":
        value = float(amount)
    elif wage_type == "yearly":
        value = amount / 12.0
    elif wage_type == "daily":
        value = amount * days
    elif wage_type == "hourly":
        dpw = days_per_week(holiday_type)
        weekly_hours = dpw * HOURS_PER_DAY
        # paid weekly holiday for 15+ hours a week, as in the statutory 209 h month
        paid_hours = weekly_hours + (HOURS_PER_DAY * min(1.0, weekly_hours / 40.0) if weekly_hours >= 15 else 0.0)
        # (40 + 8) h x 4.345 weeks = 208.6 h, which the statute rounds to 209 h; scale every
        # schedule by the same factor so the full-time figure is the statutory one
        value = amount * paid_hours * STATUTORY_MONTHLY_HOURS_40H / 48.0
    else:
        raise ValueError(f"unknown wage type {wage_type!r}; expected hourly/daily/monthly/yearly")
    return int(round(value))
