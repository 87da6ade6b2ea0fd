"""Distillation losses against hand computations (plain Python / NumPy) and their invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sakdn import losses
from sakdn.config import DistillConfig
from sakdn.errors import ConfigError


def t(values, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, requires_grad=requires_grad)


def np_softmax(x: list[float]) -> list[float]:
    exps = [math.exp(v) for v in x]
    return [e / sum(exps) for e in exps]


# ---- soft target


def test_soft_target_matches_hand_computation():
    s, z, temp = [[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]], [[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]], 2.0
    kls = []
    for si, zi in zip(s, z):
        ps = np_softmax([v / temp for v in si])
        pt = np_softmax([v / temp for v in zi])
        kls.append(sum(b * math.log(b / a) for a, b in zip(ps, pt)))
    expected = temp**2 * sum(kls) / len(kls)
    assert losses.soft_target(t(s), t(z), temp).item() == pytest.approx(expected, rel=1e-5)


def test_soft_target_is_zero_for_equal_logits_and_never_trains_the_teacher():
    s = t([[0.3, -1.0, 2.0], [1.0, 1.0, 0.0]], requires_grad=True)
    z = t([[0.3, -1.0, 2.0], [1.0, 1.0, 0.0]], requires_grad=True)
    assert losses.soft_target(s, z, 4.0).item() == pytest.approx(0.0, abs=1e-7)
    losses.soft_target(s, z * 2, 4.0).backward()
    assert z.grad is None and s.grad is not None and s.grad.abs().sum() > 0


def test_soft_target_rejects_non_positive_temperature():
    with pytest.raises(ConfigError, match="temperature"):
        losses.soft_target(t([[1.0, 2.0]]), t([[1.0, 2.0]]), 0.0)


# ---- semantic match and batch Gram


def test_semantic_match_is_mse_with_a_detached_teacher():
    v = t([[1.0, 2.0, 3.0], [0.0, -1.0, 4.0]], requires_grad=True)
    h = t([[1.5, 2.0, 1.0], [0.0, 1.0, 4.0]], requires_grad=True)
    expected = (0.25 + 0 + 4 + 0 + 4 + 0) / 6
    loss = losses.semantic_match(v, h)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert h.grad is None and v.grad is not None
    assert losses.semantic_match(v, v.detach().clone()).item() == 0.0


def test_batch_gram_matches_numpy():
    f = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])
    g = f @ f.T
    expected = g / np.linalg.norm(g, axis=1, keepdims=True)
    np.testing.assert_allclose(losses.batch_gram(t(f.tolist())).numpy(), expected, rtol=1e-6)


def test_similarity_preserving_hand_case_zero_case_and_scale_invariance():
    fs = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])
    ft = np.array([[2.0, 0.0], [1.0, 1.0]])  # a different feature size is allowed

    def gram(f):
        g = f @ f.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    expected = ((gram(fs) - gram(ft)) ** 2).mean()
    loss = losses.similarity_preserving(t(fs.tolist()), t(ft.tolist())).item()
    assert loss == pytest.approx(expected, rel=1e-5) and loss > 0
    scaled = losses.similarity_preserving(t((3.7 * fs).tolist()), t((0.02 * ft).tolist())).item()
    assert scaled == pytest.approx(loss, rel=1e-5)
    assert losses.similarity_preserving(t(fs.tolist()), t(fs.tolist())).item() == pytest.approx(0)


def test_similarity_preserving_of_all_zero_features_is_finite_with_finite_gradient():
    fs = torch.zeros(3, 4, requires_grad=True)
    loss = losses.similarity_preserving(fs, torch.rand(3, 4))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(fs.grad).all()


# ---- map alignment and normalisation


def test_align_maps_adaptive_avg_gives_block_means():
    m = torch.arange(16.0).view(1, 4, 4)
    out = losses.align_maps(m, (2, 2), "adaptive_avg")
    expected = [[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4], [(8 + 9 + 12 + 13) / 4, 14.5 - 2]]
    assert out.tolist() == [expected]


def bilinear_by_hand(m: list[list[float]], out_h: int, out_w: int) -> list[list[float]]:
    """torch's align_corners=False rule: src = (dst + 0.5) · in / out − 0.5, clamped at 0."""

    def src(dst: int, n_in: int, n_out: int) -> tuple[int, int, float]:
        x = max((dst + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = min(int(math.floor(x)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        return i0, i1, x - i0

    rows = []
    for y in range(out_h):
        y0, y1, fy = src(y, len(m), out_h)
        row = []
        for x in range(out_w):
            x0, x1, fx = src(x, len(m[0]), out_w)
            top = (1 - fx) * m[y0][x0] + fx * m[y0][x1]
            bottom = (1 - fx) * m[y1][x0] + fx * m[y1][x1]
            row.append((1 - fy) * top + fy * bottom)
        rows.append(row)
    return rows


def test_align_maps_bilinear_matches_the_documented_formula():
    m = [[1.0, 2.0], [3.0, 5.0]]
    out = losses.align_maps(t([m]), (4, 4), "bilinear")[0]
    assert out[0, 0].item() == pytest.approx(1.0)  # the corner keeps its value
    # (1, 1) samples (0.25, 0.25): 0.75²·1 + 0.75·0.25·2 + 0.25·0.75·3 + 0.25²·5
    assert out[1, 1].item() == pytest.approx(0.5625 + 0.375 + 0.5625 + 0.3125)
    np.testing.assert_allclose(out.numpy(), bilinear_by_hand(m, 4, 4), rtol=1e-6)


@pytest.mark.parametrize("mode", ["bilinear", "adaptive_avg"])
def test_align_maps_never_mixes_samples(mode):
    maps = torch.rand(4, 8, 8, requires_grad=True)
    out = losses.align_maps(maps, (4, 4), mode)
    for i in range(4):
        alone = losses.align_maps(maps[i : i + 1].detach(), (4, 4), mode)[0]
        torch.testing.assert_close(out[i].detach(), alone)
    out[1].sum().backward()  # sample 1's map depends on sample 1's input only
    assert maps.grad[1].abs().sum() > 0
    assert maps.grad[[0, 2, 3]].abs().sum() == 0


def test_align_maps_rejects_unknown_mode():
    with pytest.raises(ConfigError, match="map_resize"):
        losses.align_maps(torch.rand(1, 4, 4), (2, 2), "np_resize")


def test_normalize_maps_minmax_and_l2_hand_cases():
    m = t([[[0.0, 1.0], [2.0, 4.0]]])
    assert losses.normalize_maps(m, "minmax").flatten().tolist() == [0.0, 0.25, 0.5, 1.0]
    norm = math.sqrt(0 + 1 + 4 + 16)
    got = losses.normalize_maps(m, "l2").flatten().tolist()
    assert got == pytest.approx([0.0, 1 / norm, 2 / norm, 4 / norm])


@pytest.mark.parametrize("mode", ["minmax", "l2"])
def test_normalize_maps_is_per_sample(mode):
    maps = torch.rand(3, 5, 5)
    scaled = maps.clone()
    scaled[1] *= 1000.0  # one sample with a large weight
    a, b = losses.normalize_maps(maps, mode), losses.normalize_maps(scaled, mode)
    torch.testing.assert_close(a, b)  # neither the others nor sample 1 itself change
    alone = losses.normalize_maps(maps[2:3], mode)[0]
    torch.testing.assert_close(a[2], alone)


def test_normalize_maps_of_a_constant_map_is_zero_not_nan():
    out = losses.normalize_maps(torch.zeros(2, 3, 3), "minmax")
    assert torch.equal(out, torch.zeros(2, 3, 3))
    assert torch.equal(losses.normalize_maps(torch.zeros(1, 2, 2), "l2"), torch.zeros(1, 2, 2))


def test_map_distance_normalises_columns_along_height():
    s = t([[[3.0, 0.0], [4.0, 1.0]]])  # columns (3, 4) and (0, 1)
    z = t([[[1.0, 1.0], [0.0, 1.0]]])  # columns (1, 0) and (1, 1)
    r = 1 / math.sqrt(2)
    expected = ((0.6 - 1) ** 2 + (0.0 - r) ** 2 + (0.8 - 0.0) ** 2 + (1.0 - r) ** 2) / 4
    assert losses.map_distance(s, z).tolist() == pytest.approx([expected], rel=1e-6)
    assert losses.map_distance(s, 5 * s).item() == pytest.approx(0.0, abs=1e-7)


# ---- ablation weights and attention maps

E = [[1.0, 2.0, -1.0, 0.5], [0.5, 1.5, -2.0, 1.0], [2.0, 1.0, -0.5, 0.25]]


def test_plain_weights_hand_case():
    logits = t([[3.0, 0.0, 1.0], [0.0, 2.0, 1.0]])  # predictions 0 and 1
    ablated = t([[0.0, 0.0, 5.0], [0.0, 2.0, 1.0]])  # 2 (changed) and 1 (unchanged)
    ratios = [(a - b) / a for a, b in zip(E[0], E[2])]  # -1, 0.5, 0.5, 0.5
    w = losses.ablation_weights(logits, ablated, t(E), "plain")
    assert w.tolist() == pytest.approx([sum(ratios) / 4, 0.0])
    w_relu = losses.ablation_weights(logits, ablated, t(E), "plain", relu=True)
    assert w_relu.tolist() == pytest.approx([sum(max(r, 0.0) for r in ratios) / 4, 0.0])


def test_graph_weights_hand_case_on_two_samples():
    z = np.array([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0]])  # predictions 0, 1
    za = np.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.0]])  # predictions 2, 0
    e = np.array(E)
    sigma2 = 2.0

    def propagation(x):
        k = np.array([[math.exp(-np.mean((a - b) ** 2) / (2 * sigma2)) for b in x] for a in x])
        d = k.sum(axis=0)
        return k / np.sqrt(np.outer(d, d))

    q = propagation(z) @ e[[0, 1]]
    qa = propagation(za) @ e[[2, 0]]
    expected = ((q - qa) / q).mean(axis=1)
    assert np.all(np.abs(q) > 0.2 * np.abs(q).mean(axis=1, keepdims=True))  # no floor active
    assert np.all(np.abs(expected) < 1)  # no clamp active
    w = losses.ablation_weights(t(z.tolist()), t(za.tolist()), t(E), "graph", sigma2=sigma2)
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("variant", ["plain", "graph"])
@pytest.mark.parametrize("relu", [False, True])
def test_weights_stay_finite_and_bounded_with_near_zero_coordinates(variant, relu):
    vectors = torch.randn(4, 300)
    vectors[0, :50] = 1e-8
    vectors[0, 50:80] = 0.0
    vectors[1, :20] = -1e-8
    vectors[3] = 0.0  # a class without a vector at all
    logits = torch.eye(4) * 5  # predictions 0, 1, 2, 3
    ablated = torch.eye(4)[[1, 0, 3, 2]] * 5
    w = losses.ablation_weights(logits, ablated, vectors, variant, relu=relu)
    assert torch.isfinite(w).all() and w.abs().max() <= 1.0
    # a 1e-8 coordinate and an exact zero are floored to the same denominator
    zeroed = vectors.clone()
    zeroed[0, :50] = 0.0
    w_zero = losses.ablation_weights(logits, ablated, zeroed, variant, relu=relu)
    assert w_zero[0].item() == pytest.approx(w[0].item(), abs=1e-5)


