"""The ``fastxent`` command line.

Subcommands
-----------
bench
    Time fastxent against the installed peers (NumPy, PyTorch, scikit-learn, JAX) on the
    built-in workloads of :mod:`fastxent._bench` and print a table, JSON or a plot.
eval
    Evaluate logits (or probabilities) and labels stored in ``.npy``/``.npz`` files with
    :func:`fastxent._eval.files.evaluate_files`, in chunks of rows, optionally
    checkpointed; print the interpretation and tables, or JSON; optionally write an HTML
    report and a PNG. With ``--linear-weight`` (and ``--linear-bias``) the first file holds
    hidden states, whose logits are computed chunk by chunk.
compare
    Compare two models' logits for the same rows with
    :func:`fastxent._eval.files.compare_files`: each model's metrics and whether their
    difference is real.

Each subcommand is added by an ``_add_<name>_command(subparsers)`` function that sets a
``handler`` default; ``main`` calls the handler of the chosen subcommand.

Errors
------
A bad input (an option, a file, a checkpoint) is reported on stderr as one line,
``fastxent COMMAND: error: MESSAGE``, with exit status 2 and no traceback: usage errors by the
parser, everything else by ``main``, which turns the ``ValueError``, ``TypeError``,
``OverflowError`` and ``OSError`` that fastxent raises for bad input, and a ``MemoryError``
(``--shapes`` too large for the machine), into that line. Every option is checked, and every
file that will be written is tried, before any work starts. Set ``FASTXENT_TRACEBACK=1`` to
see those errors' tracebacks; any other exception is a bug and shows its traceback anyway.
Output to a closed pipe (``fastxent eval ... | head -1``) ends quietly with status 141, as a
process stopped by SIGPIPE does; Ctrl-C ends with 130.
"""

import argparse
import contextlib
import importlib.util
import json
import logging
import math
import os
import sys

import fastxent
from fastxent import _bench
from fastxent._api.options import EvaluationOptions
from fastxent._eval import arrayfiles as _arrayfiles
from fastxent._eval import files as _files

PLOT_DEPENDENCY_ERROR = ("--plot needs matplotlib: pip install matplotlib (or, in a fastxent "
                         "checkout, pip install \".[bench]\")")
DEFAULT_REPEAT = 5
QUICK_REPEAT = 3
#: Set this environment variable (to anything) to see the traceback behind a one-line error.
TRACEBACK_ENV = "FASTXENT_TRACEBACK"
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141          # 128 + SIGPIPE: what a shell reports for `yes | head -1`


