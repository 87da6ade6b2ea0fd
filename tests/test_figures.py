"""Per-trial figures: valid PNGs from a finished run, the maps GSDM really compares, the
history really plotted, and a figure failure that never reaches the trial."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sakdn.config import ExperimentConfig
from sakdn.figures import (
    FIGURES,
    STAGES,
    AttentionMaps,
    attention,
    attention_figure,
    confusion,
    confusion_figure,
    gaf_figure,
    learning_curves_figure,
    log_trial_figures,
    pick_clips,
    write_trial_figures,
)
from sakdn.train import load_student, load_teachers, train
from tests.tiny import tiny_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; fails unless the file starts like a PNG."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def finished_run(tiny_root, tmp_path_factory) -> tuple[Path, ExperimentConfig]:
    """A trained tiny run (3 classes, 2 sensors) and its config: the smoke configuration with
    8-channel networks (at 4 channels an untrained student's first map can be all zero)."""
    tmp = tmp_path_factory.mktemp("figures")
    config = tiny_config(tiny_root, tmp, **{"teacher.width": 8, "student.width": 8,
                                             "teacher.epochs": 2})
    train(config, workdir=tmp / "run", log=lambda m: None)
    return tmp / "run", config


def test_a_finished_run_gets_four_valid_pngs(finished_run, tmp_path) -> None:
    workdir, _ = finished_run
    paths = write_trial_figures(workdir, tmp_path / "figures")
    assert sorted(p.name for p in paths) == sorted(FIGURES)
    for path in paths:
        width, height = png_size(path)
        assert 200 <= width <= 3000 and 200 <= height <= 3000, (path.name, width, height)
        assert path.stat().st_size > 5_000  # something was drawn


def test_the_attention_maps_are_the_ones_the_gsdm_loss_compares(finished_run) -> None:
    from sakdn.train.attention import gsdm_plan
    from sakdn.train.data import build_data
    from sakdn.train.loop import RunContext
    from sakdn.train.student_stage import StudentStage

    workdir, config = finished_run
    student, _, _ = load_student(workdir / "models" / "student.pt")
    teachers, _, _ = load_teachers(workdir / "models" / "teachers.pt")
    bundle = build_data(config, log=lambda m: None)
    ctx = RunContext(torch.device("cpu"), False, False, 0, False)
    for weighting in ("ablation_cam", "graph", "none"):
        cfg = config.replace({"distill.ablation_weight": weighting,
                              "distill.gsdm_pairs": "2,3"})
        stage = StudentStage(cfg, bundle, ctx, teachers, gsdm_plan(cfg))
        stage.model.load_state_dict(student.state_dict())
        stage.model.eval()  # as the figure draws it
        items = [stage.val_set[i] for i in range(3)]
        batch = torch.utils.data.default_collate(items)
        maps = attention(stage.model, teachers, batch, cfg, bundle.class_vectors,
                         torch.device("cpu"))
        assert maps.distilled == (1, 2) and maps.weighting == weighting
        assert sorted(maps.left_out) == [3, 4]  # 1×1 teacher maps at 16-px GAF images
        assert maps.student[3] is None and all(row[4] is None for row in maps.teachers)
        terms, _ = stage.step(batch)  # the training step on the same batch
        shown = torch.stack([maps.distance[m][p] for m in range(len(maps.teachers))
                             for p in maps.distilled])  # (M·P, B), every sensor present
        assert batch["mask"].all()
        gsdm = float(terms["gsdm"].detach())
        assert float(shown.mean()) == pytest.approx(gsdm, rel=1e-5, abs=1e-7)
        if weighting == "none":  # by hand: min-max of the channel-summed activations
            with torch.no_grad():
                s_out = stage.model(batch["frames"], return_maps=True)
            for p in range(3):
                summed = s_out.maps[p].sum(dim=1).clamp_min(0).numpy()  # (B, H, W), w = 1
                for i in range(3):
                    a = summed[i]
                    span = max(a.max() - a.min(), 1e-8)
                    np.testing.assert_allclose(maps.student[p][i].numpy(), (a - a.min()) / span,
                                               rtol=1e-5, atol=1e-6)


def test_every_map_of_the_default_gsdm_variant_shows_a_region(finished_run) -> None:
    """The default weighting (graph-guided Ablation-CAM) draws no zero or constant map."""
    from sakdn import losses
    from sakdn.data.dataset import ClipDataset
    from sakdn.train.data import build_data

    workdir, config = finished_run
    assert config.distill.ablation_weight == ExperimentConfig().distill.ablation_weight
    assert config.distill.ablation_weight == "ablation_cam"
    student, _, _ = load_student(workdir / "models" / "student.pt")
    teachers, _, _ = load_teachers(workdir / "models" / "teachers.pt")
    bundle = build_data(config, log=lambda m: None)
    clips = ClipDataset(bundle.data, bundle.val, config.student.segments, train=False)
    batch = torch.utils.data.default_collate([clips[i] for i in pick_clips(clips.labels, 3)])
    maps = attention(student.eval(), teachers.eval(), batch, config, bundle.class_vectors,
                     torch.device("cpu"))
    drawn = [m for m in maps.student if m is not None]
    drawn += [m for row in maps.teachers for m in row if m is not None]
    assert len(drawn) == 3 * (1 + 2)  # stages 1-3 (4, 5 are 1×1), student + 2 teachers
    for m in drawn:
        assert losses.informative(m).all()  # every clip's map varies in space


def fake_attention(clips: int, teachers: int) -> tuple[AttentionMaps, list, dict]:
    """Maps, frames and batch as ``write_trial_figures`` passes them; teacher 1 of clip 0
    missing, student maps of stage 1 all zero over a uniform gray frame, stage 5 left out."""
    g = torch.Generator().manual_seed(0)
    sizes = (16, 8, 4, 2)
    student = [torch.rand(clips, s, s, generator=g) for s in sizes] + [None]
    student[0].zero_()
    maps = AttentionMaps(
        student=student,
        teachers=[[torch.rand(clips, s, s, generator=g) for s in sizes] + [None]
                  for _ in range(teachers)],
        distance=[[torch.full((clips,), 0.125 * (m + 1)) for _ in sizes] + [None]
                  for m in range(teachers)],
        distilled=(1, 2), left_out={4: "1×1"}, weighting="ablation_cam",
    )
    frames = [np.full((32, 32, 3), 100, np.uint8) for _ in range(clips)]
    mask = torch.ones(clips, teachers, dtype=torch.bool)
    if teachers > 1:
        mask[0, 1] = False
    batch = {"label": torch.arange(clips) % 2, "mask": mask,
             "sensors": torch.rand(clips, teachers, 3, 16, 16, generator=g)}
    return maps, frames, batch


def test_the_attention_figure_is_one_image_with_a_panel_per_clip_teacher_and_stage(
    tmp_path,
) -> None:
    from matplotlib import colormaps

    sizes = {}
    for clips, teachers in ((1, 1), (2, 1), (2, 3)):
        maps, frames, batch = fake_attention(clips, teachers)
        sensors = [f"s{m}" for m in range(teachers)]
        fig = attention_figure(maps, frames, batch, ["left", "right"], sensors)
        assert len(fig.axes) == 1 and len(fig.axes[0].images) == 1  # not an Axes per panel
        image = fig.axes[0].images[0].get_array()
        texts = [t.get_text() for t in fig.axes[0].texts]
        rows = clips * (1 + teachers)
        missing = 1 if teachers > 1 else 0
        # a label per panel, the title, and the text of each blank panel: stage 5 in every
        # row, and the missing sensor's GAF image
        assert len(texts) == rows * (1 + len(STAGES)) + 1 + rows + missing
        assert texts.count("1×1 map:\nno GSDM") == rows
        assert texts.count("conv2 · GSDM") == clips and texts.count("conv1") == clips
        assert "left\nstudent" in texts and "ablation_cam weighting" in texts[-1]
        assert texts.count(f"D={0.125 * teachers:.3f}") == clips * 4  # the last sensor: all
        if teachers > 1:  # sensor 1 is missing in clip 0: no image, no distance
            assert texts.count("missing") == 1 and texts.count("teacher s1") == clips
            assert texts.count(f"D={0.25:.3f}") == (clips - 1) * 4
        path = tmp_path / f"attention_{clips}_{teachers}.png"
        fig.savefig(path, dpi=fig.dpi)
        sizes[clips, teachers] = png_size(path)
        assert sizes[clips, teachers] == (image.shape[1], image.shape[0])  # saved 1:1
    assert sizes[1, 1][0] == sizes[2, 1][0] == sizes[2, 3][0]  # 1 + 5 columns each
    assert sizes[1, 1][1] < sizes[2, 1][1] < sizes[2, 3][1]  # a row block per clip, teacher
    # stage 1 of the first clip: a zero map at alpha 0.5 over the (constant, so black) frame
    maps, frames, batch = fake_attention(1, 1)
    image = attention_figure(maps, frames, batch, ["a"], ["s"]).axes[0].images[0].get_array()
    zero = np.rint(0.5 * np.asarray(colormaps["jet"](0.0)[:3]) * 255)
    colours, counts = np.unique(np.asarray(image).reshape(-1, 3), axis=0, return_counts=True)
    assert any((c == zero).all() and n >= 90 * 90 for c, n in zip(colours, counts))


def test_the_gaf_figure_shows_each_sensor_and_marks_missing_ones() -> None:
    items = [{"label": torch.tensor(k), "mask": torch.tensor([True, k == 0]),
              "sensors": torch.rand(2, 3, 16, 16)} for k in range(3)]
    fig = gaf_figure(items, ["a", "b", "c"], ["acc", "gyro"], "gasf")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(fig.axes) == 1
    assert texts.count("missing") == 2 and "a · gyro" in texts and "c · acc" in texts
    assert texts[-1] == "GASF images (x, y, z → R, G, B)"


def test_pick_clips_takes_one_clip_per_class_first() -> None:
    assert pick_clips([2, 0, 0, 1, 2], 4) == [1, 3, 0, 2]
    assert pick_clips([1, 1], 5) == [0, 1]
    assert pick_clips([0, 1], 0) == []


def test_confusion_counts_and_what_the_figure_writes() -> None:
    logits = torch.tensor([[3.0, 0, 0], [0, 2.0, 0], [0, 2.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    labels = torch.tensor([0, 1, 0, 2, 2])
    cm = confusion(logits, labels, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])
    fig = confusion_figure([cm], ["student"], ["a", "b", "c"], "validation")
    ax = fig.axes[0]
    written = sorted((round(t.get_position()[1]), round(t.get_position()[0]), t.get_text())
                     for t in ax.texts)
    assert written == [(0, 0, "1"), (0, 1, "1"), (1, 1, "1"), (2, 0, "1"), (2, 2, "1")]
    assert "accuracy 0.600" in ax.get_title()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]


def test_learning_curves_plot_the_history_values() -> None:
    history = [
        {"stage": "teacher", "epoch": e, "step": e,
         "metrics": {"teacher/loss": 2.0 / e, "teacher/ce": 1.0 / e, "teacher/lr": 0.1,
                     "teacher/train_acc": 0.1 * e, "teacher/val_acc": 0.2 * e,
                     "teacher/val_acc_acc": 0.5, "teacher/best_val_acc": 0.2 * e,
                     "teacher/semantic_r2": 0.3}}
        for e in (1, 2)
    ] + [
        {"stage": "student", "epoch": e, "step": 2 + e,
         "metrics": {"student/loss": 3.0 - e, "student/gsdm": 0.5, "student/train_acc": 0.3,
                     "student/gsdm_active": 1.0, "student/gsdm_grad_ratio": 0.2,
                     "student/val_top5": 0.7, "student/gflops": 0.01,
                     "student/val_acc": [0.4, 0.2, 0.3][e - 1],
                     "student/best_val_acc": [0.4, 0.4, 0.4][e - 1],
                     "student/val_loss": 2.0, "student/val_p_true": 0.25}}
        for e in (1, 2, 3)
    ]
    fig = learning_curves_figure(history)
    t_loss, t_acc, s_loss, s_acc = fig.axes
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in t_loss.lines}
    assert lines == {"loss": ([1, 2], [2.0, 1.0]), "ce": ([1, 2], [1.0, 0.5])}  # no lr, no acc
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in s_acc.lines}
    assert lines == {"train_acc": [0.3] * 3, "val_acc": [0.4, 0.2, 0.3],
                     "best_val_acc": [0.4] * 3, "val_p_true: mean P(true class)": [0.25] * 3}
    # loss terms and the validation loss only: no accuracies, rates or costs
    assert {ln.get_label() for ln in s_loss.lines} == {"loss", "gsdm", "val_loss"}
    assert "validation loss" in s_loss.get_title() and "validation" not in t_loss.get_title()
    assert {ln.get_label() for ln in t_acc.lines} == {"train_acc", "val_acc", "best_val_acc"}


def test_log_trial_figures_hands_over_every_file_and_never_raises(finished_run, tmp_path) -> None:
    workdir, _ = finished_run
    logged = []
    tracker = SimpleNamespace(log_artifact=lambda path, dest: logged.append((Path(path), dest)))
    paths = log_trial_figures(tracker, workdir)
    assert sorted(p.name for p, _ in logged) == sorted(FIGURES)
    assert {dest for _, dest in logged} == {"figures"} and paths == [p for p, _ in logged]
    assert all(p.parent == workdir / "figures" for p in paths)

    messages: list[str] = []
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert log_trial_figures(tracker, empty, log=messages.append) == []
    assert len(messages) == 1 and "no trained student" in messages[0]


def test_the_figures_module_imports_neither_ray_nor_mlflow() -> None:
    code = ("import sys, sakdn.figures; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'mlflow', 'optuna'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
