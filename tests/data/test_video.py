"""Video I/O on real files written in tmp_path, TSN sampling, preprocessing, PGM and demosaic."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from PIL import Image

from sakdn.data.video import (
    CROP_SCALES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    _sample_crop,
    augment_frames,
    count_frames,
    demosaic_grbg,
    normalize_frames,
    read_frames,
    read_pgm,
    read_video,
    resize_frames,
    tsn_indices,
    write_pgm,
    write_video,
)
from sakdn.errors import DatasetError

CODECS = [("mjpeg", ".avi"), ("mpeg4", ".mp4"), ("mpeg4", ".avi")]
if "libx264" in av.codecs_available:
    CODECS.append(("libx264", ".mp4"))
TOL = 4  # flat colours survive YUV 4:2:0 + quantiser 2 within a few levels


def grey_clip(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Frame i is flat grey 5·i: each decoded frame says which frame it is."""
    levels = (5 * np.arange(n)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, h, w, 3)).copy()


def frame_ids(frames: np.ndarray) -> list[int]:
    return [int(round(f.astype(float).mean() / 5)) for f in frames]


def textured_clip(n: int, h: int = 32, w: int = 48, seed: int = 0) -> np.ndarray:
    base = np.random.default_rng(seed).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    base = base.repeat(8, 0).repeat(8, 1)
    return np.stack([np.roll(base, 2 * i, axis=1) for i in range(n)])


# ------------------------------------------------------------------------ write / read video


@pytest.mark.parametrize("codec,suffix", CODECS)
def test_flat_colours_decode_in_order_within_tolerance(tmp_path, codec, suffix):
    colours = np.array([[200, 30, 90], [12, 240, 128], [0, 0, 0], [255, 255, 255],
                        [90, 90, 200]], dtype=np.uint8)
    frames = np.broadcast_to(colours[:, None, None, :], (5, 32, 48, 3)).copy()
    path = tmp_path / f"clip{suffix}"
    write_video(path, frames, codec=codec)
    out = read_video(path)
    assert out.shape == (5, 32, 48, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - frames).max() <= TOL


@pytest.mark.parametrize("codec,suffix", CODECS)
def test_write_video_is_byte_deterministic(tmp_path, codec, suffix):
    frames = textured_clip(6)
    write_video(tmp_path / f"a{suffix}", frames, codec=codec)
    write_video(tmp_path / f"b{suffix}", frames, codec=codec)
    first = (tmp_path / f"a{suffix}").read_bytes()
    assert first == (tmp_path / f"b{suffix}").read_bytes()
    assert b"Lavf" not in first and b"Lavc" not in first  # bitexact: no version strings
    write_video(tmp_path / f"c{suffix}", textured_clip(6, seed=1), codec=codec)
    assert (tmp_path / f"c{suffix}").read_bytes() != first
    assert list(tmp_path.glob(".*partial*")) == []


def test_textured_video_is_faithful(tmp_path):
    grey = np.repeat(textured_clip(4)[..., :1], 3, axis=3)  # no chroma subsampling loss
    write_video(tmp_path / "t.avi", grey)
    assert np.abs(read_video(tmp_path / "t.avi").astype(int) - grey).mean() < 3


@pytest.mark.parametrize("n", [1, 3, 50])
def test_counts_and_full_reads(tmp_path, n):
    frames = grey_clip(n)
    write_video(tmp_path / "v.avi", frames)
    assert count_frames(tmp_path / "v.avi") == n
    out = read_video(str(tmp_path / "v.avi"))
    assert out.shape == (n, 32, 48, 3)
    assert frame_ids(out) == list(range(n))


def test_read_video_max_frames(tmp_path):
    write_video(tmp_path / "v.mp4", grey_clip(10), codec="mpeg4")
    assert frame_ids(read_video(tmp_path / "v.mp4", max_frames=4)) == [0, 1, 2, 3]
    assert len(read_video(tmp_path / "v.mp4", max_frames=99)) == 10


@pytest.mark.parametrize("codec,suffix", CODECS)
def test_read_frames_returns_requested_frames_in_order(tmp_path, codec, suffix):
    write_video(tmp_path / f"v{suffix}", grey_clip(20), codec=codec)
    out = read_frames(tmp_path / f"v{suffix}", [7, 0, 7, 19, 3])
    assert out.shape == (5, 32, 48, 3) and out.dtype == np.uint8
    assert frame_ids(out) == [7, 0, 7, 19, 3]


