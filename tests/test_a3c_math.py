"""A3C's returns and loss against slow references in the paper's notation, and BPTT."""
import pytest
import torch

from Agent.a3c.math import a3c_loss, n_step_returns
from NN.networks import A3CNet

GAMMA = 0.99

pytestmark = pytest.mark.usefixtures("float64_default")


def slow_returns(r, d, v_xT, gamma):
    """R_t = sum_{i=t}^{n} gamma^(i-t) r_i, where n is the first done at or after t;
    if the rollout has no done from t on, + gamma^(T-t) V(x_T)."""
    T = len(r)
    out = []
    for t in range(T):
        total, ended = 0.0, False
        for i in range(t, T):
            total += gamma ** (i - t) * float(r[i])
            if d[i]:
                ended = True
                break
        if not ended:
            total += gamma ** (T - t) * float(v_xT)
        out.append(total)
    return torch.tensor(out)


@pytest.mark.parametrize("done_steps", [(), (2,), (0, 4), (6,), (2, 3)])
def test_n_step_returns_match_the_sum_definition(done_steps):
    g = torch.Generator().manual_seed(len(done_steps))
    r = torch.randn(7, generator=g)
    d = torch.zeros(7, dtype=torch.bool)
    d[list(done_steps)] = True
    v_xT = torch.tensor(2.5)
    got = n_step_returns(r, d, v_xT, GAMMA)
    torch.testing.assert_close(got, slow_returns(r, d, v_xT, GAMMA))


def test_terminal_last_step_ignores_the_bootstrap_and_mid_terminal_cuts_the_sum():
    r = torch.tensor([1.0, 0.0, 1.0, 0.0])
    d = torch.tensor([False, True, False, True])
    got = n_step_returns(r, d, torch.tensor(100.0), 0.5)
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0, 1.0, 0.0]))
    d[-1] = False  # no terminal at the end: bootstrap 100 enters steps 2 and 3 only
    got = n_step_returns(r, d, torch.tensor(100.0), 0.5)
    torch.testing.assert_close(got, torch.tensor([1.0, 0.0, 1.0 + 0.25 * 100, 0.5 * 100]))


def test_returns_are_targets_without_gradient():
    v = torch.tensor(1.0, requires_grad=True)
    assert not n_step_returns(torch.ones(3), torch.zeros(3), v, GAMMA).requires_grad


def slow_a3c_loss(logits, values, actions, returns, beta, c_v):
    """(1/T) sum_t [ -log pi(a_t|x_t) A_t + c_v (R_t - V_t)^2 - beta H(pi(.|x_t)) ], A_t constant."""
    T = len(actions)
    total = 0.0
    for t in range(T):
        pi = torch.softmax(logits[t], -1)
        advantage = float(returns[t] - values[t].detach())
        h = -sum(pi[a] * torch.log(pi[a]) for a in range(len(pi)))
        total = total + (-torch.log(pi[actions[t]]) * advantage
                         + c_v * (returns[t] - values[t]) ** 2 - beta * h)
    return total / T


def test_loss_value_and_gradients_match_the_reference():
    g = torch.Generator().manual_seed(0)
    T, A = 6, 4
    logits = (torch.randn(T, A, generator=g) * 2).requires_grad_()
    values = torch.randn(T, generator=g).requires_grad_()
    actions = torch.randint(0, A, (T,), generator=g)
    returns = torch.randn(T, generator=g) * 3
    loss, stats = a3c_loss(logits, values, actions, returns, entropy_coef=0.01, critic_coef=0.5)
    ref = slow_a3c_loss(logits, values, actions, returns, 0.01, 0.5)
    torch.testing.assert_close(loss, ref)
    g_logits, g_values = torch.autograd.grad(loss, (logits, values))
    r_logits, r_values = torch.autograd.grad(ref, (logits, values))
    torch.testing.assert_close(g_logits, r_logits)
    torch.testing.assert_close(g_values, r_values)
    # and in closed form: dL/dV_t = -2 c_v (R_t - V_t) / T (the actor term holds A_t fixed)
    torch.testing.assert_close(g_values, -2 * 0.5 * (returns - values.detach()) / T)
    # dL/dz_t = -A_t (e_{a_t} - pi_t) / T + beta pi_t (log pi_t + H_t) / T
    pi = torch.softmax(logits.detach(), -1)
    log_pi = torch.log(pi)
    H = -(pi * log_pi).sum(-1, keepdim=True)
    onehot = torch.nn.functional.one_hot(actions, A)
    adv = (returns - values.detach()).unsqueeze(-1)
    closed = (-adv * (onehot - pi) + 0.01 * pi * (log_pi + H)) / T
    torch.testing.assert_close(g_logits, closed)
    assert stats["entropy"] > 0 and stats["value_loss"] > 0


