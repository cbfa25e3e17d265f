"""fastxent.torch with z-loss, soft-capping and focal terms: the values and gradients of
fastxent's NumPy API and of the defining formulas (tests/option_reference.py, PyTorch's
autograd), derivatives of every order (gradcheck, gradgradcheck), the PyTorch fallback, the
modules, and torchvision's published sigmoid focal loss."""

import itertools
import warnings

import numpy as np
import pytest
from option_reference import autograd_terms, cross_entropy_terms

import fastxent
from helpers import torch_generator

torch = pytest.importorskip("torch")
fxt = pytest.importorskip("fastxent.torch")


REDUCTIONS = ("mean", "sum", "none")
TERMS = [{"z_loss": 0.01}, {"softcap": 3.0}, {"focal_gamma": 2.0},
         {"z_loss": 1e-3, "softcap": 4.0, "focal_gamma": 0.5, "focal_alpha": [.2, .4, .6, .8, 1.]}]
LAYOUTS = {"C": (5,), "NC": (6, 5), "NCHW": (3, 5, 2, 2)}


def _case(layout, target_kind, ignore, dtype=torch.float64):
    shape = LAYOUTS[layout]
    g = torch_generator(layout, target_kind, ignore)
    x = torch.randn(shape, dtype=torch.float64, generator=g).mul(3).to(dtype)
    axis = 1 if len(shape) > 1 else 0
    rows = shape[:axis] + shape[axis + 1:]
    if target_kind == "prob":
        target = torch.softmax(torch.randn(shape, dtype=torch.float64, generator=g), axis)
        target = target.to(dtype)
    else:
        target = torch.randint(0, 5, rows, generator=g)
        if ignore is not None and target.dim():
            target.view(-1)[::3] = ignore
    return x, target, axis