def main(argv=None):
    """Run the ``fastxent`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0, 2 for bad input (one line on stderr), 130 when interrupted, 141
        when stdout is a closed pipe.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    command = f"{parser.prog} {args.command}"
    try:
        status = args.handler(args)
        sys.stdout.flush()                  # a closed pipe shows here, not at exit
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, TypeError, OverflowError, OSError, MemoryError) as exc:
        if os.environ.get(TRACEBACK_ENV):
            raise
        message = " ".join(str(exc).split("\n"))
        print(f"{command}: error: {message}", file=sys.stderr)
        return EXIT_ERROR
    return status


def _discard_stdout():
    """Point stdout at os.devnull after its pipe was closed, so that flushing what is still
    buffered when Python exits does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, ``PROG: error: MESSAGE``."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    """Build the argument parser with one subparser per subcommand."""
    parser = _Parser(
        prog="fastxent", description="Fast cross-entropy losses and gradients on the CPU.")
    parser.add_argument("--version", action="version", version=f"fastxent {fastxent.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_bench_command(subparsers)
    _add_eval_command(subparsers)
    _add_compare_command(subparsers)
    return parser


def _add_bench_command(subparsers):
    bench = subparsers.add_parser(
        "bench", help="time fastxent against installed peers",
        description="Time fastxent against NumPy and the installed peers (PyTorch, "
                    "scikit-learn, JAX) on seeded synthetic data.")
    bench.add_argument("--json", action="store_true",
                       help="print only JSON (machine description and results) to stdout")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="also save a bar chart of the peer/fastxent time ratios (needs "
                            "matplotlib)")
    bench.add_argument("--threads", type=_thread_count, metavar="N",
                       help="threads for fastxent, the peers and the copy "
                            "(default: fastxent.effective_n_threads())")
    bench.add_argument("--dtype", choices=["float32", "float64", "both"], default="float32",
                       help="floating dtype of every workload (default: float32)")
    bench.add_argument("--shapes", type=_parse_shapes, metavar="NxC[,NxC...]",
                       help="run only softmax CE loss+grad at these shapes, e.g. 2048x32000,64x10")
    bench.add_argument("--repeat", type=_positive_int, metavar="N",
                       help=f"timed calls per measurement after one warm-up "
                            f"(default: {DEFAULT_REPEAT}, {QUICK_REPEAT} with --quick)")
    bench.add_argument("--quick", action="store_true", help="tiny workloads (CI smoke test)")
    bench.set_defaults(handler=_run_bench)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _thread_count(text):
    """``--threads``: a positive int that fastxent takes as ``n_threads``."""
    return _checked_by(fastxent.effective_n_threads, _positive_int(text))


def _evaluation_option(name):
    """A check of ``fastxent.evaluate``'s option `name`: returns the value as the options
    normalise it, or raises as they do."""
    return lambda value: getattr(EvaluationOptions(**{name: value}), name)


def _checked_by(check, value):
    """`value` once `check` (fastxent's own check of the option) accepts it; the parser puts
    the option's name before the message of a refusal."""
    try:
        check(value)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _top_k(text):
    """``--topk``: one k, as ``fastxent.evaluate`` takes it."""
    return _checked_by(lambda k: _evaluation_option("topk")((k,)), _positive_int(text))


def _converted(text, convert, kind):
    """`text` converted by `convert` (int or float), or an argparse error naming `kind`."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None


def _ignore_index(text):
    """``--ignore-index``: an int of int64's range."""
    return _checked_by(_evaluation_option("ignore_index"),
                       _converted(text, int, "an integer"))


def _eps(text):
    """``--eps``: a number in [0, 0.5) (so not NaN)."""
    return _checked_by(_evaluation_option("eps"), _converted(text, float, "a number"))


def _parse_shapes(text):
    """Parse ``"2048x32000,64x10"`` into ``[(2048, 32000), (64, 10)]``."""
    shapes = []
    for item in text.split(","):
        try:
            shape = tuple(_positive_int(dim) for dim in item.strip().lower().split("x"))
        except (ValueError, argparse.ArgumentTypeError):
            shape = ()
        if len(shape) < 2:
            raise argparse.ArgumentTypeError(
                f"invalid shape {item!r}: expected positive sizes like 2048x32000")
        shapes.append(shape)
    return shapes


def _run_bench(args):
    if args.plot:
        _check_plot_target(args.plot)
    dtypes = _bench.DTYPES if args.dtype == "both" else (args.dtype,)
    workloads = _bench.default_workloads(
        dtypes=dtypes, softmax_shapes=args.shapes, quick=args.quick)
    threads = args.threads or fastxent.effective_n_threads()
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    report = _bench.run_suite(workloads, threads=threads, repeat=repeat, progress=_progress)
    if args.json:
        print(_bench.format_json(report))
    else:
        print(_bench.format_header(report["machine"]))
        print()
        print(_bench.format_table(report["results"]))
        multiples = _bench.format_evaluate_multiples(report["results"])
        if multiples is not None:
            print()
            print("What explaining an evaluation costs (per-class table and 1000 groups; a "
                  "comparison of two models), in multiples of the plain evaluation:")
            print(multiples)
    if args.plot:
        _bench.plot_ratios(report["results"], args.plot)
    return 0


def _check_plot_target(path):
    """Raise ValueError unless the chart can be saved at `path`: the file can be written,
    matplotlib can be imported and knows the file's extension. Checked before the benchmark
    runs, so that no run ends without its plot."""
    problem = _files.unwritable_reason(path)
    if problem is not None:
        raise ValueError(f"--plot {path}: cannot write the plot: {problem}")
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError(PLOT_DEPENDENCY_ERROR)
    from matplotlib.backend_bases import FigureCanvasBase
    formats = FigureCanvasBase.get_supported_filetypes()
    extension = os.path.splitext(path)[1][1:].lower()
    if extension and extension not in formats:
        raise ValueError(f"--plot {path}: matplotlib cannot save .{extension} files; use one "
                         f"of: {', '.join(sorted(formats))}")


def _progress(workloads):
    """Yield the workloads while reporting progress on stderr (tqdm on a terminal)."""
    if sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None:
        from tqdm import tqdm
        with tqdm(workloads, file=sys.stderr, unit="workload") as bar:
            for workload in bar:
                bar.set_description(workload.label)
                yield workload
        return
    for index, workload in enumerate(workloads, start=1):
        print(f"[{index}/{len(workloads)}] {workload.label} ...", file=sys.stderr, flush=True)
        yield workload


def _add_eval_command(subparsers):
    evaluate = subparsers.add_parser(
        "eval", help="evaluate logits and labels stored in .npy/.npz files",
        description="Compute the loss, perplexity, accuracy, top-k accuracy, entropy, Brier "
                    "score and calibration error of logits (or probabilities) and labels "
                    "stored in .npy/.npz files, reading them in chunks of rows, with what "
                    "they mean: the loss in nats and bits against the uniform and class-prior "
                    "baselines, 95 % intervals, and where the loss comes from (per class, "
                    "per group, the worst rows). "
                    "With --linear-weight W (and --linear-bias b), LOGITS holds a model's "
                    "hidden states H instead, and the logits H @ W.T + b are computed one "
                    "chunk of rows at a time, never all at once (a language model's "
                    "perplexity from its last hidden states). "
                    "A file is FILE.npy, FILE.npz (holding one array) or FILE.npz:NAME.")
    evaluate.add_argument("logits", metavar="LOGITS",
                          help="logits (N, C) (classes along the last axis), float32 or "
                               "float64; with --linear-weight, hidden states (N, d)")
    evaluate.add_argument("labels", metavar="LABELS",
                          help="integer class labels (N,), or float soft targets (N, C)")
    evaluate.add_argument("--linear-weight", metavar="FILE",
                          help="the output layer's weight W (V, d), of the hidden states' "
                               "dtype (float32 or float64): LOGITS then holds hidden states")
    evaluate.add_argument("--linear-bias", metavar="FILE",
                          help="the output layer's bias b (V,), W's dtype (with "
                               "--linear-weight)")
    _add_run_options(evaluate, linear=True)
    evaluate.add_argument("--confusion", action="store_true",
                          help="also compute the confusion matrix (labels, C <= 4096): printed "
                               "and in --report for C <= 20, always in --json")
    evaluate.add_argument("--bins", action="store_true",
                          help="also print the calibration bins")
    evaluate.set_defaults(handler=_run_eval)


def _add_run_options(parser, linear):
    """The options ``eval`` and ``compare`` share (``linear``: ``eval``'s help text)."""
    parser.add_argument("--from-probs", action="store_true",
                        help=("LOGITS holds" if linear else "A and B hold")
                             + " probabilities, not logits")
    parser.add_argument("--topk", type=_top_k, nargs="+", default=[1, 5], metavar="K",
                        help="top-k accuracies to report (default: 1 5)")
    parser.add_argument("--chunk-rows", type=_positive_int, metavar="N",
                        help="rows per chunk (default: about 64 MiB of logits"
                             + ("; with --linear-weight, from V and the CPU's cache)"
                                if linear else ", 32 MiB of each model's)"))
    parser.add_argument("--per-class", action="store_true",
                        help=("also print the per-class table (count, loss, recall, "
                              "precision, confidence; --json and --report add the "
                              "calibration gap)" if linear else
                              "also print the per-class losses and their differences"))
    parser.add_argument("--groups", metavar="FILE",
                        help="a group id per row (integers in [0, 2**24 - 1], the labels' "
                             "shape): " + ("also print the metrics per group (e.g. per "
                                           "document)" if linear else
                                           "also print the per-group losses and their "
                                           "differences"))
    parser.add_argument("--prior", metavar="FILE",
                        help="the class prior of the baseline, C values (e.g. training-set "
                             "class frequencies; default: the labels' distribution)")
    parser.add_argument("--report", metavar="FILE.html",
                        help="also write a self-contained HTML report with figures (needs "
                             "matplotlib: pip install 'fastxent[plot]')")
    parser.add_argument("--plot", metavar="FILE.png",
                        help="also save the report's figures as a PNG (needs matplotlib)")
    parser.add_argument("--json", action="store_true",
                        help="print the result as JSON (NaN and infinities as null)")
    parser.add_argument("--checkpoint", metavar="STATE",
                        help="save progress to this JSON file and resume from it")
    parser.add_argument("--threads", type=_thread_count, metavar="N",
                        help="threads for the kernels (default: "
                             "fastxent.effective_n_threads())"
                             + ("; with --linear-weight, BLAS's threads (default: BLAS's "
                                "own)" if linear else ""))
    parser.add_argument("--ignore-index", type=_ignore_index, metavar="I",
                        help="labels equal to I are not counted")
    parser.add_argument("--eps", type=_eps, metavar="E",
                        help="probability clipping bound in [0, 0.5) (default: the dtype's "
                             "eps)")
    parser.add_argument("--weight", metavar="FILE",
                        help="class weights, C values in a .npy/.npz (applied to the loss)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (shown by default when stderr is a terminal)")


def _add_compare_command(subparsers):
    compare = subparsers.add_parser(
        "compare", help="compare two models' logits for the same rows",
        description="Evaluate two models' logits (or probabilities) for the same rows and "
                    "labels, stored in .npy/.npz files, and say whether they differ: the "
                    "paired difference of the mean loss with its 95 % interval and p-value, "
                    "the accuracy difference with McNemar's exact test, and each model's "
                    "metrics side by side. Reads the files in chunks of rows, optionally "
                    "checkpointed. A file is FILE.npy, FILE.npz (holding one array) or "
                    "FILE.npz:NAME.")
    compare.add_argument("logits_a", metavar="A",
                         help="model A's logits (N, C), float32 or float64")
    compare.add_argument("logits_b", metavar="B",
                         help="model B's logits, A's shape")
    compare.add_argument("labels", metavar="LABELS",
                         help="integer class labels (N,), or float soft targets (N, C)")
    _add_run_options(compare, linear=False)
    compare.set_defaults(handler=_run_compare)


def _run_eval(args):
    def run():
        _check_linear_options(args)
        return _files.evaluate_files(
            args.logits, args.labels, linear_weight=args.linear_weight,
            linear_bias=args.linear_bias, confusion=args.confusion, **_run_keywords(args))

    result = _with_progress_log("eval", args, run)
    if result is None:
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(strict_json(result.to_dict())))
    else:
        print(format_evaluation(result, bins=args.bins))
    _write_pictures(args, result)
    return 0


