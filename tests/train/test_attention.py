"""What the networks give GSDM: the pairs in use (and why one is left out), the checks that run
before any training, the student's and teachers' maps, and the teachers' semantic fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sakdn import losses
from sakdn.config import ExperimentConfig, load_config
from sakdn.errors import ConfigError
from sakdn.train import train
from sakdn.train.attention import gsdm_plan, small_stages, student_maps
from sakdn.train.teacher_stage import semantic_r2

REPO = Path(__file__).resolve().parents[2]


def test_the_default_experiment_uses_the_four_spatial_pairs():
    config = load_config(REPO / "experiments" / "synthetic.yaml")
    plan = gsdm_plan(config)
    assert plan.active and plan.pairs == (0, 1, 2, 3) and plan.left_out == {}
    assert plan.effective() == {}
    assert config.distill.ablation_weight == "ablation_cam" and config.distill.ablation_relu


def test_a_pair_with_1x1_maps_is_left_out_with_its_reason():
    config = load_config(REPO / "experiments" / "synthetic.yaml",
                         {"distill.gsdm_pairs": "all"})
    plan = gsdm_plan(config)
    assert plan.pairs == (0, 1, 2, 3) and list(plan.left_out) == [4]
    assert "1×1" in plan.left_out[4] and "data.frame_size 32" in plan.left_out[4]
    assert plan.effective() == {"distill.gsdm_pairs": "1,2,3,4"}
    assert plan.notes() == [f"GSDM layer pair 5 left out: {plan.left_out[4]}"]
    # larger inputs: every stage has a spatial map
    big = config.replace({"data.frame_size": 64, "gaf.image_size": 64})
    assert small_stages(big) == {} and gsdm_plan(big).pairs == (0, 1, 2, 3, 4)


def test_a_gsdm_that_cannot_act_stops_before_any_training(tmp_path):
    only_small = ExperimentConfig().replace({"data.frame_size": 32, "gaf.image_size": 32,
                                             "distill.gsdm_pairs": "5"})
    with pytest.raises(ConfigError, match="distill.gsdm_pairs"):
        gsdm_plan(only_small)
    off = only_small.replace({"distill.lambda_gsdm": 0.0})
    assert gsdm_plan(off).active is False  # nothing to compute, nothing to refuse
    no_vectors = ExperimentConfig().replace({"semantics.provider": "none",
                                             "distill.ablation_weight": "graph",
                                             "data.root": str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match="needs class vectors"):
        train(no_vectors, workdir=tmp_path / "run", log=lambda m: None)
    assert not (tmp_path / "absent").exists()  # failed before the data was even written
    assert not (tmp_path / "run" / "checkpoint").exists()
    fine = no_vectors.replace({"distill.ablation_weight": "ablation_cam"})
    assert gsdm_plan(fine).active


def test_student_ablation_cam_maps_use_each_samples_own_score_gradient():
    """In eval mode (no BatchNorm batch statistics) a clip's maps do not depend on its
    batch-mates: the gradient of Σ_i y_i with respect to clip i's activations is y_i's own."""
    from sakdn.models.student import Student

    config = ExperimentConfig().replace({"student.width": 8, "student.segments": 3,
                                         "data.frame_size": 32})
    torch.manual_seed(0)
    model = Student(config.student, num_classes=4, semantic_dim=6, frame_size=32).eval()
    frames = torch.randn(3, 3, 3, 32, 32)
    pairs = (0, 1, 2)
    # the batch graph shares evidence between clips by design; σ² → 0 switches it off here
    plain_cfg = config.replace({"distill.graph_sigma2": 1e-9})
    together = student_maps(model, frames, model(frames, return_maps=True), plain_cfg, None, pairs)
    for i in range(3):
        alone = student_maps(model, frames[i : i + 1], model(frames[i : i + 1], return_maps=True),
                             plain_cfg, None, pairs)
        for a, b in zip(together, alone):
            torch.testing.assert_close(a[i : i + 1], b, rtol=1e-4, atol=1e-6)
    assert all(losses.informative(m).any() for m in together)
    together[0].sum().backward()  # the maps stay in autograd (GSDM trains the student)
    assert model.backbone.stages[0][0].weight.grad is not None


def test_semantic_r2_hand_case():
    vectors = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    h = torch.tensor([[[2.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [9.0, 9.0]]])  # (N=2, M=2, D=2)
    mask = torch.tensor([[True, True], [True, False]])
    # present pairs: (0,0) exact, (0,1) residual 1, (1,0) exact; energy 4 + 4 + 1
    assert semantic_r2(h, labels, mask, vectors) == pytest.approx(1 - 1 / 9)
    assert semantic_r2(torch.zeros_like(h), labels, mask, vectors) == pytest.approx(0.0)
