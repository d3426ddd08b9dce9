"""A paginator for tables of millions of rows: it never counts them all.

COUNT(*) over a million jobs reads the whole table (or index) on every page view. This paginator
counts at most ``exact_up_to + 1`` rows, and past that takes the database planner's estimate and
says so (``count_is_estimate``); see ``staging.selectors.rows_count``.
"""

from django.core.paginator import Paginator
from django.utils.functional import cached_property

from staging.selectors_admin import rows_count


class EstimatedCountPaginator(Paginator):
    exact_up_to = 10_000

    def __init__(self, *args, exact_up_to: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if exact_up_to is not None:
            self.exact_up_to = exact_up_to
        self.count_is_estimate = False

    @cached_property
    def count(self) -> int:
        count, self.count_is_estimate = rows_count(self.object_list, exact_up_to=self.exact_up_to)
        return count