@pytest.mark.parametrize("n", [3, 50])
def test_read_frames_with_tsn_indices(tmp_path, n):
    write_video(tmp_path / "v.avi", grey_clip(n))
    for train in (False, True):
        idx = tsn_indices(count_frames(tmp_path / "v.avi"), 8, train, np.random.default_rng(1))
        assert frame_ids(read_frames(tmp_path / "v.avi", idx)) == idx.tolist()


def test_read_frames_past_the_end(tmp_path):
    write_video(tmp_path / "v.avi", grey_clip(5))
    with pytest.raises(DatasetError, match=r"frame 5 requested but only 5"):
        read_frames(tmp_path / "v.avi", [0, 5])
    with pytest.raises(ValueError):
        read_frames(tmp_path / "v.avi", [])


def _unreadable(tmp_path, kind: str):
    if kind == "missing":
        return tmp_path / "missing.avi"
    if kind == "directory":
        (tmp_path / "dir.avi").mkdir()
        return tmp_path / "dir.avi"
    if kind == "empty":
        (tmp_path / "empty.avi").write_bytes(b"")
        return tmp_path / "empty.avi"
    if kind == "random":
        path = tmp_path / "random.mp4"
        path.write_bytes(np.random.default_rng(0).bytes(20_000))
        return path
    if kind == "zero_frames":
        write_video(tmp_path / "zero.avi", grey_clip(0))
        return tmp_path / "zero.avi"
    suffix = ".avi" if kind.endswith("avi") else ".mp4"
    codec = "mjpeg" if suffix == ".avi" else "mpeg4"
    whole = tmp_path / f"whole{suffix}"
    write_video(whole, textured_clip(40), codec=codec)
    data = whole.read_bytes()
    cut = len(data) // 2 if kind.startswith("half") else int(len(data) * 0.85)
    path = tmp_path / f"{kind}{suffix}"
    path.write_bytes(data[:cut])
    return path


BAD = ["missing", "directory", "empty", "random", "zero_frames", "half_avi", "half_mp4"]
READERS = {"read_video": read_video, "count_frames": count_frames,
           "read_frames": lambda p: read_frames(p, [0, 39])}  # 39: the last of 40


@pytest.mark.parametrize("kind", BAD)
@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_unreadable_videos_raise_dataset_error_naming_the_file(tmp_path, kind, reader):
    path = _unreadable(tmp_path, kind)
    with pytest.raises(DatasetError) as info:
        reader(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value) and "unreadable video" in str(info.value)


@pytest.mark.parametrize("reader", [read_video, count_frames])
def test_cut_off_avi_is_reported_as_truncated(tmp_path, reader):
    path = _unreadable(tmp_path, "most_avi")  # its first frames still decode cleanly
    assert read_frames(path, [0]).shape == (1, 32, 48, 3)
    with pytest.raises(DatasetError, match="truncated") as info:
        reader(path)
    assert info.value.path == str(path)


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        write_video(tmp_path / "v.avi", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError):
        write_video(tmp_path / "v.avi", np.zeros((2, 8, 8), np.uint8))
    with pytest.raises(ValueError):
        write_video(tmp_path / "v.avi", grey_clip(2), codec="prores_magic")
    if "libx264" in av.codecs_available:
        with pytest.raises(ValueError, match="even"):
            write_video(tmp_path / "v.mp4", grey_clip(2, 15, 16), codec="libx264")


# ------------------------------------------------------------------------------ TSN sampling


def test_tsn_eval_exact_indices():
    # mmaction2's test_sampling: 6 frames, 8 clips → 1-based [1, 2, 2, 3, 4, 5, 5, 6]
    assert tsn_indices(6, 8, train=False).tolist() == [0, 1, 1, 2, 3, 4, 4, 5]
    # by hand: (k + ½)·50/8 = 3.125, 9.375, 15.625, 21.875, 28.125, 34.375, 40.625, 46.875
    assert tsn_indices(50, 8, train=False).tolist() == [3, 9, 15, 21, 28, 34, 40, 46]
    assert tsn_indices(1, 8, train=False).tolist() == [0] * 8
    assert tsn_indices(8, 8, train=False).tolist() == list(range(8))
    assert tsn_indices(16, 4, train=False).tolist() == [2, 6, 10, 14]
    assert tsn_indices(10, 1, train=False).tolist() == [5]
    assert tsn_indices(50, 8, train=False).dtype == np.int64


