"""fastxent.xgboost and fastxent.lightgbm: training with fastxent's objectives gives the trees
and predictions of the libraries' built-in objectives; the options change them as documented."""

import json

import numpy as np
import pytest

import fastxent
import fastxent.lightgbm as fx_lightgbm
import fastxent.xgboost as fx_xgboost

ROUNDS = 10


def _iris():
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_iris(return_X_y=True)
    return x, y, np.random.default_rng(0).uniform(0.5, 2.0, y.size)


def _breast_cancer():
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_breast_cancer(return_X_y=True)
    return x, y, np.random.default_rng(1).uniform(0.5, 2.0, y.size)


class _Data:
    """The part of a DMatrix / Dataset the objectives read."""

    def __init__(self, label, weight=None):
        self.label, self.weight = np.asarray(label, np.float32), weight

    def get_label(self):
        return self.label

    def get_weight(self):
        return np.array([], np.float32) if self.weight is None else self.weight


# ---- XGBoost ---------------------------------------------------------------------------------

def _xgb_trees(booster):
    """Each tree's splits (feature, threshold, children) exactly and its leaves as floats."""
    trees = []
    for text in booster.get_dump(dump_format="json"):
        splits, leaves = [], []
        stack = [json.loads(text)]
        while stack:
            node = stack.pop()
            if "leaf" in node:
                leaves.append(node["leaf"])
            else:
                splits.append((node["nodeid"], node["split"], node["split_condition"],
                               node["yes"], node["no"]))
                stack.extend(node["children"])
        trees.append((splits, np.array(leaves)))
    return trees


def _assert_same_xgb_model(builtin, ours, dtrain):
    for (splits_a, leaves_a), (splits_b, leaves_b) in zip(
            _xgb_trees(builtin), _xgb_trees(ours), strict=True):
        assert splits_a == splits_b
        np.testing.assert_allclose(leaves_b, leaves_a, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.predict(dtrain, output_margin=True),
                               builtin.predict(dtrain, output_margin=True), rtol=0, atol=1e-6)


def test_xgboost_softmax_objective_grows_the_builtin_trees():
    xgb = pytest.importorskip("xgboost")
    x, y, w = _iris()
    dtrain = xgb.DMatrix(x, label=y, weight=w)
    params = {"num_class": 3, "max_depth": 3, "eta": 0.3, "tree_method": "hist",
              "nthread": 1, "base_score": 0.0}
    builtin_log, ours_log = {}, {}
    builtin = xgb.train(params | {"objective": "multi:softprob", "eval_metric": "mlogloss"},
                        dtrain, ROUNDS, evals=[(dtrain, "train")], evals_result=builtin_log,
                        verbose_eval=False)
    ours = xgb.train(params | {"disable_default_eval_metric": 1}, dtrain, ROUNDS,
                     obj=fx_xgboost.softmax_objective(3),
                     custom_metric=fx_xgboost.softmax_metric(), evals=[(dtrain, "train")],
                     evals_result=ours_log, verbose_eval=False)
    _assert_same_xgb_model(builtin, ours, dtrain)
    np.testing.assert_allclose(ours_log["train"]["mlogloss"], builtin_log["train"]["mlogloss"],
                               rtol=1e-5)


def test_xgboost_logistic_objective_grows_the_builtin_trees():
    xgb = pytest.importorskip("xgboost")
    x, y, w = _breast_cancer()
    dtrain = xgb.DMatrix(x, label=y, weight=w)
    params = {"max_depth": 3, "eta": 0.3, "tree_method": "hist", "nthread": 1}
    builtin_log, ours_log = {}, {}
    # the built-in objective reads base_score as a probability, a custom one as a margin
    builtin = xgb.train(params | {"objective": "binary:logistic", "base_score": 0.5,
                                  "eval_metric": "logloss"},
                        dtrain, ROUNDS, evals=[(dtrain, "train")], evals_result=builtin_log,
                        verbose_eval=False)
    ours = xgb.train(params | {"base_score": 0.0, "disable_default_eval_metric": 1}, dtrain,
                     ROUNDS, obj=fx_xgboost.logistic_objective(),
                     custom_metric=fx_xgboost.logistic_metric(), evals=[(dtrain, "train")],
                     evals_result=ours_log, verbose_eval=False)
    _assert_same_xgb_model(builtin, ours, dtrain)
    np.testing.assert_allclose(ours_log["train"]["logloss"], builtin_log["train"]["logloss"],
                               rtol=1e-5)


