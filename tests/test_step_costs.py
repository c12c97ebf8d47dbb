"""Issue 13, steps that grew faster than the math: PLE on per-task input runs its last level (and the task mixtures
of the level before) on each task's own rows only, with the same outputs as running every branch on all rows;
trace-norm Tucker takes its norms and subgradients from the small Gram matrix of each unfolding, equal to the SVD's."""

from __future__ import annotations

import pytest
import torch

from mtlkit.data.spec import DataInfo, TaskSpec
from mtlkit.methods.baselines import _flatten
from mtlkit.methods.ple import PLENet
from mtlkit.methods.trace_norm import nuclear_norm, nuclear_norm_gram, tensor_trace_norm, unfold

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------- PLE
def _ple(levels: int, T: int = 4, hidden: list[int] | None = None) -> PLENet:
    info = DataInfo(TaskSpec("regression", tuple(f"t{i}" for i in range(T)), (1,) * T), (5,), False)
    torch.manual_seed(levels)
    return PLENet(info, hidden or [], [3], "relu", 0.0, levels, 2, 2, 4).double()


def _all_rows(net: PLENet, x: torch.Tensor) -> torch.Tensor:
    """The former per-task forward: every level, every task branch on all T·B rows, then task t on its own rows."""
    z = net.bottom(_flatten(x, net.shared, net.n_tasks))
    T, B = z.shape[0], z.shape[1]
    h = net.extract(z.reshape(T * B, -1)).reshape(T, T, B, -1)
    idx = torch.arange(T)
    return net.heads(h[idx, idx])


@pytest.mark.parametrize("levels", [2, 3, 4])
@pytest.mark.parametrize("hidden", [[], [6]])
def test_ple_own_rows_equals_all_rows(levels: int, hidden: list[int]) -> None:
    net = _ple(levels, hidden=hidden)
    x = torch.randn(4, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net(x), _all_rows(net, x), rtol=1e-10, atol=1e-12)
    params = list(net.parameters())
    g_new = torch.autograd.grad(net(x).pow(2).sum(), params, allow_unused=True)
    g_old = torch.autograd.grad(_all_rows(net, x).pow(2).sum(), params, allow_unused=True)
    for a, b in zip(g_new, g_old, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------- trace-norm Tucker through the Gram matrix
@pytest.mark.parametrize("shape", [(3, 40), (40, 3), (7, 7), (1, 12)])
def test_gram_nuclear_norm_equals_the_svd(shape: tuple[int, int]) -> None:
    M = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    a, (ga,) = nuclear_norm(M), torch.autograd.grad(nuclear_norm(M), M)
    b, (gb,) = nuclear_norm_gram(M), torch.autograd.grad(nuclear_norm_gram(M), M)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ga, gb, rtol=1e-8, atol=1e-10)


def test_gram_nuclear_norm_of_a_rank_deficient_matrix_drops_the_null_directions() -> None:
    """Rank 2 in 4 × 9: the value is the SVD's; the subgradient is U_r V_rᵀ (a valid one; the SVD adds arbitrary
    null-space pairs that float rounding picks)."""
    g = torch.Generator().manual_seed(2)
    M = (torch.randn(4, 2, generator=g, dtype=torch.float64) @ torch.randn(2, 9, generator=g, dtype=torch.float64))
    M.requires_grad_(True)
    val = nuclear_norm_gram(M)
    (grad,) = torch.autograd.grad(val, M)
    U, S, Vh = torch.linalg.svd(M.detach(), full_matrices=False)
    torch.testing.assert_close(val, S.sum(), rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(grad, U[:, :2] @ Vh[:2], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(28, 64, 9), (5, 5, 1, 8, 6)])
def test_tucker_norm_and_gradient_match_the_svd_route_in_float32(shape: tuple[int, ...]) -> None:
    W = torch.randn(*shape, generator=torch.Generator().manual_seed(3), requires_grad=True)
    val = tensor_trace_norm(W, "tucker")  # with a gradient: the Gram route
    (grad,) = torch.autograd.grad(val, W)
    ref = torch.stack([nuclear_norm(unfold(W, i)) for i in range(W.dim())]).sum()
    (gref,) = torch.autograd.grad(ref, W)
    torch.testing.assert_close(val, ref, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(grad, gref, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # analysis: svdvals, as before
        torch.testing.assert_close(tensor_trace_norm(W, "tucker"), ref.detach(), rtol=1e-6, atol=0)