def test_plain_weights_do_not_depend_on_the_scale_of_the_class_vectors():
    vectors = torch.randn(5, 16)
    vectors[0, 3] = 1e-9
    logits, ablated = torch.randn(6, 5), torch.randn(6, 5)
    w = losses.ablation_weights(logits, ablated, vectors, "plain")
    torch.testing.assert_close(w, losses.ablation_weights(logits, ablated, 40 * vectors, "plain"))


def test_prob_drop_is_bounded_and_matches_hand_case():
    logits, ablated = t([[2.0, 1.0, 0.0], [0.0, 1.0, 0.0]]), t([[0.0, 1.0, 2.0], [0.0, 3.0, 0.0]])
    p, pa = np_softmax([2.0, 1.0, 0.0])[0], np_softmax([0.0, 1.0, 2.0])[0]
    w = losses.ablation_weights(logits, ablated, None, "prob_drop")
    assert w.tolist() == pytest.approx([(p - pa) / p, 0.0])  # a rise is clamped to 0
    w = losses.ablation_weights(torch.randn(64, 7) * 5, torch.randn(64, 7) * 5, None, "prob_drop")
    assert w.min() >= 0 and w.max() <= 1


def test_none_weights_are_one_and_weights_are_detached():
    logits = torch.randn(3, 4, requires_grad=True)
    w = losses.ablation_weights(logits, torch.randn(3, 4), None, "none")
    assert w.tolist() == [1.0, 1.0, 1.0]
    for variant in ("plain", "graph", "prob_drop", "none"):
        w = losses.ablation_weights(logits, torch.randn(3, 4), torch.randn(4, 6), variant)
        assert not w.requires_grad


