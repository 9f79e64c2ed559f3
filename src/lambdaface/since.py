"""`--since` for the commands that take it (`report`, `find`): an age back from now or a moment."""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str | None, now: float | None = None) -> float | None:
    """`--since`: a duration back from now (`90m`, `12h`, `2d`, `1w`) or an ISO 8601 date or time
    (UTC unless it says otherwise) -> epoch seconds. ValueError when it is neither."""
    if not text:
        return None
    now = time.time() if now is None else now
    relative = _RELATIVE.match(text)
    if relative:
        return now - float(relative[1]) * _UNITS[relative[2]]
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
