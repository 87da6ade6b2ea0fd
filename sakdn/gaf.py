"""Gramian angular fields (GASF / GADF): batches of sensor recordings → virtual images.

Method doc §3: each axis x = (x_1 … x_T) of a recording becomes an S×S field. The pipeline follows
``pyts.image.GramianAngularField(image_size=S, method=..., sample_range=(-1, 1))`` so that the
images agree with that independent implementation to float tolerance:

1. **PAA resampling** to S points (piecewise aggregate approximation, pyts' non-overlapping
   rule): the bounds are ``b_j = floor(linspace(0, T, S + 1)[j])`` computed in float64 exactly as
   pyts does, and output point j is the mean of x[b_j : b_{j+1}]. When S does not divide T the
   windows differ in length by one sample. For S = T this is the identity.
   pyts refuses S > T; here the same rule is extended by giving an empty window
   (b_j = b_{j+1}) the one sample x[b_j], i.e. nearest-sample upsampling: for S = k·T every
   sample is repeated k times and the image equals the native T×T image enlarged k times.
2. **Rescaling** of the *resampled* series of each recording and axis to [-1, 1] (pyts does PAA
   first and then rescales, so the resampled series always reaches both -1 and 1):
   x̃ = (2x − max − min) / (max − min), clipped to [-1, 1]. A (near-)constant series, whose range
   is below 10·eps(float64), is divided by 1 instead of its range (the scikit-learn rule pyts
   inherits), which gives x̃ = −1 everywhere.
3. **Field** with φ = arccos(x̃), using cos φ = x̃ and sin φ = sqrt(1 − x̃²):
   GASF_ij = cos(φ_i + φ_j) = x̃_i x̃_j − sqrt(1 − x̃_i²) sqrt(1 − x̃_j²);
   GADF_ij = sin(φ_i − φ_j) = sqrt(1 − x̃_i²) x̃_j − x̃_i sqrt(1 − x̃_j²).

Agreement with pyts is about 1e-7, not 1e-15: sqrt(1 − x̃²) has an infinite slope at x̃ = ±1, and
while x̃ is exactly ±1 at a series' extremes here, pyts' scaler (x·(2/range) + offset) can land one
ulp inside, which moves sqrt(1 − x̃²) by ~1.5e-8.

Differences from the reference Matlab code (``GAF/GASF.m``, ``GAF/GADF.m``):

- Matlab has no resampling (S = T always); with ``image_size = T`` the fields are the same.
- Matlab's GADF uses φ = arcsin(x̃), which flips the sign: its GADF is −GADF here (the transpose),
  and after per-channel min–max scaling its image is 1 − the image here.
- A constant axis gives 0/0 = NaN in Matlab; here it gives x̃ = −1, so GASF ≡ 1 and GADF ≡ 0
  (as pyts), and a constant channel becomes 0.5 under channel scaling.
- Matlab writes lossy JPEGs; the images here stay float32 tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch

from sakdn.errors import ConfigError, SignalError

METHODS = ("gasf", "gadf")
_ALIASES = {"gasf": "gasf", "summation": "gasf", "s": "gasf",
            "gadf": "gadf", "difference": "gadf", "d": "gadf"}
# scikit-learn's MinMaxScaler (used by pyts) treats a range below this as zero.
NEAR_CONSTANT_RANGE = 10 * float(np.finfo(np.float64).eps)
# The value of a channel whose field is constant under per-channel min–max scaling.
CONSTANT_CHANNEL_VALUE = 0.5

ArrayLike = torch.Tensor | np.ndarray
# Fields are written this many bytes at a time on the CPU, so that clipping or channel scaling
# finds them in cache (L2 is 1–2 MiB per core on current x86 servers).
_CHUNK_BYTES = 1 << 20


def _as_tensor(signals: ArrayLike) -> torch.Tensor:
    if isinstance(signals, torch.Tensor):
        return signals
    if isinstance(signals, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(signals))
    raise TypeError(f"signals must be a torch.Tensor or numpy array, got {type(signals).__name__}")


def _recording(i: int, names: Sequence[str] | None) -> str:
    return str(names[i]) if names is not None else f"index {i}"


def check_signals(signals: ArrayLike, names: Sequence[str] | None = None) -> None:
    """Reject recordings that cannot become a GAF (fewer than 2 samples, NaN or ±inf).

    Args:
        signals: ``(batch, axes, time)`` recordings.
        names: one name per recording, used in the error message (default ``index i``).

    Raises:
        SignalError: naming the first bad recording and, for non-finite values, the axis and
            sample where the first one sits.
    """
    x = _as_tensor(signals)
    if x.dim() != 3:
        raise ValueError(f"signals must have shape (batch, axes, time), got {tuple(x.shape)}")
    if names is not None and len(names) != x.shape[0]:
        raise ValueError(f"{len(names)} names given for a batch of {x.shape[0]} recordings")
    if x.shape[0] == 0 or x.shape[1] == 0:
        return
    if x.shape[2] < 2:
        raise SignalError(
            _recording(0, names), f"has {x.shape[2]} sample(s) per axis; a GAF needs at least 2"
        )
    if not x.is_floating_point():
        return  # integers are always finite
    if bool(torch.isfinite(x.amax())) and bool(torch.isfinite(x.amin())):
        return  # NaN propagates through amax; ±inf is the max or min: no per-sample scan needed
    finite = torch.isfinite(x)  # (B, A, T)
    i, axis, t = (int(v) for v in (~finite).nonzero()[0])
    raise SignalError(
        _recording(i, names), f"contains {x[i, axis, t].item()} at axis {axis}, sample {t}"
    )


def _check_size(image_size: int) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)):
        raise ConfigError("gaf.image_size", image_size, "must be an integer")
    if image_size < 1:
        raise ConfigError("gaf.image_size", image_size, "must be >= 1")
    return int(image_size)


def _check_method(method: str) -> str:
    kind = _ALIASES.get(str(method).lower())
    if kind is None:
        raise ConfigError("gaf.method", method, "must be one of " + ", ".join(METHODS))
    return kind


def segment_bounds(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """PAA windows ``[start_j, end_j)`` that turn ``length`` samples into ``size`` points.

    For ``size <= length`` these are pyts' non-overlapping bounds
    (``floor(linspace(0, length, size + 1))`` in float64, rounding included); for
    ``size > length`` an empty window keeps the one sample at its start.
    """
    bounds = np.linspace(0, length, size + 1).astype(np.int64)
    start = bounds[:-1]
    end = np.maximum(bounds[1:], start + 1)
    return start, end


@lru_cache(maxsize=64)
def _paa_weights(length: int, size: int) -> torch.Tensor:
    """Averaging matrix W (length × size), ``paa(x) = x @ W``: 1/len_j on window j of column j."""
    start, end = segment_bounds(length, size)
    t = np.arange(length)[:, None]  # (T, 1)
    inside = (t >= start[None, :]) & (t < end[None, :])  # (T, S)
    return torch.from_numpy(inside / (end - start)[None, :])  # float64, CPU


def paa(signals: ArrayLike, image_size: int) -> torch.Tensor:
    """Resample ``(..., T)`` series to ``(..., image_size)`` by piecewise aggregate approximation.

    One matmul with a cached averaging matrix; the identity (no arithmetic) when the sizes match,
    as in pyts.
    """
    x = _as_tensor(signals)
    size = _check_size(image_size)
    if not x.is_floating_point():
        x = x.to(torch.float64)
    length = x.shape[-1]
    if size == length:
        return x
    w = _paa_weights(length, size).to(device=x.device, dtype=x.dtype)
    return x @ w  # (..., T) @ (T, S) → (..., S)


def rescale(series: torch.Tensor) -> torch.Tensor:
    """Min–max rescale each series (last dim) to [-1, 1]: x̃ = (2x − max − min)/(max − min).

    The result is clipped to [-1, 1]. A range below ``NEAR_CONSTANT_RANGE`` is replaced by 1
    (scikit-learn's rule, as in pyts), so a constant series maps to −1 and never to NaN.
    """
    lo = series.amin(dim=-1, keepdim=True)  # (..., 1)
    span = series.amax(dim=-1, keepdim=True) - lo
    span = torch.where(span < NEAR_CONSTANT_RANGE, torch.ones_like(span), span)
    # 2(x − min)/(max − min) − 1 is exactly ±1 at the extremes (a product with 2/span is not).
    return (series - lo).mul_(2).div_(span).sub_(1).clamp_(-1.0, 1.0)


def _check_out(out: ArrayLike, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    target = torch.from_numpy(out) if isinstance(out, np.ndarray) else out
    if not isinstance(target, torch.Tensor) or not target.is_floating_point():
        raise TypeError("out must be a floating-point torch.Tensor or numpy array")
    if tuple(target.shape) != shape:
        raise ValueError(f"out has shape {tuple(target.shape)}, the fields need {shape}")
    if not target.is_contiguous():
        raise ValueError("out must be contiguous")
    if target.device != device:
        raise ValueError(f"out is on {target.device}, the signals on {device}")
    return target


def _write_fields(
    series: torch.Tensor,
    kind: str,
    out: torch.Tensor,
    dtype: torch.dtype,
    finish: Callable[[torch.Tensor], object],
) -> torch.Tensor:
    """GASF/GADF of resampled float64 series ``(..., S)`` into ``out`` ``(..., S, S)``.

    With x̃ = cos φ and sin φ = sqrt(1 − x̃²) both fields are rank-2 sums of outer products,
    written by a K = 2 batched matmul: GASF = [cos, sin]·[cos, −sin]ᵀ, GADF = [sin, cos]·
    [cos, −sin]ᵀ. On the CPU the fields are written ``_CHUNK_BYTES`` at a time and ``finish``
    (clipping or channel scaling, in place) runs while the chunk is still in cache, so the
    output crosses the memory bus once. The field is computed in ``dtype``; an ``out`` of
    another dtype (float16, as the data cache stores) is filled from a scratch chunk.
    """
    cos = rescale(series)  # (..., S), float64
    sin = (1 - cos * cos).clamp_(0.0, 1.0).sqrt_()  # sin φ ≥ 0 since φ ∈ [0, π]
    size = cos.shape[-1]
    cos, sin = cos.reshape(-1, size).to(dtype), sin.reshape(-1, size).to(dtype)
    right = torch.stack((cos, -sin), dim=-2)  # (N, 2, S)
    left = torch.stack((cos, sin) if kind == "gasf" else (sin, cos), dim=-1)  # (N, S, 2)
    n = cos.shape[0]
    fields = out.view(n, size, size)  # (N, S, S)
    rows = n if out.device.type != "cpu" else max(1, _CHUNK_BYTES // (size * size * cos.itemsize))
    direct = out.dtype == dtype
    scratch = None if direct else torch.empty((min(rows, n), size, size), dtype=dtype,
                                              device=out.device)
    for a in range(0, n, rows):
        b = min(a + rows, n)
        chunk = fields[a:b] if direct else scratch[: b - a]
        torch.bmm(left[a:b], right[a:b], out=chunk)
        finish(chunk)
        if not direct:
            fields[a:b].copy_(chunk)
    return out


def _clip(fields: torch.Tensor) -> torch.Tensor:
    # |x̃_i x̃_j ∓ …| ≤ 1 holds exactly, but the rounded products can pass ±1 by an ulp.
    return fields.clamp_(-1.0, 1.0)


def _to_unit(fields: torch.Tensor) -> torch.Tensor:
    return fields.add_(1.0).mul_(0.5).clamp_(0.0, 1.0)


def _prepare(signals: ArrayLike, image_size: int, method: str, names: Sequence[str] | None
             ) -> tuple[torch.Tensor, str]:
    """Checked signals, PAA-resampled in float64, and the field kind."""
    x = _as_tensor(signals)
    check_signals(x, names)
    size, kind = _check_size(image_size), _check_method(method)
    return paa(x.to(torch.float64), size), kind


def gaf(
    signals: ArrayLike,
    image_size: int,
    method: str = "gasf",
    *,
    names: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
    out: ArrayLike | None = None,
) -> torch.Tensor:
    """Gramian angular field of every axis of every recording, pyts-compatible.

    Args:
        signals: ``(batch, axes, time)`` tensor or array; computed on its device.
        image_size: side S of each field (PAA resampling; S > T upsamples, see the module doc).
        method: ``"gasf"`` (summation) or ``"gadf"`` (difference); pyts' names are accepted too.
        names: recording names for error messages.
        dtype: output dtype when no ``out`` is given; the rescaling is always done in float64,
            the field in float64 for a float64 output and in float32 otherwise.
        out: a contiguous ``(batch, axes, S, S)`` floating-point tensor or numpy array (a
            memory map, a reused buffer) to write the fields into instead of a new tensor. A
            new tensor costs a page fault per 4 KiB on its first write, which for large batches
            takes longer than the fields themselves; a reused buffer does not.

    Returns:
        ``(batch, axes, S, S)`` fields with values in [-1, 1] (``out`` when given, as a tensor).
    """
    series, kind = _prepare(signals, image_size, method, names)
    shape = (*series.shape, series.shape[-1])
    target = (torch.empty(shape, dtype=dtype, device=series.device) if out is None
              else _check_out(out, shape, series.device))
    field_dtype = torch.float64 if target.dtype == torch.float64 else torch.float32
    return _write_fields(series, kind, target, field_dtype, _clip)


def channel_minmax(images: torch.Tensor) -> torch.Tensor:
    """Scale each channel of ``(..., S, S)`` images to [0, 1] in place (Matlab ``mat2gray``).

    A constant channel (max == min) becomes ``CONSTANT_CHANNEL_VALUE`` (0.5), never NaN.
    """
    flat = images.flatten(-2)  # (..., S·S), a view
    lo = flat.amin(dim=-1, keepdim=True)  # (..., 1)
    span = flat.amax(dim=-1, keepdim=True) - lo
    constant = span <= 0
    # fl(g − lo) ≤ fl(hi − lo), so the quotient never leaves [0, 1].
    flat.sub_(lo).div_(torch.where(constant, torch.ones_like(span), span))
    if bool(constant.any()):
        flat.masked_fill_(constant, CONSTANT_CHANNEL_VALUE)
    return images


def sensor_images(
    signals: ArrayLike,
    image_size: int,
    method: str = "gasf",
    channel_scaling: bool = True,
    names: Sequence[str] | None = None,
    out: ArrayLike | None = None,
) -> torch.Tensor:
    """Virtual images of sensors: every 3 consecutive axes are the R, G, B channels of one image.

    Args:
        signals: ``(batch, 3·k, time)`` recordings of k three-axis sensors (axis order x, y, z).
        image_size: side S of the images.
        method: ``"gasf"`` or ``"gadf"``.
        channel_scaling: min–max scale each channel to [0, 1] (``mat2gray``, method doc §3 step 4);
            when off, the field's own range [-1, 1] maps linearly to [0, 1] ((g + 1) / 2), which
            keeps values comparable across channels and recordings.
        names: recording names for error messages.
        out: a contiguous ``(batch, 3·k, S, S)`` floating-point tensor or numpy array to write
            the images into (e.g. the data cache's float16 array); computed in float32 and
            rounded once on the way in.

    Returns:
        ``(batch, 3·k, S, S)`` float32 in [0, 1] (``out`` when given, as a tensor);
        ``.view(batch, k, 3, S, S)`` splits the sensors.
    """
    x = _as_tensor(signals)
    if x.dim() == 3 and x.shape[1] % 3 != 0:
        raise ValueError(f"expected 3 axes per sensor, got {x.shape[1]} axes")
    series, kind = _prepare(x, image_size, method, names)
    shape = (*series.shape, series.shape[-1])
    target = (torch.empty(shape, dtype=torch.float32, device=series.device) if out is None
              else _check_out(out, shape, series.device))
    finish = channel_minmax if channel_scaling else _to_unit
    return _write_fields(series, kind, target, torch.float32, finish)
