"""Shared Adam: the same trajectory as torch.optim.Adam, shared across processes."""
import pytest
import torch
import torch.multiprocessing as mp

import NN.shared_adam
from NN.networks import ACERNet
from NN.shared_adam import SharedAdam, polyak_update


@pytest.mark.parametrize("fused", [True, False])
def test_matches_torch_adam_over_many_steps(monkeypatch, fused):
    """Both the fused kernel and the foreach fallback follow torch.optim.Adam."""
    monkeypatch.setattr(NN.shared_adam, "_HAS_FUSED_ADAM", fused and NN.shared_adam._HAS_FUSED_ADAM)
    torch.manual_seed(0)
    ours = ACERNet((8,), 3, mlp_hidden=16)
    ref = ACERNet((8,), 3, mlp_hidden=16)
    ref.load_state_dict(ours.state_dict())
    opt = SharedAdam(ours.parameters(), lr=3e-3, eps=1e-8)
    ref_opt = torch.optim.Adam(ref.parameters(), lr=3e-3, eps=1e-8)
    gen = torch.Generator().manual_seed(1)
    for _ in range(300):
        x = torch.randn(16, 8, generator=gen)
        for net in (ours, ref):
            net.zero_grad()
            logits, q = net(x)
            (logits.pow(2).mean() + (q - 1).pow(2).mean()).backward()
        opt.step([p.grad for p in ours.parameters()])
        ref_opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert int(opt.step_count) == 300
    ref_state = ref_opt.state_dict()["state"]
    for i, m in enumerate(opt.exp_avg):
        torch.testing.assert_close(m, ref_state[i]["exp_avg"], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(opt.exp_avg_sq[i], ref_state[i]["exp_avg_sq"], rtol=1e-5, atol=1e-9)


def test_state_dict_round_trip():
    net = ACERNet((4,), 2)
    opt = SharedAdam(net.parameters())
    for _ in range(3):
        opt.step([torch.randn_like(p) for p in net.parameters()])
    other = SharedAdam(ACERNet((4,), 2).parameters())
    other.load_state_dict(opt.state_dict())
    assert int(other.step_count) == 3
    for a, b in zip(other.exp_avg + other.exp_avg_sq, opt.exp_avg + opt.exp_avg_sq):
        assert torch.equal(a, b)


def _step_many(opt, n):
    for _ in range(n):
        opt.step([torch.ones_like(p) * 1e-3 for p in opt.params])


def test_step_count_is_exact_across_processes():
    net = ACERNet((4,), 2)
    net.share_memory()
    opt = SharedAdam(net.parameters())
    before = [p.detach().clone() for p in net.parameters()]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_step_many, args=(opt, 500)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert int(opt.step_count) == 1000
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_polyak_update():
    avg = [torch.zeros(3)]
    polyak_update(avg, [torch.ones(3)], 0.01)
    torch.testing.assert_close(avg[0], torch.full((3,), 0.01))
    polyak_update(avg, [torch.ones(3)], 0.01)
    torch.testing.assert_close(avg[0], torch.full((3,), 0.01 + 0.99 * 0.01))


def _sparse_or_zero_steps(opt, n, seed):
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        if seed == 0:  # rare non-zero gradients: exp_avg_sq stays about 0 in between
            grads = [(torch.rand(p.shape, generator=gen) < 0.01).float() * torch.randn(p.shape, generator=gen)
                     for p in opt.params]
        else:
            grads = [torch.zeros_like(p) for p in opt.params]
        opt.step(grads)


def test_concurrent_steps_never_divide_a_fresh_moment_by_eps():
    """Regression: with the moments updated outside a lock, a worker could step with another's
    exp_avg but a stale exp_avg_sq of ~0 and move a weight by lr * m / eps (seen: |w| ~ 3e4)."""
    param = torch.zeros(200_000).share_memory_()
    lr, steps = 1e-4, 1500
    opt = SharedAdam([param], lr=lr)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_sparse_or_zero_steps, args=(opt, steps, i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    # Adam moves a weight by at most about lr * (1 - b1) / sqrt(1 - b2) / (1 - b1^t) per step.
    assert float(param.abs().max()) < 2 * steps * lr * 10


def _adam_reference(param: torch.Tensor, grads: list[torch.Tensor], lr: float) -> torch.Tensor:
    ref = param.detach().clone().contiguous().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=lr, foreach=False, fused=False)
    for g in grads:
        ref.grad = g.contiguous().clone()
        opt.step()
    return ref.detach()


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("layout", ["channels_last", "transposed", "sliced"])
def test_gradients_in_another_layout_than_the_parameter_give_torch_adams_step(monkeypatch, fused, layout):
    """A gradient whose strides differ from its parameter's (a channels-last conv gradient, a
    transposed or a sliced view) is stepped by its values, not its raw memory: the result is
    torch.optim.Adam's to 1e-6 relative, on the fused kernel and on the foreach path. (The
    fused kernel walks raw memory: fed a channels-last gradient as it is, its step had a
    cosine of 0.02 with Adam's.)"""
    monkeypatch.setattr(NN.shared_adam, "_HAS_FUSED_ADAM", fused and NN.shared_adam._HAS_FUSED_ADAM)
    gen = torch.Generator().manual_seed(4)
    shape = (32, 4, 8, 8) if layout == "channels_last" else (48, 40)

    def odd_layout(values: torch.Tensor) -> torch.Tensor:
        if layout == "channels_last":
            g = values.contiguous(memory_format=torch.channels_last)
        elif layout == "transposed":
            g = values.t().contiguous().t()
        else:
            g = torch.zeros(values.shape[0], 2 * values.shape[1])[:, ::2]
            g.copy_(values)
        assert g.stride() != values.stride() and torch.equal(g, values)
        return g
    param = torch.randn(shape, generator=gen)
    grads = [torch.randn(shape, generator=gen) for _ in range(5)]
    ours = param.clone().share_memory_()
    opt = SharedAdam([ours], lr=1e-3)
    for g in grads:
        opt.step([odd_layout(g)])
    expected = _adam_reference(param, grads, 1e-3)
    torch.testing.assert_close(ours, expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))
    assert ours.is_contiguous()


@pytest.mark.parametrize("bad, message", [
    (lambda p: torch.zeros(3, 3), "shape"),
    (lambda p: torch.zeros_like(p, dtype=torch.float64), "dtype"),
])
def test_a_gradient_that_cannot_be_a_parameters_gradient_is_refused_with_a_clear_error(bad, message):
    param = torch.zeros(4, 5)
    opt = SharedAdam([param])
    with pytest.raises(ValueError, match=message):
        opt.step([bad(param)])
    assert int(opt.step_count) == 0 and torch.equal(param, torch.zeros(4, 5))
