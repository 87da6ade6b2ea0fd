"""Content checks of one sensor signal, shared by ``sakdn data check`` and the cache build.

Both run the same function so that a bad recording produces the same message whether it is
found by the check command or while a trial prepares its data.
"""

from __future__ import annotations

import math

import numpy as np

from sakdn.data.problems import Problem

AXES = "xyz"
MAX_UPSAMPLING = 16  # a sample may fill at most 16×16 pixels of the GAF image


def min_samples(image_size: int) -> int:
    """Shortest usable recording for an S×S GAF: max(2, ⌈S / 16⌉) samples.

    PAA resampling repeats samples when T < S (``sakdn.gaf``); below S/16 each sample becomes
    a block of more than 16×16 identical pixels and the image says little about the motion.
    A GAF needs two samples in any case (one sample has no range to rescale).
    """
    return max(2, math.ceil(image_size / MAX_UPSAMPLING))


def signal_problems(
    signal: np.ndarray, path: str, sensor: str, image_size: int, samples: tuple[str, ...] = ()
) -> list[Problem]:
    """Problems of a (T, 3) signal: NaN / inf and too short (errors), constant axes (warning)."""
    problems: list[Problem] = []
    t = signal.shape[0]
    need = min_samples(image_size)
    if t < need:
        problems.append(Problem(
            "too_short", path,
            f"sensor {sensor}: {t} sample(s); a {image_size}x{image_size} GAF needs at least "
            f"{need}", "error", samples,
        ))
    finite = np.isfinite(signal)
    if not finite.all():
        row, axis = (int(v) for v in np.argwhere(~finite)[0])
        problems.append(Problem(
            "nan_signal", path,
            f"sensor {sensor}: {int((~finite).sum())} non-finite value(s), the first "
            f"{signal[row, axis]} at sample {row}, axis {AXES[axis]}", "error", samples,
        ))
    elif t >= 2:
        constant = [AXES[a] for a in range(signal.shape[1]) if np.ptp(signal[:, a]) == 0]
        if constant:
            problems.append(Problem(
                "constant_signal", path,
                f"sensor {sensor}: axis {', '.join(constant)} constant over all {t} samples "
                "(a dead or disconnected sensor?); its GAF channel carries no information",
                "warning", samples,
            ))
    return problems
