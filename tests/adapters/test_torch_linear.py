"""fastxent.torch.linear_cross_entropy and LinearCrossEntropyLoss against PyTorch's own: the
loss and the gradients for input, linear_weight and linear_bias from the fused pass, every
reduction (any grad_output for "none"), derivatives of every order, training, the module, the
fallback to PyTorch and its errors, gradients edited in place."""

import inspect
import itertools
import subprocess
import sys
import warnings

import numpy as np
import pytest

import fastxent
from fastxent._api.linear import CHUNK_ROWS_MAX
from helpers import torch_generator

torch = pytest.importorskip("torch")
F = torch.nn.functional
fxt = pytest.importorskip("fastxent.torch")
pytestmark = pytest.mark.usefixtures("torch_single_threaded")

REDUCTIONS = ("mean", "sum", "none")
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-13), torch.float32: dict(rtol=1e-5, atol=1e-6)}
N_ROWS, N_FEATURES, N_CLASSES = 7, 4, 6


def _problem(case, bias, dtype=torch.float64, n_rows=N_ROWS):
    """Hidden states, weight, bias (or None), target and keyword arguments for `case`."""
    g = torch_generator(case, bias, n_rows)
    shape = (N_FEATURES,) if case.startswith("1d") else (n_rows, N_FEATURES)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    w = torch.randn(N_CLASSES, N_FEATURES, generator=g, dtype=torch.float64)
    b = torch.randn(N_CLASSES, generator=g, dtype=torch.float64) if bias else None
    logits_shape = shape[:-1] + (N_CLASSES,)
    kwargs = {}
    if "soft" in case:
        target = torch.softmax(torch.randn(logits_shape, generator=g, dtype=torch.float64), -1)
        target = target.to(dtype)
    else:
        target = torch.randint(0, N_CLASSES, shape[:-1], generator=g)
    if "weight" in case:
        kwargs["weight"] = (torch.rand(N_CLASSES, generator=g, dtype=torch.float64) + .5).to(dtype)
    if "ignore" in case:
        target[1::3] = 2
        kwargs["ignore_index"] = 2
    if "labels_minus_100" in case:
        target[::4] = -100                       # PyTorch's default for class indices
    if "smoothing" in case:
        kwargs["label_smoothing"] = 0.15
    return x.to(dtype), w.to(dtype), None if b is None else b.to(dtype), target, kwargs


def _loss_and_grads(fn, x, w, b, target, kwargs, grad_output=None):
    """The loss and the gradients of ``(loss * grad_output).sum()`` for x, w and b."""
    params = [p.detach().clone().requires_grad_(True) for p in (x, w, b) if p is not None]
    loss = fn(params[0], params[1], target, linear_bias=None if b is None else params[2],
              **kwargs)
    if grad_output is None:
        grad_output = torch.randn(loss.shape, dtype=torch.float64,
                                  generator=torch_generator("go", loss.shape)).to(loss.dtype)
    loss.backward(grad_output)
    return [loss.detach()] + [p.grad for p in params]


def _reference(x, w, b, target, kwargs):
    """PyTorch's loss and gradients, computed in float64 and rounded to x's dtype."""
    def f64(t):
        return t.double() if isinstance(t, torch.Tensor) and t.is_floating_point() else t

    results = _loss_and_grads(F.linear_cross_entropy, f64(x), f64(w), f64(b), f64(target),
                              {k: f64(t) for k, t in kwargs.items()})
    return [r.to(x.dtype) for r in results]


def _assert_same(ours, theirs, dtype):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL[dtype], equal_nan=True)


CASES = ["plain", "weight", "ignore", "labels_minus_100", "smoothing",
         "weight_ignore_smoothing", "soft", "soft_weight_smoothing", "1d", "1d_soft_smoothing"]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("case", CASES)