def test_semantic_weights_without_class_vectors_or_with_unknown_variant_raise():
    logits = torch.randn(2, 3)
    for variant in ("plain", "graph"):
        with pytest.raises(ConfigError, match="ablation_cam, prob_drop or none"):
            losses.ablation_weights(logits, logits, None, variant)
    for variant in ("gradcam", "ablation_cam"):  # ablation_cam weights are per channel
        with pytest.raises(ConfigError, match="ablation_weight"):
            losses.ablation_weights(logits, logits, None, variant)


def test_attention_maps_hand_case_and_gradient():
    a = t([[[[1.0, -2.0], [0.0, 3.0]], [[1.0, 1.0], [-1.0, 0.0]]]], requires_grad=True)
    out = losses.attention_maps(a, t([2.0]))
    assert out.tolist() == [[[4.0, 0.0], [0.0, 6.0]]]  # 2·max(0, Σ_c) = 2·[[2, -1], [-1, 3]]⁺
    out.sum().backward()
    assert a.grad[0, :, 0, 0].tolist() == [2.0, 2.0] and a.grad[0, :, 0, 1].tolist() == [0.0, 0.0]
    assert losses.attention_maps(a.detach(), t([-1.0])).tolist() == [[[0.0, 1.0], [1.0, 0.0]]]


