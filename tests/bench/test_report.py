"""The text, JSON and plot rendering of a ``fastxent bench`` run (fastxent._bench.report)."""

import json

import pytest

from fastxent._bench import report

MACHINE = {
    "fastxent": "0.1.0",
    "isa": "avx2",
    "openmp": True,
    "threads": 4,
    "cpu": "Test CPU",
    "logical_cpus": 8,
    "python": "3.11.0",
    "peer_versions": {"numpy": "2.0.0", "torch": "2.3.0"},
    "copy_bytes": 64 * 2**20,
    "copy_gb_per_s": 12.345,
}
RESULTS = [
    {
        "workload": "softmax_ce", "dtype": "float32", "shape": [2048, 32000], "threads": 4,
        "bytes": 524296192, "fastxent_median_s": 0.0123456, "fastxent_min_s": 0.012,
        "gb_per_s": 42.46, "pct_of_copy": 87.6,
        "peers": {"numpy": {"median_s": 0.1, "ratio": 8.1},
                  "torch": {"error": "RuntimeError: out of memory"}},
    },
    {   # torch is not applicable here: no entry, so the table shows "-"
        "workload": "binary_logloss", "dtype": "float64", "shape": [100000], "threads": 4,
        "bytes": 1600000, "fastxent_median_s": 0.0001, "fastxent_min_s": 0.00009,
        "gb_per_s": 16.0, "pct_of_copy": 129.6,
        "peers": {"numpy": {"median_s": 0.000125, "ratio": 1.254}},
    },
]


def test_header_describes_build_machine_copy_and_peers():
    assert report.format_header(MACHINE).splitlines() == [
        "fastxent 0.1.0  isa=avx2  openmp=True  threads=4",
        "cpu: Test CPU (8 logical CPUs)",
        "copy bandwidth: 12.3 GB/s (np.copyto of 64 MiB, threads=4)",
        "peers: numpy 2.0.0, torch 2.3.0",
    ]
    assert report.format_header({**MACHINE, "peer_versions": {}}).endswith("\npeers: none")


def test_table_columns_values_and_missing_or_failed_peers():
    assert report.format_table(RESULTS).splitlines() == [
        "workload        dtype    shape       time ms  GB/s  %copy  x vs numpy  x vs torch",
        "--------------  -------  ----------  -------  ----  -----  ----------  ----------",
        "softmax_ce      float32  2048x32000   12.346  42.5    88%       8.10x       error",
        "binary_logloss  float64  100000        0.100  16.0   130%       1.25x           -",
    ]


def test_table_without_peers_has_only_fastxent_columns():
    lonely = [{**RESULTS[0], "peers": {}}]
    header = report.format_table(lonely).splitlines()[0]
    assert header.split() == ["workload", "dtype", "shape", "time", "ms", "GB/s", "%copy"]


def test_json_is_the_whole_run_indented_by_two():
    run = {"machine": MACHINE, "results": RESULTS}
    text = report.format_json(run)
    assert json.loads(text) == run
    assert text.splitlines()[:3] == ["{", '  "machine": {', '    "fastxent": "0.1.0",']
    assert '"torch": {\n          "error": "RuntimeError: out of memory"\n        }' in text


def test_text_table_aligns_text_left_and_numbers_right():
    table = report.text_table(["name", "value"], [["a", "1.5"], ["longer", "10.25"]],
                              text_columns=1)
    assert table == ("name    value\n"
                     "------  -----\n"
                     "a         1.5\n"
                     "longer  10.25")


def test_plot_is_saved_as_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "ratios.png"
    report.plot_ratios(RESULTS, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
