"""Video and camera-image I/O, TSN segment sampling and frame preprocessing.

Videos are decoded and encoded with PyAV (FFmpeg inside its wheels): UTD-MHAD ships ``.avi``,
MMAct ``.mp4``. Berkeley-MHAD ships raw Bayer-mosaic PGM images per camera frame, hence the
small PGM reader and the GRBG demosaic. Every failure to read a dataset file raises
:class:`~sakdn.errors.DatasetError` naming the file, so a bad recording can be skipped or fixed.

Frame arrays are ``(T, H, W, 3)`` uint8 RGB until :func:`normalize_frames` turns them into the
``(T, 3, H, W)`` float32 the student consumes. The resize / augment / normalise functions accept
a numpy array (returning numpy) or a torch tensor (returning a tensor on the same device).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import av
import numpy as np
import torch
import torch.nn.functional as F

from sakdn.errors import DatasetError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CROP_SCALES = (1.0, 0.875, 0.75, 0.66)  # TSN's GroupMultiScaleCrop scales of the shorter side

# Encoder → pixel format. MJPEG stores full-range ("j") YUV, the MPEG codecs limited range.
_PIX_FMT = {"mjpeg": "yuvj420p", "mpeg4": "yuv420p", "libx264": "yuv420p"}

Frames = TypeVar("Frames", np.ndarray, torch.Tensor)


# ------------------------------------------------------------------------------------ writing


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 15.0,
                codec: str = "mjpeg") -> None:
    """Encode ``frames`` (T, H, W, 3) uint8 RGB into ``path``; the container follows the suffix.

    ``codec``: ``"mjpeg"`` (the UTD-style ``.avi``), ``"mpeg4"`` or ``"libx264"`` (``.mp4``).
    The same frames always give byte-identical files: the muxer and encoder run in FFmpeg's
    bitexact mode (no version strings, dates or random ids) on one thread (a frame-parallel
    encoder's output depends on the thread count, i.e. on the machine). T = 0 writes a valid
    container holding no frames, a fixture for empty recordings. The file appears atomically.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    if codec not in _PIX_FMT:
        raise ValueError(f"codec {codec!r}: use one of {', '.join(_PIX_FMT)}")
    if codec not in av.codecs_available:
        raise ValueError(f"codec {codec!r} is not in this PyAV build's FFmpeg")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    _, height, width, _ = frames.shape
    if codec == "libx264" and (height % 2 or width % 2):
        raise ValueError(f"libx264 (4:2:0) needs an even frame size, got {width}x{height}")

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")
    try:
        with av.open(str(tmp), "w") as out:
            out.flags |= av.container.Flags.bitexact.value
            options = {"crf": "16"} if codec == "libx264" else {}
            stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1001),
                                    options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, _PIX_FMT[codec]
            ctx = stream.codec_context
            ctx.thread_count = 1
            ctx.flags |= int(av.codec.context.Flags.bitexact)
            if codec != "libx264":  # fixed quantiser 2 (ffmpeg -q:v 2): near-lossless fixtures
                ctx.qscale = True
                ctx.global_quality = 2
            out.start_encoding()  # the header, even when there are no frames
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))  # flush delayed frames
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------ reading