def test_attention_maps_with_channel_weights_hand_case_and_gradient():
    a = t([[[[1.0, -2.0], [0.0, 3.0]], [[1.0, 1.0], [-1.0, 0.0]]]], requires_grad=True)
    out = losses.attention_maps(a, t([[2.0, -1.0]]))  # 2·A_0 − A_1 = [[1, -5], [1, 6]]
    assert out.tolist() == [[[1.0, 0.0], [1.0, 6.0]]]
    out.sum().backward()  # the weights reach A's gradient where the map is positive
    assert a.grad[0, :, 0, 0].tolist() == [2.0, -1.0] and a.grad[0, :, 0, 1].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, C\)"):
        losses.attention_maps(a.detach(), t([[1.0, 2.0, 3.0]]))


# ---- graph-guided Ablation-CAM (the default GSDM weighting)


def test_batch_graph_limits_and_symmetry():
    z = torch.randn(5, 4)
    s = losses.batch_graph(z, 1.0)
    torch.testing.assert_close(s, s.t())
    torch.testing.assert_close(losses.batch_graph(z, 1e-6), torch.eye(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(losses.batch_graph(z, 1e9), torch.full((5, 5), 0.2), atol=1e-6,
                               rtol=0)
    with pytest.raises(ConfigError, match="graph_sigma2"):
        losses.batch_graph(z, 0.0)


def test_predicted_score_is_the_top_logit_in_autograd():
    z = t([[1.0, 3.0, -1.0], [-2.0, -5.0, -1.0]], requires_grad=True)
    y = losses.predicted_score(z)
    assert y.tolist() == [3.0, -1.0]
    y.sum().backward()
    assert z.grad.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_channel_drops_hand_case_and_segment_groups():
    a = torch.arange(2 * 2 * 2 * 2, dtype=torch.float32).view(2, 2, 2, 2)  # (N, C, H, W)
    g = torch.ones_like(a)
    g[:, 1] = -0.5
    d = losses.channel_drops(a, g)  # Σ_hw A·g per row and channel
    assert d.tolist() == [[0 + 1 + 2 + 3, -0.5 * (4 + 5 + 6 + 7)],
                          [8 + 9 + 10 + 11, -0.5 * (12 + 13 + 14 + 15)]]
    assert losses.channel_drops(a, g, groups=2).tolist() == [[6 + 38, -11 - 27]]


def test_ablation_cam_weights_hand_case():
    drops = t([[2.0, -1.0], [0.5, 4.0]])
    logits = t([[-4.0, 1.0], [0.0, 2.0]])  # predicted scores 1 and 2
    sigma2 = 3.0
    relative = np.array([[2.0, -1.0], [0.25, 2.0]])  # drop / |y|
    d2 = np.mean((np.array([-4.0, 1.0]) - np.array([0.0, 2.0])) ** 2)
    k = np.array([[1.0, math.exp(-d2 / (2 * sigma2))], [math.exp(-d2 / (2 * sigma2)), 1.0]])
    deg = k.sum(axis=0)
    s = k / np.sqrt(np.outer(deg, deg))
    w = losses.ablation_cam_weights(drops, logits, sigma2)
    np.testing.assert_allclose(w.numpy(), s @ relative, rtol=1e-6)
    w_relu = losses.ablation_cam_weights(drops, logits, sigma2, relu=True)
    np.testing.assert_allclose(w_relu.numpy(), s @ np.maximum(relative, 0), rtol=1e-6)
    # no propagation (σ² → 0): plain Ablation-CAM weights; a negative logit counts by magnitude
    w_alone = losses.ablation_cam_weights(drops, t([[-4.0, -1.0], [0.0, 2.0]]), 1e-9)
    np.testing.assert_allclose(w_alone.numpy(), relative, rtol=1e-6)


def _conv_net(channels: int, linear_after: bool) -> torch.nn.Sequential:
    """conv → ReLU (the analysed layer) → [conv → ReLU] → GAP → linear, positive logits."""
    torch.manual_seed(0)
    head = [] if linear_after else [torch.nn.Conv2d(channels, 16, 3, padding=1), torch.nn.ReLU()]
    width = channels if linear_after else 16
    net = torch.nn.Sequential(torch.nn.Conv2d(3, channels, 3, padding=1), torch.nn.ReLU(), *head,
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(width, 5)).eval()
    with torch.no_grad():
        net[-1].bias += 3.0  # Ablation-CAM divides by the signed score: keep it positive
    return net


def _first_order_weights(net, x):
    """Our weights (no graph) and the analysed layer's activations."""
    seen = {}
    hook = net[1].register_forward_hook(lambda m, i, o: seen.__setitem__("a", o))
    logits = net(x)
    hook.remove()
    (grad,) = torch.autograd.grad(losses.predicted_score(logits).sum(), seen["a"])
    drops = losses.channel_drops(seen["a"], grad)
    return losses.ablation_cam_weights(drops, logits, sigma2=1e-9), seen["a"], logits


def _grad_cam_reference(net, x, activations, logits):
    """pytorch-grad-cam's AblationCAM: exact per-channel ablation, its weights and maps."""
    from pytorch_grad_cam import AblationCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(int(k)) for k in logits.argmax(dim=1)]
    cam = AblationCAM(net, [net[1]])
    weights = cam.get_cam_weights(x, net[1], targets, activations.detach().numpy(), None)
    return weights, cam(input_tensor=x, targets=targets)


def test_ablation_cam_matches_grad_cam_where_the_score_is_linear_in_the_layer():
    net, x = _conv_net(6, linear_after=True), torch.randn(3, 3, 8, 8)
    w, a, logits = _first_order_weights(net, x)
    ref_w, ref_maps = _grad_cam_reference(net, x, a, logits)
    assert (logits.max(dim=1).values > 0).all()
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-4, atol=1e-6)
    ours = losses.normalize_maps(losses.attention_maps(a.detach(), w)).numpy()
    np.testing.assert_allclose(ours, ref_maps, atol=1e-5)  # same size: no resizing in either


