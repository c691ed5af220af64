"""A sequence's options and the values it hands out, as PostgreSQL's sequence.c defines them.

A catalog entry (catalog.py) holds `type` (int2 | int4 | int8), `start`, `increment`, `min`,
`max`, `cache`, `cycle` and `next` (the value the first nextval after creation, a restart or
`setval(..., false)` gives); entries written before these existed lack some of them and read as
PostgreSQL's defaults for a bigint sequence. The rules here are pure: options checked and
merged into an entry, and the values a nextval takes from a last value.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlvec.errors import SqlVecError

# The types a sequence may have, by the names PostgreSQL accepts, with their ranges.
TYPE_NAMES = {"smallint": "int2", "int2": "int2", "integer": "int4", "int": "int4",
              "int4": "int4", "bigint": "int8", "int8": "int8"}
TYPE_RANGES = {"int2": (-2**15, 2**15 - 1), "int4": (-2**31, 2**31 - 1),
               "int8": (-2**63, 2**63 - 1)}
TYPE_SQL = {"int2": "smallint", "int4": "integer", "int8": "bigint"}
# The entry's fields the options set.
OPTION_FIELDS = ("type", "increment", "min", "max", "start", "cache", "cycle", "next")


@dataclass
class SequenceOptions:
    """The options of one CREATE / ALTER SEQUENCE (or identity column) statement, by name
    (type, increment, min, max, start, restart, cache, cycle, owned_by); absent: not given.
    `min` / `max` given as None are NO MINVALUE / NO MAXVALUE, `restart` None a bare
    RESTART."""

    given: dict

    def has(self, name: str) -> bool:
        """Whether the statement named option `name` (an absent one keeps its value)."""
        return name in self.given

    def get(self, name: str, default: object = None) -> object:
        """The value given for option `name`, or `default` when the statement left it out."""
        return self.given.get(name, default)


def invalid(message: str) -> SqlVecError:
    """PostgreSQL's error for contradictory sequence options (22023)."""
    return SqlVecError(message, sqlstate="22023")


def type_of(seq: dict) -> str:
    """A stored sequence's data type; entries written before types were kept are bigint."""
    return str(seq.get("type", "int8"))


def default_bounds(type_name: str, increment: int) -> tuple[int, int]:
    """MINVALUE and MAXVALUE when not given: 1 up to the type's maximum for an ascending
    sequence, the type's minimum up to -1 for a descending one."""
    low, high = TYPE_RANGES[type_name]
    return (1, high) if increment > 0 else (low, -1)


def bounds(seq: dict) -> tuple[int, int]:
    """The entry's MINVALUE and MAXVALUE."""
    low, high = default_bounds(type_of(seq), int(seq["increment"]))
    return int(seq.get("min", low)), int(seq.get("max", high))


def pending(seq: dict) -> int:
    """The value the next nextval gives when the sequence has handed out none since it was
    created, restarted or set back (`setval(..., false)`)."""
    return int(seq.get("next", seq["start"]))


def configured(seq: dict | None, options: SequenceOptions, last: int | None) -> dict:
    """The entry with `options` applied: a new one when `seq` is None (CREATE), else the
    altered one, checked as PostgreSQL's init_params does; `last` is the last value handed out
    (None when none since the sequence was created or restarted)."""
    old = seq or {}
    type_name = str(options.get("type", type_of(old)))
    increment = int(options.get("increment", old.get("increment", 1)))
    if increment == 0:
        raise invalid("INCREMENT must not be zero")
    low, high = _new_bounds(old, options, type_name, increment)
    _check_range("MAXVALUE", high, type_name)
    _check_range("MINVALUE", low, type_name)
    if low >= high:
        raise invalid(f"MINVALUE ({low}) must be less than MAXVALUE ({high})")
    start = int(options.get("start", old.get("start", low if increment > 0 else high)))
    _check_within("START value", start, low, high)
    entry = {**old, "type": type_name, "increment": increment, "min": low, "max": high,
             "start": start, "cache": int(options.get("cache", old.get("cache", 1))),
             "cycle": bool(options.get("cycle", old.get("cycle", False)))}
    if entry["cache"] <= 0:
        raise invalid(f"CACHE ({entry['cache']}) must be greater than zero")
    if options.has("restart"):
        restart = options.get("restart")
        entry["next"] = start if restart is None else int(restart)
    else:
        entry["next"] = pending(old) if old else start
    current = entry.get("next", start) if last is None or options.has("restart") else last
    _check_within("RESTART value", int(current), low, high)
    return entry


