"""Draw ``docs/report.png``, the README's example of ``fastxent eval --plot``.

The data are synthetic but behave like a real 10-class classifier: the classes are unequally
frequent and unequally hard, and the model's logits are the Bayes-optimal ones scaled by
1.6, so it is right about as often as it could be but over-confident. Run from the checkout:
``python docs/make_report_png.py``.
"""

import pathlib

import numpy as np

import fastxent
from fastxent._eval.report import DPI, plot_figure

N_ROWS = 20_000
N_CLASSES = 10
OVER_CONFIDENCE = 1.6          # the factor on the calibrated logits
SIZE = (10.0, 6.5)             # inches at 100 dpi: 1000 x 650 pixels
OUTPUT = pathlib.Path(__file__).with_name("report.png")


def synthetic_logits(rng):
    """Rows of a 10-class problem and an over-confident model's logits for them.

    Each row is its class's one-hot mean times the class's separation plus unit Gaussian
    noise; the calibrated logit of class c is then ``separation_c * x_c - separation_c**2 / 2
    + log prior_c``.
    """
    prior = rng.dirichlet(np.full(N_CLASSES, 8.0))
    separation = rng.uniform(1.0, 3.5, N_CLASSES)
    target = rng.choice(N_CLASSES, size=N_ROWS, p=prior)
    x = rng.normal(size=(N_ROWS, N_CLASSES))
    x[np.arange(N_ROWS), target] += separation[target]
    calibrated = separation * x - separation**2 / 2 + np.log(prior)
    return OVER_CONFIDENCE * calibrated, target


def main():
    logits, target = synthetic_logits(np.random.default_rng(2024))
    result = fastxent.evaluate(logits, target, per_class=True)
    plot_figure(result, size=SIZE).savefig(OUTPUT, format="png", dpi=DPI,
                                           pil_kwargs={"optimize": True})
    print(f"{OUTPUT}: {OUTPUT.stat().st_size / 1024:.0f} KiB · {result.summary()}")


if __name__ == "__main__":
    main()