def test_first_order_ablation_tracks_exact_ablation_through_a_nonlinear_head():
    net, x = _conv_net(32, linear_after=False), torch.randn(4, 3, 8, 8)
    w, a, logits = _first_order_weights(net, x)
    ref_w, _ = _grad_cam_reference(net, x, a, logits)
    for ours, exact in zip(w.numpy(), ref_w):
        assert np.corrcoef(ours, exact)[0, 1] > 0.9
        top = np.argsort(-np.abs(exact))[:5]  # the channels that matter most agree in sign
        assert (np.sign(ours[top]) == np.sign(exact[top])).all()


def test_weighted_maps_applies_each_variant_and_asks_for_what_it_needs():
    torch.manual_seed(0)
    stages = [torch.rand(3, 4, 5, 5), torch.rand(3, 2, 3, 3)]
    logits, ablated, vectors = torch.randn(3, 4), torch.randn(3, 4), torch.randn(4, 6)
    drops = [torch.randn(3, 4), torch.randn(3, 2)]
    for variant in ("plain", "graph", "prob_drop", "none"):
        cfg = DistillConfig(ablation_weight=variant, graph_sigma2=2.0)
        maps = losses.weighted_maps(cfg, stages, logits, class_vectors=vectors,
                                    ablated_logits=ablated, drops=drops)
        w = losses.ablation_weights(logits, ablated, vectors, variant, relu=cfg.ablation_relu,
                                    sigma2=2.0)
        for got, a in zip(maps, stages):
            torch.testing.assert_close(got, losses.attention_maps(a, w))
    cfg = DistillConfig(ablation_weight="ablation_cam", graph_sigma2=2.0)
    maps = losses.weighted_maps(cfg, stages, logits, drops=drops)
    for got, a, d in zip(maps, stages, drops):
        expected = losses.attention_maps(a, losses.ablation_cam_weights(d, logits, 2.0, relu=True))
        torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="channel-drop"):
        losses.weighted_maps(cfg, stages, logits)
    with pytest.raises(ValueError, match="all-zero input"):
        losses.weighted_maps(DistillConfig(ablation_weight="graph"), stages, logits,
                             class_vectors=vectors)