def test_unroll_reproduces_step_by_step_acting_with_resets():
    torch.manual_seed(1)
    net = A3CNet((5,), 3, recurrent=True, hidden_size=16, mlp_hidden=64)
    obs = torch.randn(7, 5)
    starts = torch.tensor([False, False, False, True, False, False, False])
    h0 = (torch.randn(1, 16), torch.randn(1, 16))
    logits, values = net.unroll(obs, h0, starts)
    hidden = h0
    for t in range(7):
        if starts[t]:
            hidden = net.initial_hidden()
        step_logits, step_value, hidden = net(obs[t:t + 1], hidden)
        torch.testing.assert_close(step_logits[0], logits[t])
        torch.testing.assert_close(step_value[0], values[t])


def test_bptt_reaches_the_first_step_of_the_rollout_and_stops_at_an_episode_start():
    torch.manual_seed(2)
    net = A3CNet((5,), 3, recurrent=True, hidden_size=16, mlp_hidden=64)
    obs = torch.randn(8, 5, requires_grad=True)
    no_starts = torch.zeros(8, dtype=torch.bool)
    _, values = net.unroll(obs, net.initial_hidden(), no_starts)
    (grad,) = torch.autograd.grad(values[-1], obs)
    assert grad[0].abs().sum() > 0            # the last value depends on the first observation
    # and the LSTM's recurrent weights get a gradient through the whole chain
    _, values = net.unroll(obs, net.initial_hidden(), no_starts)
    values[-1].backward()
    assert net.core.weight_hh.grad.abs().sum() > 0

    starts = no_starts.clone()
    starts[4] = True                          # a new episode begins at step 4
    _, values = net.unroll(obs, net.initial_hidden(), starts)
    (grad,) = torch.autograd.grad(values[-1], obs)
    assert torch.all(grad[:4] == 0) and grad[4].abs().sum() > 0


def test_feed_forward_net_has_no_memory():
    torch.manual_seed(3)
    net = A3CNet((4, 84, 84), 6, recurrent=False)
    assert net.initial_hidden() is None and net.kind == "a3c_cnn_ff"
    obs = torch.randint(0, 255, (3, 4, 84, 84), dtype=torch.uint8)
    logits, values = net.unroll(obs, None, torch.zeros(3, dtype=torch.bool))
    assert logits.shape == (3, 6) and values.shape == (3,)
    one, _, _ = net(obs[2:3])
    torch.testing.assert_close(one[0], logits[2], rtol=1e-5, atol=1e-5)
    sizes = [tuple(m.weight.shape) for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert sizes[:3] == [(16, 4, 8, 8), (32, 16, 4, 4), (256, 32 * 9 * 9)]   # the paper's FF net


def test_recurrent_atari_net_is_the_originals():
    net = A3CNet((4, 84, 84), 6, recurrent=True)
    assert net.kind == "a3c_cnn_lstm"
    assert isinstance(net.core, torch.nn.LSTMCell) and net.core.hidden_size == 256
    assert net.core.input_size == 32 * 9 * 9


def test_lstm_step_is_torch_lstm_cell():
    """The rollout's LSTM (input gates batched over time) computes nn.LSTMCell exactly."""
    torch.manual_seed(4)
    net = A3CNet((6,), 2, recurrent=True, hidden_size=8, mlp_hidden=16)
    x = net.features(torch.randn(3, 6))
    hidden = (torch.randn(3, 8), torch.randn(3, 8))
    expected = net.core(x, hidden)
    got = net._lstm_step(net._input_gates(x), hidden)
    torch.testing.assert_close(got[0], expected[0])
    torch.testing.assert_close(got[1], expected[1])