def test_loss_and_gradients_match_torch(case, bias, dtype):
    x, w, b, target, kwargs = _problem(case, bias, dtype)
    for reduction in REDUCTIONS:
        kw = dict(kwargs, reduction=reduction)
        with warnings.catch_warnings():
            warnings.simplefilter("error")        # the fast path never falls back here
            ours = _loss_and_grads(fxt.linear_cross_entropy, x, w, b, target, kw)
        _assert_same(ours, _reference(x, w, b, target, kw), dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_rows_in_several_chunks(dtype):
    """More rows than a chunk holds (at most CHUNK_ROWS_MAX): the gradients summed over the
    chunks, and for "none" grad_output read chunk by chunk."""
    n_rows = 2 * CHUNK_ROWS_MAX + 37
    x, w, b, target, kwargs = _problem("weight_ignore_smoothing", True, dtype, n_rows=n_rows)
    for reduction in REDUCTIONS:
        kw = dict(kwargs, reduction=reduction)
        ours = _loss_and_grads(fxt.linear_cross_entropy, x, w, b, target, kw)
        _assert_same(ours, _reference(x, w, b, target, kw), dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["weight_ignore_smoothing", "soft", "1d"])
def test_values_are_the_fused_pass(case, reduction):
    """The loss and gradients are fastxent's NumPy results, bit for bit (for "none", those of
    the fused pass with grad_output as sample weights)."""
    x, w, b, target, kwargs = _problem(case, True)
    grad_output = torch.randn(() if case == "1d" else (N_ROWS,), dtype=torch.float64,
                              generator=torch_generator("fused", case))
    if reduction != "none":
        grad_output = torch.tensor(1.0, dtype=torch.float64)
    ours = _loss_and_grads(fxt.linear_cross_entropy, x, w, b, target,
                           dict(kwargs, reduction=reduction), grad_output)
    np_kw = dict(linear_bias=b.numpy(), label_smoothing=kwargs.get("label_smoothing", 0.0),
                 weight=None if "weight" not in kwargs else kwargs["weight"].numpy(),
                 ignore_index=None if case == "soft" else kwargs.get("ignore_index", -100))
    loss = fastxent.linear_cross_entropy(x.numpy(), w.numpy(), target.numpy(),
                                         reduction=reduction, **np_kw)
    sample_weight = grad_output.numpy() if reduction == "none" else None
    _, *grads = fastxent.linear_cross_entropy_loss_and_grad(
        x.numpy(), w.numpy(), target.numpy(), sample_weight=sample_weight,
        reduction="sum" if reduction == "none" else reduction, **np_kw)
    for got, expected in zip(ours, [loss, *grads], strict=True):
        np.testing.assert_array_equal(got.numpy(), expected)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_empty_input(reduction, dtype):
    x, w, b, target, _ = _problem("plain", True, dtype, n_rows=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = _loss_and_grads(fxt.linear_cross_entropy, x, w, b, target,
                               dict(reduction=reduction))
    theirs = _loss_and_grads(F.linear_cross_entropy, x, w, b, target, dict(reduction=reduction))
    _assert_same(ours, theirs, dtype)
    assert ours[0].shape == ((0,) if reduction == "none" else ())
    assert torch.isnan(ours[0]).item() if reduction == "mean" else ours[0].sum().item() == 0
    assert all(torch.equal(g, torch.zeros_like(g)) for g in ours[1:])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", ["weight_ignore_smoothing", "soft_weight_smoothing",
                                  "1d_soft_smoothing"])
def test_derivatives_of_every_order(case, reduction):
    x, w, b, target, kwargs = _problem(case, True, n_rows=4)
    if "ignore" in case:
        target[0] = 0                     # not every row ignored (the mean is then nan)

    def loss(*params):
        return fxt.linear_cross_entropy(params[0], params[1], target, linear_bias=params[2],
                                        reduction=reduction, **kwargs)

    params = tuple(p.clone().requires_grad_(True) for p in (x, w, b))
    assert torch.autograd.gradcheck(loss, params)
    assert torch.autograd.gradgradcheck(loss, params)


