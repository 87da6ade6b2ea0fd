"""What is wrong with a dataset tree: one :class:`Problem` per file, and the report over them.

Adapters do not raise on the first bad file: they return a :class:`Scan` (the usable index plus
every problem found), so that ``sakdn data check`` can list all of them and training can stop
with the same list before any trial starts. Severities decide what a problem does:

- ``fatal``: the dataset cannot be used at all (no root, no sample, an empty split);
- ``error``: a bad file; its samples stop training unless ``data.skip_bad_samples`` leaves them
  out (they are listed, never dropped silently);
- ``skipped``: left out by a configured policy (``data.missing_sensor: skip``), counted;
- ``warning`` / ``info``: usable, but worth knowing (rows out of time order, outliers, a
  constant axis, a zero-filled sensor).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from sakdn.data.index import SampleIndex
from sakdn.errors import DatasetError

SEVERITIES = ("fatal", "error", "skipped", "warning", "info")

# Problem kinds and their titles in the report.
KINDS: dict[str, str] = {
    "layout": "dataset layout",
    "missing_modality": "missing modality",
    "missing_sensor": "missing sensor",
    "empty_file": "empty sensor file",
    "unreadable_file": "unreadable file",
    "unreadable_video": "unreadable video",
    "truncated_video": "truncated video",
    "truncated_file": "truncated or corrupt sensor file",
    "bad_mat": ".mat without d_iner or with the wrong shape",
    "bad_columns": "bad columns",
    "bad_timestamps": "bad timestamps",
    "row_order": "rows out of time order or with repeated timestamps",
    "time_gaps": "gaps between timestamps",
    "nan_signal": "NaN or infinite values",
    "outliers": "outlier values",
    "constant_signal": "constant signal",
    "too_short": "recording too short for the GAF size",
    "unknown_action": "unknown action code",
    "unknown_subject": "unknown subject code",
    "unknown_code": "unknown camera / scene / session code",
    "duplicate_recording": "duplicate recording",
    "split": "protocol split",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file (or folder): ``f"{path}: {message}"`` is its report line.

    ``samples`` are the keys of the samples it makes unusable (empty when the file never
    became a sample, e.g. an unknown action code, or when it harms nothing).
    """

    kind: str
    path: str
    message: str
    severity: str = "error"
    samples: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown problem kind {self.kind!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def line(self) -> str:
        return f"{self.path}: {self.message}"


def problem_from_error(err: DatasetError, samples: tuple[str, ...] = (),
                       default_kind: str = "unreadable_file") -> Problem:
    """A DatasetError raised by a reader, as an ``error`` Problem of the reader's kind.

    Readers tag their errors with a ``kind`` attribute (:func:`dataset_error`); the video
    decoder's messages are recognised by their wording.
    """
    kind = getattr(err, "kind", None)
    if kind is None:
        text = err.problem
        if text.startswith("unreadable video"):
            kind = "truncated_video" if "truncated" in text else "unreadable_video"
        elif text.startswith("unreadable PGM"):
            kind = "truncated_video" if "truncated" in text else "unreadable_video"
        elif "d_iner" in text:
            kind = "bad_mat"
        else:
            kind = default_kind
    return Problem(kind, err.path, err.problem, "error", samples)


def dataset_error(path: str, kind: str, message: str) -> DatasetError:
    """A DatasetError that says which problem kind it is (:func:`problem_from_error` reads it)."""
    if kind not in KINDS:
        raise ValueError(f"unknown problem kind {kind!r}")
    err = DatasetError(path, message)
    err.kind = kind  # type: ignore[attr-defined]
    return err


@dataclass(frozen=True)
class Scan:
    """An adapter's result: every sample the tree offers and every problem found on the way."""

    index: SampleIndex
    problems: tuple[Problem, ...] = ()

    def with_problems(self, more: list[Problem] | tuple[Problem, ...]) -> Scan:
        return replace(self, problems=self.problems + tuple(more))

    def blocking(self, skip_bad: bool) -> list[Problem]:
        """Problems that stop training: fatal ones, and errors unless ``skip_bad``."""
        stop = ("fatal",) if skip_bad else ("fatal", "error")
        return [p for p in self.problems if p.severity in stop]

    def usable(self) -> SampleIndex:
        """The index without the samples named by error or skipped problems."""
        bad = {k for p in self.problems if p.severity in ("error", "skipped") for k in p.samples}
        return self.index.subset(lambda s: s.key not in bad) if bad else self.index


def missing_sensor_problem(path: str, recording: str, missing: list[str] | tuple[str, ...],
                           keys: list[str] | tuple[str, ...], policy: str) -> Problem:
    """The ``data.missing_sensor`` policy applied to one recording: its views are skipped
    (``skip``, counted) or kept with those teachers zero-filled and masked (``zero_fill``).
    ``path`` is the first missing file, where it would be."""
    what = f"recording {recording} lacks {', '.join(missing)}"
    if policy == "skip":
        return Problem("missing_sensor", path,
                       f"{what}: {len(keys)} view(s) skipped (data.missing_sensor=skip)",
                       "skipped", tuple(keys))
    return Problem("missing_sensor", path,
                   f"{what}: zero-filled and masked in {len(keys)} view(s) "
                   "(data.missing_sensor=zero_fill)", "info")


def counts(problems: list[Problem] | tuple[Problem, ...]) -> Counter:
    """Problems per (severity, kind)."""
    return Counter((p.severity, p.kind) for p in problems)


def format_report(problems: list[Problem] | tuple[Problem, ...], limit: int | None = None) -> str:
    """Problems grouped by severity and kind, with counts; each line names the file.

    ``limit`` lists at most that many lines per group (the rest are counted).
    """
    lines: list[str] = []
    groups: dict[tuple[str, str], list[Problem]] = {}
    for p in problems:
        groups.setdefault((p.severity, p.kind), []).append(p)
    order = sorted(groups, key=lambda g: (SEVERITIES.index(g[0]), list(KINDS).index(g[1])))
    for severity, kind in order:
        group = groups[(severity, kind)]
        lines.append(f"{severity}: {KINDS[kind]} ({len(group)})")
        shown = group if limit is None else group[:limit]
        lines += [f"  {p.line}" for p in shown]
        if len(shown) < len(group):
            lines.append(f"  … and {len(group) - len(shown)} more")
    return "\n".join(lines)


def left_out_summary(scan: Scan, limit: int = 20) -> str:
    """What the usable index leaves out and why ("" when nothing is): a count per kind, then
    the bad files themselves (errors skipped under ``data.skip_bad_samples``)."""
    left = [p for p in scan.problems if p.severity in ("error", "skipped")]
    if not left:
        return ""
    tally = ", ".join(f"{n} {KINDS[kind]} ({severity})"
                      for (severity, kind), n in sorted(counts(left).items()))
    text = f"left out: {tally}; `sakdn data check` lists every file"
    errors = [p for p in left if p.severity == "error"]
    return text + ("\n" + format_report(errors, limit) if errors else "")


def raise_blocking(scan: Scan, skip_bad: bool, root: str, limit: int = 20) -> SampleIndex:
    """The usable index, or one DatasetError listing every blocking problem.

    This is the check that training and search run before any trial: the message is the
    ``sakdn data check`` report restricted to the problems that stop a run.
    """
    stop = scan.blocking(skip_bad)
    if stop:
        n_err = sum(p.severity == "error" for p in stop)
        hint = (
            "; fix them, or set data.skip_bad_samples=true to leave their samples out"
            if n_err else ""
        )
        raise DatasetError(
            root,
            f"{len(stop)} problem(s) make the dataset unusable{hint} "
            f"(`sakdn data check` lists all):\n{format_report(stop, limit)}",
        )
    return scan.usable()
