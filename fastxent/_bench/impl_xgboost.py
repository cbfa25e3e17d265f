"""XGBoost's built-in ``multi:softprob`` objective, for the ``xgboost_round`` kind only.

Follows the interface of :mod:`fastxent._bench.builders`; xgboost is imported only when the
builder runs.
"""

from fastxent._bench.builders import one_xgboost_round

MODULE = "xgboost"


def xgboost_round(data, threads):
    return one_xgboost_round(data, threads)
