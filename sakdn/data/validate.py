"""Content checks of one sensor signal, shared by ``sakdn data check`` and the cache build.

Both run the same function so that a bad recording produces the same message whether it is
found by the check command or while a trial prepares its data. Errors (too short, NaN) stop
training; warnings (rows reordered or dropped, gaps, outliers, a constant axis) are listed by
``sakdn data check`` with their counts, and the signal is used as read.
"""

from __future__ import annotations

import math

import numpy as np

from sakdn.data.problems import Problem
from sakdn.data.rows import GAP_STEPS, Timing
from sakdn.data.sensors import SensorSignal

AXES = "xyz"
MAX_UPSAMPLING = 16  # a sample may fill at most 16×16 pixels of the GAF image

# Outliers (robust, per axis): single-sample spikes far from the rest, the way a glitch looks
# (Berkeley-MHAD's ±2 g accelerometers hold rows of 28 or 61 g). With ``spread`` the 90th
# percentile of |x − median| (a MAD taken at 90 % instead of 50 %, so a tenth of the values may
# be bad), a value is an outlier when it lies more than OUTLIER_FAR spreads from the median
# while both neighbours lie within OUTLIER_NEAR spreads (a movement, even a short one, lifts
# its neighbours too). An axis is reported when its other values fill less than OUTLIER_SQUASH
# of its range: the GAF rescales each axis by its range, so the spike squashes them.
OUTLIER_FAR = 10.0
OUTLIER_NEAR = 3.0
OUTLIER_SQUASH = 0.2
OUTLIER_MIN_SAMPLES = 10


def min_samples(image_size: int) -> int:
    """Shortest usable recording for an S×S GAF: max(2, ⌈S / 16⌉) samples.

    PAA resampling repeats samples when T < S (``sakdn.gaf``); below S/16 each sample becomes
    a block of more than 16×16 identical pixels and the image says little about the motion.
    A GAF needs two samples in any case (one sample has no range to rescale).
    """
    return max(2, math.ceil(image_size / MAX_UPSAMPLING))


def signal_problems(
    signal: SensorSignal, path: str, sensor: str, image_size: int, samples: tuple[str, ...] = ()
) -> list[Problem]:
    """Problems of one sensor signal: too short and NaN / inf (errors); rows reordered or
    dropped, timestamp gaps, outliers and constant axes (warnings)."""
    values = signal.values
    problems: list[Problem] = []
    t = values.shape[0]
    need = min_samples(image_size)
    if t < need:
        problems.append(Problem(
            "too_short", path,
            f"sensor {sensor}: {t} sample(s); a {image_size}x{image_size} GAF needs at least "
            f"{need}", "error", samples,
        ))
    if signal.timing is not None:
        problems += timing_problems(signal.timing, path, sensor, samples)
    finite = np.isfinite(values)
    if not finite.all():
        row, axis = (int(v) for v in np.argwhere(~finite)[0])
        problems.append(Problem(
            "nan_signal", path,
            f"sensor {sensor}: {int((~finite).sum())} non-finite value(s), the first "
            f"{values[row, axis]} at sample {row}, axis {AXES[axis]}", "error", samples,
        ))
    elif t >= 2:
        if found := outliers(values):
            problems.append(Problem(
                "outliers", path,
                f"sensor {sensor}: " + "; ".join(found) + " (kept as stored)", "warning", samples,
            ))
        constant = [AXES[a] for a in range(values.shape[1]) if np.ptp(values[:, a]) == 0]
        if constant:
            problems.append(Problem(
                "constant_signal", path,
                f"sensor {sensor}: axis {', '.join(constant)} constant over all {t} samples "
                "(a dead or disconnected sensor?); its GAF channel carries no information",
                "warning", samples,
            ))
    return problems


def timing_problems(timing: Timing, path: str, sensor: str,
                    samples: tuple[str, ...] = ()) -> list[Problem]:
    """Warnings with counts for rows stored out of time order or with repeated timestamps
    (what ordering them took), and for gaps between timestamps."""
    problems: list[Problem] = []
    said = []
    if timing.backward:
        lo, hi = (f"{round(1000 * s, 1):g}" for s in timing.backward_s)  # 0.1 ms
        jump = f"{lo} ms" if lo == hi else f"{lo}–{hi} ms"
        said.append(f"{timing.backward} row(s) out of time order (back by {jump}), sorted")
    if timing.repeated:
        same = timing.repeated - timing.conflicting
        said.append(f"{timing.repeated} row(s) repeating an earlier timestamp dropped "
                    f"({timing.conflicting} with other values, {same} identical)")
    if said:
        problems.append(Problem("row_order", path, f"sensor {sensor}: {'; '.join(said)}; "
                                f"{timing.rows} rows stored", "warning", samples))
    if timing.gaps:
        problems.append(Problem(
            "time_gaps", path,
            f"sensor {sensor}: {timing.gaps} gap(s) longer than {GAP_STEPS} median steps "
            f"({1000 * timing.median_step_s:.0f} ms), the longest {timing.largest_gap_s:.3g} s",
            "warning", samples,
        ))
    return problems


def outliers(values: np.ndarray) -> list[str]:
    """One line per axis that single-sample spikes squash (the rule above OUTLIER_FAR)."""
    if values.shape[0] < OUTLIER_MIN_SAMPLES:
        return []
    found = []
    for a in range(values.shape[1]):
        x = values[:, a]
        median = np.median(x)
        distance = np.abs(x - median)
        spread = np.quantile(distance, 0.9)
        near = distance <= OUTLIER_NEAR * spread
        isolated = np.ones(len(x), dtype=bool)
        isolated[1:] &= near[:-1]
        isolated[:-1] &= near[1:]
        bad = (distance > OUTLIER_FAR * spread) & isolated
        if not bad.any():
            continue
        share = np.ptp(x[~bad]) / np.ptp(x)
        if share >= OUTLIER_SQUASH:
            continue
        worst = x[bad][np.argmax(distance[bad])]
        found.append(
            f"axis {AXES[a]}: {int(bad.sum())} outlier(s) (the farthest {worst:.6g}, median "
            f"{median:.3g}); the other values fill {share:.0%} of the axis' range"
        )
    return found