@pytest.mark.parametrize("n,s", [(1, 8), (3, 8), (6, 8), (8, 8), (9, 8), (50, 8), (775, 3)])
def test_tsn_train_one_index_inside_each_segment(n, s):
    rng = np.random.default_rng(0)
    lo = np.floor(np.arange(s) * n / s)  # first frame overlapping segment k
    hi = np.ceil((np.arange(s) + 1) * n / s) - 1  # last frame overlapping segment k
    for _ in range(300):
        idx = tsn_indices(n, s, train=True, rng=rng)
        assert idx.shape == (s,) and idx.dtype == np.int64
        assert (idx >= 0).all() and (idx < n).all()
        assert (np.diff(idx) >= 0).all()
        assert (lo <= idx).all() and (idx <= hi).all()


def test_tsn_short_videos_repeat_frames_in_order():
    for train in (False, True):
        rng = np.random.default_rng(3)
        for _ in range(50):
            idx = tsn_indices(3, 8, train=train, rng=rng)
            assert (np.diff(idx) >= 0).all()
            assert set(idx.tolist()) == {0, 1, 2}  # every frame used, none skipped


def test_tsn_train_is_seeded_and_random():
    a = tsn_indices(100, 8, True, np.random.default_rng(7))
    b = tsn_indices(100, 8, True, np.random.default_rng(7))
    assert a.tolist() == b.tolist()
    draws = {tuple(tsn_indices(100, 8, True, np.random.default_rng(s))) for s in range(20)}
    assert len(draws) > 10
    assert tsn_indices(100, 8, False).tolist() == tsn_indices(100, 8, False).tolist()


def test_tsn_train_is_uniform_in_time():
    rng = np.random.default_rng(0)
    draws = np.stack([tsn_indices(3, 2, True, rng) for _ in range(6000)])
    # segment 0 = [0, 1.5): frame 0 w.p. 2/3, frame 1 w.p. 1/3; segment 1 mirrors it
    assert abs((draws[:, 0] == 0).mean() - 2 / 3) < 0.03
    assert abs((draws[:, 1] == 2).mean() - 2 / 3) < 0.03
    draws = np.stack([tsn_indices(16, 4, True, rng) for _ in range(4000)])
    counts = np.bincount(draws[:, 1], minlength=16)[4:8] / len(draws)
    assert np.allclose(counts, 0.25, atol=0.03)


def test_tsn_rejects_bad_arguments():
    with pytest.raises(ValueError):
        tsn_indices(0, 8, False)
    with pytest.raises(ValueError):
        tsn_indices(5, 0, True)


# ----------------------------------------------------------------------------- preprocessing


def test_resize_keeps_the_centre_of_a_landscape_and_a_portrait_frame():
    wide = np.zeros((2, 4, 8, 3), np.uint8)
    wide[:, :, :2] = (255, 0, 0)
    wide[:, :, 2:6] = (0, 255, 0)
    wide[:, :, 6:] = (0, 0, 255)
    out = resize_frames(wide, 2)
    assert out.shape == (2, 2, 2, 3) and out.dtype == np.uint8
    assert (out == (0, 255, 0)).all()
    tall = np.ascontiguousarray(wide.transpose(0, 2, 1, 3))
    assert (resize_frames(tall, 3) == (0, 255, 0)).all()


def test_resize_matches_pillow_bilinear():
    rng = np.random.default_rng(0)
    smooth = rng.integers(0, 256, (1, 6, 8, 3)).astype(np.float32)
    img = torch.nn.functional.interpolate(torch.from_numpy(smooth).permute(0, 3, 1, 2),
                                          size=(30, 40), mode="bicubic")
    frames = img.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (1,30,40,3)
    square = Image.fromarray(frames[0]).crop((5, 0, 35, 30))  # central 30x30
    for size in (16, 45):
        ref = np.asarray(square.resize((size, size), Image.Resampling.BILINEAR))
        ours = resize_frames(frames, size)[0]
        assert np.abs(ours.astype(int) - ref).max() <= 1