def _cases():
    for layout, target_kind, ignore, weighted, terms in itertools.product(
            LAYOUTS, ("index", "prob"), (None, 2), (False, True), range(len(TERMS))):
        if target_kind == "prob" and ignore is not None:
            continue
        yield layout, target_kind, ignore, weighted, terms


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("layout, target_kind, ignore, weighted, terms", list(_cases()))
def test_cross_entropy_is_fastxent_and_the_formula(layout, target_kind, ignore, weighted, terms,
                                                   reduction):
    x, target, axis = _case(layout, target_kind, ignore)
    weight = torch.linspace(0.5, 2.0, 5, dtype=torch.float64) if weighted else None
    kw = dict(TERMS[terms])
    options = dict(weight=weight, reduction=reduction, label_smoothing=0.1,
                   ignore_index=-100 if ignore is None else ignore)
    xg = x.clone().requires_grad_(True)
    loss = fxt.cross_entropy(xg, target, **options, **kw)
    loss.sum().backward()
    np_kw = dict(kw, weight=None if weight is None else weight.numpy(), reduction=reduction,
                 label_smoothing=0.1, axis=axis,
                 ignore_index=None if target_kind == "prob" else options["ignore_index"])
    expected_loss, expected_grad = fastxent.cross_entropy_loss_and_grad(
        x.numpy(), target.numpy(), **np_kw)
    np.testing.assert_array_equal(loss.detach().numpy(), expected_loss)
    np.testing.assert_array_equal(xg.grad.numpy(), expected_grad)
    if layout == "NC":                           # the independent formula, rows as they are
        ref_kw = dict(kw, weight=np_kw["weight"], label_smoothing=0.1,
                      ignore_index=np_kw["ignore_index"])
        ref_loss, ref_grad, _ = autograd_terms(cross_entropy_terms, x.numpy(), target.numpy(),
                                               reduction=reduction, **ref_kw)
        np.testing.assert_allclose(loss.detach().numpy(), ref_loss, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(xg.grad.numpy(), ref_grad, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("terms", range(len(TERMS)))
@pytest.mark.parametrize("layout, target_kind", [("NC", "index"), ("NCHW", "prob"),
                                                 ("C", "index")])
def test_cross_entropy_derivatives_of_every_order(layout, target_kind, terms, reduction):
    x, target, _ = _case(layout, target_kind, 2 if target_kind == "index" else None)
    weight = torch.linspace(0.5, 2.0, 5, dtype=torch.float64)
    ignore = 2 if target.dim() else -100        # a lone row that is ignored has a NaN mean

    def loss(z):
        return fxt.cross_entropy(z, target, weight=weight, reduction=reduction,
                                 label_smoothing=0.05, ignore_index=ignore, **TERMS[terms]) \
            if target_kind == "index" else \
            fxt.cross_entropy(z, target, weight=weight, reduction=reduction, **TERMS[terms])

    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (xg,))
    assert torch.autograd.gradgradcheck(loss, (xg,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("terms", [{"softcap": 2.0}, {"focal_gamma": 2.0, "focal_alpha": 0.25},
                                   {"softcap": 3.0, "focal_gamma": 0.7, "focal_alpha": 0.6}])
def test_binary_is_fastxent_and_has_derivatives_of_every_order(terms, reduction):
    g = torch_generator("binary", repr(terms), reduction)
    x = torch.randn(4, 3, dtype=torch.float64, generator=g).mul(3)
    y = torch.rand(4, 3, dtype=torch.float64, generator=g)
    pos_weight = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    weight = torch.rand(4, 1, dtype=torch.float64, generator=g)
    xg = x.clone().requires_grad_(True)
    loss = fxt.binary_cross_entropy_with_logits(xg, y, weight=weight, pos_weight=pos_weight,
                                                reduction=reduction, **terms)
    loss.sum().backward()
    expected_loss, expected_grad = fastxent.binary_cross_entropy_loss_and_grad(
        x.numpy(), y.numpy(), weight=weight.numpy(), pos_weight=pos_weight.numpy(),
        reduction=reduction, **terms)
    np.testing.assert_array_equal(loss.detach().numpy(), expected_loss)
    np.testing.assert_array_equal(xg.grad.numpy(), expected_grad)

    def f(z):
        return fxt.binary_cross_entropy_with_logits(z, y, weight=weight, pos_weight=pos_weight,
                                                    reduction=reduction, **terms)

    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (xg,))
    assert torch.autograd.gradgradcheck(f, (xg,))


def _torchvision_sigmoid_focal_loss(inputs, targets, alpha=0.25, gamma=2.0):
    """torchvision.ops.sigmoid_focal_loss as published (reduction "none"); torchvision itself
    is only a CUDA build on this package index."""
    p = torch.sigmoid(inputs)
    ce_loss = torch.nn.functional.binary_cross_entropy_with_logits(inputs, targets,
                                                                   reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce_loss * ((1 - p_t) ** gamma)
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    return loss


@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (-1.0, 2.0), (0.75, 0.5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torchvision_sigmoid_focal_loss(alpha, gamma, dtype):
    g = torch_generator("torchvision", alpha, gamma)
    x = torch.randn(8, 4, dtype=torch.float64, generator=g).mul(2)
    y = (torch.rand(8, 4, dtype=torch.float64, generator=g) > 0.5).to(torch.float64)
    expected = _torchvision_sigmoid_focal_loss(x, y, alpha, gamma)
    xg = x.to(dtype).detach().requires_grad_(True)
    got = fxt.binary_cross_entropy_with_logits(xg, y.to(dtype), reduction="none",
                                               focal_gamma=gamma, focal_alpha=alpha)
    xr = x.clone().requires_grad_(True)
    _torchvision_sigmoid_focal_loss(xr, y, alpha, gamma).sum().backward()
    got.sum().backward()
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == torch.float64 else dict(rtol=3e-6, atol=1e-7)
    torch.testing.assert_close(got.detach().double(), expected, **tol)
    torch.testing.assert_close(xg.grad.double(), xr.grad, **tol)


def test_fallback_uses_the_formula(monkeypatch):
    """Inputs the kernels do not cover (here float16, and a non-contiguous int32 target) get
    the loss from the PyTorch formula, with the one-time warning."""
    monkeypatch.setattr(fxt, "_warned", set())
    x, target, _ = _case("NC", "index", None)
    kw = dict(TERMS[3])
    expected = fxt.cross_entropy(x, target, **kw)
    with pytest.warns(RuntimeWarning, match="falling back to the loss's formula in PyTorch"):
        got = fxt.cross_entropy(x.half(), target, **kw)
    torch.testing.assert_close(got.double(), expected, rtol=2e-2, atol=1e-3)
    with pytest.warns(RuntimeWarning, match="falling back"):
        got = fxt.cross_entropy(x, target.int(), **kw)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    xb, yb = x[:, :3].contiguous(), torch.rand(6, 3, dtype=torch.float64)
    expected = fxt.binary_cross_entropy_with_logits(xb, yb, softcap=2.0, focal_gamma=2.0)
    with pytest.warns(RuntimeWarning, match="falling back"):
        got = fxt.binary_cross_entropy_with_logits(xb, yb.float(), softcap=2.0, focal_gamma=2.0)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)


def test_modules_carry_the_options():
    x, target, _ = _case("NC", "index", None)
    alpha = torch.tensor([.2, .4, .6, .8, 1.], dtype=torch.float64)
    module = fxt.CrossEntropyLoss(label_smoothing=0.1, z_loss=0.01, softcap=3.0,
                                  focal_gamma=2.0, focal_alpha=alpha)
    expected = fxt.cross_entropy(x, target, label_smoothing=0.1, z_loss=0.01, softcap=3.0,
                                 focal_gamma=2.0, focal_alpha=alpha.numpy())
    assert torch.equal(module(x, target), expected)
    assert not torch.equal(fxt.CrossEntropyLoss(label_smoothing=0.1)(x, target), expected)
    y = torch.rand(6, 5, dtype=torch.float64)
    bce = fxt.BCEWithLogitsLoss(softcap=2.0, focal_gamma=2.0, focal_alpha=0.25)
    assert torch.equal(bce(x, y), fxt.binary_cross_entropy_with_logits(
        x, y, softcap=2.0, focal_gamma=2.0, focal_alpha=0.25))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"softcap": 0.0}, "softcap must be None or a finite number > 0"),
    ({"z_loss": -1.0}, "z_loss must be a finite number >= 0"),
    ({"focal_gamma": float("nan")}, "focal_gamma"),
    ({"focal_alpha": [1.0, 2.0]}, "focal_alpha must be a number or have shape (5,)"),
])
def test_bad_options_raise_fastxent_errors(kwargs, fragment):
    x, target, _ = _case("NC", "index", None)
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        fxt.cross_entropy(x.requires_grad_(True), target, **kwargs)