def _new_bounds(old: dict, options: SequenceOptions, type_name: str,
                increment: int) -> tuple[int, int]:
    """MINVALUE and MAXVALUE after the statement: given ones, else the old ones; a new type
    (AS) moves a bound that was the old type's extreme to the new type's (whatever the
    direction of the sequence, as PostgreSQL's reset_min_value / reset_max_value), and
    NO MINVALUE / NO MAXVALUE there too."""
    low, high = default_bounds(type_name, increment)
    if not old:
        return _chosen(options, "min", low), _chosen(options, "max", high)
    old_low, old_high = bounds(old)
    if options.has("type"):
        type_low, type_high = TYPE_RANGES[type_of(old)]
        new_low, new_high = TYPE_RANGES[type_name]
        if old_low == type_low:
            old_low = low = new_low
        if old_high == type_high:
            old_high = high = new_high
    return _chosen(options, "min", old_low, low), _chosen(options, "max", old_high, high)


def _chosen(options: SequenceOptions, name: str, kept: int, default: int | None = None) -> int:
    """A bound as given (NO MINVALUE / NO MAXVALUE: `default`), else `kept`."""
    if not options.has(name):
        return kept
    value = options.get(name)
    return int(value) if value is not None else int(kept if default is None else default)


def _check_range(what: str, value: int, type_name: str) -> None:
    low, high = TYPE_RANGES[type_name]
    if not low <= value <= high:
        raise invalid(f"{what} ({value}) is out of range for sequence data type "
                      f"{TYPE_SQL[type_name]}")


def _check_within(what: str, value: int, low: int, high: int) -> None:
    if value < low:
        raise invalid(f"{what} ({value}) cannot be less than MINVALUE ({low})")
    if value > high:
        raise invalid(f"{what} ({value}) cannot be greater than MAXVALUE ({high})")


def advance(seq: dict, name: str, last: int | None, count: int) -> tuple[list[int], bool,
                                                                          SqlVecError | None]:
    """The next `count` values after `last` (None: from `pending`), whether they wrapped
    around (CYCLE), and the error that stopped them at a bound (2200H): the values before it
    are taken, as PostgreSQL's nextval calls before the failing one took theirs."""
    inc = int(seq["increment"])
    low, high = bounds(seq)
    first = pending(seq) if last is None else last + inc
    if not seq.get("cycle"):
        top = first + (count - 1) * inc
        if low <= first and top <= high:
            return list(range(first, top + inc, inc)), False, None
        room = max(0, ((high - first) // inc if inc > 0 else (first - low) // -inc) + 1)
        taken = list(range(first, first + min(room, count) * inc, inc))
        return taken, False, reached(name, inc, low, high)
    values, wrapped, value = [], False, first
    for _ in range(count):
        if value > high or value < low:
            value, wrapped = (low if inc > 0 else high), True
        values.append(value)
        value += inc
    return values, wrapped, None


def identity(seq: dict) -> tuple[int, int]:
    """What tells a sequence from another of the same name, or from itself before a restart:
    its OID and incarnation (values a session cached belong to one of them)."""
    return int(seq["oid"]), int(seq.get("incarnation", 0))


def between(seq: dict, value: int, last: int) -> list[int]:
    """The values nextval handed out after `value` up to `last`, or none when they wrapped
    around (CYCLE)."""
    inc = int(seq["increment"])
    return list(range(value + inc, last + inc, inc)) if (last - value) * inc > 0 else []


def reached(name: str, inc: int, low: int, high: int) -> SqlVecError:
    """nextval's error at the bound it moves towards, when the sequence does not cycle."""
    which, bound = ("maximum", high) if inc > 0 else ("minimum", low)
    return SqlVecError(f'nextval: reached {which} value of sequence "{name}" ({bound})',
                       sqlstate="2200H")


def reservation(seq: dict, top: int, block: int) -> int:
    """How far values are made durable after handing out `top`: `block` steps ahead, never past
    the bound (after a crash counting resumes there: at the bound nextval fails, or wraps
    around with CYCLE, as it would have)."""
    inc = int(seq["increment"])
    low, high = bounds(seq)
    return min(top + inc * block, high) if inc > 0 else max(top + inc * block, low)


def check_setval(seq: dict, name: str, value: int) -> None:
    """setval refuses a value outside the sequence's bounds (22003), as PostgreSQL."""
    low, high = bounds(seq)
    if not low <= value <= high:
        raise SqlVecError(f'setval: value {value} is out of bounds for sequence "{name}" '
                          f"({low}..{high})", sqlstate="22003")


def described(seq: dict) -> dict:
    """The options as the catalog views show them (pg_sequences, pg_sequence,
    information_schema.sequences), the defaults filled in."""
    low, high = bounds(seq)
    return {"type": type_of(seq), "start": int(seq["start"]), "min": low, "max": high,
            "increment": int(seq["increment"]), "cycle": bool(seq.get("cycle", False)),
            "cache": int(seq.get("cache", 1))}