def _run_compare(args):
    result = _with_progress_log("compare", args, lambda: _files.compare_files(
        args.logits_a, args.logits_b, args.labels, **_run_keywords(args)))
    if result is None:
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(strict_json(result.to_dict())))
    else:
        print(format_comparison(result))
    _write_pictures(args, result)
    return 0


def _run_keywords(args):
    """The keyword arguments of ``evaluate_files`` and ``compare_files`` from the shared
    options, with the class weight and prior files read and checked (and the report and plot
    files tried) before any data is."""
    for option, path in (("--report", args.report), ("--plot", args.plot)):
        if path is not None:
            _check_picture_target(option, path)
    return {
        "from_logits": not args.from_probs, "topk": args.topk,
        "weight": _read_class_option(args.weight, "weight", "--weight"),
        "prior": _read_class_option(args.prior, "prior", "--prior"),
        "ignore_index": args.ignore_index, "eps": args.eps, "chunk_rows": args.chunk_rows,
        "checkpoint": args.checkpoint, "progress": False if args.no_progress else None,
        "n_threads": args.threads, "groups": args.groups, "per_class": args.per_class,
    }


def _with_progress_log(name, args, run):
    """``run()`` with the files' log messages (resuming, complete) on stderr; None when
    interrupted (after saying so)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"fastxent {name}: %(message)s"))
    logger = logging.getLogger(_files.logger.name)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return run()
    except KeyboardInterrupt:
        note = (f"; {args.checkpoint} holds the progress: run the same command to resume"
                if args.checkpoint else "")
        print(f"fastxent {name}: interrupted{note}", file=sys.stderr)
        return None
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _check_picture_target(option, path):
    """Raise ValueError unless `path` can be written and matplotlib is installed."""
    problem = _files.unwritable_reason(path)
    if problem is not None:
        raise ValueError(f"{option} {path}: cannot write it: {problem}")
    if importlib.util.find_spec("matplotlib") is None:
        raise ValueError(f"{option} needs matplotlib: pip install 'fastxent[plot]'")


def _write_pictures(args, result):
    """Write the HTML report and the PNG asked for."""
    if args.report is None and args.plot is None:
        return
    from fastxent._eval import report
    if args.report is not None:
        report.write_report(result, args.report)
    if args.plot is not None:
        report.write_plot(result, args.plot)


def _check_linear_options(args):
    """Raise ValueError, naming the options, for ``--linear-*`` options that do not go with
    the others."""
    if args.linear_bias is not None and args.linear_weight is None:
        raise ValueError("--linear-bias needs --linear-weight")
    if args.linear_weight is not None and args.from_probs:
        raise ValueError("--from-probs cannot be used with --linear-weight: the linear "
                         "layer's outputs H @ W.T + b are logits, not probabilities")


def _read_class_option(path, name, flag):
    """The per-class values (option `name`: weight or prior) in the file `path` (None: no
    file), checked as ``fastxent.evaluate`` checks them."""
    if path is None:
        return None
    values = _arrayfiles.read_array(path)
    try:
        return _evaluation_option(name)(values)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{flag} {path}: {exc}") from None


def strict_json(value):
    """Return `value` with every NaN or infinite float replaced by None (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def _metric_cell(value, digits=6):
    """Fixed-point with `digits` decimals for ordinary magnitudes (so the points align)."""
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e9:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}e}"