def test_deprecated_arguments_do_not_combine_with_the_terms():
    x, target, _ = _case("NC", "index", None)
    with pytest.raises(ValueError, match="size_average/reduce"):
        fxt.cross_entropy(x, target, reduce=True, z_loss=0.1)
    with pytest.raises(ValueError, match="size_average/reduce"):
        fxt.binary_cross_entropy_with_logits(x, torch.rand_like(x), size_average=True,
                                             focal_gamma=1.0)


def test_retain_graph_and_in_place_edits_of_returned_gradients():
    x, target, _ = _case("NC", "index", None)
    xg = x.clone().requires_grad_(True)
    loss = fxt.cross_entropy(xg, target, **TERMS[3])
    (first,) = torch.autograd.grad(loss, xg, retain_graph=True)
    expected = first.clone()
    first.mul_(0)                                # the caller owns what it was given
    (second,) = torch.autograd.grad(loss, xg)
    torch.testing.assert_close(second, expected, rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xg = x.clone().requires_grad_(True)
        loss = fxt.cross_entropy(xg, target, **TERMS[3])
        xg.data.add_(0)
        loss.backward()


# ---- regressions found by a red-team pass -----------------------------------------------------

def test_scalar_focal_alpha_in_every_path(monkeypatch):
    monkeypatch.setattr(fxt, "_warned", set())
    x = torch.randn(4, 3, dtype=torch.float64, generator=torch_generator("alpha"))
    x.requires_grad_(True)
    y = torch.tensor([0, 1, 2, 0])
    loss = fxt.cross_entropy(x, y, focal_alpha=0.25, focal_gamma=1.0)
    (first,) = torch.autograd.grad(loss, x, create_graph=True)
    assert torch.autograd.gradgradcheck(
        lambda z: fxt.cross_entropy(z, y, focal_alpha=0.25, focal_gamma=1.0), (x,))
    with pytest.warns(RuntimeWarning, match="falling back"):
        half = fxt.cross_entropy(x.detach().half(), y, focal_alpha=0.25, focal_gamma=1.0)
    torch.testing.assert_close(half.double(), loss.detach(), rtol=5e-3, atol=1e-3)
    assert torch.isfinite(first).all()


def test_create_graph_keeps_confident_rows_finite():
    """(1 - p)^gamma with gamma < 1 has an infinite slope where 1 - p rounds to 0: the PyTorch
    formula holds 1 - p at the smallest normal number, so the added term stays 0."""
    x = torch.tensor([[18.0, 0.0, 0.0]], requires_grad=True)
    y = torch.tensor([0])
    plain = torch.autograd.grad(fxt.cross_entropy(x, y, focal_gamma=0.5), x)[0]
    graph = torch.autograd.grad(fxt.cross_entropy(x, y, focal_gamma=0.5), x,
                                create_graph=True)[0]
    torch.testing.assert_close(graph.detach(), plain, rtol=0, atol=0)
    xb = torch.tensor([40.0], dtype=torch.float64, requires_grad=True)
    yb = torch.tensor([1.0], dtype=torch.float64)
    plain = torch.autograd.grad(fxt.binary_cross_entropy_with_logits(xb, yb, focal_gamma=0.5),
                                xb)[0]
    graph = torch.autograd.grad(fxt.binary_cross_entropy_with_logits(xb, yb, focal_gamma=0.5),
                                xb, create_graph=True)[0]
    assert torch.isfinite(graph).all()
    torch.testing.assert_close(graph.detach(), plain, rtol=0, atol=0)


def test_pytorch_errors_stay_errors_with_the_terms():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        fxt.cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction="elementwise", z_loss=0.1)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        fxt.binary_cross_entropy_with_logits(x, torch.rand(4, 3), reduction="elementwise",
                                             focal_gamma=2.0)
    with pytest.raises(RuntimeError, match="ignore_index is not supported"):
        fxt.cross_entropy(x, torch.softmax(torch.randn(4, 3), 1), ignore_index=1, z_loss=0.1)


