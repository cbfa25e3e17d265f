"""fastxent.torch's autograd against PyTorch's own: derivatives of every order, gradients no
later backward reuses, in-place edits of saved tensors, torch.func and forward-mode AD."""

import itertools
import warnings

import pytest

from helpers import torch_generator

torch = pytest.importorskip("torch")
F = torch.nn.functional
fxt = pytest.importorskip("fastxent.torch")
pytestmark = pytest.mark.usefixtures("torch_single_threaded")

REDUCTIONS = ("mean", "sum", "none")
CLOSE = dict(rtol=1e-12, atol=1e-14)          # float64, against PyTorch


def _ce_case(weight, ignore, smoothing, target, layout):
    """A float64 input, target and keyword arguments for cross_entropy."""
    g = torch_generator("ce", weight, ignore, smoothing, target, layout)
    n_classes = 4
    shape = {"C": (n_classes,), "NC": (3, n_classes), "NCHW": (2, n_classes, 2, 1)}[layout]
    x = 2 * torch.randn(shape, generator=g, dtype=torch.float64)
    rows = shape[:1] + shape[2:] if len(shape) > 1 else ()
    if target == "index":
        t = torch.randint(0, n_classes, rows, generator=g)
        if ignore is not None:
            t.view(-1)[1::2] = ignore
            t.view(-1)[0] = 0                   # not every row ignored (the mean is then nan)
    else:
        t = torch.rand(shape, generator=g, dtype=torch.float64)
        t = t / t.sum(dim=min(1, len(shape) - 1), keepdim=True)
    kwargs = dict(label_smoothing=smoothing)
    if weight:
        kwargs["weight"] = torch.rand(n_classes, generator=g, dtype=torch.float64) + 0.5
    if ignore is not None:
        kwargs["ignore_index"] = ignore
    return x, t, kwargs


CE_CASES = [case for case in itertools.product((False, True), (None, 1), (0.0, 0.2),
                                               ("index", "prob"), ("C", "NC", "NCHW"))
            if not (case[3] == "prob" and case[1] is not None)]
CE_IDS = [f"w{int(w)}-ign{i}-ls{s}-{t}-{lay}" for w, i, s, t, lay in CE_CASES]


def _bce_case(weight, pos_weight, layout):
    g = torch_generator("bce", weight, pos_weight, layout)
    shape = {"1d": (5,), "3d": (2, 3, 2)}[layout]
    x = 3 * torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.rand(shape, generator=g, dtype=torch.float64)
    t[..., ::2] = t[..., ::2].round()

    def weights(kind):
        if kind is None:
            return None
        wshape = {"full": shape, "col": shape[-1:], "row": shape[:-1] + (1,), "scalar": ()}[kind]
        return torch.rand(wshape, generator=g, dtype=torch.float64) + 0.5

    return x, t, dict(weight=weights(weight), pos_weight=weights(pos_weight))


BCE_CASES = list(itertools.product((None, "full", "row", "scalar"), (None, "col", "full"),
                                   ("1d", "3d")))
BCE_IDS = [f"w{w}-pw{p}-{lay}" for w, p, lay in BCE_CASES]


def _weighted_loss(fn, target, kwargs, grad_output):
    """z -> the loss times grad_output, summed: backward sees a grad_output other than 1."""
    return lambda z: (fn(z, target, **kwargs) * grad_output).sum()


