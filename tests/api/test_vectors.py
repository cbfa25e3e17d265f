"""The worked values of docs/semantics.md, one test each."""

import math

import numpy as np
import pytest

import fastxent

Z2 = np.array([[2.3, 2.1, 4.5], [4.2, 3.2, 5.1]])
W = np.array([25.0, 25.0, 100.0])


def test_worked_example_label_1():
    """t = [0, 1, 0], p = [0.4, 0.4, 0.2] -> 0.916290731874155 (labels and one-hot)."""
    p = np.array([[0.4, 0.4, 0.2]])
    assert fastxent.cross_entropy(p, np.array([1]), from_logits=False) == pytest.approx(
        0.916290731874155, rel=1e-14)
    assert fastxent.cross_entropy(p, np.array([[0.0, 1.0, 0.0]]),
                                  from_logits=False) == pytest.approx(0.916290731874155,
                                                                      rel=1e-14)


def test_worked_example_label_2():
    """t = [0, 0, 1], p = [0.1, 0.2, 0.7] -> 0.35667494393873245 (labels and one-hot)."""
    p = np.array([[0.1, 0.2, 0.7]])
    assert fastxent.cross_entropy(p, np.array([2]), from_logits=False) == pytest.approx(
        0.35667494393873245, rel=1e-14)
    assert fastxent.cross_entropy(p, np.array([[0.0, 0.0, 1.0]]),
                                  from_logits=False) == pytest.approx(0.35667494393873245,
                                                                      rel=1e-14)


def test_worked_examples_together_float32():
    """Both worked examples in one float32 batch: mean of the two, per-row values."""
    p = np.array([[0.4, 0.4, 0.2], [0.1, 0.2, 0.7]], dtype=np.float32)
    none = fastxent.cross_entropy(p, np.array([1, 2]), from_logits=False, reduction="none")
    np.testing.assert_allclose(none, [0.916290731874155, 0.35667494393873245], rtol=1e-6)


@pytest.mark.parametrize("h, y", [(0.9, 1.0), (0.2, 0.0), (0.7, 0.25), (0.5, 0.5),
                                  (0.01, 1.0), (0.999, 0.0), (0.3, 0.6)])
def test_binary_cost_hand_values(h, y):
    """-(y log h + (1 - y) log(1 - h)), by hand, for probabilities and the matching logit."""
    expected = -(y * math.log(h) + (1 - y) * math.log(1 - h))
    got = fastxent.binary_cross_entropy(np.array([h]), np.array([y]), from_logits=False)
    assert float(got) == pytest.approx(expected, rel=1e-14)
    logit = math.log(h / (1 - h))
    got = fastxent.binary_cross_entropy(np.array([logit]), np.array([y]))
    assert float(got) == pytest.approx(expected, rel=1e-12)
    grad = fastxent.binary_cross_entropy_grad(np.array([h]), np.array([y]), from_logits=False)
    assert float(grad[0]) == pytest.approx(-(y / h - (1 - y) / (1 - h)), rel=1e-14)
    grad = fastxent.binary_cross_entropy_grad(np.array([logit]), np.array([y]))
    assert float(grad[0]) == pytest.approx(h - y, rel=1e-11, abs=1e-15)


def test_binary_hand_values_batch():
    """Mean over a batch: 0.9/1, 0.2/0, 0.6/1 -> mean of -log .9, -log .8, -log .6."""
    got = fastxent.binary_cross_entropy(np.array([0.9, 0.2, 0.6]), np.array([1.0, 0.0, 1.0]),
                                        from_logits=False)
    assert float(got) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3,
                                       rel=1e-14)


def test_docstring_binary_example():
    """binary_cross_entropy([0.9], [1]) = -log 0.9 = 0.10536051565782628."""
    got = fastxent.binary_cross_entropy(np.array([0.9]), np.array([1.0]), from_logits=False)
    assert float(got) == pytest.approx(0.10536051565782628, rel=1e-14)


def test_vector_label_smoothing():
    """z=[[2,1,0,-1,0.5]], y=[0], eps=0.1, mean -> 0.7244379396277961."""
    got = fastxent.cross_entropy(np.array([[2.0, 1.0, 0.0, -1.0, 0.5]]), np.array([0]),
                                 label_smoothing=0.1)
    assert float(got) == pytest.approx(0.7244379396277961, rel=1e-14)


def test_vector_class_weight():
    """Z2, y=[1,2], w=[25,25,100], mean -> 0.87048350145262."""
    got = fastxent.cross_entropy(Z2, np.array([1, 2]), weight=W)
    assert float(got) == pytest.approx(0.87048350145262, rel=1e-13)


def test_vector_soft_targets_weight():
    """Z2, one-hot targets of [1,2], w=[25,25,100], mean -> 54.40521884078875 (mean divides by
    the row count, not the weights)."""
    got = fastxent.cross_entropy(Z2, np.eye(3)[[1, 2]], weight=W)
    assert float(got) == pytest.approx(54.40521884078875, rel=1e-14)


def test_vector_weight_smoothing():
    """Z2, y=[1,2], w=[25,25,100], eps=0.2, mean -> 0.8451171188011821."""
    got = fastxent.cross_entropy(Z2, np.array([1, 2]), weight=W, label_smoothing=0.2)
    assert float(got) == pytest.approx(0.8451171188011821, rel=1e-14)