def test_resize_accepts_tensors():
    frames = grey_clip(2, 20, 30)
    out = resize_frames(torch.from_numpy(frames), 10)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    assert out.shape == (2, 10, 10, 3)
    assert np.array_equal(out.numpy(), resize_frames(frames, 10))


def test_normalize_frames_by_hand():
    frames = np.zeros((2, 3, 4, 3), np.uint8)
    frames[1, 0, 0] = (255, 0, 51)
    out = normalize_frames(frames)
    assert out.shape == (2, 3, 3, 4) and out.dtype == np.float32
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    assert np.allclose(out[1, :, 0, 0], expected, atol=1e-5)
    assert np.allclose(out[0, :, 2, 3], [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    custom = normalize_frames(frames, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert np.allclose(custom[1, :, 0, 0], [1.0, -1.0, 0.2 * 2 - 1], atol=1e-5)
    tensor = normalize_frames(torch.from_numpy(frames))
    assert isinstance(tensor, torch.Tensor) and tensor.dtype == torch.float32
    assert np.allclose(tensor.numpy(), out, atol=1e-6)


def test_sample_crop_follows_tsn_scales():
    rng = np.random.default_rng(0)
    sides = [int(120 * s) for s in CROP_SCALES]
    seen_pairs, flips = set(), set()
    for _ in range(500):
        top, left, ch, cw, flip = _sample_crop(120, 160, rng)
        i, j = sides.index(ch), sides.index(cw)
        assert abs(i - j) <= 1
        assert 0 <= top <= 120 - ch and 0 <= left <= 160 - cw
        seen_pairs.add((i, j))
        flips.add(flip)
    assert len(seen_pairs) == 10 and flips == {True, False}


def test_augment_applies_one_transform_to_the_whole_clip():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1, 40, 60, 3), dtype=np.uint8)
    clip = np.repeat(frame, 5, axis=0)
    for seed in range(10):
        out = augment_frames(clip, np.random.default_rng(seed), 24)
        assert out.shape == (5, 24, 24, 3) and out.dtype == np.uint8
        assert all(np.array_equal(out[0], out[t]) for t in range(1, 5))


def test_augment_is_the_sampled_crop_resized_and_flipped():
    ramp = np.broadcast_to(np.arange(60, dtype=np.uint8)[None, None, :, None] * 4,
                           (3, 40, 60, 3)).copy()
    directions = set()
    for seed in range(20):
        top, left, ch, cw, flip = _sample_crop(40, 60, np.random.default_rng(seed))
        out = augment_frames(ramp, np.random.default_rng(seed), cw)  # width kept: no blur
        row = out[1, 0, :, 0].astype(int)
        expected = 4 * np.arange(left, left + cw)
        assert np.array_equal(row, expected[::-1] if flip else expected)
        directions.add(flip)
    assert directions == {True, False}


def test_augment_is_seeded_and_accepts_tensors():
    clip = textured_clip(3)
    a = augment_frames(clip, np.random.default_rng(5), 16)
    b = augment_frames(torch.from_numpy(clip), np.random.default_rng(5), 16)
    assert isinstance(b, torch.Tensor) and np.array_equal(a, b.numpy())


# --------------------------------------------------------------------------- PGM and Bayer


@pytest.mark.parametrize("dtype,top", [(np.uint8, 255), (np.uint16, 65535)])
def test_pgm_round_trip_and_pillow_agree(tmp_path, dtype, top):
    image = np.random.default_rng(0).integers(0, top + 1, (7, 9)).astype(dtype)
    write_pgm(tmp_path / "a.pgm", image, comment="fixture")
    back = read_pgm(tmp_path / "a.pgm")
    assert back.dtype == dtype and np.array_equal(back, image)
    back[0, 0] = 1  # writable
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.pgm")), image)
    Image.fromarray(image).save(tmp_path / "b.pgm")
    assert np.array_equal(read_pgm(tmp_path / "b.pgm"), image)


def test_pgm_header_comments_and_odd_maxval(tmp_path):
    raw = bytes([0, 10, 20, 30, 40, 50, 60, 70])
    path = tmp_path / "c.pgm"
    path.write_bytes(b"P5\n# camera 1\n4 # width\n2\n# maxval next\n100\n" + raw)
    assert read_pgm(path).tolist() == [[0, 10, 20, 30], [40, 50, 60, 70]]
    path.write_bytes(b"P5 2 1 1000\n" + bytes([1, 2, 0xFF, 0x00]))
    assert read_pgm(path).tolist() == [[258, 65280]]


@pytest.mark.parametrize("content", [b"", b"P2\n2 2\n255\n1 2 3 4\n", b"P6\n1 1\n255\nabc",
                                     b"P5\n4 4\n255\n" + bytes(10), b"P5\n4 x\n255\n",
                                     b"P5\n4 4\n"])
def test_bad_pgm_raises_dataset_error(tmp_path, content):
    path = tmp_path / "bad.pgm"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as info:
        read_pgm(path)
    assert info.value.path == str(path) and "unreadable PGM" in str(info.value)


def test_missing_pgm_raises_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="missing.pgm"):
        read_pgm(tmp_path / "missing.pgm")


