"""Per-trial figures: what a finished run learned, as PNG files (matplotlib, Agg canvas).

From a run's work directory (``models/student.pt``, ``models/teachers.pt``, the history in
``checkpoint/checkpoint.pt``) :func:`write_trial_figures` draws:

- ``confusion_matrix.png``: student and fused-teacher confusion matrices on the validation
  split (the test split for a final run, whose validation split is empty), class names on
  both axes, rows normalised to the true class;
- ``gsdm_attention.png``: the paper's visual explanation. For a few validation clips, the
  student's map of every stage over the clip's middle frame, next to each teacher's map of
  the same stage and that sensor's GAF image. The maps are exactly those the GSDM loss
  compares, computed by the training's functions (``sakdn.train.attention``,
  ``sakdn.losses.gsdm_maps``): M = n(max(0, Σ_c w_c A_c)) with the weights of
  ``distill.ablation_weight``, teacher maps resized to the student's size, n the per-sample
  ``distill.map_norm``; each teacher map is labelled with its distance D to the student map
  (``sakdn.losses.map_distance``); stages with 1×1 maps are marked, not drawn;
- ``gaf_images.png``: one recording per class, every sensor's Gramian-angular-field image
  shown as an RGB image (x, y, z axes → R, G, B);
- ``learning_curves.png``: loss terms and train / validation accuracy per epoch of both
  stages, from the run's history.

Nothing here imports Ray or MLflow: :func:`log_trial_figures` hands the files to any
tracker with ``log_artifact(path, artifact_path)`` (the trial's ``RunBuffer``). Figures are
drawn on ``matplotlib.figure.Figure`` objects (no pyplot state), so trials and threads never
share a figure. The attention and GAF figures are composed in numpy as one image on one Axes
(labels as text): every figure is drawn after every trial, and Axes are what cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure

from sakdn import losses
from sakdn.config import ExperimentConfig

logger = logging.getLogger(__name__)

CONFUSION, ATTENTION, GAF, CURVES = (
    "confusion_matrix.png", "gsdm_attention.png", "gaf_images.png", "learning_curves.png",
)
FIGURES = (CONFUSION, ATTENTION, GAF, CURVES)
STAGES = ("conv1", "conv2", "conv3", "conv4", "conv5")  # GSDM pairs 1..5
DPI = 80


@dataclass
class RunFiles:
    """A finished run, reloaded from its work directory."""

    student: torch.nn.Module
    teachers: torch.nn.Module
    config: ExperimentConfig
    meta: dict[str, Any]
    history: list[dict[str, Any]]


def load_run(workdir: str | Path, config: ExperimentConfig | None = None) -> RunFiles:
    """The models, config and per-epoch history a run left in ``workdir``.

    ``config`` replaces the saved one (e.g. to point ``data.root`` at another copy of the
    dataset); the models are always built from the saved config.
    """
    from sakdn.errors import ConfigError
    from sakdn.train import checkpoint as ckpt
    from sakdn.train import load_student, load_teachers

    workdir = Path(workdir)
    student_file = workdir / "models" / ckpt.STUDENT_NAME
    if not student_file.exists():
        raise ConfigError("workdir", str(workdir), f"no trained student ({student_file} missing)")
    student, saved, meta = load_student(student_file)
    teachers, _, _ = load_teachers(workdir / "models" / ckpt.TEACHERS_NAME)
    history: list[dict[str, Any]] = []
    checkpoint = workdir / "checkpoint" / ckpt.CHECKPOINT_NAME
    if checkpoint.exists():
        history = list(ckpt.load(checkpoint).get("history", []))
    return RunFiles(student, teachers, config or saved, meta, history)


def write_trial_figures(
    workdir: str | Path,
    out_dir: str | Path,
    config: ExperimentConfig | None = None,
    clips: int = 3,
    examples: int = 4,
) -> list[Path]:
    """Draw the four figures of a finished run into ``out_dir``; returns the PNG paths.

    Args:
        workdir: the run's work directory (what ``sakdn.train.train`` wrote).
        out_dir: where the PNG files go (created).
        config: overrides the saved configuration for data access (paths).
        clips: validation clips in the attention figure (one per class while they last).
        examples: recordings (classes) in the GAF figure.
    """
    from sakdn.data.dataset import RecordingDataset
    from sakdn.train.data import build_data, clip_dataset
    from sakdn.train.loop import RunContext
    from sakdn.train.student_stage import predict_student
    from sakdn.train.teacher_stage import fused_logits, predict_teachers

    run = load_run(workdir, config)
    cfg = run.config
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(
        "cuda" if cfg.train.device != "cpu" and torch.cuda.is_available() else "cpu"
    )
    ctx = RunContext(device, cfg.train.amp, False, cfg.train.seed, False, log=lambda m: None)
    bundle = build_data(cfg, final=bool(run.meta.get("final")), log=lambda m: None)
    split, split_name = (bundle.val, "validation") if len(bundle.val) else (bundle.test, "test")
    names = list(bundle.index.class_names)
    student, teachers = run.student.to(device).eval(), run.teachers.to(device).eval()

    paths: list[Path] = []
    clip_set = clip_dataset(cfg, bundle, split)
    if len(clip_set):
        s_logits, s_labels = predict_student(student, clip_set, cfg, ctx)
        recordings = RecordingDataset(bundle.data, split)
        pred = predict_teachers(teachers, recordings, cfg, ctx)
        fig = confusion_figure(
            [confusion(s_logits, s_labels, len(names)),
             confusion(fused_logits(pred.logits, pred.mask), pred.labels, len(names))],
            ["student (video)", "teachers (sensors, fused)"], names, split_name,
        )
        paths.append(_save(fig, out / CONFUSION))
        rows = pick_clips(clip_set.labels, clips)
        batch = torch.utils.data.default_collate([clip_set[i] for i in rows])
        frames = [middle_frame(bundle.data, int(clip_set.rows[i]), cfg.student.segments)
                  for i in rows]
        maps = attention(student, teachers, batch, cfg, bundle.class_vectors, device)
        fig = attention_figure(maps, frames, batch, names, list(bundle.index.sensor_names))
        paths.append(_save(fig, out / ATTENTION))
        rows = pick_clips(clip_set.labels, examples)
        fig = gaf_figure([clip_set[i] for i in rows], names, list(bundle.index.sensor_names),
                         cfg.gaf.method)
        paths.append(_save(fig, out / GAF))
    paths.append(_save(learning_curves_figure(run.history), out / CURVES))
    return paths


def log_trial_figures(
    tracker: Any, workdir: str | Path, config: ExperimentConfig | None = None,
    log: Callable[[str], None] = print, artifact_path: str = "figures",
) -> list[Path]:
    """Write a trial's figures into ``<workdir>/figures`` and hand each to ``tracker``.

    A figure must never fail the trial that trained the model: any error is logged and
    the trial goes on (with the figures drawn so far).
    """
    try:
        paths = write_trial_figures(workdir, Path(workdir) / artifact_path, config)
    except Exception as err:  # plotting is a by-product; the trained model matters more
        log(f"figures not drawn: {type(err).__name__}: {err}")
        logger.warning("figures of %s not drawn", workdir, exc_info=True)
        return []
    for path in paths:
        tracker.log_artifact(path, artifact_path)
    return paths


# --- numbers behind the figures -------------------------------------------------------------


def confusion(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """(K, K) counts, row = true class, column = predicted class."""
    from sakdn.train.metrics import confusion_matrix

    return confusion_matrix(logits.cpu(), labels.cpu(), num_classes).numpy()


def pick_clips(labels: Sequence[int], count: int) -> list[int]:
    """Up to ``count`` item indices: the first item of each class in class order, then more."""
    labels = list(map(int, labels))
    firsts = [labels.index(k) for k in sorted(set(labels))]
    rest = [i for i in range(len(labels)) if i not in firsts]
    return (firsts + rest)[: max(0, count)]


def middle_frame(data: Any, row: int, segments: int) -> np.ndarray:
    """The clip's frame at the middle evaluation segment, (H, W, 3) uint8."""
    from sakdn.data.video import tsn_indices

    clip = data.clip(row)
    idx = tsn_indices(len(clip), segments, train=False)
    return np.asarray(clip[idx[len(idx) // 2]])


@dataclass
class AttentionMaps:
    """GSDM maps of one batch, per stage p: ``student[p]`` (B, H_p, W_p) and ``teachers[m][p]``
    likewise, normalised as the loss compares them, ``distance[m][p]`` (B,) the per-sample D;
    a stage left out (1×1 maps) is None everywhere, with its reason in ``left_out``."""

    student: list[torch.Tensor | None]
    teachers: list[list[torch.Tensor | None]]
    distance: list[list[torch.Tensor | None]]
    distilled: tuple[int, ...]  # the stage indices the GSDM loss aligns
    left_out: dict[int, str]
    weighting: str  # distill.ablation_weight


def attention(
    student: torch.nn.Module, teachers: torch.nn.Module, batch: dict[str, torch.Tensor],
    config: ExperimentConfig, class_vectors: np.ndarray | None, device: torch.device,
) -> AttentionMaps:
    """The maps the GSDM loss compares, for every stage with spatial maps, computed by the
    training's own functions (``sakdn.train.attention``, ``sakdn.losses.gsdm_maps``)."""
    from sakdn.train.attention import gsdm_plan, small_stages, student_maps, teacher_maps

    dc = config.distill
    frames, sensors = batch["frames"].to(device), batch["sensors"].to(device)
    mask = batch["mask"].to(device)
    vectors = (torch.as_tensor(class_vectors, dtype=torch.float32, device=device)
               if class_vectors is not None else None)
    left_out = small_stages(config)
    shown = tuple(p for p in range(len(STAGES)) if p not in left_out)
    with torch.enable_grad():  # ablation_cam takes the score's gradient
        s_out = student(frames, return_maps=True)
        s_raw = student_maps(student, frames, s_out, config, vectors, shown)
    _, t_raw = teacher_maps(teachers, sensors, mask, config, vectors, shown)
    s_maps, t_maps = losses.gsdm_maps([m.detach() for m in s_raw], t_raw, dc.map_norm,
                                      dc.map_resize)
    distance = [[losses.map_distance(s, t) for s, t in zip(s_maps, row)] for row in t_maps]

    def full(values: list) -> list:
        by_stage = dict(zip(shown, values))
        return [by_stage.get(p) for p in range(len(STAGES))]

    plan = gsdm_plan(config)
    return AttentionMaps(full(s_maps), [full(row) for row in t_maps],
                         [full(row) for row in distance],
                         plan.pairs if plan.active else (), left_out, dc.ablation_weight)


# --- drawing --------------------------------------------------------------------------------


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _off(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def confusion_figure(
    matrices: Sequence[np.ndarray], titles: Sequence[str], class_names: Sequence[str], split: str
) -> Figure:
    """Row-normalised confusion matrices side by side, counts written in small matrices."""
    k = len(class_names)
    label = 0.048 * max(len(n) for n in class_names) + 0.45  # inches the tick labels take
    cell = max(2.5, 0.35 * k)
    width, height = len(matrices) * (cell + label + 0.3), cell + label + 0.8
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=label / width, right=1 - 0.2 / width, bottom=label / height,
                        top=1 - 0.6 / height, wspace=(label + 0.3) / (cell + 0.01))
    axes = fig.subplots(1, len(matrices), squeeze=False)[0]
    for ax, cm, title in zip(axes, matrices, titles):
        totals = cm.sum(axis=1, keepdims=True)
        rate = cm / np.maximum(totals, 1)
        ax.imshow(rate, cmap="Blues", vmin=0.0, vmax=1.0)
        acc = np.trace(cm) / max(cm.sum(), 1)
        ax.set_title(f"{title}\n{split} accuracy {acc:.3f} ({int(cm.sum())} items)", fontsize=9)
        ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(k), class_names, fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
        if k <= 15:
            for i in range(k):
                for j in range(k):
                    if cm[i, j]:
                        ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                                color="white" if rate[i, j] > 0.5 else "black")
    return fig


def attention_figure(
    maps: AttentionMaps, frames: Sequence[np.ndarray], batch: dict[str, torch.Tensor],
    class_names: Sequence[str], sensor_names: Sequence[str],
) -> Figure:
    """Per clip: a student row (frame, then each stage's map over the frame) and one row per
    teacher (its GAF image, then each stage's map, labelled with D to the student's map).
    A stage without spatial maps (1×1) is a blank panel that says so.

    The panels are composed into one image (one Axes): an Axes per panel made this figure
    cost more than the other three together (54 Axes for 3 clips and 2 teachers).
    """
    m_count, p_count = len(maps.teachers), len(STAGES)
    labels = batch["label"].tolist()
    cells: list[list[np.ndarray | str]] = []
    texts: list[list[str]] = []
    blank = "1×1 map:\nno GSDM"

    def stage_label(p: int) -> str:
        return f"{STAGES[p]}{' · GSDM' if p in maps.distilled else ''}"

    for i, frame in enumerate(frames):
        cells.append([_panel(_unit(frame))]
                     + [blank if maps.student[p] is None
                        else _overlay(frame, maps.student[p][i].cpu().numpy())
                        for p in range(p_count)])
        texts.append([f"{class_names[labels[i]]}\nstudent"]
                     + [stage_label(p) for p in range(p_count)])
        for m in range(m_count):
            present = bool(batch["mask"][i, m])
            cells.append([_panel(_rgb(batch["sensors"][i, m])) if present else "missing"]
                         + [blank if maps.teachers[m][p] is None
                            else _panel(_JET(maps.teachers[m][p][i].cpu().numpy()), smooth=False)
                            for p in range(p_count)])
            texts.append([f"teacher {sensor_names[m]}"]
                         + [("" if maps.distance[m][p] is None or not present
                             else f"D={float(maps.distance[m][p][i]):.3f}")
                            for p in range(p_count)])
    clip_ends = [(1 + m_count) * (i + 1) - 1 for i in range(len(frames) - 1)]
    return _sheet(cells, texts,
                  f"GSDM attention maps, {maps.weighting} weighting (student over the frame; "
                  "teachers on their GAF input)", breaks=clip_ends)


def _rgb(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, S, S) GAF image in [0, 1] → (S, S, 3) float32 for imshow."""
    x = np.asarray(image, dtype=np.float32)
    return np.clip(x.transpose(1, 2, 0), 0.0, 1.0)


def gaf_figure(
    items: Sequence[dict[str, torch.Tensor]], class_names: Sequence[str],
    sensor_names: Sequence[str], method: str,
) -> Figure:
    """One row per example recording, one column per sensor: its GAF image as RGB."""
    cells: list[list[np.ndarray | str]] = []
    texts: list[list[str]] = []
    for item in items:
        name = class_names[int(item["label"])]
        present = [bool(item["mask"][m]) for m in range(len(sensor_names))]
        cells.append([_panel(_rgb(item["sensors"][m]), GAF_PANEL, smooth=False) if ok
                      else "missing" for m, ok in enumerate(present)])
        texts.append([f"{name} · {sensor}" if ok else sensor
                      for sensor, ok in zip(sensor_names, present)])
    return _sheet(cells, texts, f"{method.upper()} images (x, y, z → R, G, B)",
                  panel=GAF_PANEL, band=16, gap=28, fontsize=8)


# --- panels composed in numpy: one image, one Axes, one imshow --------------------------------

PANEL, GAF_PANEL = 96, 136  # pixels per panel side (at DPI)
GAP, BREAK, BAND, TITLE = 16, 14, 24, 26  # pixels: between panels, extra between groups,
                                          # label band above each row, title band
_JET = colormaps["jet"]


def _unit(frame: np.ndarray) -> np.ndarray:
    """A video frame as (H, W, 3) float32 in [0, 1] (uint8 frames scaled by 1/255)."""
    x = np.asarray(frame)
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def _fitted(shape: Sequence[int], size: int) -> tuple[int, int]:
    """(h, w) of an image of ``shape`` scaled to fit a ``size`` square, aspect kept."""
    h, w = shape[:2]
    scale = size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resize(image: np.ndarray, size: tuple[int, int], smooth: bool) -> np.ndarray:
    """(h, w) or (h, w, C) → ``size``: bilinear (antialiased when shrinking) or nearest."""
    x = torch.as_tensor(np.asarray(image, dtype=np.float32))
    nchw = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    if tuple(nchw.shape[-2:]) != size:
        nchw = (F.interpolate(nchw, size=size, mode="bilinear", align_corners=False,
                              antialias=True) if smooth
                else F.interpolate(nchw, size=size, mode="nearest-exact"))
    return (nchw[0, 0] if x.ndim == 2 else nchw[0].permute(1, 2, 0)).numpy()


def _panel(image: np.ndarray, size: int = PANEL, smooth: bool | None = None) -> np.ndarray:
    """(h, w, 3) in [0, 1] scaled into a white ``size`` square, aspect kept; ``smooth`` None
    means bilinear when shrinking and nearest when enlarging (pixels stay visible)."""
    h, w = _fitted(image.shape, size)
    if smooth is None:
        smooth = h < image.shape[0]
    out = np.ones((size, size, 3), np.float32)
    top, left = (size - h) // 2, (size - w) // 2
    out[top : top + h, left : left + w] = np.clip(_resize(image[..., :3], (h, w), smooth), 0, 1)
    return out


def _overlay(frame: np.ndarray, amap: np.ndarray, size: int = PANEL) -> np.ndarray:
    """A student map over the frame: the frame in gray (min-max scaled), the map resized
    bilinearly to the frame as shown, jet colours (0 → 1) at alpha 0.5."""
    gray = _unit(frame).mean(axis=2)
    span = float(gray.max() - gray.min())
    gray = (gray - gray.min()) / span if span > 0 else np.zeros_like(gray)
    shown = _fitted(frame.shape, size)
    gray = _resize(gray, shown, smooth=shown[0] < frame.shape[0])
    heat = _JET(np.clip(_resize(amap, shown, smooth=True), 0.0, 1.0))[..., :3]
    return _panel(0.5 * gray[..., None] + 0.5 * heat, size)


def _sheet(
    cells: Sequence[Sequence[np.ndarray | str]], labels: Sequence[Sequence[str]], title: str,
    breaks: Sequence[int] = (), panel: int = PANEL, band: int = BAND, gap: int = GAP,
    fontsize: int = 7,
) -> Figure:
    """A grid of ``panel``-sized RGB cells as one image on one Axes (axis off), each cell's
    label above it, ``title`` on top; a text cell (e.g. "missing") is a blank panel showing it.
    ``breaks``: rows after which a wider gap separates groups of rows. The figure's pixels
    are the image's (figsize = pixels / DPI), so nothing is resampled when saved."""
    rows, cols = len(cells), max(len(r) for r in cells)
    tops, y = [], TITLE
    for r in range(rows):
        tops.append(y + band)
        y += band + panel + (gap + BREAK if r in breaks else gap)
    height, width = y, cols * (panel + gap) + gap
    lefts = [gap + c * (panel + gap) for c in range(cols)]
    image = np.full((height, width, 3), 255, np.uint8)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            top, left = tops[r], lefts[c]
            image[top - 1 : top + panel + 1, left - 1 : left + panel + 1] = 64  # thin frame
            image[top : top + panel, left : left + panel] = (
                255 if isinstance(cell, str) else np.rint(cell * 255).astype(np.uint8))
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    for r, row in enumerate(labels):
        for c, text in enumerate(row):
            ax.text(lefts[c] + panel / 2, tops[r] - 3, text, ha="center", va="bottom",
                    fontsize=fontsize)
            if isinstance(cells[r][c], str):
                ax.text(lefts[c] + panel / 2, tops[r] + panel / 2, cells[r][c], ha="center",
                        va="center", fontsize=fontsize + 2)
    ax.text(width / 2, 6, title, ha="center", va="top", fontsize=9)
    return fig


# per-epoch metrics that are not loss terms (val_loss is drawn with them; the accuracies and
# val_p_true on the accuracy panel)
_NOT_LOSS = ("lr", "train_acc", "best_val_acc", "val_", "test_", "semantic_r2", "gsdm_active",
             "gsdm_grad_ratio", "gflops")
_ACCURACY_LINES = (("train_acc", "-", "train_acc"), ("val_acc", "-", "val_acc"),
                   ("best_val_acc", "--", "best_val_acc"),
                   ("val_p_true", ":", "val_p_true: mean P(true class)"))


def learning_curves_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """Loss terms and accuracies per epoch, teacher stage above, student stage below."""
    fig = Figure(figsize=(9.0, 6.0))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.95, wspace=0.2, hspace=0.4)
    axes = fig.subplots(2, 2, squeeze=False)
    for r, stage in enumerate(("teacher", "student")):
        records = [h for h in history if h.get("stage") == stage]
        loss_ax, acc_ax = axes[r]
        if not records:
            for ax in (loss_ax, acc_ax):
                ax.text(0.5, 0.5, f"no {stage} epochs recorded", ha="center", va="center")
                _off(ax)
            continue
        epochs = [int(h["epoch"]) for h in records]
        keys = list(dict.fromkeys(k for h in records for k in h["metrics"]))
        prefix = f"{stage}/"
        for key in keys:
            name = key.removeprefix(prefix)
            if name != "val_loss" and name.startswith(_NOT_LOSS):
                continue
            ys = [h["metrics"].get(key, np.nan) for h in records]
            loss_ax.plot(epochs, ys, marker=".", lw=2.0 if name == "loss" else 1.0, label=name)
        for name, style, label in _ACCURACY_LINES:
            if any(prefix + name in h["metrics"] for h in records):
                ys = [h["metrics"].get(prefix + name, np.nan) for h in records]
                acc_ax.plot(epochs, ys, style, marker=".", label=label)
        loss_ax.set_title(f"{stage}: training loss terms" + (
            ", validation loss" if any(prefix + "val_loss" in h["metrics"] for h in records)
            else ""), fontsize=9)
        acc_ax.set_title(f"{stage}: accuracy", fontsize=9)
        acc_ax.set_ylim(-0.02, 1.02)
        for ax in (loss_ax, acc_ax):
            ax.set_xlabel("epoch", fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    return fig