def test_vector_weight_ignore_index():
    """Z2, y=[1,-100], w=[25,25,100], ignore_index=-100, mean -> 2.58358834711929."""
    got = fastxent.cross_entropy(Z2, np.array([1, -100]), weight=W, ignore_index=-100)
    assert float(got) == pytest.approx(2.58358834711929, rel=1e-13)


def test_vector_all_ignored():
    """Z2, y=[-100,-100], ignore_index=-100: mean NaN, sum 0.0 (gradient 0)."""
    y = np.array([-100, -100])
    assert np.isnan(fastxent.cross_entropy(Z2, y, ignore_index=-100))
    assert fastxent.cross_entropy(Z2, y, ignore_index=-100, reduction="sum") == 0.0
    np.testing.assert_array_equal(fastxent.cross_entropy_grad(Z2, y, ignore_index=-100), 0.0)


def test_vector_confident_float32():
    """z=[[20,0,0]] float32, y=[0] -> 4.1223073758387905e-09 (PyTorch float32 returns 0.0)."""
    got = fastxent.cross_entropy(np.array([[20.0, 0.0, 0.0]], dtype=np.float32), np.array([0]))
    assert got.dtype == np.float32
    assert float(got) == pytest.approx(4.1223073758387905e-09, rel=1e-6)


def test_vector_log_loss_spam_ham():
    """log_loss(["spam","ham","ham","spam"], [[.1,.9],[.9,.1],[.8,.2],[.35,.65]]) ->
    0.21616187468057912 (classes sorted: ham=0, spam=1)."""
    p = np.array([[0.1, 0.9], [0.9, 0.1], [0.8, 0.2], [0.35, 0.65]])
    got = fastxent.cross_entropy(p, np.array([1, 0, 0, 1]), from_logits=False)
    assert float(got) == pytest.approx(0.21616187468057912, rel=1e-14)
    binary = fastxent.binary_cross_entropy(p[:, 1], np.array([1.0, 0.0, 0.0, 1.0]),
                                           from_logits=False)
    assert float(binary) == pytest.approx(0.21616187468057912, rel=1e-14)


def test_vector_binary_logits():
    """z=[-18.6,0.51,2.94,-12.8], y=[0,1,0,0]: mean 0.8654579497810974."""
    got = fastxent.binary_cross_entropy(np.array([-18.6, 0.51, 2.94, -12.8]),
                                        np.array([0.0, 1.0, 0.0, 0.0]))
    assert float(got) == pytest.approx(0.8654579497810974, rel=1e-14)


def test_vector_binary_logits_pos_weight():
    """Same with pos_weight=3: 1.100614608803535."""
    got = fastxent.binary_cross_entropy(np.array([-18.6, 0.51, 2.94, -12.8]),
                                        np.array([0.0, 1.0, 0.0, 0.0]), pos_weight=3.0)
    assert float(got) == pytest.approx(1.100614608803535, rel=1e-14)


def test_vector_binary_probability_zero():
    """p=0, y=1: PyTorch clamps log at -100 and gives 100; fastxent clips p at eps and gives
    -log(eps) (documented difference)."""
    for dtype in (np.float32, np.float64):
        got = fastxent.binary_cross_entropy(np.array([0.0], dtype), np.array([1.0], dtype),
                                            from_logits=False)
        assert float(got) == pytest.approx(-math.log(float(np.finfo(dtype).eps)), rel=1e-6)


def test_vector_binary_keras_smoothing():
    """Keras binary label smoothing: y' = y (1 - e) + e / 2."""
    z = np.array([1.5, -0.5])
    y = np.array([1.0, 0.0])
    got = fastxent.binary_cross_entropy(z, y, label_smoothing=0.2)
    expected = fastxent.binary_cross_entropy(z, np.array([0.9, 0.1]))
    assert float(got) == pytest.approx(float(expected), rel=1e-15)


# ---- z-loss, soft-capping and focal terms (mpmath values, 40 digits) -------------------------

Z3 = np.array([[2.0, 1.0, 0.0]])


def test_vector_z_loss():
    assert fastxent.cross_entropy(Z3, np.array([0]), z_loss=0.1) == pytest.approx(
        0.98726261244719577, rel=1e-15)


def test_vector_softcap():
    assert fastxent.cross_entropy(Z3, np.array([0]), softcap=1.0) == pytest.approx(
        0.78759094495763078, rel=1e-15)


def test_vector_focal():
    assert fastxent.cross_entropy(Z3, np.array([0]), focal_gamma=2.0) == pytest.approx(
        0.045677798967884889, rel=1e-15)


def test_vector_binary_focal_torchvision_defaults():
    assert fastxent.binary_cross_entropy(np.array([1.0]), np.array([1.0]), focal_gamma=2.0,
                                         focal_alpha=0.25) == pytest.approx(
        0.0056645143771168329, rel=1e-15)


def test_vector_z_loss_mean_with_class_weights():
    z = np.array([[0.0, 0.0], [0.0, math.log(3.0)]])
    assert fastxent.cross_entropy(z, np.array([0, 1]), weight=np.array([1.0, 3.0]),
                                  z_loss=0.5) == pytest.approx(0.9896146168765738, rel=1e-15)