def test_informative_maps_vary_in_space():
    maps = torch.stack([torch.zeros(3, 3), torch.full((3, 3), 2.0), torch.eye(3)])
    assert losses.informative(maps).tolist() == [False, False, True]


# ---- GSDM and the student objective


def objective(cfg: DistillConfig, **inputs):
    """``student_objective`` with labels and student logits filled in when not given."""
    first = next(iter(inputs.values()), None)
    b = 3 if first is None else (first[0] if isinstance(first, list) else first).shape[0]
    labels = inputs.pop("labels", torch.arange(b) % 3)
    logits = inputs.pop("student_logits", torch.zeros(b, 4, requires_grad=True))
    return losses.student_objective(cfg, labels, logits, **inputs)


GSDM_ONLY = DistillConfig(lambda_st=0.0, lambda_sp=0.0, lambda_gsdm=1.0)


def np_gsdm_pair(s_feat, w_s, t_feat, w_t):
    """One (teacher, pair) term: per-sample min-max, column L2, per-sample MSE (B,)."""

    def prep(feat, w):
        m = np.maximum(w[:, None, None] * feat.sum(axis=1), 0)
        lo = m.min(axis=(1, 2), keepdims=True)
        span = np.maximum(m.max(axis=(1, 2), keepdims=True) - lo, 1e-8)
        m = (m - lo) / span
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    return ((prep(s_feat, w_s) - prep(t_feat, w_t)) ** 2).mean(axis=(1, 2))


def raw_maps(features: torch.Tensor, w=None) -> torch.Tensor:
    w = torch.ones(features.shape[0]) if w is None else w
    return losses.attention_maps(features, w)


def test_gsdm_term_matches_numpy_and_trains_only_the_student():
    rng = np.random.default_rng(0)
    s = [rng.normal(size=(3, 4, 5, 5)), rng.normal(size=(3, 2, 3, 3))]
    tm = [[rng.normal(size=(3, 6, 5, 5)), rng.normal(size=(3, 2, 3, 3))] for _ in range(2)]
    w_s, w_t = np.array([1.0, 0.5, 2.0]), np.array([[1.0, 1.0, 0.3], [2.0, 0.7, 1.0]])
    expected = np.mean([np_gsdm_pair(s[p], w_s, tm[m][p], w_t[m]).mean()
                        for m in range(2) for p in range(2)])
    s_t = [t(x.tolist(), requires_grad=True) for x in s]
    t_t = [[t(x.tolist(), requires_grad=True) for x in row] for row in tm]
    s_maps = [raw_maps(x, t(w_s.tolist())) for x in s_t]
    t_maps = [torch.stack([raw_maps(t_t[m][p], t(w_t[m].tolist())) for m in range(2)], dim=1)
              for p in range(2)]  # (B, M, H, W) per pair
    out = objective(GSDM_ONLY, student_maps=s_maps, teacher_maps=t_maps)
    assert out["gsdm"].item() == pytest.approx(expected, rel=1e-5)
    out["loss"].backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s_t)
    assert all(x.grad is None for row in t_t for x in row)


@pytest.mark.parametrize("mode", ["bilinear", "adaptive_avg"])
def test_gsdm_resizes_teacher_maps_by_interpolation(mode):
    cfg = DistillConfig(lambda_st=0.0, lambda_sp=0.0, map_resize=mode)
    student = torch.rand(2, 4, 4)
    teacher = student.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # (2, 8, 8) blocks
    same = objective(cfg, student_maps=[student], teacher_maps=[teacher[:, None]])
    assert same["gsdm"].item() == pytest.approx(0.0, abs=1e-10)
    other = objective(cfg, student_maps=[student], teacher_maps=[teacher.flip(0)[:, None]])
    assert other["gsdm"].item() > 0


