"""fastxent.torch against PyTorch's own losses: values, gradients, gradcheck, training."""

import itertools
import warnings

import numpy as np
import pytest

from helpers import torch_generator

torch = pytest.importorskip("torch")
F = torch.nn.functional
fxt = pytest.importorskip("fastxent.torch")

REDUCTIONS = ("mean", "sum", "none")
TOL = {torch.float64: dict(rtol=1e-12, atol=1e-14), torch.float32: dict(rtol=2e-6, atol=1e-7)}


def _loss_and_grad(fn, x, args, kwargs, grad_output=None):
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x, *args, **kwargs)
    if grad_output is None:
        grad_output = torch.randn(loss.shape, dtype=torch.float64,
                                  generator=torch_generator("go", loss.shape)).to(loss.dtype)
    (loss * grad_output).sum().backward()
    return loss.detach(), x.grad


def _reference(fn, x, args, kwargs):
    """PyTorch's loss and gradient, computed in float64 and rounded to x's dtype: PyTorch's
    own float32 formulas lose more than fastxent's to cancellation (e.g. BCE at z = -7.8)."""
    def f64(v):
        return v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v

    loss, grad = _loss_and_grad(fn, f64(x), [f64(a) for a in args],
                                {k: f64(v) for k, v in kwargs.items()})
    return loss.to(x.dtype), grad.to(x.dtype)


def _assert_same(ours, theirs, dtype):
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b, **TOL[dtype], equal_nan=True)


def _cases_ce():
    for weight, ignore, smoothing, target, layout in itertools.product(
            (False, True), (None, 1), (0.0, 0.2), ("index", "prob"), ("C", "NC", "NCHW")):
        if target == "prob" and ignore is not None:
            continue
        yield weight, ignore, smoothing, target, layout


CE_CASES = list(_cases_ce())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("weight, ignore, smoothing, target, layout", CE_CASES,
                         ids=[f"w{int(w)}-ign{i}-ls{s}-{t}-{lay}" for w, i, s, t, lay in CE_CASES])
def test_cross_entropy_matches_torch(weight, ignore, smoothing, target, layout, dtype):
    g = torch_generator(weight, ignore, smoothing, target, layout)
    n_classes = 5
    shape = {"C": (n_classes,), "NC": (13, n_classes), "NCHW": (4, n_classes, 3, 2)}[layout]
    x = (3 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    rows = shape[:1] + shape[2:] if len(shape) > 1 else ()
    if target == "index":
        t = torch.randint(0, n_classes, rows, generator=g)
        if ignore is not None and t.dim() > 0:
            t.view(-1)[::3] = ignore
    else:
        t = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
        t = t / t.sum(dim=min(1, len(shape) - 1), keepdim=True)
    kwargs = dict(label_smoothing=smoothing)
    if weight:
        kwargs["weight"] = torch.rand(n_classes, generator=g, dtype=torch.float64).to(dtype) + .5
    if ignore is not None:
        kwargs["ignore_index"] = ignore
    for reduction in REDUCTIONS:
        kw = dict(kwargs, reduction=reduction)
        with warnings.catch_warnings():
            warnings.simplefilter("error")        # the fast path never falls back here
            ours = _loss_and_grad(fxt.cross_entropy, x, (t,), kw)
        theirs = _reference(F.cross_entropy, x, (t,), kw)
        _assert_same(ours, theirs, dtype)


BCE_CASES = list(itertools.product((None, "full", "col", "row", "scalar"),
                                   (None, "col", "full"), ("1d", "2d", "3d")))


def _bce_weight(kind, shape, g, dtype):
    if kind is None:
        return None
    wshape = {"full": shape, "col": shape[-1:], "row": shape[:-1] + (1,), "scalar": ()}[kind]
    return (torch.rand(wshape, generator=g, dtype=torch.float64) + 0.5).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("weight, pos_weight, layout", BCE_CASES,
                         ids=[f"w{w}-pw{p}-{lay}" for w, p, lay in BCE_CASES])
def test_bce_with_logits_matches_torch(weight, pos_weight, layout, dtype):
    g = torch_generator(weight, pos_weight, layout)
    shape = {"1d": (17,), "2d": (9, 6), "3d": (3, 4, 5)}[layout]
    x = (4 * torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)
    t = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
    t[..., ::2] = t[..., ::2].round()
    kwargs = dict(weight=_bce_weight(weight, shape, g, dtype),
                  pos_weight=_bce_weight(pos_weight, shape, g, dtype))
    for reduction in REDUCTIONS:
        kw = dict(kwargs, reduction=reduction)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ours = _loss_and_grad(fxt.binary_cross_entropy_with_logits, x, (t,), kw)
        theirs = _reference(F.binary_cross_entropy_with_logits, x, (t,), kw)
        _assert_same(ours, theirs, dtype)


def test_defaults_and_modules_match_torch():
    g = torch_generator("modules")
    x = torch.randn(8, 4, 3, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (8, 3), generator=g)
    t[0, 0] = -100                       # PyTorch's default ignore_index
    w = torch.rand(4, generator=g, dtype=torch.float64)
    pairs = [(fxt.CrossEntropyLoss(weight=w, label_smoothing=0.1),
              torch.nn.CrossEntropyLoss(weight=w, label_smoothing=0.1), t),
             (fxt.CrossEntropyLoss(reduction="none", ignore_index=2),
              torch.nn.CrossEntropyLoss(reduction="none", ignore_index=2), t.clamp(min=0)),
             (fxt.BCEWithLogitsLoss(pos_weight=w[:3]), torch.nn.BCEWithLogitsLoss(pos_weight=w[:3]),
              torch.rand(8, 4, 3, generator=g, dtype=torch.float64))]
    for ours, theirs, target in pairs:
        assert isinstance(ours, type(theirs))
        _assert_same(_loss_and_grad(ours, x, (target,), {}),
                     _loss_and_grad(theirs, x, (target,), {}), torch.float64)
    # defaults: ignore_index=-100 for class indices, mean
    assert torch.equal(fxt.cross_entropy(x, t), fxt.cross_entropy(x, t, ignore_index=-100))
    torch.testing.assert_close(fxt.cross_entropy(x, t), F.cross_entropy(x, t), rtol=1e-13,
                               atol=0)


def test_gradcheck_float64():
    g = torch_generator("gradcheck")
    x = torch.randn(4, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0, 2], [1, -100], [2, 2], [0, 1]])
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    soft = torch.softmax(torch.randn(4, 3, 2, generator=g, dtype=torch.float64), dim=1)
    tb = torch.rand(4, 3, 2, generator=g, dtype=torch.float64)
    for reduction in REDUCTIONS:
        assert torch.autograd.gradcheck(
            lambda z, reduction=reduction: fxt.cross_entropy(
                z, t, weight=w, reduction=reduction, label_smoothing=0.1), (x,))
        assert torch.autograd.gradcheck(
            lambda z, reduction=reduction: fxt.cross_entropy(z, soft, reduction=reduction), (x,))
        assert torch.autograd.gradcheck(
            lambda z, reduction=reduction: fxt.binary_cross_entropy_with_logits(
                z, tb, pos_weight=w[:2] + 1, reduction=reduction), (x,))


