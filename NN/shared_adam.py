"""Adam whose moments and step count live in shared memory, for Hogwild workers.

Every worker process holds a handle to the same tensors: the global network's
parameters, ``exp_avg``, ``exp_avg_sq`` and the step counter. A worker computes
gradients on its local copy of the network and hands them to :meth:`step`,
which applies the same update as ``torch.optim.Adam`` (Kingma & Ba 2015):

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Departure from the original: the update itself (step counter, moments and
parameters) is made under a lock; reads of the parameters stay lock-free
(workers copy the global weights without locking, Hogwild style). The
original's fully unlocked shared Adam has a race that can blow up a weight:
when one worker's ``exp_avg`` update for a parameter lands before its
``exp_avg_sq`` update, another worker stepping at that moment divides that
``exp_avg`` by ``sqrt(v) + eps`` with ``v`` still about 0 (a rarely active
unit), moving the weight by ``lr * m / 1e-8``. In our ACER runs that sent
weights to |w| ~ 190 within minutes, then NaN (tests/test_shared_adam.py
reproduces it with sparse gradients). The lock also makes the step count
equal to the number of updates exactly.

The step runs PyTorch's fused CPU Adam kernel (``torch._fused_adam_``, what
``torch.optim.Adam(fused=True)`` calls): one pass over parameters, gradients and
moments instead of eight, so a shorter time under the lock (bench/throughput.py
prints the update's time). Where the kernel is missing, the
same update runs as ``torch._foreach_*`` calls.

The fused kernel walks the raw memory of parameters, gradients and moments in one order, so it
is only Adam when all of them share one layout. A gradient in another layout (a channels-last
network's conv gradients, a transposed or sliced view) is first copied into its parameter's
layout (:func:`in_parameter_layout`), and one that cannot be a parameter's gradient (another
shape, dtype or device) is refused with an error. Before this, channels-last conv gradients
went in as they were and every conv weight was moved by another weight's gradient.
"""
from __future__ import annotations

import math
import multiprocessing as mp
from typing import Iterable

import torch


_HAS_FUSED_ADAM = hasattr(torch, "_fused_adam_")


def in_parameter_layout(params: list[torch.Tensor], grads: list[torch.Tensor]) -> list[torch.Tensor]:
    """``grads`` with each one in its parameter's memory layout (the same strides), copying
    only those that differ; a ValueError names a gradient of another shape, dtype or device."""
    aligned = []
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        if g.shape != p.shape or g.dtype != p.dtype or g.device != p.device:
            raise ValueError(f"gradient {i} does not fit its parameter: shape {tuple(g.shape)}, "
                             f"dtype {g.dtype}, device {g.device} for a parameter of shape "
                             f"{tuple(p.shape)}, dtype {p.dtype}, device {p.device}")
        if g.stride() != p.stride():
            g = torch.empty_like(p).copy_(g)   # empty_like keeps p's strides; copy_ goes by index
        aligned.append(g)
    return aligned


class SharedAdam:
    """Adam over shared-memory parameters, steppable from many processes."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float = 1e-4,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 lock=None):
        self.params = [p for p in params]
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.exp_avg = [torch.zeros_like(p).share_memory_() for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p).share_memory_() for p in self.params]
        self.step_count = torch.zeros((), dtype=torch.int64).share_memory_()
        self.lock = lock if lock is not None else mp.get_context("spawn").Lock()

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor]) -> int:
        """Apply one Adam update with ``grads`` (one tensor per parameter); return its step number."""
        beta1, beta2 = self.betas
        grads = in_parameter_layout(self.params, grads)
        with self.lock:
            self.step_count += 1
            t = int(self.step_count)
            if _HAS_FUSED_ADAM:
                # on the parameters' device, as torch.optim.Adam(fused=True) keeps its step
                step = torch.tensor(float(t), device=self.params[0].device)
                torch._fused_adam_(self.params, grads, self.exp_avg, self.exp_avg_sq, [],
                                   [step] * len(self.params), amsgrad=False, lr=self.lr,
                                   beta1=beta1, beta2=beta2, weight_decay=0.0, eps=self.eps,
                                   maximize=False)
                return t
            bias1 = 1.0 - beta1 ** t
            bias2_sqrt = math.sqrt(1.0 - beta2 ** t)
            torch._foreach_lerp_(self.exp_avg, grads, 1.0 - beta1)
            torch._foreach_mul_(self.exp_avg_sq, beta2)
            torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, value=1.0 - beta2)
            denom = torch._foreach_sqrt(self.exp_avg_sq)
            torch._foreach_div_(denom, bias2_sqrt)
            torch._foreach_add_(denom, self.eps)
            torch._foreach_addcdiv_(self.params, self.exp_avg, denom, value=-self.lr / bias1)
        return t

    def state_dict(self) -> dict:
        """Plain tensors and numbers: step, moments and hyperparameters."""
        return {"step": int(self.step_count), "exp_avg": [m.clone() for m in self.exp_avg],
                "exp_avg_sq": [v.clone() for v in self.exp_avg_sq],
                "lr": self.lr, "betas": list(self.betas), "eps": self.eps}

    def load_state_dict(self, state: dict) -> None:
        """Copy a :meth:`state_dict` into the shared tensors in place."""
        if len(state["exp_avg"]) != len(self.params):
            raise ValueError("optimizer state does not match the network's parameters")
        with torch.no_grad():
            self.step_count.fill_(int(state["step"]))
            for dst, src in zip(self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"]):
                dst.copy_(src)


@torch.no_grad()
def polyak_update(average: list[torch.Tensor], source: list[torch.Tensor], tau: float) -> None:
    """``average <- tau * source + (1 - tau) * average``, in place (ACER's average network)."""
    torch._foreach_lerp_(average, source, tau)
