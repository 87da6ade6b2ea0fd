"""Timestamped sensor rows (Berkeley-MHAD text, MMAct CSV): the rules both formats share.

Real files are cut short, hold rows out of time order and repeat timestamps; none of that may
pass silently. The rules (docs/datasets.md, "Checking a dataset"):

- **Cut-off last line.** A file whose last line has no newline was cut there unless that line
  is complete (as many fields, and as many decimals in each, as the line before). A cut line is
  an error (``truncated_file``): a partial timestamp such as ``130`` of ``1309539264.038020``
  would otherwise be read as a time and sorted to the front of the signal.
- **Span.** A row more than ``SPAN_BREAK_S`` seconds away from the bulk of the recording's
  rows lies outside its span (a corrupt timestamp): an error naming its line.
- **Order.** Rows are sorted by time (stable); of rows sharing a timestamp the first is kept.
  How many rows were out of order, repeated, repeated with other values (their values lost)
  and how many steps are gaps (longer than ``GAP_STEPS`` median steps) is kept in
  :class:`Timing`; ``sakdn data check`` reports each as a warning with its count.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sakdn.data.problems import dataset_error
from sakdn.data.sensors import SensorSignal
from sakdn.errors import DatasetError

SPAN_BREAK_S = 60.0  # a row further than this from the recording's other rows is not part of it
GAP_STEPS = 10  # a step longer than this many median steps is a gap


@dataclass(frozen=True)
class Timing:
    """What putting one file's rows in time order took, counted over the rows as stored."""

    rows: int  # rows as stored
    backward: int = 0  # rows earlier than the row stored before them
    backward_s: tuple[float, float] = (0.0, 0.0)  # smallest and largest such jump back
    repeated: int = 0  # rows whose timestamp an earlier row has: dropped
    conflicting: int = 0  # of those, rows whose values differ from the row kept
    gaps: int = 0  # steps (in time order) longer than GAP_STEPS median steps
    largest_gap_s: float = 0.0
    median_step_s: float = 0.0


def read_lines(path: str, encoding: str, what: str) -> tuple[list[tuple[int, str]], bool]:
    """The non-blank lines of a text file, numbered from 1, and whether the last one ended
    with a newline (LF, CRLF or CR)."""
    try:
        text = Path(path).read_bytes().decode(encoding)
    except (OSError, UnicodeDecodeError) as err:
        raise dataset_error(path, "unreadable_file", f"unreadable {what} ({err})") from None
    physical = text.splitlines()
    lines = [(n, line) for n, line in enumerate(physical, 1) if line.strip()]
    terminated = not physical or text[-1] in "\r\n" or not physical[-1].strip()
    return lines, terminated


def decimals(field: str) -> int:
    """Digits after the decimal point: ``'1.500'`` → 3, ``'7'`` and ``'7.'`` → 0."""
    return len(field.partition(".")[2])


def cut_off(path: str, number: int, line: str, why: str) -> DatasetError:
    """The error of a last line that lost its end: the file was truncated there."""
    return dataset_error(
        path, "truncated_file",
        f"truncated: the last line ({number}) has no newline and is cut off ({why}): "
        f"{line.strip()!r}; restore the file, or delete that line to use the rows before it",
    )


def order_rows(times: np.ndarray, values: np.ndarray, lines: np.ndarray,
               path: str) -> SensorSignal:
    """Rows (T,) times and (T, 3) values as stored → the signal in time order, repeated
    timestamps dropped (the first row kept), with its :class:`Timing`.

    ``lines`` (T,) are the rows' line numbers, for the error of a row outside the span.
    """
    _check_span(times, lines, path)
    jumps = np.diff(times)  # stored order
    back = -jumps[jumps < 0]
    order = np.argsort(times, kind="stable")
    t, v = times[order], values[order]
    repeat = np.zeros(len(t), dtype=bool)
    repeat[1:] = t[1:] == t[:-1]
    kept = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(t))))  # row kept per time
    conflicting = repeat & np.any(v != v[kept], axis=1)
    t, v = t[~repeat], v[~repeat]
    steps = np.diff(t)
    median = float(np.median(steps)) if len(steps) else 0.0
    gaps = steps[steps > GAP_STEPS * median] if median > 0 else steps[:0]
    timing = Timing(
        rows=len(times),
        backward=len(back),
        backward_s=(float(back.min()), float(back.max())) if len(back) else (0.0, 0.0),
        repeated=int(repeat.sum()),
        conflicting=int(conflicting.sum()),
        gaps=len(gaps),
        largest_gap_s=float(gaps.max()) if len(gaps) else 0.0,
        median_step_s=median,
    )
    return SensorSignal(v, t, timing)


def _check_span(times: np.ndarray, lines: np.ndarray, path: str) -> None:
    """DatasetError naming the first stored row outside the recording's span, if any.

    The span is the largest run of rows (in time order) without a step over SPAN_BREAK_S.
    """
    order = np.argsort(times, kind="stable")
    t = times[order]
    breaks = np.flatnonzero(np.diff(t) > SPAN_BREAK_S)
    if not len(breaks):
        return
    bounds = np.concatenate([[0], breaks + 1, [len(t)]])
    main = int(np.argmax(np.diff(bounds)))
    lo, hi = int(bounds[main]), int(bounds[main + 1])
    outside = np.sort(np.concatenate([order[:lo], order[hi:]]))  # stored positions
    i = int(outside[0])
    before = times[i] < t[lo]
    distance = t[lo] - times[i] if before else times[i] - t[hi - 1]
    more = f"; {len(outside) - 1} more row(s) outside it" if len(outside) > 1 else ""
    raise dataset_error(
        path, "bad_timestamps",
        f"line {int(lines[i])}: its timestamp lies {distance:.3g} s "
        f"{'before' if before else 'after'} the recording's other {hi - lo} row(s), outside "
        f"its span (a cut or corrupt timestamp){more}",
    )