def test_every_row_ignored_with_the_terms():
    """mean over no counted row: NaN, with a zero gradient at every order (as without the
    newer options), on the fast path and the fallback."""
    x = torch.randn(2, 3, dtype=torch.float64, generator=torch_generator("ignored"))
    x.requires_grad_(True)
    y = torch.tensor([-100, -100])
    loss = fxt.cross_entropy(x, y, z_loss=0.1, focal_gamma=2.0)
    assert torch.isnan(loss)
    (grad,) = torch.autograd.grad(loss, x, create_graph=True)
    assert torch.equal(grad.detach(), torch.zeros_like(x))
    assert torch.isnan(fxt.cross_entropy(x.detach().half(), y, z_loss=0.1))


def test_focal_alpha_that_requires_grad_is_differentiated(monkeypatch):
    """A focal_alpha tensor that requires grad takes the differentiable PyTorch formula (with
    the fallback warning), as a weight that requires grad does."""
    monkeypatch.setattr(fxt, "_warned", set())
    alpha = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 3, dtype=torch.float64, generator=torch_generator("alpha grad"))
    with pytest.warns(RuntimeWarning, match="focal_alpha requires grad"):
        fxt.cross_entropy(x, torch.tensor([0, 1]), focal_alpha=alpha).backward()
    expected = -torch.log_softmax(x, 1)[[0, 1], [0, 1]] / 2
    torch.testing.assert_close(alpha.grad, torch.cat([expected, torch.zeros(1,
                                                                            dtype=torch.float64)]))
    low = fxt.cross_entropy(x, torch.tensor([0, 1]),
                            focal_alpha=torch.ones(3, dtype=torch.bfloat16))
    torch.testing.assert_close(low, fxt.cross_entropy(x, torch.tensor([0, 1])))
