"""Uses fastxent's public API the way a typed program would; tests/api/test_typing.py runs
``mypy --strict`` on it (it is also a runnable script)."""

import numpy as np
from numpy.typing import NDArray

import fastxent
from fastxent.sklearn import log_loss


def main() -> float:
    rng = np.random.default_rng(0)
    logits: NDArray[np.float32] = rng.standard_normal((8, 5)).astype(np.float32)
    labels = rng.integers(0, 5, 8)

    mean = fastxent.cross_entropy(logits, labels, label_smoothing=0.1)
    per_row = fastxent.cross_entropy(logits, labels, reduction="none", weight=[1.0] * 5)
    loss, grad = fastxent.cross_entropy_loss_and_grad(logits, labels, out=logits.copy())
    grad2 = fastxent.cross_entropy_grad(logits, labels, ignore_index=-1, n_threads=1)
    probs = fastxent.softmax(logits, axis=-1)
    lse = fastxent.logsumexp(logits)
    log_probs = fastxent.log_softmax(logits, n_threads=-1)

    z = rng.standard_normal((8, 3))
    y = (rng.random((8, 3)) > 0.5).astype(np.float64)
    bce = fastxent.binary_cross_entropy(z, y, pos_weight=2.0, ignore_index=-1)
    bce_rows = fastxent.binary_cross_entropy(z, y, reduction="none")
    bce_loss, bce_grad = fastxent.binary_cross_entropy_loss_and_grad(z, y, reduction="sum")
    bce_grad2 = fastxent.binary_cross_entropy_grad(z, y, weight=y)

    p = np.full((4, 2), 0.5)
    sk = log_loss(["a", "b", "a", "b"], p, normalize=False, sample_weight=[1, 2, 3, 4])

    result = fastxent.evaluate(logits, labels, topk=(1, 3))
    evaluator = fastxent.Evaluator(topk=[1, 2]).update(logits, labels).merge(
        fastxent.Evaluator.from_dict(fastxent.Evaluator(topk=[1, 2]).to_dict()))
    top3: float = result.topk[3] if result.topk is not None else 0.0
    accuracy: float | None = evaluator.result().accuracy

    threads: int = fastxent.effective_n_threads()
    info: dict[str, object] = fastxent.config()
    version: str = fastxent.__version__
    shapes = (per_row.shape, grad.shape, grad2.shape, probs.shape, lse.shape,
              log_probs.shape, bce_rows.shape, bce_grad.shape, bce_grad2.shape)
    assert all(len(s) >= 1 for s in shapes) and threads >= 1 and info and version
    return (float(mean) + float(loss) + float(bce) + float(bce_loss) + sk + result.loss + top3
            + (accuracy or 0.0))


if __name__ == "__main__":
    print(main())
