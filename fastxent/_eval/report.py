"""Pictures and a self-contained HTML page of an evaluation or a comparison (``fastxent eval
--plot/--report``).

``plot_figure`` draws four panels: the reliability diagram, the per-class (or per-group, or
top-k) metrics, the loss-concentration curve and the loss against its baselines; a
``ComparisonResult`` gets the same panels with both models in two colours and the per-class
loss differences. ``write_plot`` saves the figure as a PNG and ``write_report`` writes one
HTML file (the summary, the tables and the figure as an embedded PNG) that needs nothing else
to be read. matplotlib is imported when a figure is drawn, never by ``import fastxent``.
"""

import base64
import html
import io
import math

import numpy as np

from fastxent._eval.compare import ComparisonResult
from fastxent._eval.result import EvaluationResult

#: The figure's size in inches and its resolution: 1200 x 800 pixels.
FIGURE_SIZE = (12.0, 8.0)
DPI = 100
#: With more slices than twice this, the figure shows this many worst and best.
FIGURE_SLICES_PER_SIDE = 10
#: With more slices than twice this, the report's tables show this many worst and best.
TABLE_SLICES_PER_SIDE = 20
#: The most classes the report shows a confusion matrix for.
MAX_CONFUSION_CLASSES = 20
#: Characters per inch of figure width the summary in the figure's title wraps at.
TITLE_CHARS_PER_INCH = 13

MISSING_MATPLOTLIB = ("fastxent's figures and HTML reports need matplotlib: "
                      "pip install 'fastxent[plot]' (or pip install matplotlib)")

# The colours: one per model (A, B), the calibration gap and the reference lines.
MODEL_COLORS = ("#1f77b4", "#ff7f0e")
GAP_COLOR = "#d62728"
REFERENCE_COLOR = "#7f7f7f"
UNIFORM_COLOR = "#555555"
ACCURACY_COLOR = "#2ca02c"
PRIOR_COLOR = "#9467bd"
FLOOR_COLOR = "#8c564b"
# Fonts in points, at the saved size: every text is at least 9 pt.
STYLE = {"font.size": 10, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
         "legend.fontsize": 9, "figure.titlesize": 11, "axes.spines.top": False,
         "axes.spines.right": False}
PANEL_TITLE_SIZE = 11


def _matplotlib():
    """matplotlib's ``Figure``, its Agg canvas and ``rc_context``, imported on first use.

    Raises
    ------
    ImportError
        matplotlib is not installed, with the command that installs it.
    """
    try:
        from matplotlib import rc_context
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(MISSING_MATPLOTLIB) from exc
    return Figure, FigureCanvasAgg, rc_context


def _number(value, digits=3):
    """`value` for reading: ``digits`` decimals, or significant digits from 1000 up ("nan",
    "inf")."""
    value = float(value)
    return f"{value:.{digits}g}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def _percent(share):
    """A share in [0, 1] as a percentage for reading ("nan" for NaN)."""
    return "nan" if not math.isfinite(share) else f"{100 * share:.1f} %"


def _interval(bounds, digits=3):
    """A 95 % interval ``(low, high)`` as ``[low, high]`` ("–" unless both are finite)."""
    low, high = bounds
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"[{_number(low, digits)}, {_number(high, digits)}]"


def _models(result):
    """The models a result shows, as ``(name, EvaluationResult, colour)``.

    Raises
    ------
    TypeError
        `result` is neither an ``EvaluationResult`` nor a ``ComparisonResult``.
    """
    if isinstance(result, ComparisonResult):
        return [("A", result.a, MODEL_COLORS[0]), ("B", result.b, MODEL_COLORS[1])]
    if isinstance(result, EvaluationResult):
        return [("model", result, MODEL_COLORS[0])]
    raise TypeError(f"expected an EvaluationResult or a ComparisonResult, got "
                    f"{type(result).__name__}")


def _headline(result):
    """The report's first line: what was evaluated."""
    if isinstance(result, ComparisonResult):
        classes = result.a.n_classes
        what = f"Model A vs model B on {result.count:,} rows"
    else:
        classes = result.n_classes
        what = f"Evaluation of {result.count:,} rows"
    return what if classes is None else f"{what}, {classes:,} classes"