def test_gsdm_excludes_masked_teachers_from_value_and_gradient():
    s = torch.rand(3, 2, 4, 4, requires_grad=True)
    good, bad = torch.rand(3, 2, 4, 4), torch.full((3, 2, 4, 4), float("nan"))
    only_good = objective(GSDM_ONLY, student_maps=[raw_maps(s)],
                          teacher_maps=[raw_maps(good)[:, None]])["gsdm"]
    mask = torch.tensor([[True, False]] * 3)
    pair = torch.stack([raw_maps(good), raw_maps(bad)], dim=1)
    masked = objective(GSDM_ONLY, student_maps=[raw_maps(s)], teacher_maps=[pair], mask=mask)
    assert masked["gsdm"].item() == pytest.approx(only_good.item(), rel=1e-6)
    masked["loss"].backward()
    assert torch.isfinite(s.grad).all()
    # a teacher missing for one sample only: that sample counts once, the others twice
    other = torch.rand(3, 2, 4, 4)
    part = torch.tensor([[True, True], [True, False], [True, True]])
    d_good = np_gsdm_pair(s.detach().numpy(), np.ones(3), good.numpy(), np.ones(3))
    d_other = np_gsdm_pair(s.detach().numpy(), np.ones(3), other.numpy(), np.ones(3))
    expected = (d_good.sum() + d_other[[0, 2]].sum()) / 5
    both = torch.stack([raw_maps(good), raw_maps(other)], dim=1)
    got = objective(GSDM_ONLY, student_maps=[raw_maps(s.detach())], teacher_maps=[both],
                    mask=part)["gsdm"]
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_gsdm_with_no_available_teacher_is_zero_and_backpropagates():
    s = torch.rand(2, 1, 3, 3, requires_grad=True)
    out = objective(GSDM_ONLY, student_maps=[raw_maps(s)],
                    teacher_maps=[torch.rand(2, 1, 3, 3)], mask=torch.zeros(2, 1, dtype=torch.bool))
    out["loss"].backward()
    assert out["gsdm"].item() == 0.0 and torch.equal(s.grad, torch.zeros_like(s))


def test_gram_maps_loss_uses_only_available_samples():
    s, z = torch.rand(4, 3, 3), torch.rand(4, 3, 3)
    mask = torch.tensor([[True], [False], [True], [True]])
    expected = losses.similarity_preserving(s[[0, 2, 3]], z[[0, 2, 3]])
    assert losses.gram_maps_loss([s], [[z]], mask).item() == pytest.approx(expected.item())
    assert losses.gram_maps_loss([s], [[z]], torch.tensor([[True], [False], [False], [False]])) == 0


def test_gsdm_active_counts_pairs_whose_two_maps_both_show_a_region():
    region, flat, zero = torch.eye(3), torch.full((3, 3), 0.5), torch.zeros(3, 3)
    student = [torch.stack([region, region, zero, region])]  # (B=4, 3, 3), one pair
    teacher = torch.stack([region, flat, region, region])[:, None]  # (4, M=1, 3, 3)
    out = objective(GSDM_ONLY, student_maps=student, teacher_maps=[teacher])
    assert out["gsdm_active"].item() == pytest.approx(2 / 4)  # samples 0 and 3
    mask = torch.tensor([[True], [True], [True], [False]])
    out = objective(GSDM_ONLY, student_maps=student, teacher_maps=[teacher], mask=mask)
    assert out["gsdm_active"].item() == pytest.approx(1 / 3)
    assert "gsdm_active" not in objective(DistillConfig(lambda_gsdm=0.0, lambda_sp=0.0,
                                                        lambda_st=0.0))


def batch(m_teachers: int = 2, b: int = 3, k: int = 4, d: int = 5):
    """Objective inputs, teacher tensors (B, M, ...) as the teachers return them."""
    torch.manual_seed(0)
    return dict(
        student_logits=torch.randn(b, k, requires_grad=True),
        labels=torch.tensor([0, 1, 2]),
        teacher_logits=torch.randn(b, m_teachers, k),
        student_feature=torch.randn(b, d, requires_grad=True),
        teacher_features=torch.randn(b, m_teachers, d),
        student_maps=[torch.rand(b, 4, 4, requires_grad=True)],
        teacher_maps=[torch.rand(b, m_teachers, 8, 8)],
    )


def test_student_objective_combines_the_terms_with_the_config_weights():
    x = batch()
    cfg = DistillConfig(lambda_st=0.5, lambda_sp=2.0, lambda_gsdm=3.0, lambda_sp_gram=7.0)
    out = objective(cfg, **x)
    assert set(out) == {"loss", "ce", "st", "sp", "gsdm", "sp_gram", "gsdm_active"}
    z, h = x["teacher_logits"], x["teacher_features"]
    st = sum(losses.soft_target(x["student_logits"], z[:, m], 4.0) for m in range(2)) / 2
    sp = sum(losses.semantic_match(x["student_feature"], h[:, m]) for m in range(2)) / 2
    s_maps, t_maps = losses.gsdm_maps(x["student_maps"], x["teacher_maps"])
    gsdm = sum(losses.map_distance(s_maps[0], t_maps[m][0]).mean() for m in range(2)) / 2
    gram = sum(losses.similarity_preserving(s_maps[0], t_maps[m][0]) for m in range(2)) / 2
    ce = torch.nn.functional.cross_entropy(x["student_logits"], x["labels"])
    for name, value in (("st", st), ("sp", sp), ("gsdm", gsdm), ("ce", ce), ("sp_gram", gram)):
        assert out[name].item() == pytest.approx(value.item(), rel=1e-5), name
    total = ce + 0.5 * st + 2 * sp + 3 * gsdm + 7 * gram
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-5)
    out["loss"].backward()
    assert x["student_maps"][0].grad.abs().sum() > 0 and x["student_feature"].grad is not None


