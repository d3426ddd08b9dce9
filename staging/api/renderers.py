"""text/csv for the calls that offer it (results, task status)."""

import csv
import io

from rest_framework.renderers import BaseRenderer

from staging.api.result_streams import csv_safe


def _flat(row: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = "" if value is None else csv_safe(value)
    return flat


class CSVRenderer(BaseRenderer):
    """Renders an object as a header line and one row (nested objects as ``a.b`` columns), or a
    list of objects as one row each. Large results do not come through here: they stream."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        rows = [_flat(r) for r in (data if isinstance(data, list) else [data])]
        out = io.StringIO()
        if rows:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        return out.getvalue().encode(self.charset)


class EventStreamRenderer(BaseRenderer):
    """Lets content negotiation accept ``text/event-stream``: the event stream view writes its
    events itself (a streaming response), so this renders only what reaches it by mistake."""

    media_type = "text/event-stream"
    format = "event-stream"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return b""