def test_xgboost_objective_values():
    """XGBoost's conventions: the factor 2 and the floors on the Hessian."""
    rng = np.random.default_rng(2)
    predt = rng.normal(0, 3, (8, 4)).astype(np.float32)
    predt[0] = [40.0, 0.0, 0.0, 0.0]                 # p(1 - p) under the floor
    labels = rng.integers(0, 4, 8)
    w = rng.uniform(0.5, 2, 8).astype(np.float32)
    grad, hess = fx_xgboost.softmax_objective(4)(predt, _Data(labels, w))
    g, h = fastxent.cross_entropy_grad_hess(predt, labels, sample_weight=w, reduction="sum")
    np.testing.assert_array_equal(grad, g)
    np.testing.assert_array_equal(hess, np.maximum(2 * h, np.float32(1e-6)))
    assert hess[0, 1] == np.float32(1e-6)
    z = rng.normal(0, 3, 8).astype(np.float32)
    z[0] = 60.0
    y = rng.integers(0, 2, 8)
    grad, hess = fx_xgboost.logistic_objective()(z, _Data(y, w))
    g, h = fastxent.binary_cross_entropy_grad_hess(z, y.astype(np.float32), weight=w,
                                                   reduction="sum")
    np.testing.assert_array_equal(grad, g)
    np.testing.assert_array_equal(hess, np.maximum(h, np.float32(1e-16) * w))


# ---- LightGBM --------------------------------------------------------------------------------

def _lgb_trees(booster):
    trees = []
    for tree in booster.dump_model()["tree_info"]:
        splits, leaves = [], []
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "leaf_value" in node:
                leaves.append(node["leaf_value"])
            else:
                splits.append((node["split_feature"], node["threshold"],
                               node["decision_type"]))
                stack.extend([node["left_child"], node["right_child"]])
        trees.append((splits, np.array(leaves)))
    return trees


def _assert_same_lgb_model(builtin, ours, x):
    for (splits_a, leaves_a), (splits_b, leaves_b) in zip(
            _lgb_trees(builtin), _lgb_trees(ours), strict=True):
        assert splits_a == splits_b
        np.testing.assert_allclose(leaves_b, leaves_a, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.predict(x, raw_score=True),
                               builtin.predict(x, raw_score=True), rtol=0, atol=1e-6)


LGB_PARAMS = {"num_leaves": 7, "learning_rate": 0.3, "verbose": -1, "num_threads": 1,
              "boost_from_average": False, "deterministic": True}


def test_lightgbm_softmax_objective_grows_the_builtin_trees():
    lgb = pytest.importorskip("lightgbm")
    x, y, w = _iris()
    params = LGB_PARAMS | {"num_class": 3, "metric": "multi_logloss"}
    builtin_log, ours_log = {}, {}
    train = lgb.Dataset(x, y, weight=w)
    builtin = lgb.train(params | {"objective": "multiclass"}, train, ROUNDS,
                        valid_sets=[train], callbacks=[lgb.record_evaluation(builtin_log)])
    train = lgb.Dataset(x, y, weight=w)
    ours = lgb.train(params | {"objective": fx_lightgbm.softmax_objective(3), "metric": "None"},
                     train, ROUNDS, valid_sets=[train], feval=fx_lightgbm.softmax_metric(),
                     callbacks=[lgb.record_evaluation(ours_log)])
    _assert_same_lgb_model(builtin, ours, x)
    np.testing.assert_allclose(ours_log["training"]["multi_logloss"],
                               builtin_log["training"]["multi_logloss"], rtol=1e-6)


def test_lightgbm_logistic_objective_grows_the_builtin_trees():
    lgb = pytest.importorskip("lightgbm")
    x, y, w = _breast_cancer()
    builtin = lgb.train(LGB_PARAMS | {"objective": "binary"}, lgb.Dataset(x, y, weight=w),
                        ROUNDS)
    ours = lgb.train(LGB_PARAMS | {"objective": fx_lightgbm.logistic_objective()},
                     lgb.Dataset(x, y, weight=w), ROUNDS)
    _assert_same_lgb_model(builtin, ours, x)


def test_lightgbm_objective_values():
    """LightGBM's convention: the multiclass Hessian's factor K / (K - 1)."""
    rng = np.random.default_rng(3)
    preds = rng.normal(0, 3, (8, 4))
    labels = rng.integers(0, 4, 8)
    grad, hess = fx_lightgbm.softmax_objective(4)(preds, _Data(labels))
    g, h = fastxent.cross_entropy_grad_hess(preds, labels, reduction="sum")
    np.testing.assert_array_equal(grad, g)
    np.testing.assert_allclose(hess, 4 / 3 * h, rtol=1e-15)


# ---- options and errors ----------------------------------------------------------------------

