"""What every adapter's scan shares: the empty index of a tree that cannot be used, pairing each
video with its recording's sensor files, and the problems of the gaps between the two.

An adapter finds its own files (layout, codes, duplicates and empty files differ per dataset)
and hands over its ``views`` (one :class:`Sample` per video clip, without sensors, in index
order), the ``sensors`` found (recording → {sensor: file}) and its :class:`Gaps`, i.e. how the
dataset words and ranks what is missing. :func:`pair` does the rest the same way for all.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from sakdn.data.index import Sample, SampleIndex, natural_key
from sakdn.data.problems import Problem, Scan, missing_sensor_problem

if TYPE_CHECKING:
    from sakdn.data.adapter import DatasetAdapter

Files = Mapping[str, Mapping[str, str]]  # recording → {sensor name: file}


@dataclass(frozen=True)
class Layout:
    """The dataset, root and names that one scan fills its index with."""

    dataset: str
    root: Path
    class_names: tuple[str, ...]
    sensor_names: tuple[str, ...]

    @classmethod
    def of(cls, adapter: DatasetAdapter, root: str | Path,
           class_names: tuple[str, ...] | None = None) -> Layout:
        """The layout of ``adapter`` at ``root`` (resolved); ``class_names`` for datasets whose
        own files name the classes."""
        names = adapter.class_names if class_names is None else tuple(class_names)
        return cls(adapter.name, Path(root).resolve(), names, adapter.sensor_names)

    def index(self, samples: Sequence[Sample] = ()) -> SampleIndex:
        return SampleIndex(self.dataset, str(self.root), self.class_names, self.sensor_names,
                           tuple(samples))

    def fatal(self, path: str | Path, message: str) -> Scan:
        """A tree that cannot be used at all: the empty index and one fatal layout problem."""
        return Scan(self.index(), (Problem("layout", str(path), message, "fatal"),))

    def finish(self, samples: Sequence[Sample], problems: list[Problem], where: str | Path,
               nothing: str) -> Scan:
        """The scan of ``samples``; a fatal ``nothing`` problem at ``where`` when there is none."""
        if not samples:
            problems.append(Problem("layout", str(where), nothing, "fatal"))
        return Scan(self.index(samples), tuple(problems))


@dataclass(frozen=True)
class Gaps:
    """How a dataset reports what is missing between its videos and its sensor files.

    ``no_sensor(recording, views)``: a recording with views but no sensor file at all (its
    views are named by the problem); ``missing_file(view, sensor)``: where an absent sensor
    file of a recording would be; ``no_view(recording, file)``: sensor files without a view.
    """

    no_sensor: Callable[[str, tuple[Sample, ...]], Problem]
    missing_file: Callable[[Sample, str], str]
    no_view: Callable[[str, str], Problem]


def pair(layout: Layout, views: Sequence[Sample], sensors: Files, gaps: Gaps, policy: str,
         sensor_problems: Mapping[str, list[Problem]] | None = None
         ) -> tuple[list[Sample], list[Problem]]:
    """Every view with the sensor files of its recording, and the problems of the gaps.

    A recording without any sensor file is ``gaps.no_sensor``; one lacking some follows the
    missing-sensor ``policy`` (``data.missing_sensor``); sensor files without a view are
    ``gaps.no_view``. ``sensor_problems`` (recording → problems of its sensor files, e.g. a
    file stored twice) make its views unusable (errors naming them), or are warnings when the
    recording has no view.
    """
    extra = sensor_problems or {}
    by_recording: dict[str, list[Sample]] = {}
    samples = []
    for view in views:
        by_recording.setdefault(view.recording, []).append(view)
        present = sensors.get(view.recording, {})
        samples.append(replace(view, sensors=tuple(
            (name, present[name]) for name in layout.sensor_names if name in present)))
    problems: list[Problem] = []
    for recording, group in by_recording.items():
        present = sensors.get(recording, {})
        keys = tuple(v.key for v in group)
        if not present:
            problems.append(gaps.no_sensor(recording, tuple(group)))
        elif len(present) < len(layout.sensor_names):
            missing = [name for name in layout.sensor_names if name not in present]
            problems.append(missing_sensor_problem(
                gaps.missing_file(group[0], missing[0]), recording, missing, keys, policy))
        problems += [replace(p, severity="error", samples=keys) for p in extra.get(recording, ())]
    for recording in sorted(sensors.keys() - by_recording.keys(), key=natural_key):
        problems += [replace(p, severity="warning", samples=()) for p in extra.get(recording, ())]
        if sensors[recording]:
            problems.append(gaps.no_view(recording, next(iter(sensors[recording].values()))))
    return samples, problems
