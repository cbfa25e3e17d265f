"""``fastxent eval``: JSON and table output, errors without tracebacks, kill and resume."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

import fastxent
from fastxent import cli
from fastxent._eval import files as _files
from helpers import (
    eval_command,
    eval_main,
    kill_at_first_checkpoint,
    metric_cells,
    run_eval_command,
    strict_loads,
    write_eval_files,
)

N, C = 1000, 10


@pytest.fixture
def files(tmp_path, monkeypatch):
    return write_eval_files(tmp_path, monkeypatch, N, C)


def test_json_has_the_keys_and_values_of_to_dict(files, capsys):
    status, out, err = eval_main(capsys, "logits.npy", "labels.npy", "--json", "--topk", "1",
                                 "3", "--chunk-rows", "64")
    assert status == 0 and err == ""
    report = strict_loads(out)
    expected = _files.evaluate_files("logits.npy", "labels.npy", topk=(1, 3),
                                     chunk_rows=64).to_dict()
    assert report.keys() == expected.keys()
    assert report["topk"] == {str(k): v for k, v in expected["topk"].items()}
    for key in ("loss", "perplexity", "accuracy", "entropy", "brier", "ece", "count",
                "weight_sum"):
        assert report[key] == expected[key]
    assert report["ece_bins"].keys() == expected["ece_bins"].keys()
    assert report["ece_bins"]["weight"] == list(expected["ece_bins"]["weight"])


def test_json_maps_nan_to_null(files, capsys):
    np.save("ignored.npy", np.full(N, -100))
    status, out, _ = eval_main(capsys, "logits.npy", "ignored.npy", "--json",
                               "--ignore-index", "-100")
    assert status == 0
    report = strict_loads(out)
    assert report["count"] == 0 and report["loss"] is None and report["accuracy"] is None
    assert report["ece_bins"]["confidence"] == [None] * 15


def test_table(files, capsys):
    x, y = files
    status, out, _ = eval_main(capsys, "logits.npy", "labels.npy", "--no-progress")
    assert status == 0
    result = fastxent.evaluate(x, y)
    lines = out.splitlines()
    assert lines[0] == result.summary()                         # the interpretation first
    assert lines[1] == ""
    cells = metric_cells(out)
    assert list(cells) == ["loss (nats)", "loss (bits)", "perplexity", "uniform baseline",
                           "prior baseline (seen)", "skill (1 - loss/prior)", "accuracy",
                           "top-1", "top-5", "entropy", "brier", "confidence", "ece",
                           "loss share of worst 1%", "loss share of worst 10%", "count",
                           "weight_sum"]
    half = (result.loss_ci[1] - result.loss_ci[0]) / 2
    assert cells["loss (nats)"] == f"{result.loss:.6f} ± {half:.4f}"
    assert cells["loss (bits)"] == f"{result.loss_bits:.6f}"
    assert cells["uniform baseline"] == f"{np.log(C):.6f}"
    assert cells["top-5"].startswith(f"{result.topk[5]:.6f} ± ")
    assert cells["count"] == str(N)
    table = lines[2:2 + len(cells) + 2]
    assert len({len(line) for line in table[2:]}) == 1          # values right-aligned


def test_bins_table_and_soft_targets(files, capsys):
    x, _ = files
    status, out, _ = eval_main(capsys, "logits.npy", "labels.npy", "--bins")
    assert status == 0
    assert "confidence bin" in out and "(0.933, 1.000]" in out
    soft = np.full((N, C), 1.0 / C)
    np.save("soft.npy", soft)
    status, out, _ = eval_main(capsys, "logits.npy", "soft.npy", "--bins")
    assert status == 0
    cells = metric_cells(out)
    assert cells["accuracy"] == "-" and cells["ece"] == "-" and "top-5" not in cells
    assert "target entropy" in cells and "KL (loss - target entropy)" in cells
    assert "confidence bin" not in out


def test_options(files, capsys):
    x, y = files
    p = np.exp(x.astype(np.float64))
    p /= p.sum(axis=1, keepdims=True)
    np.save("probs.npy", p)
    weight = np.linspace(0.5, 2.0, C)
    np.savez("weights.npz", w=weight)
    _, out, _ = eval_main(capsys, "probs.npy", "labels.npy", "--from-probs", "--json",
                          "--weight", "weights.npz:w", "--eps", "1e-9", "--threads", "1")
    expected = fastxent.evaluate(p, y, from_logits=False, weight=weight, eps=1e-9)
    assert strict_loads(out)["loss"] == expected.loss


@pytest.mark.parametrize("argv, message", [
    (["logits.npy", "short.npy"], "short.npy: 999 rows, but logits.npy has 1000"),
    (["cut.npy", "labels.npy"], "cut.npy: truncated: header says (1000, 10) float32"),
    (["logits.npy", "bad.npy"], "bad.npy: label 10 at row 3 is out of range [0, 10)"),
    (["missing.npy", "labels.npy"], "missing.npy: no such file"),
    (["logits.npy", "labels.npy", "--weight", "missing.npy"], "missing.npy: no such file"),
    (["logits.npy", "labels.npy", "--topk", "1", "--checkpoint", "nodir/s.json"],
     "does not exist"),
])
def test_errors_are_one_line(files, capsys, argv, message):
    x, y = files
    np.save("short.npy", y[:999])
    with open("logits.npy", "rb") as fp:
        data = fp.read()
    with open("cut.npy", "wb") as fp:
        fp.write(data[:-1000])
    bad = y.copy()
    bad[3] = C
    np.save("bad.npy", bad)
    status, out, err = eval_main(capsys, *argv)
    assert status == 2 and out == ""
    assert err == f"fastxent eval: error: {err.split('error: ', 1)[1]}"
    assert message in err and err.count("\n") == 1


def test_error_exit_status_in_a_process(files):
    np.save("short.npy", np.zeros(5, np.int64))
    done = subprocess.run(eval_command("logits.npy", "short.npy"), capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2
    assert done.stderr == "fastxent eval: error: short.npy: 5 rows, but logits.npy has 1000\n"
    assert "Traceback" not in done.stderr


def test_kill_and_resume(tmp_path, monkeypatch):
    """SIGKILL a checkpointed run mid-way; the same command resumes to identical output."""
    monkeypatch.chdir(tmp_path)
    rows, classes, chunk = 40_000, 16, 200
    rng = np.random.default_rng(7)
    np.save("logits.npy", rng.standard_normal((rows, classes)).astype(np.float32))
    np.save("labels.npy", rng.integers(0, classes, rows).astype(np.int32))
    state = tmp_path / "state.json"
    command = eval_command("logits.npy", "labels.npy", "--json", "--no-progress", "--chunk-rows",
                           str(chunk), "--checkpoint", str(state))
    reference = run_eval_command(command[:-2], timeout=30)
    assert reference.returncode == 0, reference.stderr

    saved = kill_at_first_checkpoint(command, state, rows, timeout=30)
    assert saved["next_row"] % chunk == 0
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]

    resumed = run_eval_command(command, timeout=30)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {state} at row {saved['next_row']} of {rows}" in resumed.stderr
    assert resumed.stdout == reference.stdout                       # bitwise, as text
    assert strict_loads(resumed.stdout) == strict_loads(reference.stdout)
    assert json.loads(state.read_text())["complete"] is True

    again = run_eval_command(command, timeout=30)
    assert again.stdout == reference.stdout and "is complete" in again.stderr


def test_interrupt_keeps_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("logits.npy", np.zeros((20_000, 4), np.float32))
    np.save("labels.npy", np.zeros(20_000, np.int64))
    state = tmp_path / "state.json"
    command = eval_command("logits.npy", "labels.npy", "--no-progress", "--chunk-rows", "100",
                           "--checkpoint", str(state))
    # A job started in the background by a non-interactive shell (as CI may start us) ignores
    # SIGINT, and so would the child: give it the default disposition, as a terminal would.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, _files._CHUNK_DELAY_ENV: "0.02"},
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not state.exists():
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert b"interrupted" in err and b"run the same command to resume" in err
    assert b"Traceback" not in err


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs a pseudo-terminal")
def test_progress_bar_on_a_terminal_only(files):
    """On a terminal (a pty with a window size) stderr shows a tqdm bar over the rows; piped,
    nothing but the result is printed."""
    import fcntl
    import pty
    import struct
    import termios

    command = eval_command("logits.npy", "labels.npy", "--chunk-rows", "100")
    pid, fd = pty.fork()
    if pid == 0:                                 # the child: a 100-column terminal
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
        os.execv(command[0], command)
    output = b""
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:                          # EIO: the child has exited
            break
        if not data:
            break
        output += data
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    text = output.decode().replace("\r", "\n")
    assert "logits.npy:   0%" in text and "logits.npy: 100%" in text and "row/s" in text
    assert "loss" in text
    piped = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert piped.returncode == 0 and piped.stderr == "" and "loss" in piped.stdout


# --------------------------------------------------------------------------------------------
# Bad input: one line, exit 2, never a traceback, before any work


def run_cli(capsys, *argv):
    """``cli.main(argv)``: (status, stdout, stderr), usage errors included."""
    try:
        status = cli.main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def _no_evaluation(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the evaluation ran despite a bad option")

    monkeypatch.setattr(_files, "open_array", refuse)


@pytest.mark.parametrize("argv, message", [
    (["--eps", "nan"], "argument --eps: eps must be a number in [0, 0.5), got nan"),
    (["--eps", "inf"], "argument --eps: eps must be a number in [0, 0.5), got inf"),
    (["--eps", "0.5"], "argument --eps: eps must be a number in [0, 0.5), got 0.5"),
    (["--eps", "small"], "argument --eps: expected a number, got 'small'"),
    (["--ignore-index", str(2**63)],
     f"argument --ignore-index: ignore_index must be None or an int that fits in int64 "
     f"(labels are compared as int64), got {2**63}"),
    (["--ignore-index", "-1.5"], "argument --ignore-index: expected an integer, got '-1.5'"),
    (["--threads", "99999999999"], "argument --threads: n_threads=99999999999 is out of range"),
    (["--threads", "0"], "argument --threads: expected a positive integer, got '0'"),
    (["--topk", "0"], "argument --topk: expected a positive integer, got '0'"),
    (["--topk", str(2**63)], "argument --topk: topk must hold positive ints of at most "
                             "2**63 - 1"),
    (["--chunk-rows", "-5"], "argument --chunk-rows: expected a positive integer, got '-5'"),
    (["--chunk-rows", "1e3"], "argument --chunk-rows: expected a positive integer, got '1e3'"),
    (["--weight", "nan_weight.npy"], "--weight nan_weight.npy: weight must be finite: "
                                     "weight[3] = nan"),
    (["--weight", "matrix_weight.npy"], "--weight matrix_weight.npy: weight must be 1-D"),
    (["--checkpoint", "/proc/fastxent-state.json"],
     "/proc/fastxent-state.json: cannot save the checkpoint: cannot create a file in /proc"),
    (["--checkpoint", "."], ".: cannot save the checkpoint: it exists and is not a regular "
                            "file"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_options_are_one_line_before_any_work(files, capsys, monkeypatch, argv, message):
    """Each bad option gives one line on stderr naming it (``--eps``, not the data files),
    exit status 2, and nothing is evaluated."""
    if "/proc/fastxent-state.json" in argv and not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux /proc")
    weight = np.ones(C)
    weight[3] = np.nan
    np.save("nan_weight.npy", weight)
    np.save("matrix_weight.npy", np.ones((2, C)))
    _no_evaluation(monkeypatch)
    status, out, err = run_cli(capsys, "eval", "logits.npy", "labels.npy", *argv)
    assert status == 2 and out == ""
    assert err.startswith("fastxent eval: error: ") and err.count("\n") == 1, err
    assert message in err


def test_usage_errors_are_one_line(files, capsys):
    status, out, err = run_cli(capsys, "eval", "logits.npy", "labels.npy", "--bogus")
    assert (status, out) == (2, "")
    assert err == "fastxent: error: unrecognized arguments: --bogus (see fastxent --help)\n"
    status, _, err = run_cli(capsys, "eval", "logits.npy")
    assert status == 2
    assert err == ("fastxent eval: error: the following arguments are required: LABELS (see "
                   "fastxent eval --help)\n")


@pytest.mark.parametrize("edit, message", [
    ({"inputs": []}, "corrupt checkpoint (inputs must be an object with logits and labels, "
                     "got [])"),
    ({"complete": "no"}, "corrupt checkpoint (complete must be true or false, got 'no')"),
    ({"evaluator": {"version": 2}}, "corrupt checkpoint (invalid Evaluator state: missing "
                                    "'options')"),
], ids=["inputs", "complete", "evaluator"])
def test_hand_edited_checkpoint_is_one_line(files, capsys, edit, message):
    status, _, _ = run_cli(capsys, "eval", "logits.npy", "labels.npy", "--checkpoint",
                           "state.json")
    assert status == 0
    with open("state.json") as fp:
        saved = json.load(fp)
    saved.update(edit)
    with open("state.json", "w") as fp:
        json.dump(saved, fp)
    status, out, err = run_cli(capsys, "eval", "logits.npy", "labels.npy", "--checkpoint",
                               "state.json")
    assert (status, out) == (2, "")
    assert err == (f"fastxent eval: error: state.json: {message}; delete it to start "
                   f"over\n")


def test_bad_options_in_a_process(files):
    """Through the real entry point: the one line, status 2, no traceback."""
    done = subprocess.run(eval_command("logits.npy", "labels.npy", "--eps", "nan"),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("fastxent eval: error: argument --eps: eps must be a number in "
                           "[0, 0.5), got nan (see fastxent eval --help)\n")


def test_traceback_on_request(files, capsys, monkeypatch):
    """FASTXENT_TRACEBACK=1 lets the error through with its traceback."""
    np.save("short.npy", np.zeros(5, np.int64))
    monkeypatch.setenv(cli.TRACEBACK_ENV, "1")
    with pytest.raises(fastxent.EvalFileError, match="short.npy: 5 rows"):
        cli.main(["eval", "logits.npy", "short.npy"])


def test_closed_pipe_ends_quietly(files):
    """stdout whose reader has gone (``fastxent eval ... | head -0``): exit 141, nothing on
    stderr. The pipe's read end is closed before the command starts, so every write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(eval_command("logits.npy", "labels.npy", "--bins"), stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=30)
    finally:
        os.close(write_end)
    assert done.returncode == cli.EXIT_BROKEN_PIPE == 141
    assert done.stderr == ""


