"""SPAMFM against hand computation and a plain-Python reference; batch dependence; masks."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from sakdn.errors import ConfigError
from sakdn.models.spamfm import SPAMFM


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _set_linear(layer: torch.nn.Linear, w: list[list[float]], b: list[float]) -> None:
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
        layer.bias.copy_(torch.tensor(b))


def test_hand_computed_add_gate_with_graph() -> None:
    # M=2, B=2, C=2, r=4: add-MLP hidden = max(1, ⌊2/4⌋) = 1.
    # MLP: h = relu(a0 + a1), gate = (σ(h), σ(−h)) — the same weights for both modalities.
    fusion = SPAMFM(2, 2, gates=("add",), graph=True, reduction=0)
    for mlp in fusion.excite["add"]:
        _set_linear(mlp[0], [[1.0, 1.0]], [0.0])
        _set_linear(mlp[2], [[1.0], [-1.0]], [0.0, 0.0])
    f1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    f2 = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    # G_1 = F_1 F_1ᵀ = [[1, 1], [1, 2]]  → rows / √2 and / √5;  G_2 = [[1, 1], [1, 2]] as well.
    # u_1 = Ĝ_1 F_1: row 0 = ([1,0] + [1,1]) / √2 = [2, 1]/√2
    #                row 1 = ([1,0] + 2·[1,1]) / √5 = [3, 2]/√5
    # u_2 = Ĝ_2 F_2: row 0 = ([0,1] + [1,1]) / √2 = [1, 2]/√2
    #                row 1 = ([0,1] + 2·[1,1]) / √5 = [2, 3]/√5
    # a = u_1 + u_2: row 0 = [3, 3]/√2 → h = 6/√2 = 3√2;  row 1 = [5, 5]/√5 → h = 10/√5 = 2√5
    g0 = [_sig(3 * math.sqrt(2)), _sig(-3 * math.sqrt(2))]
    g1 = [_sig(2 * math.sqrt(5)), _sig(-2 * math.sqrt(5))]
    expected1 = [[1.0 * g0[0], 0.0 * g0[1]], [1.0 * g1[0], 1.0 * g1[1]]]
    expected2 = [[0.0 * g0[0], 1.0 * g0[1]], [1.0 * g1[0], 1.0 * g1[1]]]
    out1, out2 = fusion([f1, f2])
    torch.testing.assert_close(out1, torch.tensor(expected1), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(out2, torch.tensor(expected2), rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ plain-Python reference


def _weight(i: int, j: int, salt: int) -> float:
    return 0.1 * ((i * 7 + j * 3 + salt) % 5 - 2)


def _mlp_values(d_in: int, hidden: int, c: int, salt: int) -> tuple:
    w1 = [[_weight(i, j, salt) for j in range(d_in)] for i in range(hidden)]
    b1 = [0.05 * (i + 1) for i in range(hidden)]
    w2 = [[_weight(i, j, salt + 1) for j in range(hidden)] for i in range(c)]
    b2 = [-0.1 * i for i in range(c)]
    return w1, b1, w2, b2


def _ref_mlp(v: list[float], w1, b1, w2, b2) -> list[float]:
    h = [max(0.0, sum(w1[i][j] * v[j] for j in range(len(v))) + b1[i]) for i in range(len(b1))]
    return [_sig(sum(w2[c][i] * h[i] for i in range(len(h))) + b2[c]) for c in range(len(b2))]


def _reference(feats, weights, gates, graph, mask=None):
    """feats[m][b][c] lists; weights[(gate, m)] = (w1, b1, w2, b2)."""
    M, B, C = len(feats), len(feats[0]), len(feats[0][0])
    present = mask or [[True] * M for _ in range(B)]
    x = [
        [[feats[m][b][c] if present[b][m] else 0.0 for c in range(C)] for b in range(B)]
        for m in range(M)
    ]
    u = []
    for m in range(M):
        if not graph:
            u.append(x[m])
            continue
        gram = [
            [sum(x[m][i][c] * x[m][j][c] for c in range(C)) for j in range(B)] for i in range(B)
        ]
        norms = [math.sqrt(sum(g * g for g in row)) for row in gram]
        ghat = [
            [gram[i][j] / norms[i] if norms[i] > 0 else 0.0 for j in range(B)] for i in range(B)
        ]
        u.append(
            [[sum(ghat[i][j] * x[m][j][c] for j in range(B)) for c in range(C)] for i in range(B)]
        )
    out = [[[0.0] * C for _ in range(B)] for _ in range(M)]
    for b in range(B):
        codes = {
            "cat": [u[m][b][c] for m in range(M) for c in range(C)],
            "add": [sum(u[m][b][c] for m in range(M)) for c in range(C)],
        }
        prod = []
        for c in range(C):
            p = 1.0
            for m in range(M):
                if present[b][m]:
                    p *= u[m][b][c]
            prod.append(p if any(present[b]) else 0.0)
        codes["mul"] = prod
        for m in range(M):
            gate = [0.0] * C
            for g in gates:
                for c, v in enumerate(_ref_mlp(codes[g], *weights[(g, m)])):
                    gate[c] += v
            out[m][b] = [gate[c] * feats[m][b][c] for c in range(C)]
    return out


def _module_with_known_weights(M: int, C: int, gates, graph: bool, reduction: int):
    fusion = SPAMFM(M, C, gates=gates, graph=graph, reduction=reduction)
    weights = {}
    for salt, (g, m) in enumerate(itertools.product(gates, range(M))):
        mlp = fusion.excite[g][m]
        values = _mlp_values(mlp[0].in_features, mlp[0].out_features, C, salt)
        _set_linear(mlp[0], values[0], values[1])
        _set_linear(mlp[2], values[2], values[3])
        weights[(g, m)] = values
    return fusion, weights


GATE_SUBSETS = [("cat", "add", "mul"), ("cat",), ("add",), ("mul",), ("add", "mul")]


@pytest.mark.parametrize("gates", GATE_SUBSETS)
@pytest.mark.parametrize("graph", [True, False])
def test_matches_plain_python_reference(gates, graph) -> None:
    feats = [
        [[1.0, -0.5, 2.0], [0.3, 0.8, -1.2], [-0.7, 0.1, 0.4]],
        [[0.2, 0.9, -0.3], [1.5, -0.4, 0.6], [0.0, 0.7, 1.1]],
    ]  # M=2, B=3, C=3
    fusion, weights = _module_with_known_weights(2, 3, gates, graph, reduction=2)
    out = fusion([torch.tensor(f) for f in feats])
    expected = _reference(feats, weights, gates, graph)
    for m in range(2):
        torch.testing.assert_close(out[m], torch.tensor(expected[m]), rtol=1e-5, atol=1e-6)


def test_mask_matches_reference_and_isolates_missing_sensor() -> None:
    feats = [
        [[1.0, -0.5], [0.3, 0.8], [-0.7, 0.1]],
        [[0.2, 0.9], [1.5, -0.4], [0.0, 0.7]],
        [[0.6, 0.2], [-0.3, 1.0], [0.9, -0.8]],
    ]  # M=3, B=3, C=2
    mask = [[True, True, True], [True, False, True], [False, False, False]]
    gates = ("cat", "add", "mul")
    fusion, weights = _module_with_known_weights(3, 2, gates, True, reduction=0)
    mask_t = torch.tensor(mask)
    out = fusion([torch.tensor(f) for f in feats], mask_t)
    expected = _reference(feats, weights, gates, True, mask)
    for m in range(3):
        torch.testing.assert_close(out[m], torch.tensor(expected[m]), rtol=1e-5, atol=1e-6)
    # Changing a missing sensor's features changes no present sensor's output.
    changed = [torch.tensor(f) for f in feats]
    changed[1][1] = torch.tensor([50.0, -20.0])
    changed[0][2] = torch.tensor([-9.0, 7.0])
    out2 = fusion(changed, mask_t)
    for b, m in itertools.product(range(3), range(3)):
        if mask[b][m]:
            torch.testing.assert_close(out2[m][b], out[m][b])
    # An all-true mask is the same as no mask.
    full = torch.ones(3, 3, dtype=torch.bool)
    for a, b in zip(
        fusion([torch.tensor(f) for f in feats], full), fusion([torch.tensor(f) for f in feats])
    ):
        torch.testing.assert_close(a, b)


def test_conv_features_reduce_to_vectors_when_spatially_constant() -> None:
    torch.manual_seed(0)
    fusion = SPAMFM(3, 4)
    vecs = [torch.randn(5, 4) for _ in range(3)]
    maps = [v[:, :, None, None].expand(5, 4, 3, 2).contiguous() for v in vecs]
    out_vec = fusion(vecs)
    out_map = fusion(maps)
    for ov, om in zip(out_vec, out_map):
        assert om.shape == (5, 4, 3, 2)
        torch.testing.assert_close(om, ov[:, :, None, None].expand_as(om), rtol=1e-5, atol=1e-6)


def test_output_depends_on_batch_mates_only_with_graph() -> None:
    torch.manual_seed(0)
    a = [torch.rand(4, 6, 3, 3) for _ in range(2)]
    b = [x.clone() for x in a]
    for x in b:
        x[1:] = torch.rand(3, 6, 3, 3)  # same sample 0, different batch-mates
    with_graph = SPAMFM(2, 6, graph=True)
    no_graph = SPAMFM(2, 6, graph=False)
    no_graph.load_state_dict(with_graph.state_dict())
    assert not torch.allclose(with_graph(a)[0][0], with_graph(b)[0][0])
    torch.testing.assert_close(no_graph(a)[0][0], no_graph(b)[0][0])
    # With B = 1 and non-negative features Ĝ = 1: the graph variant equals plain gating.
    single = [x[:1] for x in a]
    for g, p in zip(with_graph(single), no_graph(single)):
        torch.testing.assert_close(g, p)


@pytest.mark.parametrize(
    "M, C, r, cat_hidden, add_hidden",
    [(2, 8, 0, 4, 2), (4, 64, 0, 32, 8), (2, 8, 3, 5, 2), (3, 2, 100, 1, 1)],
)
def test_hidden_widths(M, C, r, cat_hidden, add_hidden) -> None:
    fusion = SPAMFM(M, C, reduction=r)
    assert fusion.excite["cat"][0][0].out_features == cat_hidden
    assert fusion.excite["add"][0][0].out_features == add_hidden
    assert fusion.excite["mul"][M - 1][0].out_features == add_hidden
    assert fusion.excite["cat"][0][0].in_features == M * C


def test_only_selected_gates_have_parameters_and_gate_range() -> None:
    torch.manual_seed(0)
    fusion = SPAMFM(2, 4, gates=("add",))
    assert set(fusion.excite) == {"add"}
    feats = [torch.rand(3, 4) + 0.1 for _ in range(2)]
    for f, o in zip(feats, fusion(feats)):
        ratio = o / f
        assert ((ratio > 0) & (ratio < 1)).all()  # one sigmoid gate
    full = SPAMFM(2, 4)
    for f, o in zip(feats, full(feats)):
        ratio = o / f
        assert ((ratio > 0) & (ratio < 3)).all()  # three sigmoid gates summed


def test_every_parameter_gets_a_gradient() -> None:
    fusion = SPAMFM(3, 5)
    feats = [torch.randn(4, 5, 2, 2, requires_grad=True) for _ in range(3)]
    sum(o.sum() for o in fusion(feats)).backward()
    for name, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert all(f.grad is not None for f in feats)


def test_zero_features_give_finite_output() -> None:
    fusion = SPAMFM(2, 3)
    out = fusion([torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)])
    assert all(torch.isfinite(o).all() for o in out)


@pytest.mark.parametrize("gates", [(), ("cat", "max"), ("add", "add")])
def test_bad_gates_raise(gates) -> None:
    with pytest.raises(ConfigError) as err:
        SPAMFM(2, 4, gates=gates)
    assert err.value.key == "teacher.spamfm_gates"
