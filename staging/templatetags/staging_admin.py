"""Template tags of the staging admin: a date hierarchy and a pager that stay cheap on tables of
millions of rows, and small formatting filters."""

import calendar
import datetime

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode
from django.contrib.admin.views.main import PAGE_VAR
from django.db import connections
from django.db.models import IntegerField, Max, Min, Value
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.text import capfirst

from staging.admin.display import duration_text, status_class, worker_host

register = template.Library()


@register.filter
def status_css(status: str) -> str:
    """The CSS class of a status (badges, chart bars): ``RUNNING`` → ``status-running``."""
    return status_class(status)


@register.filter
def host(worker: str) -> str:
    return worker_host(worker or "")


@register.filter
def seconds(value) -> str:
    """A number of seconds as a compact duration ("2 h 5 min")."""
    try:
        return duration_text(datetime.timedelta(seconds=float(value)))
    except (TypeError, ValueError):
        return ""


@register.filter
def thousands(value) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@register.simple_tag
def page_links(cl) -> dict:
    """Previous / next links for a list whose size is only estimated (no "last page")."""
    number = cl.page_num
    has_next = len(cl.result_list) >= cl.list_per_page
    return {
        "number": number,
        "previous": cl.get_query_string({PAGE_VAR: number - 1}) if number > 1 else "",
        "next": cl.get_query_string({PAGE_VAR: number + 1}) if has_next else "",
    }


def _aware(year: int, month: int = 1, day: int = 1) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime(year, month, day))


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _occupied(queryset, field: str, ranges: list[tuple[datetime.datetime, datetime.datetime]]):
    """Which of ``ranges`` hold at least one row: one indexed probe (EXISTS-like LIMIT 1) per
    range, sent as one UNION ALL query where the database allows it.

    Each probe is ordered by the field so that it reads the field's index: unordered, a LIMIT 1
    looks cheapest as a sequential scan, which on a table laid out by time (and started where
    another scan left off) can read most of the table before the range's first row."""
    probes = [
        queryset.order_by(field)
        .filter(**{f"{field}__gte": start, f"{field}__lt": end})
        .annotate(bucket=Value(index, output_field=IntegerField()))
        .values_list("bucket", flat=True)[:1]
        for index, (start, end) in enumerate(ranges)
    ]
    if not probes:
        return set()
    if connections[queryset.db].features.supports_slicing_ordering_in_compound:
        return set(probes[0].union(*probes[1:], all=True))
    return {index for index, probe in enumerate(probes) if probe.exists()}


def cheap_date_hierarchy(cl) -> dict:
    """Django's date hierarchy without its SELECT DISTINCT over every row: the span comes from
    MIN/MAX (index ends) and each year, month or day offered is checked with one probe."""
    field = cl.date_hierarchy
    year = cl.params.get(f"{field}__year")
    month = cl.params.get(f"{field}__month")
    day = cl.params.get(f"{field}__day")

    def link(filters):
        return cl.get_query_string(filters, [f"{field}__"])

    if not (year or month or day):
        span = cl.queryset.aggregate(first=Min(field), last=Max(field))
        if not span["first"]:
            return {"show": True, "back": None, "choices": []}
        first, last = (timezone.localtime(span["first"]), timezone.localtime(span["last"]))
        if first.year != last.year:
            years = list(range(first.year, last.year + 1))
            found = _occupied(cl.queryset, field, [(_aware(y), _aware(y + 1)) for y in years])
            return {
                "show": True,
                "back": None,
                "choices": [
                    {"link": link({f"{field}__year": str(y)}), "title": str(y)}
                    for i, y in enumerate(years)
                    if i in found
                ],
            }
        year = first.year
    year = int(year)
    if month and day:
        chosen = datetime.date(year, int(month), int(day))
        return {
            "show": True,
            "back": {
                "link": link({f"{field}__year": year, f"{field}__month": month}),
                "title": capfirst(date_format(chosen, "YEAR_MONTH_FORMAT")),
            },
            "choices": [{"title": capfirst(date_format(chosen, "MONTH_DAY_FORMAT"))}],
        }
    if month:
        month = int(month)
        days = range(1, calendar.monthrange(year, month)[1] + 1)
        y2, m2 = _next_month(year, month)
        ranges = [
            (_aware(year, month, d), _aware(year, month, d + 1) if d < days[-1] else _aware(y2, m2))
            for d in days
        ]
        found = _occupied(cl.queryset, field, ranges)
        return {
            "show": True,
            "back": {"link": link({f"{field}__year": year}), "title": str(year)},
            "choices": [
                {
                    "link": link(
                        {f"{field}__year": year, f"{field}__month": month, f"{field}__day": d}
                    ),
                    "title": capfirst(
                        date_format(datetime.date(year, month, d), "MONTH_DAY_FORMAT")
                    ),
                }
                for i, d in enumerate(days)
                if i in found
            ],
        }
    ranges = [(_aware(year, m), _aware(*_next_month(year, m))) for m in range(1, 13)]
    found = _occupied(cl.queryset, field, ranges)
    return {
        "show": True,
        "back": {"link": link({}), "title": "All dates"},
        "choices": [
            {
                "link": link({f"{field}__year": year, f"{field}__month": m}),
                "title": capfirst(date_format(datetime.date(year, m, 1), "YEAR_MONTH_FORMAT")),
            }
            for m in range(1, 13)
            if m - 1 in found
        ],
    }


@register.tag(name="cheap_date_hierarchy")
def cheap_date_hierarchy_tag(parser, token):
    return InclusionAdminNode(
        parser,
        token,
        func=cheap_date_hierarchy,
        template_name="date_hierarchy.html",
        takes_context=False,
    )