def _no_benchmark(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the benchmark ran despite a bad --plot")

    monkeypatch.setattr(cli._bench, "run_suite", refuse)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_bench_plot_to_an_unwritable_place_fails_first(tmp_path, capsys, monkeypatch):
    _no_benchmark(monkeypatch)
    status, out, err = run_cli(capsys, "bench", "--quick", "--plot", "/proc/ratios.png")
    assert (status, out) == (2, "")
    assert err.startswith("fastxent bench: error: --plot /proc/ratios.png: cannot write the "
                          "plot: cannot create a file in /proc (")
    status, _, err = run_cli(capsys, "bench", "--quick", "--plot",
                             str(tmp_path / "missing" / "ratios.png"))
    assert status == 2 and "does not exist" in err and err.count("\n") == 1


def test_bench_plot_without_matplotlib_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    _no_benchmark(monkeypatch)
    real_find_spec = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec",
                        lambda name, *args: None if name == "matplotlib"
                        else real_find_spec(name, *args))
    status, out, err = run_cli(capsys, "bench", "--quick", "--plot", str(tmp_path / "r.png"))
    assert (status, out) == (2, "")
    assert err == ('fastxent bench: error: --plot needs matplotlib: pip install matplotlib '
                   '(or, in a fastxent checkout, pip install ".[bench]")\n')
    assert os.listdir(tmp_path) == []


