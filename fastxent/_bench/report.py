"""Rendering of a ``fastxent bench`` run: the text header and table, the JSON, the plot.

Every function here takes the dict that :func:`fastxent._bench.runner.run_suite` returns (or
its ``"machine"`` or ``"results"``) and computes nothing new.
"""

import json
import math


def format_header(machine):
    """Describe the build and the machine in a few lines of text.

    Parameters
    ----------
    machine : dict
        The ``"machine"`` of a run.

    Returns
    -------
    str
        Four lines: build and threads, CPU, copy bandwidth, peer versions.
    """
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
        The ``"results"`` of a run.

    Returns
    -------
    str
        Text columns are left-aligned, numeric columns right-aligned. ``x vs PEER`` is the
        peer's median time divided by fastxent's (above 1: fastxent is faster); ``-`` marks
        a peer to which the workload is not applicable, ``error`` one that failed.
    """
    peers = _peers_in(results)
    headers = ["workload", "dtype", "shape", "time ms", "GB/s", "%copy"]
    headers += [f"x vs {peer}" for peer in peers]
    rows = [_table_row(result, peers) for result in results]
    return text_table(headers, rows, text_columns=3)


def format_evaluate_multiples(results):
    """The explaining workloads' times as multiples of the plain evaluation's, as text.

    Parameters
    ----------
    results : list of dict
        The ``"results"`` of a run.

    Returns
    -------
    str or None
        A table of ``evaluate_slices`` and ``compare`` over ``evaluate`` (same dtype and shape,
        same run), or None when the run has none.
    """
    rows = [[r["workload"], r["dtype"], "x".join(map(str, r["shape"])),
             f"{r['fastxent_median_s'] * 1e3:.3f}", f"{r['x_evaluate']:.2f}x"]
            for r in results if "x_evaluate" in r]
    if not rows:
        return None
    return text_table(["workload", "dtype", "shape", "time ms", "x evaluate"], rows,
                      text_columns=3)


def format_json(report):
    """Format a whole run as indented JSON.

    Parameters
    ----------
    report : dict
        ``{"machine": ..., "results": ...}`` as a run returns it.

    Returns
    -------
    str
    """
    return json.dumps(report, indent=2)


def plot_ratios(results, path):
    """Save a grouped bar chart of peer time / fastxent time per workload.

    Parameters
    ----------
    results : list of dict
        The ``"results"`` of a run.
    path : str
        The image file; matplotlib picks the format from its extension.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = _peers_in(results)
    labels = [f"{r['workload']}\n{r['dtype']} {'x'.join(map(str, r['shape']))}" for r in results]
    bar_width = 0.8 / max(len(peers), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.3 * len(results)), 4.5))
    for offset, peer in enumerate(peers):
        ratios = [r["peers"].get(peer, {}).get("ratio", math.nan) for r in results]
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


def text_table(headers, rows, text_columns):
    """Align rows of cells under their headers.

    Parameters
    ----------
    headers : sequence of str
    rows : sequence of sequence of str
        One cell per header in each row.
    text_columns : int
        The first ``text_columns`` columns are left-aligned, the others right-aligned.

    Returns
    -------
    str
        The header line, a line of dashes, then one line per row, without trailing spaces.
    """
    widths = [max(map(len, column)) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) if index < text_columns else cell.rjust(width)
                  for index, (cell, width) in enumerate(zip(line, widths, strict=True)))
        .rstrip()
        for line in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _peers_in(results):
    """The peers of any result, in the order they first appear."""
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
