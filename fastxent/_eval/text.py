"""The interpretation of an evaluation in words: the one-line summary ``fastxent eval`` prints
first."""

import math


def _number(value, digits=3):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    return f"{value:.{digits}g}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def interpretation(result):
    """One line that says what the loss means.

    Parameters
    ----------
    result : EvaluationResult

    Returns
    -------
    str
        For example ``loss 0.412 ± 0.006 nats (0.594 bits) · uniform 2.303 · prior 2.289 ·
        skill 0.82 · perplexity 1.51 of 10 classes · accuracy 0.887 ± 0.004`` (± the
        half-width of the 95 % interval).
    """
    spread = (f" ± {_number(1.96 * result.loss_se)}" if math.isfinite(result.loss_se)
              else "")
    parts = [f"loss {_number(result.loss)}{spread} nats ({_number(result.loss_bits)} bits)"]
    parts.append(f"uniform {_number(result.uniform_loss)}")
    prior = "prior" if result.prior_source == "seen" else "given prior"
    parts.append(f"{prior} {_number(result.prior_loss)}")
    parts.append(f"skill {_number(result.skill, 2)}")
    classes = "" if result.n_classes is None else f" of {result.n_classes} classes"
    parts.append(f"perplexity {_number(result.perplexity, 2)}{classes}")
    if result.kl is not None:
        parts.append(f"target entropy {_number(result.target_entropy)} · "
                     f"KL {_number(result.kl)}")
    if result.accuracy is not None:
        low, high = result.accuracy_ci
        half = (high - low) / 2 if math.isfinite(low) else math.nan
        parts.append(f"accuracy {_number(result.accuracy)} ± {_number(half)}")
    return " · ".join(parts)


def _p_value(p):
    if p is None or not math.isfinite(p):
        return "nan"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


def comparison(result):
    """One line that says whether model A differs from model B.

    Parameters
    ----------
    result : ComparisonResult

    Returns
    -------
    str
        For example ``loss A 0.412 vs B 0.430 nats: A lower by 0.018 ± 0.004 (p < 1e-4) ·
        accuracy A 0.887 vs B 0.880 (McNemar p = 0.03)``.
    """
    d = result.loss_diff
    half = 1.96 * result.loss_diff_se
    if math.isnan(d):
        verdict = "difference nan"
    elif d == 0:
        verdict = "no difference"
    else:
        side = "lower" if d < 0 else "higher"
        verdict = (f"A {side} by {_number(abs(d))} ± {_number(half)} "
                   f"(p {_p_value_text(result.loss_diff_p)})")
    parts = [f"loss A {_number(result.a.loss)} vs B {_number(result.b.loss)} nats: {verdict}"]
    if result.mcnemar is not None:
        parts.append(f"accuracy A {_number(result.a.accuracy)} vs B "
                     f"{_number(result.b.accuracy)} (McNemar p "
                     f"{_p_value_text(result.mcnemar.p_value)})")
    return " · ".join(parts)


def _p_value_text(p):
    text = _p_value(p)
    return text if text.startswith("<") else f"= {text}"
