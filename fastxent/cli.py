"""The ``fastxent`` command line.

Subcommands
-----------
bench
    Time fastxent against the installed peers (NumPy, PyTorch, scikit-learn, JAX) on the
    built-in workloads of :mod:`fastxent._bench` and print a table, JSON or a plot.

Each subcommand is added by an ``_add_<name>_command(subparsers)`` function that sets a
``handler`` default; ``main`` calls the handler of the chosen subcommand.
"""

import argparse
import importlib.util
import json
import math
import sys

import fastxent
from fastxent import _bench

PLOT_DEPENDENCY_ERROR = "matplotlib is required for --plot"
DEFAULT_REPEAT = 5
QUICK_REPEAT = 3


def main(argv=None):
    """Run the ``fastxent`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status.
    """
    args = build_parser().parse_args(argv)
    return args.handler(args)


def build_parser():
    """Build the argument parser with one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="fastxent", description="Fast cross-entropy losses and gradients on the CPU.")
    parser.add_argument("--version", action="version", version=f"fastxent {fastxent.__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_bench_command(subparsers)
    return parser


def _add_bench_command(subparsers):
    bench = subparsers.add_parser(
        "bench", help="time fastxent against installed peers",
        description="Time fastxent against NumPy and the installed peers (PyTorch, "
                    "scikit-learn, JAX) on seeded synthetic data.")
    bench.add_argument("--json", action="store_true",
                       help="print only JSON (machine description and results) to stdout")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="also save a bar chart of the peer/fastxent time ratios")
    bench.add_argument("--threads", type=_positive_int, metavar="N",
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
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


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
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        print(f"fastxent bench: error: {PLOT_DEPENDENCY_ERROR}", file=sys.stderr)
        return 2
    dtypes = _bench.DTYPES if args.dtype == "both" else (args.dtype,)
    workloads = _bench.default_workloads(
        dtypes=dtypes, softmax_shapes=args.shapes, quick=args.quick)
    threads = args.threads or fastxent.effective_n_threads()
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    report = _bench.run_suite(workloads, threads=threads, repeat=repeat, progress=_progress)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_header(report["machine"]))
        print()
        print(format_table(report["results"]))
    if args.plot:
        plot_ratios(report["results"], args.plot)
    return 0


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


def format_header(machine):
    """Describe the build and the machine in a few lines of text."""
    return "\n".join([
        f"fastxent {machine['fastxent']}  isa={machine['isa']}  openmp={machine['openmp']}  "
        f"threads={machine['threads']}",
        f"cpu: {machine['cpu']} ({machine['logical_cpus']} logical CPUs)",
        f"copy bandwidth: {machine['copy_gb_per_s']:.1f} GB/s "
        f"(np.copyto of {machine['copy_bytes'] / 2**20:.0f} MiB, threads={machine['threads']})",
        "peers: " + (", ".join(f"{peer} {version}" for peer, version
                               in machine["peer_versions"].items()) or "none"),
    ])


def format_table(results):
    """Format benchmark results as an aligned text table.

    Parameters
    ----------
    results : list of dict
        Rows from :func:`fastxent._bench.run_suite`.

    Returns
    -------
    str
        Text columns are left-aligned, numeric columns right-aligned. ``x vs PEER`` is the
        peer's median time divided by fastxent's (above 1: fastxent is faster).
    """
    peers = _peers_in(results)
    headers = ["workload", "dtype", "shape", "time ms", "GB/s", "%copy"]
    headers += [f"x vs {peer}" for peer in peers]
    rows = [_table_row(result, peers) for result in results]
    widths = [max(map(len, column)) for column in zip(headers, *rows)]
    text_columns = 3
    lines = [
        "  ".join(cell.ljust(width) if index < text_columns else cell.rjust(width)
                  for index, (cell, width) in enumerate(zip(line, widths))).rstrip()
        for line in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _peers_in(results):
    return list(dict.fromkeys(peer for result in results for peer in result["peers"]))


def _table_row(result, peers):
    return [
        result["workload"],
        result["dtype"],
        "x".join(map(str, result["shape"])),
        f"{result['fastxent_median_s'] * 1e3:.3f}",
        f"{result['gb_per_s']:.1f}",
        f"{result['pct_of_copy']:.0f}%",
        *(_ratio_cell(result["peers"].get(peer)) for peer in peers),
    ]


def _ratio_cell(peer_result):
    if peer_result is None:
        return "-"
    if "error" in peer_result:
        return "error"
    return f"{peer_result['ratio']:.2f}x"


def plot_ratios(results, path):
    """Save a grouped bar chart of peer time / fastxent time per workload to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = _peers_in(results)
    labels = [f"{r['workload']}\n{r['dtype']} {'x'.join(map(str, r['shape']))}" for r in results]
    bar_width = 0.8 / max(len(peers), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.3 * len(results)), 4.5))
    for offset, peer in enumerate(peers):
        ratios = [r["peers"][peer].get("ratio", math.nan) for r in results]
        positions = [index + offset * bar_width for index in range(len(results))]
        axes.bar(positions, ratios, bar_width, label=f"vs {peer}")
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    axes.set_ylabel("peer time / fastxent time (>1: fastxent faster)")
    axes.set_xticks([index + 0.4 - bar_width / 2 for index in range(len(results))], labels,
                    fontsize=7)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