def _interval_cell(value, interval, digits=6):
    """``value ± half-width`` of a symmetric-enough 95 % interval, or the value alone."""
    cell = _metric_cell(value, digits)
    if interval is None or not all(math.isfinite(x) for x in interval):
        return cell
    return f"{cell} ± {(interval[1] - interval[0]) / 2:.{min(digits, 4)}f}"


def format_eval_table(result):
    """An ``EvaluationResult``'s metrics as a two-column text table (value ± the half-width
    of its 95 % interval where it has one).

    Metrics that do not apply (accuracy and calibration with soft targets) show ``-``.
    """
    rows = [("loss (nats)", _interval_cell(result.loss, result.loss_ci)),
            ("loss (bits)", _metric_cell(result.loss_bits)),
            ("perplexity", _metric_cell(result.perplexity)),
            ("uniform baseline", _metric_cell(result.uniform_loss)),
            (f"prior baseline ({result.prior_source})", _metric_cell(result.prior_loss)),
            ("skill (1 - loss/prior)", _metric_cell(result.skill))]
    if result.kl is not None:
        rows += [("target entropy", _metric_cell(result.target_entropy)),
                 ("KL (loss - target entropy)", _metric_cell(result.kl))]
    rows.append(("accuracy", _interval_cell(result.accuracy, result.accuracy_ci)))
    for k, value in sorted((result.topk or {}).items()):
        rows.append((f"top-{k}", _interval_cell(value, result.topk_ci[k])))
    rows += [("entropy", _metric_cell(result.entropy)), ("brier", _metric_cell(result.brier)),
             ("confidence", _metric_cell(result.confidence)), ("ece", _metric_cell(result.ece))]
    rows += [(f"loss share of worst {fraction:.0%}", _metric_cell(share, 4))
             for fraction, share in result.concentration.items()]
    rows += [("count", _metric_cell(result.count)),
             ("weight_sum", _metric_cell(result.weight_sum))]
    return _bench.text_table(["metric", "value"], rows, text_columns=1)