def mosaic(rgb: np.ndarray) -> np.ndarray:
    """GRBG sampling of an RGB image, written independently of the demosaic's masks."""
    raw = np.empty(rgb.shape[:2], np.uint8)
    raw[0::2, 0::2] = rgb[0::2, 0::2, 1]  # G
    raw[0::2, 1::2] = rgb[0::2, 1::2, 0]  # R
    raw[1::2, 0::2] = rgb[1::2, 0::2, 2]  # B
    raw[1::2, 1::2] = rgb[1::2, 1::2, 1]  # G
    return raw


def test_demosaic_flat_colour_is_exact_everywhere():
    for shape in [(6, 8), (5, 7), (2, 2)]:
        rgb = np.broadcast_to(np.array([200, 100, 30], np.uint8), (*shape, 3))
        out = demosaic_grbg(mosaic(rgb))
        assert out.shape == (*shape, 3) and out.dtype == np.uint8
        assert (out == (200, 100, 30)).all()


def test_demosaic_by_hand():
    raw = np.array([[10, 20, 30, 40],
                    [50, 60, 70, 80],
                    [90, 100, 110, 120],
                    [130, 140, 150, 160]], np.uint8)
    out = demosaic_grbg(raw).astype(int)
    # (1, 1) is G; R above/below (20, 100), B left/right (50, 70)
    assert out[1, 1].tolist() == [60, 60, 60]
    # (1, 2) is B; G from 30, 60, 80, 110; R diagonals 20, 40, 100, 120
    assert out[1, 2].tolist() == [70, 70, 70]
    # (0, 1) is R; G from 10, 30, 60 (top border); B from the two lower diagonals 50, 70
    assert out[0, 1].tolist() == [20, round(100 / 3), 60]
    # (0, 0) is G; R right 20; B below 50
    assert out[0, 0].tolist() == [20, 10, 50]


def test_demosaic_reproduces_linear_ramps_inside():
    y, x = np.mgrid[0:12, 0:16]
    rgb = np.stack([10 + 8 * x, 20 + 6 * y, 200 - 4 * x - 4 * y], axis=-1).astype(np.uint8)
    out = demosaic_grbg(mosaic(rgb)).astype(int)
    assert np.abs(out[1:-1, 1:-1] - rgb[1:-1, 1:-1]).max() == 0


def test_demosaic_rejects_bad_input():
    with pytest.raises(ValueError):
        demosaic_grbg(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError):
        demosaic_grbg(np.zeros((4, 4), np.uint16))
    with pytest.raises(ValueError):
        demosaic_grbg(np.zeros((1, 4), np.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_preprocessing_stays_on_the_gpu():
    clip = textured_clip(3)
    gpu = torch.from_numpy(clip).cuda()
    resized = resize_frames(gpu, 16)
    assert resized.is_cuda and np.abs(resized.cpu().numpy().astype(int)
                                      - resize_frames(clip, 16)).max() <= 1
    assert augment_frames(gpu, np.random.default_rng(0), 16).is_cuda
    normed = normalize_frames(gpu)
    assert normed.is_cuda and np.allclose(normed.cpu().numpy(), normalize_frames(clip), atol=1e-5)