def test_create_graph_keeps_the_fused_values_and_gives_pytorchs_hessian():
    x, w, b, target, kwargs = _problem("weight_ignore_smoothing", True)
    params = [p.clone().requires_grad_(True) for p in (x, w, b)]
    plain = torch.autograd.grad(fxt.linear_cross_entropy(*params[:2], target,
                                                         linear_bias=params[2], **kwargs),
                                params)
    graph = torch.autograd.grad(fxt.linear_cross_entropy(*params[:2], target,
                                                         linear_bias=params[2], **kwargs),
                                params, create_graph=True)
    for a, c in zip(plain, graph, strict=True):
        assert torch.equal(a, c.detach())
    reference = torch.autograd.grad(F.linear_cross_entropy(*params[:2], target,
                                                           linear_bias=params[2], **kwargs),
                                    params, create_graph=True)
    # Hessian-vector products (a gradient penalty) against PyTorch's
    vectors = [torch.randn(p.shape, dtype=torch.float64, generator=torch_generator("hvp", i))
               for i, p in enumerate(params)]
    ours = torch.autograd.grad(sum((g * v).sum() for g, v in zip(graph, vectors, strict=True)),
                               params)
    theirs = torch.autograd.grad(sum((g * v).sum() for g, v in zip(reference, vectors,
                                                                   strict=True)), params)
    for a, c in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-13)


def test_only_the_parameters_that_require_grad_get_one():
    x, w, b, target, _ = _problem("plain", True)
    x, b = x.clone().requires_grad_(True), b.clone()
    w = w.clone().requires_grad_(True)
    fxt.linear_cross_entropy(x, w, target, linear_bias=b, reduction="sum").backward()
    xr, wr = x.detach().clone().requires_grad_(True), w.detach().clone().requires_grad_(True)
    F.linear_cross_entropy(xr, wr, target, linear_bias=b, reduction="sum").backward()
    assert b.grad is None
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(w.grad, wr.grad, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "none"])
@pytest.mark.parametrize("trained", [("input",), ("linear_weight", "linear_bias")])
def test_the_fused_pass_computes_only_the_gradients_needed(trained, reduction, monkeypatch):
    """A frozen output layer (only the input trained) costs no weight gradient, and the other
    way round."""
    x, w, b, target, _ = _problem("plain", True)
    params = dict(zip(("input", "linear_weight", "linear_bias"), (x, w, b), strict=True))
    params = {name: p.clone().requires_grad_(name in trained) for name, p in params.items()}
    asked = []
    fused = fastxent.linear_cross_entropy_loss_and_grad

    def recording(*args, wrt, **kwargs):
        asked.append(set(wrt))
        return fused(*args, wrt=wrt, **kwargs)

    monkeypatch.setattr(fastxent, "linear_cross_entropy_loss_and_grad", recording)
    loss = fxt.linear_cross_entropy(params["input"], params["linear_weight"], target,
                                    linear_bias=params["linear_bias"], reduction=reduction)
    loss.sum().backward()
    assert asked == [set(trained)]
    reference = {name: p.detach().clone().requires_grad_(name in trained)
                 for name, p in params.items()}
    F.linear_cross_entropy(reference["input"], reference["linear_weight"], target,
                           linear_bias=reference["linear_bias"],
                           reduction=reduction).sum().backward()
    for name, p in params.items():
        if name in trained:
            torch.testing.assert_close(p.grad, reference[name].grad, rtol=1e-12, atol=1e-13)
        else:
            assert p.grad is None


def test_infinite_grad_output_gives_pytorchs_gradients():
    """reduction="none" with an infinite grad_output: PyTorch's values, NaN and ±inf where
    it has them (the fused pass's form would make NaN of a -inf)."""
    x, w, b, target, _ = _problem("plain", True)
    grad_output = torch.ones(N_ROWS, dtype=torch.float64)
    grad_output[1], grad_output[4] = float("inf"), float("-inf")
    ours = _loss_and_grads(fxt.linear_cross_entropy, x, w, b, target, {"reduction": "none"},
                           grad_output)
    theirs = _loss_and_grads(F.linear_cross_entropy, x, w, b, target, {"reduction": "none"},
                             grad_output)
    assert torch.isinf(theirs[2]).any() and torch.isnan(theirs[2]).any()
    for a, c in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-13, equal_nan=True)