#: Rows of a per-class or per-group table printed at each end when it has more.
TABLE_ENDS = 10


def format_slice_table(table, key_name):
    """A ``SliceTable`` as text, worst loss first: all rows, or the ``TABLE_ENDS`` worst and
    best when there are more than twice as many."""
    shown = _table_ends(sorted(range(len(table)),
                               key=lambda i: (-_sortable(table.loss[i]), i)))
    headers = [key_name, "count", "loss", "± 95%", "accuracy", "confidence"]
    if table.precision is not None:
        headers.insert(5, "precision")
    rows = []
    for i in shown:
        if i is None:
            rows.append(["..."] + [""] * (len(headers) - 1))
            continue
        row = [str(table.keys[i]), str(table.count[i]), _metric_cell(table.loss[i], 4),
               _metric_cell(1.96 * table.loss_se[i], 4),
               _metric_cell(None if table.accuracy is None else table.accuracy[i].item(), 4),
               _metric_cell(table.confidence[i].item(), 4)]
        if table.precision is not None:
            row.insert(5, _metric_cell(table.precision[i].item(), 4))
        rows.append(row)
    return _bench.text_table(headers, rows, text_columns=1)


def _table_ends(order):
    """`order`, or its ``TABLE_ENDS`` first and last with None (a "..." row) between them
    when it holds more than twice as many."""
    if len(order) > 2 * TABLE_ENDS:
        return order[:TABLE_ENDS] + [None] + order[-TABLE_ENDS:]
    return order


def _sortable(value):
    return -math.inf if not math.isfinite(value) else value


def format_confusion(matrix):
    """A small confusion matrix as text: rows are labels, columns predictions."""
    n = len(matrix)
    headers = ["label \\ predicted"] + [str(j) for j in range(n)]
    rows = [[str(i)] + [_metric_cell(float(x), 0) for x in matrix[i]] for i in range(n)]
    return _bench.text_table(headers, rows, text_columns=1)