def _check_second_order(ours, theirs, x, target, kwargs):
    """gradgradcheck, the Hessian against PyTorch's and the gradient under create_graph."""
    go = torch.randn(ours(x, target, **kwargs).shape, generator=torch_generator("go", x.shape),
                     dtype=torch.float64)
    x = x.detach().requires_grad_(True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")         # the fast path: no fallback to PyTorch
        assert torch.autograd.gradcheck(lambda z: ours(z, target, **kwargs), (x,))
        assert torch.autograd.gradgradcheck(lambda z: ours(z, target, **kwargs), (x,))
        for f_ours, f_theirs in [
                (_weighted_loss(ours, target, kwargs, go), _weighted_loss(theirs, target, kwargs,
                                                                          go)),
                (lambda z: ours(z, target, **kwargs).sum(),
                 lambda z: theirs(z, target, **kwargs).sum())]:
            hessian = torch.autograd.functional.hessian(f_ours, x)
            assert hessian.abs().max() > 0
            torch.testing.assert_close(hessian, torch.autograd.functional.hessian(f_theirs, x),
                                       **CLOSE)
            # create_graph=True keeps fastxent's gradient values, bit for bit
            (plain,) = torch.autograd.grad(f_ours(x), x)
            (graph,) = torch.autograd.grad(f_ours(x), x, create_graph=True)
            assert graph.requires_grad and torch.equal(graph, plain)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight, ignore, smoothing, target, layout", CE_CASES, ids=CE_IDS)
def test_cross_entropy_second_order_matches_torch(weight, ignore, smoothing, target, layout,
                                                  reduction):
    x, t, kwargs = _ce_case(weight, ignore, smoothing, target, layout)
    _check_second_order(fxt.cross_entropy, F.cross_entropy, x, t,
                        dict(kwargs, reduction=reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight, pos_weight, layout", BCE_CASES, ids=BCE_IDS)
def test_bce_second_order_matches_torch(weight, pos_weight, layout, reduction):
    x, t, kwargs = _bce_case(weight, pos_weight, layout)
    _check_second_order(fxt.binary_cross_entropy_with_logits,
                        F.binary_cross_entropy_with_logits, x, t,
                        dict(kwargs, reduction=reduction))


def test_all_rows_ignored_has_zero_derivatives_like_torch():
    x = torch.randn(3, 4, dtype=torch.float64)
    t = torch.full((3,), -100)
    for smoothing in (0.0, 0.1):
        hessians = [torch.autograd.functional.hessian(
            lambda z, fn=fn, smoothing=smoothing: fn(z, t, label_smoothing=smoothing), x)
            for fn in (fxt.cross_entropy, F.cross_entropy)]
        assert torch.equal(hessians[0], hessians[1])
        assert torch.equal(hessians[0], torch.zeros(3, 4, 3, 4, dtype=torch.float64))


def _third_derivative(fn, x, target, kwargs):
    """Third derivative of the summed loss along random directions u, v: d/dx <H(x) u, v>."""
    u, v = torch.randn((2,) + x.shape, generator=torch_generator("uv"), dtype=torch.float64)
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x, target, **kwargs).sum(), x, create_graph=True)
    (hu,) = torch.autograd.grad((g * u).sum(), x, create_graph=True)
    (third,) = torch.autograd.grad((hu * v).sum(), x)
    return third


@pytest.mark.parametrize("loss", ["ce_index", "ce_prob", "bce"])
def test_third_order_is_exact(loss):
    if loss == "bce":
        x, t, kwargs = _bce_case("row", "col", "3d")
        ours, theirs = fxt.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits
    else:
        x, t, kwargs = _ce_case(True, None if loss == "ce_prob" else 1, 0.2, loss[3:], "NCHW")
        ours, theirs = fxt.cross_entropy, F.cross_entropy
    third = _third_derivative(ours, x, t, kwargs)
    assert third.abs().max() > 1e-3
    torch.testing.assert_close(third, _third_derivative(theirs, x, t, kwargs), **CLOSE)
    x = x.detach().requires_grad_(True)
    assert torch.autograd.gradgradcheck(          # the Hessian's derivative, numerically
        lambda z: torch.autograd.grad(ours(z, t, **kwargs).sum(), z, create_graph=True)[0],
        (x,))


def _gradient_penalty_training(make_loss, n_outputs, binary, steps=3, lam=0.5):
    """A linear model trained on loss + lam * ||dloss/dW||^2: the weights after `steps`
    SGD steps and each step's penalised loss."""
    g = torch_generator("penalty", binary)
    X = torch.randn(32, 6, generator=g, dtype=torch.float64)
    if binary:
        y = (torch.rand(32, n_outputs, generator=g, dtype=torch.float64) > 0.5).double()
    else:
        y = torch.randint(0, n_outputs, (32,), generator=g)
    W = (0.5 * torch.randn(n_outputs, 6, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.zeros(n_outputs, dtype=torch.float64, requires_grad=True)
    loss_fn = make_loss()
    opt = torch.optim.SGD([W, b], lr=0.3)
    grads, losses = [], []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(X @ W.T + b, y)
        (dW,) = torch.autograd.grad(loss, W, create_graph=True)
        total = loss + lam * dW.pow(2).sum()
        total.backward()
        grads.append((W.grad.clone(), b.grad.clone()))
        losses.append(total.item())
        opt.step()
    return grads, losses


@pytest.mark.parametrize("loss", ["ce", "ce_options", "bce"])
def test_gradient_penalty_step_matches_torch(loss):
    class_weight = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64)
    pos_weight = torch.tensor([1.0, 3.0, 0.5, 2.0], dtype=torch.float64)
    make = {"ce": (fxt.CrossEntropyLoss, torch.nn.CrossEntropyLoss, {}),
            "ce_options": (fxt.CrossEntropyLoss, torch.nn.CrossEntropyLoss,
                           dict(weight=class_weight, label_smoothing=0.1, reduction="sum")),
            "bce": (fxt.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss,
                    dict(pos_weight=pos_weight))}[loss]
    ours, theirs = (_gradient_penalty_training(lambda m=m: m(**make[2]), 4, loss == "bce")
                    for m in make[:2])
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-12, atol=0)
    for (w_ours, b_ours), (w_theirs, b_theirs) in zip(ours[0], theirs[0], strict=True):
        torch.testing.assert_close(w_ours, w_theirs, **CLOSE)
        torch.testing.assert_close(b_ours, b_theirs, **CLOSE)


# ---- item 2: a gradient handed out is the caller's --------------------------------------

def _losses():
    g = torch_generator("losses")
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (5,), generator=g)
    tb = torch.rand(5, 4, generator=g, dtype=torch.float64)
    for reduction in REDUCTIONS:
        yield (f"ce-{reduction}", x, lambda fn, z, r=reduction: fn.cross_entropy(z, t,
                                                                                 reduction=r))
        yield (f"bce-{reduction}", x, lambda fn, z, r=reduction:
               fn.binary_cross_entropy_with_logits(z, tb, reduction=r))