def test_without_grad_and_in_no_grad():
    x, w, b, target, _ = _problem("plain", True, torch.float32)
    assert not fxt.linear_cross_entropy(x, w, target, linear_bias=b).requires_grad
    with torch.no_grad():
        loss = fxt.linear_cross_entropy(x, w.requires_grad_(), target, linear_bias=b,
                                        reduction="none")
    assert not loss.requires_grad and loss.dtype == torch.float32 and loss.shape == (N_ROWS,)
    torch.testing.assert_close(loss, F.linear_cross_entropy(x, w.detach(), target,
                                                            linear_bias=b, reduction="none"),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_retain_graph_and_gradients_edited_in_place(reduction):
    """A hook that edits the input's gradient in place, and a caller who edits what it was
    given, change no other gradient and no later backward."""
    x, w, b, target, kwargs = _problem("weight_ignore_smoothing", True)
    params = [p.clone().requires_grad_(True) for p in (x, w, b)]
    grad_output = torch.ones(N_ROWS, dtype=torch.float64) if reduction == "none" else None
    expected = torch.autograd.grad(
        F.linear_cross_entropy(*params[:2], target, linear_bias=params[2], reduction=reduction,
                               **kwargs), params, grad_output)
    loss = fxt.linear_cross_entropy(*params[:2], target, linear_bias=params[2],
                                    reduction=reduction, **kwargs)
    handle = params[0].register_hook(lambda grad: grad.mul_(3))
    loss.backward(grad_output, retain_graph=True)
    handle.remove()
    torch.testing.assert_close(params[0].grad, 3 * expected[0], rtol=1e-12, atol=1e-13)
    for p, e in zip(params[1:], expected[1:], strict=True):
        torch.testing.assert_close(p.grad, e, rtol=1e-12, atol=1e-13)
    first = torch.autograd.grad(loss, params, grad_output, retain_graph=True)
    for g in first:
        g.zero_()                                # the caller owns what it was given
    second = torch.autograd.grad(loss, params, grad_output)
    for g, e in zip(second, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-13)


def test_editing_a_saved_tensor_in_place_makes_backward_raise():
    x, w, b, target, _ = _problem("plain", True)
    w = w.clone().requires_grad_(True)
    loss = fxt.linear_cross_entropy(x, w, target, linear_bias=b)
    with torch.no_grad():
        w.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_options_are_accepted_and_change_nothing():
    x, w, b, target, kwargs = _problem("ignore", True)
    options = torch.nn.LinearCrossEntropyOptions(batch_chunk_size=2)
    for reduction in REDUCTIONS:
        kw = dict(kwargs, reduction=reduction)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = _loss_and_grads(fxt.linear_cross_entropy, x, w, b, target,
                                   dict(kw, options=options))
        plain = _loss_and_grads(fxt.linear_cross_entropy, x, w, b, target, kw)
        for a, c in zip(ours, plain, strict=True):
            assert torch.equal(a, c)
    with pytest.raises(TypeError, match="options must be a torch.nn.LinearCrossEntropyOptions"):
        fxt.linear_cross_entropy(x, w, target, options={"batch_chunk_size": 2})


def _train(loss_fn, steps=5):
    """A tiny model (a hidden layer, then the loss's linear head) after a few SGD steps."""
    g = torch_generator("train")
    X = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (32,), generator=g)
    y[::7] = -100
    torch.manual_seed(0)
    body = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Tanh()).double()
    head = torch.nn.Linear(3, 4).double()
    opt = torch.optim.SGD([*body.parameters(), *head.parameters()], lr=0.5)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(body(X), head.weight, y, linear_bias=head.bias, label_smoothing=0.05)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach() for p in (*body.parameters(), *head.parameters())]