#: The largest confusion matrix printed as text (every size is in --json and the report).
PRINTED_CONFUSION = 20


def format_evaluation(result, bins=False):
    """What ``fastxent eval`` prints: the interpretation line, then the tables."""
    parts = [result.summary(), format_eval_table(result)]
    if result.per_class is not None:
        parts.append("per class (worst loss first):\n"
                     + format_slice_table(result.per_class, "class"))
    if result.groups is not None:
        parts.append("per group (worst loss first):\n"
                     + format_slice_table(result.groups, "group"))
    if result.confusion is not None and len(result.confusion) <= PRINTED_CONFUSION:
        parts.append("confusion matrix:\n" + format_confusion(result.confusion))
    if bins and result.ece_bins is not None:
        parts.append(format_bins_table(result.ece_bins.to_dict()))
    return "\n\n".join(parts)


def format_comparison(result):
    """What ``fastxent compare`` prints: the verdict line, then both models side by side."""
    a, b = result.a, result.b
    rows = [("loss (nats)", _interval_cell(a.loss, a.loss_ci), _interval_cell(b.loss, b.loss_ci),
             _interval_cell(result.loss_diff, result.loss_diff_ci)),
            ("perplexity", _metric_cell(a.perplexity), _metric_cell(b.perplexity), ""),
            ("skill", _metric_cell(a.skill), _metric_cell(b.skill), "")]
    if result.accuracy_diff is not None:
        rows.append(("accuracy", _interval_cell(a.accuracy, a.accuracy_ci),
                     _interval_cell(b.accuracy, b.accuracy_ci),
                     _interval_cell(result.accuracy_diff, result.accuracy_diff_ci)))
    rows += [("entropy", _metric_cell(a.entropy), _metric_cell(b.entropy), ""),
             ("brier", _metric_cell(a.brier), _metric_cell(b.brier), ""),
             ("ece", _metric_cell(a.ece), _metric_cell(b.ece), "")]
    lines = [result.summary(),
             _bench.text_table(["metric", "A", "B", "A - B"], rows, text_columns=1),
             f"paired loss difference: p = {_metric_cell(result.loss_diff_p, 6)} over "
             f"{result.count} rows"]
    if result.mcnemar is not None:
        m = result.mcnemar
        lines.append(f"McNemar: A right where B is wrong {m.only_a_correct} rows, B right "
                     f"where A is wrong {m.only_b_correct} rows, exact p = "
                     f"{_metric_cell(m.p_value, 6)}")
    for kind, table_a, table_b in (("class", result.a.per_class, result.b.per_class),
                                   ("group", result.a.groups, result.b.groups)):
        if table_a is not None:
            lines.append(f"per {kind} (A - B, most in A's favour first):\n"
                         + format_slice_differences(table_a, table_b, kind))
    return "\n\n".join(lines)


def format_slice_differences(table_a, table_b, key_name):
    """Two models' ``SliceTable``s of the same rows as text: the losses, their difference and
    the accuracy difference per key, lowest A - B first (the ``TABLE_ENDS`` lowest and
    highest when there are more than twice as many)."""
    diff = table_a.loss - table_b.loss
    order = _table_ends(sorted(range(len(diff)), key=lambda i: (_sortable(diff[i]), i)))
    headers = [key_name, "loss A", "loss B", "loss A - B", "accuracy A - B"]
    rows = []
    for i in order:
        if i is None:
            rows.append(["..."] + [""] * (len(headers) - 1))
            continue
        accuracy = (None if table_a.accuracy is None
                    else (table_a.accuracy[i] - table_b.accuracy[i]).item())
        rows.append([str(table_a.keys[i]), _metric_cell(table_a.loss[i].item(), 4),
                     _metric_cell(table_b.loss[i].item(), 4), _metric_cell(diff[i].item(), 4),
                     _metric_cell(accuracy, 4)])
    return _bench.text_table(headers, rows, text_columns=1)


def format_bins_table(bins):
    """Format the calibration bins of ``to_dict()["ece_bins"]`` as a text table."""
    edges = bins["edges"]
    cells = [(f"({edges[b]:.3f}, {edges[b + 1]:.3f}]", _metric_cell(bins["weight"][b], 1),
              _metric_cell(bins["confidence"][b], 4), _metric_cell(bins["accuracy"][b], 4))
             for b in range(len(edges) - 1)]
    return _bench.text_table(["confidence bin", "weight", "mean conf", "accuracy"], cells,
                        text_columns=1)


if __name__ == "__main__":
    sys.exit(main())