LOSSES = list(_losses())


@pytest.mark.parametrize("name, x, loss_of", LOSSES, ids=[c[0] for c in LOSSES])
def test_gradients_edited_in_place_do_not_change_later_ones(name, x, loss_of):
    x = x.clone().requires_grad_(True)
    (reference,) = torch.autograd.grad(loss_of(F, x).sum(), x)
    loss = loss_of(fxt, x).sum()
    results = []
    for _ in range(3):
        (g,) = torch.autograd.grad(loss, x, retain_graph=True)
        results.append(g.clone())
        g.zero_()                                   # the caller owns what it gets
    assert all(torch.equal(r, results[0]) for r in results)
    torch.testing.assert_close(results[0], reference, **CLOSE)


@pytest.mark.parametrize("name, x, loss_of", LOSSES, ids=[c[0] for c in LOSSES])
def test_hooks_editing_in_place_behave_as_in_torch(name, x, loss_of):
    def run(fn):
        leaf = x.clone().requires_grad_(True)
        leaf.register_hook(lambda g: g.mul_(2))
        hidden = leaf * 1.0
        hidden.register_hook(lambda g: g.add_(1))
        loss = loss_of(fn, hidden).sum()
        grads = []
        for _ in range(3):
            loss.backward(retain_graph=True)
            grads.append(leaf.grad.clone())
            leaf.grad = None
        return grads

    ours, theirs = run(fxt), run(F)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, **CLOSE)
    assert all(torch.equal(a, ours[0]) for a in ours)


def test_create_graph_gradients_are_not_shared():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0, 2, 1, 1])
    loss = fxt.cross_entropy(x, t)
    (first,) = torch.autograd.grad(loss, x, create_graph=True)
    (second,) = torch.autograd.grad(loss, x, retain_graph=True)
    with torch.no_grad():
        second.zero_()
    (third,) = torch.autograd.grad(loss, x)
    assert torch.equal(first.detach(), third)
    torch.testing.assert_close(third, torch.autograd.grad(F.cross_entropy(x, t), x)[0], **CLOSE)


