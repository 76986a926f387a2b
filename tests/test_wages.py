"""Wage normalisation (core.wages) and wage parsing (core.parsing)."""

from __future__ import annotations

import pytest

from core.errors import InvalidInputError
from core.parsing import wage_amount, wage_from_text, wages
from core.wages import WEEKS_PER_MONTH, days_per_week, monthly_wage, working_days_per_month


@pytest.mark.parametrize(
    ("hourly", "statutory_monthly"),
    # the published statutory monthly minimum wages (209 h) for 2024 and 2025
    [(9_860, 2_060_740), (10_030, 2_096_270)],
)
def test_full_time_hourly_matches_statutory_minimum(hourly, statutory_monthly):
    assert monthly_wage("hourly", hourly, "주5일근무") == statutory_monthly
    assert monthly_wage("hourly", hourly, None) == statutory_monthly  # 5 days by default


def test_part_time_hourly_gets_proportional_weekly_holiday_pay():
    # 4 days x 8 h = 32 h/week: 주휴 is 32/40 of a day; below 15 h/week there is none
    per_hour_month = 209.0 / 48.0
    assert monthly_wage("hourly", 10_000, "주 4일 근무") == round(10_000 * (32 + 6.4) * per_hour_month)
    assert monthly_wage("hourly", 10_000, "주1일") == round(10_000 * 8 * per_hour_month)


@pytest.mark.parametrize(
    ("holiday", "days"),
    [
        ("주5일근무", 5.0),
        ("주6일근무", 6.0),
        ("주 4일 근무", 4.0),
        ("주3일근무", 3.0),
        ("격주 토요일 근무", 5.5),
        ("기타", 5.0),
        (None, 5.0),
        ("", 5.0),
    ],
)
def test_days_per_week(holiday, days):
    assert days_per_week(holiday) == days
    assert working_days_per_month(holiday) == pytest.approx(days * 365 / 7 / 12)


def test_monthly_yearly_daily():
    assert monthly_wage("monthly", 2_500_000, "주6일근무") == 2_500_000
    assert monthly_wage("yearly", 36_000_000) == 3_000_000
    assert monthly_wage("daily", 100_000, "주5일근무") == round(100_000 * 5 * WEEKS_PER_MONTH)
    assert monthly_wage("daily", 100_000, "주6일근무") == round(100_000 * 6 * 365 / 7 / 12)
    assert monthly_wage(None, 100) is None
    assert monthly_wage("monthly", None) is None
    with pytest.raises(ValueError, match="unknown wage type"):
        monthly_wage("weekly", 100)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("월급 250만원 ~ 300만원", ("monthly", 2_500_000, 3_000_000)),
        ("연봉 3,000만원 이상", ("yearly", 30_000_000, None)),
        ("시급 10,030원", ("hourly", 10_030, 10_030)),
        ("일급 150,000원", ("daily", 150_000, 150_000)),
        ("연봉 1억 2,000만원", ("yearly", 120_000_000, 120_000_000)),
        ("월급 300만원 이하", ("monthly", None, 3_000_000)),
        ("면접 후 결정", (None, None, None)),
        ("월급 면접 후 결정", ("monthly", None, None)),
    ],
)
def test_wage_text(text, expected):
    assert wage_from_text(text) == expected


def test_wages_combines_fields():
    assert wages("월급", "2500000", "3000000", "월급 250만원 ~ 300만원") == ("monthly", 2_500_000, 3_000_000)
    # 0 / empty amounts fall back to the text
    assert wages("월급", "0", "", "월급 250만원 ~ 300만원") == ("monthly", 2_500_000, 3_000_000)
    assert wages("연봉", "36000000", "0") == ("yearly", 36_000_000, None)
    assert wages("면접 후 결정") == (None, None, None)
    assert wages(None, None, None, "면접 후 결정") == (None, None, None)
    assert wages("monthly", 2_000_000, 2_500_000) == ("monthly", 2_000_000, 2_500_000)
    # the detail form: salTpNm carries the whole text
    assert wages("월급 250만원 ~ 300만원") == ("monthly", 2_500_000, 3_000_000)


@pytest.mark.parametrize(
    "args",
    [
        ("주급", "500000"),  # no weekly wage type in the schema
        ("월급", "이백만원"),
        ("월급", "3000000", "2000000"),  # min above max
        (None, "2000000"),  # amount without a type
        ("월급", "-5"),
        ("연봉", None, None, "연봉 삼천만원"),
    ],
)
def test_unparseable_wages(args):
    with pytest.raises(InvalidInputError) as err:
        wages(*args)
    assert err.value.field == "wage"


def test_wage_amount_forms():
    assert wage_amount("2,500,000") == 2_500_000
    assert wage_amount("250만원") == 2_500_000
    assert wage_amount(2_500_000.0) == 2_500_000
    assert wage_amount("0") is None
    assert wage_amount("") is None
    assert wage_amount(None) is None