def _balanced_lines(summary, width):
    """A summary line cut between its " · " parts into lines of about equal length, each
    at most `width` characters where the parts allow."""
    parts = summary.split(" · ")
    n_lines = math.ceil(len(summary) / width)
    target = len(summary) / n_lines
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 3 + len(part) > target and len(lines) < n_lines:
            lines.append(part)
        else:
            lines[-1] += " · " + part
    return "\n".join(lines)


def _worst_and_best(values, per_side):
    """Indices of `values` from the largest down (NaN first: a slice whose metric is NaN
    needs looking at): all of them when they are at most ``2 * per_side``, else the
    `per_side` largest and the `per_side` smallest.

    Returns
    -------
    shown : ndarray of int
        The indices, largest value first.
    omitted : int
        How many are left out between the largest and the smallest.
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-np.where(np.isnan(values), np.inf, values), kind="stable")
    if len(order) <= 2 * per_side:
        return order, 0
    return np.concatenate([order[:per_side], order[-per_side:]]), len(order) - 2 * per_side


def _note(ax, text):
    """Leave an empty panel with `text` in its middle."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes,
            color=REFERENCE_COLOR)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _title(panel, text):
    """Title a panel (a subfigure), above all its axes."""
    panel.suptitle(text, fontsize=PANEL_TITLE_SIZE)


# ---------------------------------------------------------------------------------------------
# the panels


def _why_no_accuracy(models):
    """Why the models have no accuracy to draw."""
    return "no row counted" if not models[0][1].count else "soft targets have no accuracy"


def _plot_reliability(panel, models):
    """The reliability diagram of each model above the share of its rows per confidence bin."""
    binned = [(name, r.ece_bins, r.ece, color) for name, r, color in models
              if r.count and r.ece_bins is not None]
    if not binned:
        _title(panel, "Reliability diagram")
        _note(panel.subplots(), f"No reliability diagram: {_why_no_accuracy(models)}")
        return
    if len(binned) == 1:
        _title(panel, f"Reliability diagram (ECE {_number(binned[0][2])})")
    else:
        _title(panel, "Reliability diagram")
    ax, shares = panel.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": (3, 1)})
    ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE_COLOR, lw=1, label="calibrated")
    width = np.diff(binned[0][1].edges)
    centers = binned[0][1].edges[:-1] + width / 2
    bar_width = width * 0.9 / len(binned)
    for index, (name, bins, ece, color) in enumerate(binned):
        seen = np.isfinite(bins.confidence) & np.isfinite(bins.accuracy)
        ax.plot(bins.confidence[seen], bins.accuracy[seen], "o-", color=color, ms=5,
                label=name if len(binned) == 1 else f"{name} (ECE {_number(ece)})")
        if len(binned) == 1 and seen.any():
            ax.vlines(bins.confidence[seen], bins.accuracy[seen], bins.confidence[seen],
                      color=GAP_COLOR, lw=2, alpha=0.6, label="gap (below: over-confident)")
        total = np.nansum(bins.weight)
        share = bins.weight / total if total > 0 else np.zeros_like(bins.weight)
        offset = (index - (len(binned) - 1) / 2) * bar_width
        shares.bar(centers + offset, share, width=bar_width, color=color, alpha=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), ylabel="accuracy")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.grid(alpha=0.3)
    shares.set(xlabel="confidence (largest predicted probability)", ylabel="share of rows")
    shares.grid(alpha=0.3, axis="y")


def _slice_source(result):
    """The slice table a model's second panel shows and its kind: per class, else per group,
    else none (a table without rows counts as none)."""
    if result.per_class is not None and len(result.per_class):
        return result.per_class, "class"
    if result.groups is not None and len(result.groups):
        return result.groups, "group"
    return None, None