def test_sgd_steps_match_pytorch():
    ours, p_ours = _train(fxt.linear_cross_entropy)
    theirs, p_theirs = _train(F.linear_cross_entropy)
    assert ours[-1] < ours[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    for a, c in zip(p_ours, p_theirs, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-13)


def test_module_matches_pytorchs():
    assert issubclass(fxt.LinearCrossEntropyLoss, torch.nn.LinearCrossEntropyLoss)
    assert (inspect.signature(fxt.LinearCrossEntropyLoss)
            == inspect.signature(torch.nn.LinearCrossEntropyLoss))
    g = torch_generator("module")
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (9,), generator=g)
    class_weight = torch.rand(4, generator=g, dtype=torch.float64) + .5
    kwargs = dict(bias=True, dtype=torch.float64, weight=class_weight, label_smoothing=0.1)
    for reduction, ignore_index in itertools.product(REDUCTIONS, (None, 1)):
        torch.manual_seed(3)
        ours = fxt.LinearCrossEntropyLoss(5, 4, reduction=reduction, ignore_index=ignore_index,
                                          **kwargs)
        torch.manual_seed(3)
        theirs = torch.nn.LinearCrossEntropyLoss(5, 4, reduction=reduction,
                                                 ignore_index=ignore_index, **kwargs)
        results = []
        for module in (ours, theirs):
            xg = x.clone().requires_grad_(True)
            loss = module(xg, target)
            loss.backward(torch.linspace(-1, 1, loss.numel(), dtype=torch.float64)
                          .reshape(loss.shape))
            results.append([loss.detach(), xg.grad, module.linear.weight.grad,
                            module.linear.bias.grad])
        _assert_same(*results, torch.float64)


def test_module_with_k_dimensional_loss_falls_back(monkeypatch):
    monkeypatch.setattr(fxt, "_warned", set())
    x = torch.randn(2, 5, generator=torch_generator("kdim"))
    target = torch.randint(0, 4, (2, 3), generator=torch_generator("kdim"))
    torch.manual_seed(4)
    ours = fxt.LinearCrossEntropyLoss(5, 4, out_features=(3,))
    torch.manual_seed(4)
    theirs = torch.nn.LinearCrossEntropyLoss(5, 4, out_features=(3,))
    with pytest.warns(RuntimeWarning, match="K-dimensional"):
        loss = ours(x, target)
    assert torch.equal(loss, theirs(x, target))


FALLBACKS = ["float16", "bfloat16", "mixed_dtype", "bias_dtype", "weight_grad", "target_grad",
             "int32_target", "soft_dtype", "k_dimensional", "meta"]