def test_reduction_none_arbitrary_grad_output_and_retain_graph():
    g = torch_generator("none")
    x = torch.randn(5, 6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 6, (5, 3), generator=g)
    go = torch.randn(5, 3, generator=g, dtype=torch.float64)
    loss = fxt.cross_entropy(x, t, reduction="none")
    (gx,) = torch.autograd.grad(loss, x, go, retain_graph=True)
    (gx2,) = torch.autograd.grad(loss, x, 2 * go)
    (ref,) = torch.autograd.grad(F.cross_entropy(x, t, reduction="none"), x, go)
    torch.testing.assert_close(gx, ref, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(gx2, 2 * ref, rtol=1e-13, atol=1e-15)
    # a scalar loss used twice (grad_output 1, then 3): the saved gradient is not modified
    loss = fxt.cross_entropy(x, t)
    (a,) = torch.autograd.grad(loss, x, retain_graph=True)
    (b,) = torch.autograd.grad(3 * loss, x, retain_graph=True)
    (c,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(b, 3 * a)
    assert torch.equal(a, c)


def test_loss_without_grad_and_in_no_grad():
    x = torch.randn(7, 3, dtype=torch.float32)
    t = torch.randint(0, 3, (7,))
    assert not fxt.cross_entropy(x, t).requires_grad
    with torch.no_grad():
        y = fxt.cross_entropy(x.requires_grad_(), t, reduction="none")
    assert not y.requires_grad and y.dtype == torch.float32 and y.shape == (7,)
    torch.testing.assert_close(y, F.cross_entropy(x.detach(), t, reduction="none"))


def _train(loss_fn, steps=30):
    g = torch_generator("train")
    X = torch.randn(64, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (64,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 4).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(X), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, [p.detach() for p in model.parameters()]


def test_training_loop_converges_identically():
    ours, p_ours = _train(fxt.CrossEntropyLoss(label_smoothing=0.05))
    theirs, p_theirs = _train(torch.nn.CrossEntropyLoss(label_smoothing=0.05))
    assert ours[-1] < 0.8 * ours[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    for a, b in zip(p_ours, p_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


def test_bce_training_loop_converges_identically():
    def train(loss_fn):
        g = torch_generator("train-bce")
        X = torch.randn(50, 6, generator=g, dtype=torch.float64)
        Y = (torch.rand(50, 3, generator=g, dtype=torch.float64) > 0.5).double()
        torch.manual_seed(1)
        model = torch.nn.Linear(6, 3).double()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(30):
            opt.zero_grad()
            loss_fn(model(X), Y).backward()
            opt.step()
        return [p.detach() for p in model.parameters()]

    pw = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    for a, b in zip(train(fxt.BCEWithLogitsLoss(pos_weight=pw)),
                    train(torch.nn.BCEWithLogitsLoss(pos_weight=pw)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("case", ["float16", "bfloat16", "target_grad", "int32_target",
                                  "weight_grad", "mixed_dtype_prob"])
def test_fallback_warns_and_matches(case, monkeypatch):
    monkeypatch.setattr(fxt, "_warned", set())
    g = torch_generator("fallback", case)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (6,), generator=g)
    kw = {}
    if case in ("float16", "bfloat16"):
        x = x.to(getattr(torch, case))
    elif case == "target_grad":
        t = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), 1)
        t.requires_grad_(True)
    elif case == "int32_target":
        t = t.to(torch.int32)
    elif case == "weight_grad":
        kw["weight"] = torch.rand(4, dtype=torch.float64, generator=g).requires_grad_(True)
    elif case == "mixed_dtype_prob":
        t = torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float32), 1)
    try:
        theirs = F.cross_entropy(x, t, **kw)
    except RuntimeError as exc:           # PyTorch refuses it too: so do we, with its error
        with pytest.warns(RuntimeWarning, match="falling back"):
            with pytest.raises(RuntimeError, match=str(exc)[:20]):
                fxt.cross_entropy(x, t, **kw)
        return
    with pytest.warns(RuntimeWarning, match="falling back to torch.nn.functional"):
        ours = fxt.cross_entropy(x, t, **kw)
    assert torch.equal(ours, theirs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # only once per reason
        fxt.cross_entropy(x, t, **kw)


def test_bce_fallback_float16_and_broadcasting_weight(monkeypatch):
    monkeypatch.setattr(fxt, "_warned", set())
    x = torch.randn(5, 3, dtype=torch.float64)
    t = torch.rand(5, 3, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="float16"):
        ours = fxt.binary_cross_entropy_with_logits(x.half(), t.half())
    assert torch.equal(ours, F.binary_cross_entropy_with_logits(x.half(), t.half()))
    with pytest.warns(RuntimeWarning, match="target has dtype torch.float32"):
        ours = fxt.binary_cross_entropy_with_logits(x, t.float())
    assert torch.equal(ours, F.binary_cross_entropy_with_logits(x, t.float()))
    w = torch.rand(2, 5, 3, dtype=torch.float64)     # does not broadcast to the input's shape
    with pytest.raises(RuntimeError, match="broadcast"):
        fxt.binary_cross_entropy_with_logits(x, t, weight=w, reduction="none")


def test_errors_are_pytorch_errors():
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises((IndexError, RuntimeError)):
        fxt.cross_entropy(x, torch.tensor([0, 1, 3, 0]))          # label out of range
    with pytest.raises(ValueError, match="is not a valid value for reduction"):
        fxt.cross_entropy(x, torch.tensor([0, 1, 2, 0]), reduction="avg")
    with pytest.raises(ValueError, match="same as input size"):
        fxt.binary_cross_entropy_with_logits(x, torch.rand(4, 2, dtype=torch.float64))


def test_zero_copy_and_noncontiguous():
    x = torch.randn(6, 5, dtype=torch.float32)
    t = torch.randint(0, 5, (6,))
    assert fxt._np(x).ctypes.data == x.data_ptr()          # a view, not a copy
    xt = torch.randn(5, 6, dtype=torch.float64).T.requires_grad_(True)   # non-contiguous
    _assert_same(_loss_and_grad(fxt.cross_entropy, xt, (t,), {}),
                 _loss_and_grad(F.cross_entropy, xt, (t,), {}), torch.float64)


@pytest.mark.parametrize("device", ["meta", "cuda"])
def test_non_cpu_tensors_fall_back(device, monkeypatch):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    monkeypatch.setattr(fxt, "_warned", set())
    x = torch.randn(6, 4, device=device, requires_grad=True)
    t = torch.randint(0, 4, (6,), device=device)
    with pytest.warns(RuntimeWarning, match=f"on device '{device}'"):
        ours = fxt.cross_entropy(x, t, reduction="none")
    theirs = F.cross_entropy(x, t, reduction="none")
    assert ours.device == theirs.device and ours.shape == theirs.shape
    if device != "meta":
        assert torch.equal(ours, theirs)
    with pytest.warns(RuntimeWarning, match=f"on device '{device}'"):
        fxt.binary_cross_entropy_with_logits(x, x.detach().sigmoid())