def _scan(path: str | os.PathLike, on_frame: Callable[[int, av.VideoFrame], None],
          stop: int | None = None) -> int:
    """Decode the first video stream in order, calling ``on_frame(i, frame)``; → frames seen.

    Stops after ``stop`` frames. A scan that reaches the end checks the file is whole: at
    least one frame, and no fewer packets than the header declares (a cut-off AVI decodes
    cleanly up to the cut, so only the count gives it away). Every failure → DatasetError.
    """
    file = Path(path)
    if not file.is_file():
        problem = "not a file" if file.exists() else "file not found"
        raise DatasetError(str(path), f"unreadable video: {problem}")
    decoded = 0
    try:
        with av.open(str(file), "r") as container:
            if not container.streams.video:
                raise DatasetError(str(path), "unreadable video: no video stream")
            stream = container.streams.video[0]
            declared = stream.frames  # header frame count; 0 when the container keeps none
            packets = 0
            for packet in container.demux(stream):
                if packet.size or packet.dts is not None:  # not the end-of-stream flush
                    packets += 1
                for frame in packet.decode():
                    on_frame(decoded, frame)
                    decoded += 1
                    if stop is not None and decoded >= stop:
                        return decoded
    except (av.error.FFmpegError, OSError) as exc:
        raise DatasetError(str(path), f"unreadable video: {exc}") from exc
    if decoded == 0:
        raise DatasetError(str(path), "unreadable video: zero frames")
    if packets < declared:
        raise DatasetError(
            str(path), f"unreadable video: truncated ({packets} of {declared} frames present)"
        )
    return decoded


def _rgb(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8; honours the stream's range


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first ``max_frames``) of ``path`` as (T, H, W, 3) uint8 RGB."""
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    frames: list[np.ndarray] = []
    _scan(path, lambda _i, frame: frames.append(_rgb(frame)), stop=max_frames)
    return np.stack(frames)


def count_frames(path: str | os.PathLike) -> int:
    """The number of frames that decode: exactly the frames :func:`read_frames` can index.

    Decodes without colour conversion (the costly part) instead of trusting the header count,
    which is missing in some containers and wrong in damaged files.
    """
    return _scan(path, lambda _i, _frame: None)


def read_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """Frames ``indices`` (0-based, any order, repeats allowed) as (len, H, W, 3) uint8 RGB.

    One decoding pass up to the largest index; only the requested frames are converted to RGB.
    """
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError("indices is empty")
    if min(wanted) < 0:
        raise ValueError(f"frame indices must be >= 0, got {min(wanted)}")
    keep = set(wanted)
    kept: dict[int, np.ndarray] = {}

    def on_frame(i: int, frame: av.VideoFrame) -> None:
        if i in keep:
            kept[i] = _rgb(frame)

    last = max(wanted)
    seen = _scan(path, on_frame, stop=last + 1)
    if last >= seen:
        raise DatasetError(
            str(path), f"unreadable video: frame {last} requested but only {seen} frames decode"
        )
    return np.stack([kept[i] for i in wanted])


# ----------------------------------------------------------------------------- TSN sampling


def tsn_indices(num_frames: int, segments: int, train: bool,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """One 0-based frame index per segment, as TSN / mmaction2 ``SampleFrames(clip_len=1)``.

    Frame i covers [i, i + 1) on the time axis and segment k covers [k·n/S, (k+1)·n/S)
    (n = ``num_frames``, S = ``segments``). The index is the frame under a point of segment k:

        evaluation: i_k = ⌊(k + ½)·n / S⌋ = ((2k + 1)·n) // (2S)   (centre, exact integers)
        training:   i_k = ⌊(k + u_k)·n / S⌋,  u_k ~ U[0, 1)          (a uniform point)

    The evaluation rule equals mmaction2's test mode. Training differs from TSN's integer
    segment length ⌊n/S⌋ only in that the last n mod S frames can also be drawn. Indices are
    non-decreasing; with n < S frames repeat in order. → int64 (S,).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    k = np.arange(segments, dtype=np.int64)
    if not train:
        return (2 * k + 1) * num_frames // (2 * segments)
    rng = np.random.default_rng() if rng is None else rng
    points = (k + rng.random(segments)) * (num_frames / segments)
    return np.minimum(np.floor(points).astype(np.int64), num_frames - 1)  # guard fp round-up


# ---------------------------------------------------------------------------- preprocessing


