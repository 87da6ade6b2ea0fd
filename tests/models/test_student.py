"""Student: shapes, consensus heads (TRN determinism), partial BN, differentiable maps."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch

from sakdn.config import StudentConfig
from sakdn.models.consensus import AvgConsensus, TRNConsensus, unrank_combination
from sakdn.models.student import Student

K, D = 5, 6


def _config(**kw) -> StudentConfig:
    return StudentConfig(**{"backbone": "small_cnn", "width": 4, "segments": 3, **kw})


@pytest.mark.parametrize("segments", [1, 3, 8])
@pytest.mark.parametrize("consensus", ["avg", "trn"])
def test_output_shapes(segments: int, consensus: str) -> None:
    torch.manual_seed(0)
    net = Student(_config(segments=segments, consensus=consensus), K, D, frame_size=32)
    out = net(torch.randn(2, segments, 3, 32, 32), return_maps=True)
    assert out.logits.shape == (2, K) and out.semantic.shape == (2, D)
    widths, sides = (4, 8, 16, 32, 32), (16, 8, 4, 2, 1)
    assert [tuple(m.shape) for m in out.maps] == [(2, c, s, s) for c, s in zip(widths, sides)]
    assert net(torch.randn(2, segments, 3, 32, 32)).maps == []


@pytest.mark.parametrize("backbone", ["resnet18", "googlenet"])
def test_torchvision_students_run(backbone: str) -> None:
    net = Student(_config(backbone=backbone, consensus="avg", segments=2), K, D, frame_size=32)
    out = net(torch.randn(1, 2, 3, 32, 32), return_maps=True)
    assert out.logits.shape == (1, K) and len(out.maps) == 5


def test_semantic_maps_and_avg_logits_match_manual_computation() -> None:
    torch.manual_seed(0)
    net = Student(_config(consensus="avg", segments=3), K, D, frame_size=32).eval()
    frames = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        out = net(frames, return_maps=True)
        for b in range(2):
            maps = net.backbone.forward_intermediates(frames[b])  # the 3 frames of clip b
            f = net.fc(maps[-1].mean(dim=(2, 3)))  # (3, D)
            torch.testing.assert_close(out.semantic[b], f.mean(dim=0))
            logits = net.consensus.classifier(f).mean(dim=0)
            torch.testing.assert_close(out.logits[b], logits)
            for m_out, m_ref in zip(out.maps, maps):
                torch.testing.assert_close(m_out[b], m_ref.mean(dim=0))


def test_unrank_combination_matches_lexicographic_order() -> None:
    for n, k in [(6, 3), (5, 1), (7, 7), (8, 4)]:
        combos = list(itertools.combinations(range(n), k))
        assert [unrank_combination(n, k, r) for r in range(len(combos))] == combos


def test_trn_eval_tuples_are_all_or_an_even_fixed_subset() -> None:
    trn = TRNConsensus(5, D, K)
    for k in (5, 4, 3, 2):
        got = [tuple(t) for t in getattr(trn, f"eval_tuples_{k}").tolist()]
        assert got == list(itertools.combinations(range(5), k))
    capped = TRNConsensus(6, D, K, eval_relations=4)
    sub = [tuple(t) for t in capped.eval_tuples_3.tolist()]
    assert len(set(sub)) == 4 and all(list(t) == sorted(t) for t in sub)
    assert sub == sorted(sub) and sub[0] != (0, 1, 2) and sub[-1] != (3, 4, 5)


def test_trn_eval_is_deterministic_and_equals_the_expected_training_sum() -> None:
    torch.manual_seed(0)
    a = TRNConsensus(3, D, K, relations_per_scale=1, seed=7).eval()
    torch.manual_seed(0)
    b = TRNConsensus(3, D, K, relations_per_scale=1, seed=7).eval()
    f = torch.randn(4, 3, D)
    with torch.no_grad():
        out = a(f)
        torch.testing.assert_close(out, a(f), rtol=0, atol=0)
        torch.testing.assert_close(out, b(f), rtol=0, atol=0)
        # scale 3: the single full tuple; scale 2: 1 of 3 pairs in training → mean of all 3
        full = a.mlps[0](f.reshape(4, 3 * D))
        pairs = [
            a.mlps[1](torch.cat([f[:, i], f[:, j]], dim=1)) for i, j in [(0, 1), (0, 2), (1, 2)]
        ]
        torch.testing.assert_close(out, full + sum(pairs) / 3)


def test_trn_training_draws_vary_are_seeded_and_leave_global_rngs_alone() -> None:
    a = TRNConsensus(8, D, K, relations_per_scale=3, seed=1).train()
    b = TRNConsensus(8, D, K, relations_per_scale=3, seed=1).train()
    c = TRNConsensus(8, D, K, relations_per_scale=3, seed=2).train()
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    py_state = random.getstate()
    draws = [a.sample_tuples(4, 4, 3).tolist() for _ in range(5)]  # scale k=4
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == np_state[1].tolist()
    assert random.getstate() == py_state
    assert len({str(d) for d in draws}) > 1  # training relations change between steps
    for d in draws:
        assert len({tuple(t) for t in d}) == 3 and all(t == sorted(t) for t in d)
    assert [b.sample_tuples(4, 4, 3).tolist() for _ in range(5)] == draws
    assert [c.sample_tuples(4, 4, 3).tolist() for _ in range(5)] != draws
    f = torch.randn(2, 8, D)
    assert not torch.allclose(a(f), a(f))  # two training passes use different relations


def test_trn_with_huge_scales_samples_without_enumerating() -> None:
    trn = TRNConsensus(30, 2, 3, relations_per_scale=2, eval_relations=5).train()
    assert math.comb(30, 15) > 10_000
    picks = trn.sample_tuples(trn.scales.index(15), 15, 2)
    assert picks.shape == (2, 15) and (picks.diff(dim=1) > 0).all()
    assert trn.eval_tuples_15.shape == (5, 15)


def test_single_segment_is_a_frame_classifier() -> None:
    torch.manual_seed(0)
    trn = TRNConsensus(1, D, K)
    f = torch.randn(3, 1, D)
    expected = trn.mlps[0](f[:, 0])
    torch.testing.assert_close(trn.train()(f), expected)
    torch.testing.assert_close(trn.eval()(f), expected)
    avg = AvgConsensus(D, K)
    torch.testing.assert_close(avg(f), avg.classifier(f[:, 0]))


def _bns(net: Student) -> list[torch.nn.Module]:
    return [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_partial_bn_freezes_all_but_the_first_bn() -> None:
    torch.manual_seed(0)
    net = Student(_config(partial_bn=True, consensus="avg"), K, D, frame_size=32).train()
    first, rest = _bns(net)[0], _bns(net)[1:]
    assert first.training and first.weight.requires_grad
    assert rest and all(not bn.training for bn in rest)
    assert all(not p.requires_grad for bn in rest for p in bn.parameters())
    assert net.training and net.backbone.stages[0][0].training  # other layers still train
    before = [bn.running_mean.clone() for bn in _bns(net)]
    net(torch.randn(2, 3, 3, 32, 32)).logits.sum().backward()
    after = [bn.running_mean for bn in _bns(net)]
    assert not torch.equal(before[0], after[0])
    assert all(torch.equal(x, y) for x, y in zip(before[1:], after[1:]))
    assert all(p.grad is None for bn in rest for p in bn.parameters())
    net.eval()
    assert not any(bn.training for bn in _bns(net))


def test_without_partial_bn_every_bn_trains() -> None:
    net = Student(_config(partial_bn=False), K, D, frame_size=32).train()
    assert all(bn.training and bn.weight.requires_grad for bn in _bns(net))


def test_param_groups_skip_decay_on_biases_and_bn() -> None:
    net = Student(_config(partial_bn=True), K, D, frame_size=32)
    decay, no_decay = net.param_groups(0.01, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert decay["lr"] == no_decay["lr"] == 0.01
    ids = lambda ps: {id(p) for p in ps}  # noqa: E731
    first_bn = _bns(net)[0]
    assert ids([first_bn.weight, first_bn.bias, net.fc.bias]) <= ids(no_decay["params"])
    assert ids([net.fc.weight, net.backbone.stages[0][0].weight]) <= ids(decay["params"])
    trainable = ids(p for p in net.parameters() if p.requires_grad)
    assert ids(decay["params"]) | ids(no_decay["params"]) == trainable
    assert not ids(decay["params"]) & ids(no_decay["params"])


def test_maps_carry_gradient_to_every_backbone_parameter() -> None:
    torch.manual_seed(0)
    net = Student(_config(partial_bn=False, consensus="trn"), K, D, frame_size=32).train()
    out = net(torch.randn(2, 3, 3, 32, 32), return_maps=True)
    sum(m.pow(2).mean() for m in out.maps).backward()
    for name, p in net.backbone.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_wrong_segment_count_raises() -> None:
    net = Student(_config(segments=3), K, D, frame_size=32)
    with pytest.raises(ValueError):
        net(torch.randn(2, 4, 3, 32, 32))