@pytest.mark.parametrize("case", FALLBACKS)
def test_fallback_warns_once_and_is_pytorchs(case, monkeypatch):
    monkeypatch.setattr(fxt, "_warned", set())
    x, w, b, target, kwargs = _problem("plain", True)
    fragment = {"float16": "float16", "bfloat16": "bfloat16", "mixed_dtype": "linear_weight has",
                "bias_dtype": "linear_bias has", "weight_grad": "weight requires grad",
                "target_grad": "target requires grad", "int32_target": "int32",
                "soft_dtype": "probability targets", "k_dimensional": "K-dimensional",
                "meta": "on device 'meta'"}[case]
    if case in ("float16", "bfloat16"):
        x, w, b = (t.to(getattr(torch, case)) for t in (x, w, b))
    elif case == "mixed_dtype":
        w = w.float()
    elif case == "bias_dtype":
        b = b.float()
    elif case == "weight_grad":
        kwargs["weight"] = torch.rand(N_CLASSES, dtype=torch.float64).requires_grad_(True)
    elif case == "target_grad":
        target = torch.softmax(torch.randn(N_ROWS, N_CLASSES, dtype=torch.float64), 1)
        target.requires_grad_(True)
    elif case == "int32_target":
        target = target.int()
    elif case == "soft_dtype":
        target = torch.softmax(torch.randn(N_ROWS, N_CLASSES, dtype=torch.float32), 1)
    elif case == "k_dimensional":
        w = torch.randn(3, 2, N_FEATURES, dtype=torch.float64)
        b = None
        target = torch.randint(0, 3, (N_ROWS, 2))
    elif case == "meta":
        x, w, b = (t.to("meta") for t in (x, w, b))
        target = target.to("meta")

    def call(fn):
        params = [t.detach().clone().requires_grad_(True) for t in (x, w, b) if t is not None]
        loss = fn(params[0], params[1], target, linear_bias=None if b is None else params[2],
                  **kwargs)
        if case == "meta":                    # no data: the shapes only
            return [loss]
        loss.backward()
        return [loss.detach()] + [p.grad for p in params]

    try:
        theirs = call(F.linear_cross_entropy)
    except RuntimeError as exc:           # PyTorch refuses it too: so do we, with its error
        with pytest.warns(RuntimeWarning, match=fragment):
            with pytest.raises(RuntimeError, match=str(exc)[:20]):
                call(fxt.linear_cross_entropy)
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = call(fxt.linear_cross_entropy)
    assert [str(c.message) for c in caught if c.category is RuntimeWarning] == [
        str(caught[0].message)]
    assert "falling back to torch.nn.functional.linear_cross_entropy" in str(caught[0].message)
    assert fragment in str(caught[0].message)
    for a, c in zip(ours, theirs, strict=True):
        assert a.shape == c.shape and a.device == c.device
        if case != "meta":
            assert torch.equal(a, c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # only once per reason
        call(fxt.linear_cross_entropy)


def test_errors_are_pytorch_errors():
    x, w, b, target, _ = _problem("plain", True)
    with pytest.raises(RuntimeError, match="dimensionality 1 or 2"):
        fxt.linear_cross_entropy(x.reshape(1, N_ROWS, N_FEATURES), w, target[None])
    with pytest.raises((IndexError, RuntimeError), match="out of bounds"):
        fxt.linear_cross_entropy(x, w, torch.full((N_ROWS,), N_CLASSES))
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        fxt.linear_cross_entropy(x, w, target, reduction="avg")
    soft = torch.softmax(torch.randn(N_ROWS, N_CLASSES, dtype=torch.float64), 1)
    with pytest.raises(RuntimeError, match="ignore_index cannot be specified"):
        fxt.linear_cross_entropy(x, w, soft, ignore_index=-100)
    with pytest.raises(RuntimeError, match="expected linear_bias shape"):
        fxt.linear_cross_entropy(x, w, target, linear_bias=b[:-1])
    with pytest.raises(RuntimeError, match="in_features"):
        fxt.linear_cross_entropy(x, w[:, :-1], target)


def test_soft_targets_outside_the_unit_interval_are_pytorchs_formula():
    """PyTorch does not check soft targets: neither does the adapter (validate=False), and
    the fused pass gives PyTorch's loss and gradients, without a fallback."""
    x, w, b, _, _ = _problem("plain", True)
    target = torch.randn(N_ROWS, N_CLASSES, dtype=torch.float64,
                         generator=torch_generator("outside"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = _loss_and_grads(fxt.linear_cross_entropy, x, w, b, target, {})
    theirs = _loss_and_grads(F.linear_cross_entropy, x, w, b, target, {})
    for a, c in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-13)


_BEFORE_2_13 = """
import torch
import torch.nn.functional as F
reference = F.linear_cross_entropy
for module, name in ((F, "linear_cross_entropy"), (torch.nn, "LinearCrossEntropyLoss"),
                     (torch.nn, "LinearCrossEntropyOptions")):
    delattr(module, name)
import fastxent.torch as fxt
assert not hasattr(fxt, "LinearCrossEntropyLoss")
assert "LinearCrossEntropyLoss" not in fxt.__all__
g = torch.Generator().manual_seed(0)
x = torch.randn(7, 3, dtype=torch.float64, generator=g, requires_grad=True)
w = torch.randn(5, 3, dtype=torch.float64, generator=g, requires_grad=True)
y = torch.tensor([0, 1, 2, 3, 4, 0, -100])
loss = fxt.linear_cross_entropy(x, w, y)
expected = reference(x, w, y)
assert torch.allclose(loss, expected, rtol=1e-12), (loss, expected)
import warnings
x16, w16 = x.detach().half(), w.detach().half()
with warnings.catch_warnings(record=True) as caught:       # PyTorch's formula computes it
    warnings.simplefilter("always")
    fallback = fxt.linear_cross_entropy(x16, w16, y)
assert [str(c.message) for c in caught if "float16" in str(c.message)], caught
expected = reference(x16, w16, y)
assert torch.equal(fallback, expected), (fallback, expected)
"""


def test_imports_and_computes_before_pytorch_2_13():
    """With a PyTorch that has no fused loss (before 2.13), the adapter imports, computes the
    function, and falls back to PyTorch's defining formula; the module is not defined."""
    run = subprocess.run([sys.executable, "-c", _BEFORE_2_13], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