def _resize(frames: Frames, height: int, width: int) -> Frames:
    """(T, h, w, 3) uint8 → (T, height, width, 3): bilinear, antialiased when shrinking."""
    x = torch.from_numpy(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    y = x.permute(0, 3, 1, 2).float()  # (T, 3, h, w)
    if y.shape[-2:] != (height, width):
        y = F.interpolate(y, size=(height, width), mode="bilinear", align_corners=False,
                          antialias=True)
    y = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
    return y.numpy() if isinstance(frames, np.ndarray) else y


def _check_frames(frames: np.ndarray | torch.Tensor) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {tuple(frames.shape)}")


def resize_frames(frames: Frames, size: int) -> Frames:
    """(T, H, W, 3) uint8 → (T, size, size, 3): shorter side to ``size``, then centre crop.

    Aspect-preserving, as the reference's test transform (shorter side, centre crop): a square
    squash would stretch 16:9 MMAct people far more than 4:3 UTD ones. Computed as the central
    square crop resized once, which is the same picture from fewer pixels.
    """
    _check_frames(frames)
    h, w = frames.shape[1], frames.shape[2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return _resize(frames[:, top:top + side, left:left + side], size, size)


def _sample_crop(height: int, width: int,
                 rng: np.random.Generator) -> tuple[int, int, int, int, bool]:
    """TSN multi-scale crop: → (top, left, crop_h, crop_w, flip).

    Crop sides are ``CROP_SCALES`` × the shorter side, height and width scales at most one
    step apart (TSN's ``max_distort=1``); the position is uniform (TSN picks from 13 fixed
    positions); the flip has probability ½.
    """
    base = min(height, width)
    sides = [max(1, int(base * s)) for s in CROP_SCALES]
    pairs = [(i, j) for i in range(len(sides)) for j in range(len(sides)) if abs(i - j) <= 1]
    i, j = pairs[int(rng.integers(len(pairs)))]
    crop_h, crop_w = sides[i], sides[j]
    top = int(rng.integers(height - crop_h + 1))
    left = int(rng.integers(width - crop_w + 1))
    return top, left, crop_h, crop_w, bool(rng.random() < 0.5)


def augment_frames(frames: Frames, rng: np.random.Generator, size: int) -> Frames:
    """Training view: one random multi-scale crop + flip for the whole clip → (T, size, size, 3).

    Drawn once per clip so that every frame sees the same view (motion stays coherent).
    """
    _check_frames(frames)
    top, left, crop_h, crop_w, flip = _sample_crop(frames.shape[1], frames.shape[2], rng)
    out = _resize(frames[:, top:top + crop_h, left:left + crop_w], size, size)
    if flip:
        out = out.flip(2) if isinstance(out, torch.Tensor) else out[:, :, ::-1].copy()
    return out


def normalize_frames(frames: np.ndarray | torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN,
                     std: Sequence[float] = IMAGENET_STD) -> np.ndarray | torch.Tensor:
    """(T, H, W, 3) uint8 RGB → (T, 3, H, W) float32, x̂ = (x / 255 − mean) / std per channel.

    ImageNet statistics in RGB order on [0, 1], matching the torchvision backbones (the
    reference BN-Inception used BGR on [0, 255] instead).
    """
    _check_frames(frames)
    if isinstance(frames, torch.Tensor):
        x = frames.permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
        m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        return ((x - m) / s).contiguous()
    x = np.asarray(frames, dtype=np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
    m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
    s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.ascontiguousarray((x - m) / s, dtype=np.float32)


# ------------------------------------------------------------------------ PGM and Bayer data


def read_pgm(path: str | os.PathLike) -> np.ndarray:
    """A binary (P5) PGM → (H, W) uint8 (maxval < 256) or uint16 (16-bit, big-endian on disk).

    Header comments (``#`` to end of line) are allowed between fields; values are returned
    as stored, not rescaled to the maxval.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DatasetError(str(path), f"unreadable PGM: {exc.strerror or exc}") from exc

    pos = 0
    fields: list[bytes] = []
    while len(fields) < 4:  # magic, width, height, maxval
        while pos < len(data) and (data[pos:pos + 1].isspace() or data[pos:pos + 1] == b"#"):
            if data[pos:pos + 1] == b"#":
                end = data.find(b"\n", pos)
                pos = len(data) if end < 0 else end
            pos += 1
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace() and data[pos:pos + 1] != b"#":
            pos += 1
        if start == pos:
            raise DatasetError(str(path), "unreadable PGM: incomplete header")
        fields.append(data[start:pos])
    if fields[0] != b"P5":
        raise DatasetError(str(path), f"unreadable PGM: magic {fields[0][:8]!r}, expected b'P5'")
    try:
        width, height, maxval = (int(f) for f in fields[1:])
    except ValueError:
        raise DatasetError(str(path), f"unreadable PGM: bad header fields {fields[1:]}") from None
    if width < 1 or height < 1 or not 0 < maxval < 65536:
        raise DatasetError(str(path), f"unreadable PGM: size {width}x{height}, maxval {maxval}")
    if pos >= len(data) or not data[pos:pos + 1].isspace():
        raise DatasetError(str(path), "unreadable PGM: no whitespace after maxval")
    pos += 1  # exactly one whitespace byte, then the raster

    dtype = np.dtype(np.uint8) if maxval < 256 else np.dtype(">u2")
    need = width * height * dtype.itemsize
    if len(data) - pos < need:
        raise DatasetError(
            str(path), f"unreadable PGM: truncated ({len(data) - pos} of {need} pixel bytes)"
        )
    pixels = np.frombuffer(data, dtype=dtype, count=width * height, offset=pos)
    return pixels.reshape(height, width).astype(dtype.newbyteorder("="))  # a writable copy


def write_pgm(path: str | os.PathLike, image: np.ndarray, comment: str | None = None) -> None:
    """Write (H, W) uint8 (maxval 255) or uint16 (maxval 65535) as a binary PGM."""
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"image must be (H, W) uint8 or uint16, got {image.shape} {image.dtype}")
    maxval = 255 if image.dtype == np.uint8 else 65535
    note = "".join(f"# {line}\n" for line in comment.splitlines()) if comment else ""
    header = f"P5\n{note}{image.shape[1]} {image.shape[0]}\n{maxval}\n".encode("ascii")
    Path(path).write_bytes(header + image.astype(image.dtype.newbyteorder(">")).tobytes())


def _conv_121(x: np.ndarray) -> np.ndarray:
    """2-D convolution with [1 2 1]ᵀ[1 2 1] and zero padding (separable)."""
    p = np.pad(x, 1)
    rows = p[:-2] + 2 * p[1:-1] + p[2:]  # (H, W + 2)
    return rows[:, :-2] + 2 * rows[:, 1:-1] + rows[:, 2:]  # (H, W)


def demosaic_grbg(raw: np.ndarray) -> np.ndarray:
    """Bilinear demosaic of a GRBG Bayer mosaic (Berkeley-MHAD cameras) → (H, W, 3) uint8 RGB.

    Pattern (row, col parity): (0,0) G, (0,1) R, (1,0) B, (1,1) G. A missing value is the
    normalised convolution c = (K ∗ (m·raw)) / (K ∗ m) with K = [1 2 1]ᵀ[1 2 1] and m the
    channel's sample mask: the mean of the 2 or 4 nearest samples of that colour, and of the
    ones that exist at the border. (MATLAB's ``demosaic`` adds gradient correction.)
    """
    raw = np.asarray(raw)
    if raw.ndim != 2 or raw.dtype != np.uint8:
        raise ValueError(f"raw must be an (H, W) uint8 mosaic, got {raw.shape} {raw.dtype}")
    if min(raw.shape) < 2:
        raise ValueError(f"raw must be at least 2x2, got {raw.shape}")
    rows = np.arange(raw.shape[0])[:, None] % 2
    cols = np.arange(raw.shape[1])[None, :] % 2
    masks = ((rows == 0) & (cols == 1), rows == cols, (rows == 1) & (cols == 0))  # R, G, B
    values = raw.astype(np.float64)
    out = np.empty((*raw.shape, 3), dtype=np.uint8)
    for c, mask in enumerate(masks):
        m = mask.astype(np.float64)
        filled = _conv_121(values * m) / _conv_121(m)
        out[..., c] = np.clip(np.rint(np.where(mask, values, filled)), 0, 255)
    return out


# ------------------------------------------------- clips: a video file or a folder of PGM frames


def _pgm_number(path: Path) -> int | None:
    stem = path.name[: -len(".pgm")]
    digits = len(stem) - len(stem.rstrip("0123456789"))
    return int(stem[-digits:]) if digits else None


def pgm_frames(folder: str | os.PathLike) -> list[Path]:
    """The frames of a Berkeley-MHAD-style frame folder, checked, in frame order.

    Frame files end in their 0-based number (``img_…_00000.pgm``); the numbers must run
    0, 1, …, N − 1 without gaps and every file must have the size of the first one (whose
    header and raster are read), so that a cut-off copy is caught by ``stat`` calls alone.
    """
    folder = Path(folder)
    try:
        entries = [p for p in folder.iterdir() if p.name.lower().endswith(".pgm")]
    except OSError as exc:
        raise DatasetError(str(folder), f"unreadable video: {exc.strerror or exc}") from exc
    numbered = sorted((n, p) for p in entries if (n := _pgm_number(p)) is not None)
    if not numbered:
        raise DatasetError(str(folder), "unreadable video: no numbered .pgm frames in the folder")
    missing = sorted(set(range(numbered[-1][0] + 1)) - {n for n, _ in numbered})
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" …" if len(missing) > 5 else "")
        raise DatasetError(
            str(folder),
            f"unreadable video: truncated ({len(missing)} of {numbered[-1][0] + 1} frames "
            f"missing: {shown})",
        )
    frames = [p for _, p in numbered]
    read_pgm(frames[0])  # a readable header and a whole raster
    size = frames[0].stat().st_size
    for p in frames[1:]:
        if (got := p.stat().st_size) != size:
            raise DatasetError(
                str(p), f"unreadable PGM: truncated ({got} bytes, frame 0 of the clip has {size})"
            )
    return frames


def read_bayer_frame(path: str | os.PathLike) -> np.ndarray:
    """One raw 8-bit GRBG Bayer PGM → (H, W, 3) uint8 RGB (demosaiced)."""
    raw = read_pgm(path)
    if raw.dtype != np.uint8:
        raise DatasetError(str(path), "unreadable PGM: 16-bit, expected an 8-bit Bayer mosaic")
    if min(raw.shape) < 2:
        raise DatasetError(str(path), f"unreadable PGM: {raw.shape[1]}x{raw.shape[0]} is too small")
    return demosaic_grbg(raw)


def count_clip_frames(path: str | os.PathLike) -> int:
    """Frames of a clip: a video file (decoded, :func:`count_frames`) or a PGM frame folder."""
    if Path(path).is_dir():
        return len(pgm_frames(path))
    return count_frames(path)


def read_clip_frames(path: str | os.PathLike, indices: Sequence[int]) -> np.ndarray:
    """Frames ``indices`` of a video file or of a PGM frame folder (demosaiced) → (len, H, W, 3)."""
    if not Path(path).is_dir():
        return read_frames(path, indices)
    frames = pgm_frames(path)
    wanted = [int(i) for i in indices]
    if not wanted:
        raise ValueError("indices is empty")
    if min(wanted) < 0 or max(wanted) >= len(frames):
        raise DatasetError(
            str(path), f"unreadable video: frame {max(wanted)} requested, {len(frames)} present"
        )
    decoded = {i: read_bayer_frame(frames[i]) for i in dict.fromkeys(wanted)}
    shapes = {f.shape for f in decoded.values()}
    if len(shapes) > 1:
        raise DatasetError(
            str(path), f"unreadable video: frames of different sizes {sorted(shapes)}"
        )
    return np.stack([decoded[i] for i in wanted])