def test_bench_plot_extension_matplotlib_cannot_write(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    _no_benchmark(monkeypatch)
    status, _, err = run_cli(capsys, "bench", "--quick", "--plot", str(tmp_path / "r.txt"))
    assert status == 2
    assert f"--plot {tmp_path / 'r.txt'}: matplotlib cannot save .txt files; use one of:" in err


def test_bench_bad_threads_and_interrupt(capsys, monkeypatch):
    _no_benchmark(monkeypatch)
    status, _, err = run_cli(capsys, "bench", "--threads", "99999999999")
    assert status == 2 and err.startswith("fastxent bench: error: argument --threads: "
                                          "n_threads=99999999999 is out of range")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._bench, "run_suite", interrupted)
    status, out, err = run_cli(capsys, "bench", "--quick")
    assert (status, out, err) == (130, "", "fastxent bench: interrupted\n")


def test_bench_shapes_too_large_for_memory_is_one_line(capsys, monkeypatch):
    """``--shapes`` beyond the machine's memory: NumPy's allocation error as one line."""
    def allocate(*args, **kwargs):
        return np.empty((2**30, 2**30), np.float32)            # 4 EiB

    monkeypatch.setattr(cli._bench, "run_suite", allocate)
    status, out, err = run_cli(capsys, "bench", "--shapes", "1073741824x1073741824")
    assert (status, out) == (2, "")
    assert err.startswith("fastxent bench: error: Unable to allocate ")
    assert err.count("\n") == 1
