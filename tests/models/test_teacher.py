"""Teacher ensemble: shapes, fusion wiring, the loss terms and gradient flow."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sakdn.config import TeacherConfig
from sakdn.errors import ConfigError
from sakdn.models.teacher import TeacherEnsemble, TeacherOutput, teacher_loss


def _config(**kw) -> TeacherConfig:
    return TeacherConfig(**{"backbone": "small_cnn", "width": 4, **kw})


@pytest.mark.parametrize("sensors", [2, 6])
def test_output_shapes(sensors: int) -> None:
    torch.manual_seed(0)
    net = TeacherEnsemble(_config(), sensors, num_classes=5, semantic_dim=7, image_size=32)
    out = net(torch.rand(3, sensors, 3, 32, 32))
    assert out.logits.shape == (3, sensors, 5)
    assert out.semantic.shape == (3, sensors, 7)
    assert len(out.stages) == 5
    widths, sides = (4, 8, 16, 32, 32), (16, 8, 4, 2, 1)
    for maps, c, s in zip(out.stages, widths, sides):
        assert len(maps) == sensors
        assert all(m.shape == (3, c, s, s) for m in maps)
    assert out.fused_logits.shape == (3, 5)
    assert torch.isfinite(out.logits).all()


def test_fusion_stages_follow_config() -> None:
    net = TeacherEnsemble(_config(spamfm_stages="conv2,fc2", spamfm_gates="add"), 2, 4, 6, 32)
    assert list(net.fusions) == ["conv2", "fc2"]
    assert set(net.fusions["fc2"].excite) == {"add"}
    assert net.fusions["conv2"].channels == 8 and net.fusions["fc2"].channels == 6
    assert len(TeacherEnsemble(_config(spamfm_stages="none"), 2, 4, 6, 32).fusions) == 0


def test_branches_interact_only_through_spamfm() -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 2, 3, 32, 32)
    other = images.clone()
    other[:, 1] = torch.rand(4, 3, 32, 32)  # change sensor 2 only
    for stages, coupled in (("none", False), ("all", True), ("fc2", True)):
        net = TeacherEnsemble(_config(spamfm_stages=stages), 2, 4, 6, 32).eval()
        with torch.no_grad():
            a, b = net(images).logits[:, 0], net(other).logits[:, 0]
        assert (not torch.equal(a, b)) == coupled, stages  # uncoupled: bit-identical


def test_vgg_teacher_keeps_grid_before_fc1_and_rejects_small_images() -> None:
    net = TeacherEnsemble(_config(backbone="vgg16_bn", spamfm_stages="fc1"), 2, 3, 5, 64)
    assert net.branches[0].fc1[0].in_features == 512 * 2 * 2
    out = net(torch.rand(2, 2, 3, 64, 64))
    assert out.logits.shape == (2, 2, 3)
    with pytest.raises(ConfigError) as err:
        TeacherEnsemble(_config(backbone="vgg16_bn"), 2, 3, 5, 16)
    assert err.value.key == "gaf.image_size"


def _random_output(b: int, m: int, k: int, d: int, mask=None) -> TeacherOutput:
    torch.manual_seed(1)
    return TeacherOutput(torch.randn(b, m, k), torch.randn(b, m, d), [], mask)


@pytest.mark.parametrize("kind", ["l1", "mse", "cosine"])
def test_teacher_loss_matches_per_teacher_loop(kind: str) -> None:
    out = _random_output(4, 3, 5, 6)
    labels = torch.tensor([0, 4, 2, 2])
    vectors = torch.randn(5, 6)
    terms = teacher_loss(out, labels, vectors, _config(semantic_loss=kind, semantic_weight=0.7))
    ce, sem = [], []
    for m in range(3):
        h, e = out.semantic[:, m], vectors[labels]
        ce.append(F.cross_entropy(out.logits[:, m], labels))
        if kind == "l1":
            sem.append(F.l1_loss(h, e))
        elif kind == "mse":
            sem.append(F.mse_loss(h, e))
        else:
            sem.append((1 - F.cosine_similarity(h, e, dim=1)).mean())
    ce_mean, sem_mean = torch.stack(ce).mean(), torch.stack(sem).mean()
    torch.testing.assert_close(terms["ce"], ce_mean)
    torch.testing.assert_close(terms["semantic"], sem_mean)
    torch.testing.assert_close(terms["loss"], ce_mean + 0.7 * sem_mean)


def test_teacher_loss_without_class_vectors_is_cross_entropy() -> None:
    out = _random_output(3, 2, 4, 5)
    labels = torch.tensor([1, 0, 3])
    terms = teacher_loss(out, labels, None, _config(semantic_weight=5.0))
    expected = (
        F.cross_entropy(out.logits[:, 0], labels) + F.cross_entropy(out.logits[:, 1], labels)
    ) / 2
    torch.testing.assert_close(terms["loss"], expected)
    assert terms["semantic"].item() == 0.0


def test_teacher_loss_excludes_masked_teachers() -> None:
    mask = torch.tensor([[True, False], [True, True], [False, False]])
    out = _random_output(3, 2, 4, 5, mask)
    labels = torch.tensor([1, 0, 3])
    vectors = torch.randn(4, 5)
    terms = teacher_loss(out, labels, vectors, _config(semantic_loss="mse", semantic_weight=2.0))
    pairs = [(0, 0), (1, 0), (1, 1)]
    ce = sum(F.cross_entropy(out.logits[b, m][None], labels[b][None]) for b, m in pairs) / 3
    sem = sum(F.mse_loss(out.semantic[b, m], vectors[labels[b]]) for b, m in pairs) / 3
    torch.testing.assert_close(terms["ce"], ce)
    torch.testing.assert_close(terms["loss"], ce + 2.0 * sem)
    # fused logits average the present teachers only; a sample with none gets zeros
    torch.testing.assert_close(out.fused_logits[0], out.logits[0, 0])
    torch.testing.assert_close(out.fused_logits[1], out.logits[1].mean(dim=0))
    assert torch.equal(out.fused_logits[2], torch.zeros(4))


def test_gradient_reaches_every_teacher_parameter() -> None:
    torch.manual_seed(0)
    config = _config(semantic_loss="l1")
    net = TeacherEnsemble(config, 2, num_classes=4, semantic_dim=6, image_size=32).train()
    out = net(torch.rand(4, 2, 3, 32, 32))
    vectors = torch.randn(4, 6)
    terms = teacher_loss(out, torch.tensor([0, 1, 2, 3]), vectors, config)
    terms["loss"].backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name


def test_wrong_input_shape_raises() -> None:
    net = TeacherEnsemble(_config(), 2, 4, 6, 32)
    with pytest.raises(ValueError):
        net(torch.rand(2, 3, 3, 32, 32))