def _bar_positions(n_shown, omitted):
    """Positions of bars from the top, with a gap after the first half when some are left
    out between them."""
    y = np.arange(n_shown, dtype=np.float64)
    if omitted:
        y[n_shown // 2:] += 1
    return y


def _label_slices(ax, y, keys, kind, omitted):
    """Name the horizontal bars by key, top down, and say how many are left out."""
    ax.set(yticks=y, yticklabels=[str(key) for key in keys], ylabel=kind,
           ylim=(y[-1] + 0.6, y[0] - 0.6))
    if omitted:
        ax.text(0.5, y[len(y) // 2] - 1, f"… {omitted:,} {_plural(kind)} not shown …",
                transform=ax.get_yaxis_transform(), ha="center", va="center",
                color=REFERENCE_COLOR)


def _bars(ax, y, values, **style):
    """Horizontal bars of `values` at `y`, with "nan" written where a value is NaN."""
    ax.barh(y, values, **style)
    for position in y[np.isnan(values)]:
        ax.text(0, position, " nan", va="center", color=GAP_COLOR)


def _overall_line(ax, value):
    """Mark the value over all rows on a panel of slices (nothing when it is NaN)."""
    if math.isfinite(value):
        ax.axvline(value, color="black", ls="--", lw=1, label=f"all rows {_number(value)}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")


def _plot_slices(panel, result):
    """One model's loss and accuracy per class (or group), as horizontal bars, worst loss at
    the top."""
    table, kind = _slice_source(result)
    if table is None:
        _plot_topk(panel, [("model", result, MODEL_COLORS[0])])
        return
    shown, omitted = _worst_and_best(table.loss, FIGURE_SLICES_PER_SIDE)
    y = _bar_positions(len(shown), omitted)
    if table.accuracy is None:
        loss_ax, accuracy_ax = panel.subplots(), None
    else:
        loss_ax, accuracy_ax = panel.subplots(1, 2, sharey=True)
    _bars(loss_ax, y, table.loss[shown], xerr=1.96 * table.loss_se[shown],
          color=MODEL_COLORS[0], error_kw={"lw": 1, "capsize": 2})
    _overall_line(loss_ax, result.loss)
    loss_ax.set_xlabel("mean loss (nats), 95 % interval")
    _label_slices(loss_ax, y, table.keys[shown], kind, omitted)
    loss_ax.grid(alpha=0.3, axis="x")
    if omitted:
        _title(panel, f"Per {kind}: the {FIGURE_SLICES_PER_SIDE} worst and "
                      f"{FIGURE_SLICES_PER_SIDE} best of {len(table):,} by loss")
    else:
        _title(panel, f"Per {kind}, worst loss at the top")
    if accuracy_ax is None:
        return
    _bars(accuracy_ax, y, table.accuracy[shown], color=ACCURACY_COLOR)
    _overall_line(accuracy_ax, result.accuracy)
    accuracy_ax.set(xlim=(0, 1), xlabel="accuracy (recall)" if kind == "class" else "accuracy")
    accuracy_ax.tick_params(labelleft=False)
    accuracy_ax.grid(alpha=0.3, axis="x")


def _plot_slice_differences(panel, comparison):
    """A − B of the loss per class (or group), as horizontal bars coloured by the model with
    the lower loss."""
    if comparison.per_class_loss_diff is not None and len(comparison.per_class_loss_diff):
        keys, diff, kind = comparison.a.per_class.keys, comparison.per_class_loss_diff, "class"
    elif comparison.a.groups is not None and len(comparison.a.groups):
        keys, kind = comparison.a.groups.keys, "group"
        diff = comparison.a.groups.loss - comparison.b.groups.loss
    else:
        _plot_topk(panel, _models(comparison))
        return
    ax = panel.subplots()
    shown, omitted = _worst_and_best(diff, FIGURE_SLICES_PER_SIDE)
    y = _bar_positions(len(shown), omitted)
    _bars(ax, y, diff[shown], color=[MODEL_COLORS[1] if d > 0 else MODEL_COLORS[0]
                                     for d in diff[shown]])
    ax.axvline(0, color="black", lw=0.8)
    ax.bar([0], [0], color=MODEL_COLORS[0], label="A lower loss")    # legend entries only
    ax.bar([0], [0], color=MODEL_COLORS[1], label="B lower loss")
    _overall_line(ax, comparison.loss_diff)
    ax.set_xlabel("loss of A − loss of B (nats)")
    _label_slices(ax, y, keys[shown], kind, omitted)
    ax.grid(alpha=0.3, axis="x")
    if omitted:
        _title(panel, f"Loss difference per {kind}: the {FIGURE_SLICES_PER_SIDE} largest "
                      f"each way of {len(diff):,}")
    else:
        _title(panel, f"Loss difference per {kind}")


def _plot_topk(panel, models):
    """The top-k accuracies of each model with their 95 % intervals."""
    _title(panel, "Top-k accuracy")
    ax = panel.subplots()
    labelled = [(name, r, color) for name, r, color in models
                if r.count and r.topk is not None]
    if not labelled:
        _note(ax, f"No per-class table and no accuracy: {_why_no_accuracy(models)}")
        return
    ks = list(labelled[0][1].topk)
    x = np.arange(len(ks))
    width = 0.8 / len(labelled)
    for index, (name, r, color) in enumerate(labelled):
        value = np.array([r.topk[k] for k in ks])
        error = np.abs(np.array([r.topk_ci[k] for k in ks]).T - value)
        position = x + (index - (len(labelled) - 1) / 2) * width
        bars = ax.bar(position, value, width=width, yerr=error, color=color, label=name,
                      error_kw={"lw": 1, "capsize": 3})
        ax.bar_label(bars, labels=[_number(v) for v in value], padding=3)
    ax.set(xticks=x, xticklabels=[f"top-{k}" for k in ks], ylim=(0, 1.12),
           ylabel="accuracy, 95 % interval")
    if len(labelled) > 1:
        ax.legend(loc="lower right")
    ax.grid(alpha=0.3, axis="y")


def _plot_concentration(panel, models):
    """Each model's share of the total loss carried by its worst rows."""
    _title(panel, "Where the loss comes from")
    ax = panel.subplots()
    curves = [(name, r, color, r.loss_histogram.curve()) for name, r, color in models]
    curves = [curve for curve in curves if len(curve[3][0])]
    if not curves:
        _note(ax, "No loss concentration: no row with a positive loss")
        return
    ax.plot([0, 100], [0, 100], ls="--", color=REFERENCE_COLOR, lw=1, label="equal losses")
    for name, r, color, (rows, share) in curves:
        prefix = "" if len(models) == 1 else f"{name}: "
        ax.plot(100 * rows, 100 * share, color=color, lw=2, label=name)
        for fraction, marker in zip(sorted(r.concentration), ("o", "s"), strict=True):
            value = r.concentration[fraction]
            if math.isfinite(value):
                ax.plot(100 * fraction, 100 * value, marker, color=color, ms=7, mec="black",
                        clip_on=False, label=f"{prefix}worst {100 * fraction:g} % of rows: "
                                             f"{_percent(value)} of the loss")
    ax.set(xlim=(0, 100), ylim=(0, 101), xlabel="share of rows, worst first (%)",
           ylabel="share of the total loss (%)")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)


def _plot_baselines(panel, models):
    """Each model's loss with its 95 % interval against the uniform and prior baselines."""
    ax = panel.subplots()
    first = models[0][1]
    names = []
    for position, (name, r, color) in enumerate(models):
        low, high = r.loss_ci
        bounded = math.isfinite(low) and math.isfinite(high)
        ax.bar([position], [r.loss], width=0.5, color=color,
               yerr=[[r.loss - low], [high - r.loss]] if bounded else None,
               error_kw={"lw": 1.2, "capsize": 6})
        value = _number(r.loss) + (f" ± {_number((high - low) / 2)}" if bounded else "")
        names.append(f"{'model' if len(models) == 1 else 'model ' + name}\n{value} nats")
    prior = "prior seen" if first.prior_source == "seen" else "given prior"
    references = [(first.uniform_loss, "uniform (1/C)", UNIFORM_COLOR, "--"),
                  (first.prior_loss, prior, PRIOR_COLOR, "-.")]
    if first.target_entropy is not None:
        references.append((first.target_entropy, "target entropy (least reachable)",
                           FLOOR_COLOR, ":"))
    for value, label, color, style in references:
        if math.isfinite(value):
            ax.axhline(value, color=color, ls=style, lw=1.5, label=f"{label}: {_number(value)}")
    heights = [h for _, r, _ in models for h in (r.loss, r.loss_ci[1])]
    heights = [h for h in heights + [value for value, *_ in references] if math.isfinite(h)]
    top = 1.35 * max(heights) if heights and max(heights) > 0 else 1.0
    ax.set(xticks=range(len(models)), xticklabels=names, xlim=(-0.7, len(models) - 0.3),
           ylim=(0, top), ylabel="mean cross-entropy (nats)")
    ax.secondary_yaxis("right", functions=(lambda nats: nats / math.log(2),
                                           lambda bits: bits * math.log(2))).set_ylabel("bits")
    if any(not math.isfinite(r.loss) for _, r, _ in models):
        ax.text(0.5, 0.5, "loss not finite: a row holds NaN\nor an infinite loss, or no row "
                "was counted",
                transform=ax.transAxes, ha="center", va="center", color=GAP_COLOR)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best")
    ax.grid(alpha=0.3, axis="y")
    skill = ", ".join(_number(r.skill, 2) if len(models) == 1
                      else f"{name} {_number(r.skill, 2)}" for name, r, _ in models)
    _title(panel, f"Loss against its baselines (skill {skill})")


def plot_figure(result, *, size=FIGURE_SIZE):
    """The figure of an evaluation or a comparison: four panels to read at a glance.

    The panels are the reliability diagram (accuracy against confidence per bin, the
    diagonal, and the share of rows per bin below it), the loss and accuracy per class (the
    10 worst and 10 best by loss when there are more than 20; per group without a class
    table, else the top-k accuracies), the loss concentration curve (the share of the total
    loss carried by the worst rows, with the worst 1 % and 10 % marked) and the loss with its
    95 % interval against the uniform and prior baselines. A comparison shows both models in
    two colours, and the per-class loss differences ``A − B`` instead of each model's table.

    Parameters
    ----------
    result : EvaluationResult or ComparisonResult
        What ``fastxent.evaluate`` or ``fastxent.compare`` returned.
    size : tuple of float, default (12, 8)
        Width and height in inches, at 100 dpi.

    Returns
    -------
    matplotlib.figure.Figure
        A figure with its own Agg canvas (no pyplot state, no window).

    Raises
    ------
    ImportError
        matplotlib is not installed.
    TypeError
        `result` is neither an ``EvaluationResult`` nor a ``ComparisonResult``.
    """
    models = _models(result)
    Figure, FigureCanvasAgg, rc_context = _matplotlib()
    with rc_context(STYLE):
        fig = Figure(figsize=size, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        panels = fig.subfigures(2, 2)
        _plot_reliability(panels[0, 0], models)
        if isinstance(result, ComparisonResult):
            _plot_slice_differences(panels[0, 1], result)
        else:
            _plot_slices(panels[0, 1], result)
        _plot_concentration(panels[1, 0], models)
        _plot_baselines(panels[1, 1], models)
        summary = _balanced_lines(result.summary(), int(size[0] * TITLE_CHARS_PER_INCH))
        fig.suptitle(f"{_headline(result)}\n{summary}")
    return fig


def _png(result):
    """The figure of `result` as PNG bytes and its size in pixels."""
    fig = plot_figure(result)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    width, height = (round(side * DPI) for side in fig.get_size_inches())
    return buffer.getvalue(), width, height


def write_plot(result, path):
    """Save the figure of an evaluation or a comparison (``plot_figure``) as a PNG.

    Parameters
    ----------
    result : EvaluationResult or ComparisonResult
    path : str or os.PathLike
        The file to write (PNG whatever its extension), 1200 x 800 pixels.

    Raises
    ------
    ImportError
        matplotlib is not installed.
    """
    plot_figure(result).savefig(path, format="png", dpi=DPI)


# ---------------------------------------------------------------------------------------------
# the HTML report

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1250px; padding: 0 1em; color: #222; }
.summary { font-size: 1.1em; background: #f3f6fa; border-left: 4px solid #1f77b4;
           padding: 0.6em 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
caption { text-align: left; font-weight: 600; padding-bottom: 0.3em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #eef1f5; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.omitted td { text-align: center; color: #777; font-style: italic; }
.side-by-side { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
img { max-width: 100%; height: auto; }
"""


def _cell(value, header=False):
    """One escaped table cell: numbers right-aligned, text (keys too) as it is."""
    tag = "th" if header else "td"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        text = f"{int(value):,}" if isinstance(value, (int, np.integer)) else _number(value)
        return f'<{tag} class="number">{html.escape(text)}</{tag}>'
    return f"<{tag}>{html.escape(str(value))}</{tag}>"


def _table(caption, header, rows):
    """An HTML table; a row that is a str spans every column (a note between rows)."""
    lines = ["<table>", f"<caption>{html.escape(caption)}</caption>",
             "<thead><tr>" + "".join(_cell(name, header=True) for name in header)
             + "</tr></thead>", "<tbody>"]
    for row in rows:
        if isinstance(row, str):
            lines.append(f'<tr class="omitted"><td colspan="{len(header)}">'
                         f"{html.escape(row)}</td></tr>")
        else:
            lines.append("<tr>" + "".join(_cell(value) for value in row) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _side_by_side(parts):
    """Tables next to each other, wrapping on a narrow page."""
    return '<div class="side-by-side">\n' + "\n".join(parts) + "\n</div>"


def _metric_rows(r):
    """The main metrics of one model as ``[name, value, 95 % interval]``."""
    rows = [["rows counted", r.count, ""]]
    if r.weight_sum != r.count:
        rows.append(["summed sample weight", r.weight_sum, ""])
    rows.append(["classes", "–" if r.n_classes is None else r.n_classes, ""])
    loss_ci = np.array(r.loss_ci)
    with np.errstate(over="ignore"):
        perplexity_ci = np.exp(loss_ci)
    rows += [["loss (nats)", r.loss, _interval(r.loss_ci)],
             ["loss (bits)", r.loss_bits, _interval(loss_ci / math.log(2))],
             ["perplexity", r.perplexity, _interval(perplexity_ci, 2)],
             ["skill (1 − loss / prior loss)", r.skill, ""]]
    if r.accuracy is not None:
        rows.append(["accuracy (top-1)", r.accuracy, _interval(r.accuracy_ci)])
        rows += [[f"top-{k} accuracy", value, _interval(r.topk_ci[k])]
                 for k, value in r.topk.items() if k != 1]
    rows.append(["mean confidence", r.confidence, ""])
    if r.ece is not None:
        rows.append(["expected calibration error", r.ece, ""])
    rows += [["mean predictive entropy (nats)", r.entropy, ""], ["Brier score", r.brier, ""]]
    if r.target_entropy is not None:
        rows += [["target entropy (nats)", r.target_entropy, ""], ["KL (nats)", r.kl, ""]]
    return rows


def _baseline_rows(r):
    """The baselines of one model as ``[name, loss, the model's gain over it]``."""
    prior = "class prior seen" if r.prior_source == "seen" else "class prior given"
    return [["uniform (1/C)", r.uniform_loss, r.uniform_loss - r.loss],
            [prior, r.prior_loss, r.prior_loss - r.loss]]


def _concentration_rows(r):
    """The share of the loss of the worst rows as ``[rows, share]``."""
    return [[f"worst {100 * fraction:g} % of rows", _percent(share)]
            for fraction, share in sorted(r.concentration.items())]


def _shown_slices(values, kind):
    """The slices a table shows: all in key order, or the `TABLE_SLICES_PER_SIDE` largest
    and smallest `values`, with the note that goes between them."""
    shown, omitted = _worst_and_best(values, TABLE_SLICES_PER_SIDE)
    if not omitted:
        return np.sort(shown), None
    return shown, f"… {omitted:,} {_plural(kind)} not shown …"


def _plural(kind):
    """"classes" or "groups"."""
    return "classes" if kind == "class" else "groups"


def _slice_table(table, kind):
    """One model's table per class or per group."""
    header = [kind, "rows", "loss (nats)", "± (95 %)", "confidence"]
    if table.accuracy is not None:
        header += ["recall" if kind == "class" else "accuracy", "calibration gap"]
    if table.precision is not None:
        header.append("precision")
    shown, note = _shown_slices(table.loss, kind)
    rows = []
    for position, index in enumerate(shown):
        if note and position == TABLE_SLICES_PER_SIDE:
            rows.append(note)
        row = [str(table.keys[index]), table.count[index], table.loss[index],
               1.96 * table.loss_se[index], table.confidence[index]]
        if table.accuracy is not None:
            row += [table.accuracy[index], table.calibration_gap[index]]
        if table.precision is not None:
            row.append(table.precision[index])
        rows.append(row)
    caption = f"Per {kind}" + (f": the {TABLE_SLICES_PER_SIDE} worst and "
                               f"{TABLE_SLICES_PER_SIDE} best by loss" if note else "")
    return _table(caption, header, rows)


def _slice_difference_table(a, b, kind):
    """Both models' loss and accuracy per class or group and their differences."""
    accuracy = "recall" if kind == "class" else "accuracy"
    header = [kind, "rows", "loss A", "loss B", "loss A − B"]
    if a.accuracy is not None:
        header += [f"{accuracy} A", f"{accuracy} B", f"{accuracy} A − B"]
    loss_diff = a.loss - b.loss
    shown, note = _shown_slices(loss_diff, kind)
    rows = []
    for position, index in enumerate(shown):
        if note and position == TABLE_SLICES_PER_SIDE:
            rows.append(note)
        row = [str(a.keys[index]), a.count[index], a.loss[index], b.loss[index],
               loss_diff[index]]
        if a.accuracy is not None:
            row += [a.accuracy[index], b.accuracy[index], a.accuracy[index] - b.accuracy[index]]
        rows.append(row)
    caption = f"Per {kind}" + (f": the {TABLE_SLICES_PER_SIDE} largest loss differences each "
                               f"way" if note else "")
    return _table(caption, header, rows)


def _confusion_table(confusion):
    """The confusion matrix, each cell shaded by its share of its row (the true class)."""
    totals = confusion.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(totals > 0, confusion / np.where(totals > 0, totals, 1), 0.0)
    integral = np.all(confusion == np.round(confusion))
    lines = ["<table>", "<caption>Confusion matrix (rows: true class, shaded by their share)"
             "</caption>", "<thead><tr><th>true \\ predicted</th>"
             + "".join(f"<th>{j}</th>" for j in range(confusion.shape[1])) + "</tr></thead>",
             "<tbody>"]
    for i, row in enumerate(confusion):
        cells = []
        for j, value in enumerate(row):
            text = f"{int(value):,}" if integral else _number(value)
            cells.append(f'<td class="number" style="background: rgba(31, 119, 180, '
                         f'{0.75 * shares[i, j]:.2f})">{html.escape(text)}</td>')
        lines.append(f"<tr><th>{i}</th>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _p_value(p):
    """A p-value for reading."""
    if math.isnan(p):
        return "nan"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


def _evaluation_sections(r):
    """The tables of one evaluation's report: those above the figure (metrics, baselines,
    concentration) and those below it (per class, per group, confusion matrix)."""
    tables = [_table("Main metrics", ["metric", "value", "95 % interval"], _metric_rows(r)),
              _table("Baselines", ["baseline", "loss (nats)", "model's gain (nats)"],
                     _baseline_rows(r)),
              _table("Loss concentration", ["rows", "share of the total loss"],
                     _concentration_rows(r))]
    details = []
    if r.per_class is not None:
        details.append(_slice_table(r.per_class, "class"))
    if r.groups is not None:
        details.append(_slice_table(r.groups, "group"))
    if r.confusion is not None and len(r.confusion) <= MAX_CONFUSION_CLASSES:
        details.append(_confusion_table(r.confusion))
    return tables, details


def _comparison_sections(c):
    """The tables of a comparison's report: those above the figure (the paired differences,
    then both models' metrics side by side) and those below it (per class and per group)."""
    a, b = c.a, c.b
    differences = [["loss A − B (nats)", c.loss_diff, _interval(c.loss_diff_ci),
                    _p_value(c.loss_diff_p)]]
    if c.accuracy_diff is not None:
        differences.append(["accuracy A − B", c.accuracy_diff, _interval(c.accuracy_diff_ci),
                            ""])
    if c.mcnemar is not None:
        differences += [["rows only A gets right", c.mcnemar.only_a_correct, "", ""],
                        ["rows only B gets right", c.mcnemar.only_b_correct, "", ""],
                        ["McNemar's exact test", "", "", _p_value(c.mcnemar.p_value)]]
    metrics = [[name, value_a, interval_a, value_b, interval_b] for (name, value_a, interval_a),
               (_, value_b, interval_b) in zip(_metric_rows(a), _metric_rows(b), strict=True)]
    baselines = [[name, loss, gain_a, gain_b] for (name, loss, gain_a), (*_, gain_b)
                 in zip(_baseline_rows(a), _baseline_rows(b), strict=True)]
    concentration = [[rows, share_a, share_b] for (rows, share_a), (_, share_b)
                     in zip(_concentration_rows(a), _concentration_rows(b), strict=True)]
    tables = [_table(f"Paired differences over {c.count:,} rows",
                     ["statistic", "value", "95 % interval", "p-value"], differences),
              _table("Main metrics", ["metric", "A", "A 95 % interval", "B", "B 95 % interval"],
                     metrics),
              _table("Baselines", ["baseline", "loss (nats)", "A's gain (nats)",
                                   "B's gain (nats)"], baselines),
              _table("Loss concentration", ["rows", "share of A's loss", "share of B's loss"],
                     concentration)]
    details = []
    if a.per_class is not None:
        details.append(_slice_difference_table(a.per_class, b.per_class, "class"))
    if a.groups is not None:
        details.append(_slice_difference_table(a.groups, b.groups, "group"))
    return tables, details


def _page(title, body):
    """The HTML5 document around `body` (a list of HTML fragments)."""
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        *body, "</body>", "</html>", ""])


def write_report(result, path, title=None):
    """Write a self-contained HTML report of an evaluation or a comparison.

    The page holds the one-line summary, the main metrics with their 95 % intervals, the
    baselines, the loss concentration, the figure of ``plot_figure`` (an embedded PNG), the
    per-class and per-group tables (the 20 worst and 20 best by loss when there are more than
    40) and the confusion matrix up to 20 classes. A comparison shows the paired differences
    (loss, accuracy, McNemar's test), the two models' metrics side by side, and per class or
    group both losses and their difference (the 20 largest differences each way when there
    are more than 40). The page is HTML5, every text escaped, with no external resource (no
    script, stylesheet, font or image to fetch).

    Parameters
    ----------
    result : EvaluationResult or ComparisonResult
    path : str or os.PathLike
        The file to write (UTF-8).
    title : str, optional
        The page's title and heading (default: what was evaluated, e.g. "Evaluation of
        10,000 rows, 10 classes").

    Raises
    ------
    ImportError
        matplotlib is not installed (before the file is opened).
    TypeError
        `result` is neither an ``EvaluationResult`` nor a ``ComparisonResult``.
    """
    png, width, height = _png(result)
    if isinstance(result, ComparisonResult):
        tables, details = _comparison_sections(result)
    else:
        tables, details = _evaluation_sections(result)
    title = _headline(result) if title is None else title
    image = base64.b64encode(png).decode("ascii")
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<p class="summary">{html.escape(result.summary())}</p>',
            "<h2>Metrics</h2>", _side_by_side(tables),
            "<h2>Figure</h2>",
            f'<img src="data:image/png;base64,{image}" width="{width}" height="{height}" '
            f'alt="reliability diagram, per-class metrics, loss concentration and baselines">']
    if details:
        body += ["<h2>Details</h2>", *details]
    with open(path, "w", encoding="utf-8") as file:
        file.write(_page(title, body))