@pytest.mark.parametrize("loss", ["ce", "bce"])
@pytest.mark.parametrize("edited", ["input", "target", "weight"])
def test_saved_tensors_edited_in_place_raise(loss, edited):
    leaf = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    x = leaf * 1.0
    w = torch.rand(3, dtype=torch.float64) + 0.5
    if loss == "bce":
        t = torch.rand(4, 3, dtype=torch.float64)
        result = fxt.binary_cross_entropy_with_logits(x, t, pos_weight=w)
    else:
        t = torch.tensor([0, 2, 1, 1])
        result = fxt.cross_entropy(x, t, weight=w)
    {"input": x, "target": t, "weight": w}[edited].add_(1)
    if loss == "ce" and edited == "input":       # PyTorch does not save cross_entropy's input
        result.backward(retain_graph=True)       # the gradient of the values at forward
        original = leaf.detach().clone().requires_grad_()
        (expected,) = torch.autograd.grad(F.cross_entropy(original * 1.0, t, weight=w), original)
        torch.testing.assert_close(leaf.grad, expected, **CLOSE)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            result.backward()                    # a second backward reads the input again
        return
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        result.backward()


# ---- torch.func, batched gradients, forward-mode AD -------------------------------------

def _transforms():
    x = torch.randn(4, 3, generator=torch_generator("func"), dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 0])
    tb = torch.rand(4, 3, generator=torch_generator("func-bce"), dtype=torch.float64)
    eye = torch.eye(4, dtype=torch.float64)
    return {
        "func.grad": lambda ce, bce: torch.func.grad(lambda z: ce(z, t))(x),
        "func.grad-bce": lambda ce, bce: torch.func.grad(lambda z: bce(z, tb))(x),
        "func.vmap": lambda ce, bce: torch.func.vmap(ce)(x, t),
        "func.vmap-target": lambda ce, bce: torch.func.vmap(
            lambda y: ce(x, y, reduction="none"))(torch.stack([t, t.flip(0)])),
        "func.jacrev": lambda ce, bce: torch.func.jacrev(lambda z: ce(z, t, reduction="none"))(x),
        "func.hessian": lambda ce, bce: torch.func.hessian(lambda z: ce(z, t))(x),
        "func.jvp": lambda ce, bce: torch.func.jvp(lambda z: bce(z, tb), (x,),
                                                   (torch.ones_like(x),))[1],
        "hessian-vectorize": lambda ce, bce: torch.autograd.functional.hessian(
            lambda z: ce(z, t, label_smoothing=0.1), x.requires_grad_(), vectorize=True),
        "is_grads_batched": lambda ce, bce: torch.autograd.grad(
            ce(x.requires_grad_(), t, reduction="none"), x, eye, is_grads_batched=True)[0],
        "forward_ad": lambda ce, bce: _forward_ad(ce, x, t),
    }


def _forward_ad(ce, x, t):
    fwAD = torch.autograd.forward_ad
    with fwAD.dual_level():
        return fwAD.unpack_dual(ce(fwAD.make_dual(x, torch.ones_like(x)), t)).tangent


TRANSFORMS = list(_transforms())


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_transforms_give_torch_results(transform, monkeypatch):
    """torch.func transforms and forward-mode AD reach PyTorch's own loss (with the one-time
    warning); batched backward passes run fastxent's backward: all give PyTorch's values."""
    monkeypatch.setattr(fxt, "_warned", set())
    run = _transforms()[transform]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = run(fxt.cross_entropy, fxt.binary_cross_entropy_with_logits)
    theirs = run(F.cross_entropy, F.binary_cross_entropy_with_logits)
    assert ours is not None and ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, **CLOSE)
    messages = [str(w.message) for w in caught]
    if transform.startswith("func."):
        assert any("without storage, as inside torch.func" in m for m in messages), messages
    elif transform == "forward_ad":
        assert any("forward-mode tangent" in m for m in messages), messages
    else:
        assert not messages