def test_student_objective_zero_weight_terms_are_logged_but_not_trained():
    x = batch()
    cfg = DistillConfig(lambda_st=0.0, lambda_sp=0.0, lambda_gsdm=0.0, lambda_sp_gram=0.0)
    x["teacher_features"] = torch.full_like(x["teacher_features"], float("nan"))
    out = objective(cfg, **x)
    assert math.isnan(out["sp"].item()) and math.isfinite(out["loss"].item())
    assert out["gsdm"].item() > 0 and not out["gsdm"].requires_grad
    assert out["loss"].item() == pytest.approx(out["ce"].item())


def test_student_objective_sp_with_a_missing_teacher_averages_over_present_pairs():
    x = batch()
    mask = torch.tensor([[True, False], [True, True], [False, True]])
    out = objective(DistillConfig(lambda_st=0.0, lambda_gsdm=0.0), mask=mask,
                    student_feature=x["student_feature"],
                    teacher_features=x["teacher_features"], labels=x["labels"])
    v, h = x["student_feature"].detach(), x["teacher_features"]
    pairs = [(i, m) for i in range(3) for m in range(2) if mask[i, m]]
    expected = sum(((v[i] - h[i, m]) ** 2).mean().item() for i, m in pairs) / len(pairs)
    assert out["sp"].item() == pytest.approx(expected, rel=1e-6)


def test_student_objective_mask_and_confidence_aggregation():
    x = batch()
    mask = torch.tensor([[True, False], [True, True], [False, True]])
    cfg = DistillConfig(lambda_st=1.0, lambda_sp=0.0, lambda_gsdm=0.0,
                        teacher_aggregation="confidence")
    out = objective(cfg, student_logits=x["student_logits"], labels=x["labels"],
                    teacher_logits=x["teacher_logits"], mask=mask)
    s, z, y = x["student_logits"].detach(), x["teacher_logits"], x["labels"].tolist()
    num = den = 0.0
    for i in range(3):
        p_true = [np_softmax(z[i, m].tolist())[y[i]] * float(mask[i, m]) for m in range(2)]
        for m in range(2):
            a = p_true[m] / sum(p_true)
            num += a * losses.soft_target(s[i : i + 1], z[i : i + 1, m], 4.0).item()
            den += a
    assert out["st"].item() == pytest.approx(num / den, rel=1e-5)


def test_student_objective_needs_inputs_for_weighted_terms():
    x = batch()
    with pytest.raises(ValueError, match="lambda_sp > 0 but its inputs are missing"):
        objective(DistillConfig(), student_logits=x["student_logits"], labels=x["labels"],
                  teacher_logits=x["teacher_logits"])
    with pytest.raises(ValueError, match="disagree on the number of teachers"):
        objective(DistillConfig(lambda_gsdm=0.0), student_logits=x["student_logits"],
                  labels=x["labels"], teacher_logits=x["teacher_logits"],
                  student_feature=x["student_feature"],
                  teacher_features=x["teacher_features"][:, :1])


def test_weights_and_gram_keep_float32_under_bf16_autocast():
    torch.manual_seed(1)
    logits, ablated, vectors = torch.randn(6, 5), torch.randn(6, 5), torch.randn(5, 32)
    fs, ft, drops = torch.randn(6, 40), torch.randn(6, 30), torch.randn(6, 7)
    w = losses.ablation_weights(logits, ablated, vectors, "graph")
    cam = losses.ablation_cam_weights(drops, logits)
    sp = losses.similarity_preserving(fs, ft)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w_amp = losses.ablation_weights(logits, ablated, vectors, "graph")
        cam_amp = losses.ablation_cam_weights(drops, logits)
        sp_amp = losses.similarity_preserving(fs, ft)
    assert w_amp.dtype == sp_amp.dtype == cam_amp.dtype == torch.float32
    torch.testing.assert_close(w_amp, w)
    torch.testing.assert_close(cam_amp, cam)
    torch.testing.assert_close(sp_amp, sp)