@pytest.mark.parametrize("module", [fx_xgboost, fx_lightgbm])
def test_options_reach_the_gradient(module):
    rng = np.random.default_rng(4)
    preds = rng.normal(0, 2, (6, 3))
    labels = rng.integers(0, 3, 6)
    class_weight = np.array([1.0, 3.0, 0.5])
    grad, _ = module.softmax_objective(3, weight=class_weight, label_smoothing=0.1)(
        preds, _Data(labels))
    expected = fastxent.cross_entropy_grad(preds, labels, weight=class_weight,
                                           label_smoothing=0.1, reduction="sum")
    np.testing.assert_allclose(grad, expected, rtol=1e-6)
    z = rng.normal(0, 2, 6)
    y = rng.integers(0, 2, 6)
    grad, _ = module.logistic_objective(pos_weight=2.0)(z, _Data(y))
    expected = fastxent.binary_cross_entropy_grad(z, y.astype(float), pos_weight=2.0,
                                                  reduction="sum")
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


@pytest.mark.parametrize("module", [fx_xgboost, fx_lightgbm])
def test_focal_terms_reach_the_gradient_and_the_hessian_stays_positive(module):
    """Focal terms give a Hessian that is negative where the loss is concave: the objective
    floors it (XGBoost's floor, LightGBM's HESS_FLOOR), and leaves the gradient as is."""
    rng = np.random.default_rng(5)
    preds = rng.normal(0, 4, (40, 3))
    labels = rng.integers(0, 3, 40)
    options = dict(focal_gamma=2.0, focal_alpha=[0.25, 0.5, 1.0], z_loss=1e-3, softcap=6.0)
    grad, hess = module.softmax_objective(3, **options)(preds, _Data(labels))
    g, h = fastxent.cross_entropy_grad_hess(preds, labels, reduction="sum", **options)
    np.testing.assert_allclose(grad, g, rtol=1e-6)
    assert (h < 0).any() and (hess > 0).all()
    z = rng.normal(0, 4, 40)
    y = rng.integers(0, 2, 40)
    grad, hess = module.logistic_objective(focal_gamma=2.0, focal_alpha=0.25)(z, _Data(y))
    g, h = fastxent.binary_cross_entropy_grad_hess(z, y.astype(float), focal_gamma=2.0,
                                                   focal_alpha=0.25, reduction="sum")
    np.testing.assert_allclose(grad, g, rtol=1e-6)
    assert (h < 0).any() and (hess > 0).all()


def test_xgboost_trains_with_focal_terms():
    """A real training run with a focal objective: it learns (the training loss falls) and its
    trees are not multi:softprob's."""
    xgboost = pytest.importorskip("xgboost")
    X, y = _iris()[:2]
    dtrain = xgboost.DMatrix(X, label=y)
    params = {"num_class": 3, "max_depth": 3, "eta": 0.3, "base_score": 0.0,
              "disable_default_eval_metric": 1}
    focal = xgboost.train(params, dtrain, 10,
                          obj=fx_xgboost.softmax_objective(3, focal_gamma=2.0))
    plain = xgboost.train(params, dtrain, 10, obj=fx_xgboost.softmax_objective(3))
    margins = focal.predict(dtrain, output_margin=True)
    assert fastxent.cross_entropy(margins, y) < 0.5 * np.log(3)
    assert np.abs(margins - plain.predict(dtrain, output_margin=True)).max() > 1e-3


@pytest.mark.parametrize("module", [fx_xgboost, fx_lightgbm])
def test_bad_options_are_refused_when_the_objective_is_made(module):
    with pytest.raises(TypeError, match="unexpected option.*sample_weight"):
        module.softmax_objective(3, sample_weight=np.ones(3))
    with pytest.raises(TypeError, match="unexpected option.*reduction"):
        module.logistic_objective(reduction="mean")
    with pytest.raises(ValueError, match="label_smoothing"):
        module.softmax_objective(3, label_smoothing=1.5)
    with pytest.raises(ValueError, match="weight"):
        module.softmax_objective(3, weight=np.ones(4))
    with pytest.raises(ValueError, match="num_class must be at least 2"):
        module.softmax_objective(1)
    with pytest.raises(TypeError, match="num_class must be an int"):
        module.softmax_objective(3.0)


@pytest.mark.parametrize("module", [fx_xgboost, fx_lightgbm])
def test_bad_scores_and_labels_name_the_problem(module):
    objective = module.softmax_objective(3)
    with pytest.raises(ValueError, match=r"scores of shape \(4, 2\), expected \(4, 3\)"):
        objective(np.zeros((4, 2)), _Data([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="labels must be class indices"):
        objective(np.zeros((2, 3)), _Data([0.5, 1]))
    with pytest.raises(ValueError, match="labels must be class indices 0 .. 2, got 3.0 at row 1"):
        objective(np.zeros((2, 3)), _Data([0, 3]))
    grad, _ = module.softmax_objective(3, ignore_index=-1)(np.zeros((2, 3)), _Data([0, -1]))
    np.testing.assert_array_equal(grad[1], 0.0)
