"""The plan cache: a session plans each distinct statement text once."""

from __future__ import annotations

from sqlvec.session.results import PreparedStatement


class PlanCache:
    """Planned statements by (text, parameter types, search path), oldest evicted first.

    A plan holds several hundred bytes per character of its text (syntax trees, plan nodes,
    compiled expressions: 45 MB for a 10,000-term OR), so the cache is bounded by the text it
    holds as well as by entries. A statement longer than the whole budget is kept alone in a
    slot of its own, replaced by the next one, so that Parse then Execute of it plans once.
    Entries are checked against the store's generation on use: any catalog change makes them
    stale."""

    ENTRIES = 500
    TEXT = 128 * 1024  # characters of statement text, all entries together

    def __init__(self) -> None:
        self._entries: dict[tuple, PreparedStatement] = {}
        self._text = 0
        self._large: tuple[tuple, PreparedStatement] | None = None
        self.clears = 0  # how many times `clear` ran: a plan from before is to be made again

    def __len__(self) -> int:
        return len(self._entries) + (self._large is not None)

    def get(self, key: tuple) -> PreparedStatement | None:
        """The cached statement for a key, or None."""
        if self._large is not None and self._large[0] == key:
            return self._large[1]
        return self._entries.get(key)

    def put(self, key: tuple, prepared: PreparedStatement) -> None:
        """Cache a statement, evicting the oldest entries until the count and text budgets hold."""
        size = len(key[0])
        if size > self.TEXT:
            self._large = (key, prepared)
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._text -= size
        self._entries[key] = prepared
        self._text += size
        while self._text > self.TEXT or len(self._entries) > self.ENTRIES:
            oldest = next(iter(self._entries))
            del self._entries[oldest]
            self._text -= len(oldest[0])

    def clear(self) -> None:
        """Forget every plan."""
        self.clears += 1
        self._entries.clear()
        self._text = 0
        self._large = None
