"""evaluate_files and ``fastxent eval`` with ``--linear-weight``: hidden states, a linear layer's
weight and bias in files, against fastxent.evaluate_linear; checkpoints; errors."""

import json
import math
import os
import subprocess

import numpy as np
import pytest

import fastxent
from fastxent import EvalFileError, cli, evaluate_files
from fastxent._eval import files as _files
from fastxent._eval.arrayfiles import fingerprint_regions
from helpers import (
    StopRun,
    eval_command,
    eval_main,
    kill_at_first_checkpoint,
    metric_cells,
    run_eval_command,
    same,
    stop_after,
    strict_loads,
)

N, D, V = 1000, 16, 50


def close(a, b, rtol):
    """Results equal up to `rtol` (NaN equals NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rtol) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(close(x, y, rtol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=rtol,
                                                                 abs_tol=1e-12)
    return a == b


def write_layer(folder, dtype=np.float32, seed=0):
    """Write hidden.npy, w.npy, b.npy and labels.npy (every 10th label -100) in `folder`;
    return the arrays."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((N, D)).astype(dtype)
    w = (0.5 * rng.standard_normal((V, D))).astype(dtype)
    b = (0.1 * rng.standard_normal(V)).astype(dtype)
    y = rng.integers(0, V, N)
    y[::10] = -100
    for name, array in (("hidden", h), ("w", w), ("b", b), ("labels", y)):
        np.save(folder / f"{name}.npy", array)
    return h, w, b, y


@pytest.fixture
def layer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return write_layer(tmp_path)


def logits_of(h, w, b):
    return (h.astype(np.float64) @ w.T.astype(np.float64) + b).astype(h.dtype)


# --------------------------------------------------------------------------------------------
# Values


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_rows", [None, 1, 7, 64, 5 * N])
def test_values_match_evaluate_linear(tmp_path, monkeypatch, dtype, chunk_rows):
    monkeypatch.chdir(tmp_path)
    h, w, b, y = write_layer(tmp_path, dtype)
    kw = dict(topk=(1, 3), ignore_index=-100)
    got = evaluate_files("hidden.npy", "labels.npy", linear_weight="w.npy",
                         linear_bias="b.npy", chunk_rows=chunk_rows, **kw)
    want = fastxent.evaluate_linear(h, w, y, linear_bias=b, chunk_rows=chunk_rows, **kw)
    assert same(got.to_dict(), want.to_dict())          # the same chunks, bit for bit
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert close(got.to_dict(), fastxent.evaluate(logits_of(h, w, b), y, **kw).to_dict(), rtol)


def test_options_without_bias_soft_targets_and_npz(layer, tmp_path):
    h, w, b, y = layer
    weight = np.linspace(0.5, 2.0, V)
    got = evaluate_files("hidden.npy", "labels.npy", linear_weight="w.npy", weight=weight,
                         ignore_index=-100, chunk_rows=64)
    want = fastxent.evaluate_linear(h, w, y, weight=weight, ignore_index=-100, chunk_rows=64)
    assert same(got.to_dict(), want.to_dict())
    soft = np.random.default_rng(1).random((N, V))
    soft /= soft.sum(axis=1, keepdims=True)
    np.save("soft.npy", soft)
    got = evaluate_files("hidden.npy", "soft.npy", linear_weight="w.npy", linear_bias="b.npy")
    assert got.accuracy is None
    assert same(got.to_dict(), fastxent.evaluate_linear(h, w, soft, linear_bias=b).to_dict())
    np.savez_compressed("layer.npz", weight=np.asfortranarray(w), bias=b)   # a Fortran W too
    got = evaluate_files("hidden.npy", "labels.npy", linear_weight="layer.npz:weight",
                         linear_bias="layer.npz:bias", ignore_index=-100)
    want = fastxent.evaluate_linear(h, w, y, linear_bias=b, ignore_index=-100)
    assert same(got.to_dict(), want.to_dict())


def test_float16_hidden_states_are_computed_in_float64(layer):
    h, w, b, y = layer
    np.save("hidden16.npy", h.astype(np.float16))
    np.save("w64.npy", w.astype(np.float64))
    got = evaluate_files("hidden16.npy", "labels.npy", linear_weight="w64.npy",
                         ignore_index=-100)
    want = fastxent.evaluate_linear(h.astype(np.float16).astype(np.float64),
                                    w.astype(np.float64), y, ignore_index=-100)
    assert same(got.to_dict(), want.to_dict())


# --------------------------------------------------------------------------------------------
# Checkpoints


@pytest.mark.parametrize("n_chunks", [1, 6])
def test_resume_is_bitwise_identical(layer, monkeypatch, n_chunks):
    args = ("hidden.npy", "labels.npy")
    kw = dict(linear_weight="w.npy", linear_bias="b.npy", ignore_index=-100, chunk_rows=64)
    plain = evaluate_files(*args, **kw)
    with monkeypatch.context() as patch:
        stop_after(patch, n_chunks)
        with pytest.raises(StopRun):
            evaluate_files(*args, checkpoint="state.json", checkpoint_interval=0, **kw)
    saved = json.loads(open("state.json").read())
    assert saved["complete"] is False and saved["next_row"] == 64 * n_chunks
    assert list(saved["inputs"]) == ["hidden", "labels", "linear_weight", "linear_bias",
                                     "groups"]
    assert saved["inputs"]["groups"] is None                # no group ids given
    assert saved["inputs"]["linear_weight"]["shape"] == [V, D]
    assert saved["inputs"]["linear_bias"]["dtype"] == np.dtype(np.float32).str
    resumed = evaluate_files(*args, checkpoint="state.json", **kw)
    assert same(resumed.to_dict(), plain.to_dict())
    assert json.loads(open("state.json").read())["complete"] is True

    # A complete checkpoint gives its result back; W and b are read once, for their digests.
    reads = []
    monkeypatch.setattr(_files, "whole_array",
                        lambda source, read=_files.whole_array: reads.append(source) or
                        read(source))
    again = evaluate_files(*args, checkpoint="state.json",
                           **{k: v for k, v in kw.items() if k != "chunk_rows"})
    assert same(again.to_dict(), plain.to_dict())
    assert sorted(os.path.basename(source.name) for source in reads) == ["b.npy", "w.npy"]


def test_checkpoint_of_another_weight_is_refused(layer):
    h, w, b, y = layer
    args = ("hidden.npy", "labels.npy")
    kw = dict(ignore_index=-100, checkpoint="state.json")
    evaluate_files(*args, linear_weight="w.npy", linear_bias="b.npy", **kw)
    np.save("w2.npy", w)
    with pytest.raises(EvalFileError, match=r"state.json: checkpoint of another run "
                                            r"\(linear_weight path was '.*w.npy', now "
                                            r"'.*w2.npy'"):
        evaluate_files(*args, linear_weight="w2.npy", linear_bias="b.npy", **kw)
    with pytest.raises(EvalFileError, match=r"linear_bias was '.*b.npy', now none"):
        evaluate_files(*args, linear_weight="w.npy", **kw)
    with pytest.raises(EvalFileError, match=r"it evaluated hidden states through a linear "
                                            r"layer \(linear_weight\), this run evaluates "
                                            r"logits"):
        evaluate_files(*args, **kw)
    w[0, 0] += 1
    np.save("w.npy", w)                                  # same path and size, new contents
    os.utime("w.npy", ns=(1, 1))
    with pytest.raises(EvalFileError, match="linear_weight mtime_ns was"):
        evaluate_files(*args, linear_weight="w.npy", linear_bias="b.npy", **kw)


def test_weight_rewritten_outside_the_sampled_fingerprint_is_refused(tmp_path, monkeypatch):
    """A weight changed where the sampled fingerprint does not look, with its size and
    modification time kept, is still another weight: the checkpoint records a digest of all
    its values."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(5)
    hidden = rng.standard_normal((300, 64)).astype(np.float32)
    weight = rng.standard_normal((4000, 64)).astype(np.float32)
    np.save("hidden.npy", hidden)
    np.save("labels.npy", rng.integers(0, 4000, 300))
    np.save("w.npy", weight)
    kw = dict(linear_weight="w.npy", checkpoint="state.json", chunk_rows=100)
    evaluate_files("hidden.npy", "labels.npy", **kw)
    size, stat = os.path.getsize("w.npy"), os.stat("w.npy")
    sampled = np.zeros(size, bool)
    for offset, length in fingerprint_regions(size):
        sampled[offset:offset + length] = True
    header = size - weight.nbytes
    unsampled = next(offset for offset in range(header, size, 4)
                     if not sampled[offset:offset + 4].any())
    weight.reshape(-1)[(unsampled - header) // 4] += 1
    np.save("w.npy", weight)
    os.utime("w.npy", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(EvalFileError, match=r"linear_weight content changed since the "
                                            r"checkpoint was written \(its digest differs\)"):
        evaluate_files("hidden.npy", "labels.npy", **kw)


def test_checkpoint_of_logits_is_refused_for_a_linear_run(layer):
    h, w, b, y = layer
    np.save("logits.npy", logits_of(h, w, b))
    evaluate_files("logits.npy", "labels.npy", ignore_index=-100, checkpoint="state.json")
    with pytest.raises(EvalFileError, match=r"it evaluated logits, this run evaluates hidden "
                                            r"states"):
        evaluate_files("hidden.npy", "labels.npy", linear_weight="w.npy",
                       ignore_index=-100, checkpoint="state.json")


@pytest.mark.parametrize("edit, message", [
    (lambda inputs: inputs.update(linear_weight=[]), "inputs.linear_weight must be an object"),
    (lambda inputs: inputs.update(linear_bias=3), "inputs.linear_bias must be an object or "
                                                  "null, got 3"),
    (lambda inputs: inputs.pop("labels"), "inputs.labels must be an object, got None"),
])
def test_hand_edited_linear_checkpoint(layer, edit, message):
    evaluate_files("hidden.npy", "labels.npy", linear_weight="w.npy", linear_bias="b.npy",
                   ignore_index=-100, checkpoint="state.json")
    state = json.loads(open("state.json").read())
    edit(state["inputs"])
    with open("state.json", "w") as fp:
        json.dump(state, fp)
    with pytest.raises(EvalFileError, match=rf"state.json: corrupt checkpoint \({message}"):
        evaluate_files("hidden.npy", "labels.npy", linear_weight="w.npy", linear_bias="b.npy",
                       ignore_index=-100, checkpoint="state.json")


# --------------------------------------------------------------------------------------------
# Bad files and options (Python)


def test_options_that_do_not_go_together_raise_before_any_file_is_opened(layer, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a file was opened despite bad options")

    monkeypatch.setattr(_files, "open_array", refuse)
    with pytest.raises(ValueError, match="from_logits=False cannot be used with "
                                         "linear_weight"):
        evaluate_files("hidden.npy", "labels.npy", linear_weight="w.npy", from_logits=False)
    with pytest.raises(ValueError, match="linear_bias needs linear_weight"):
        evaluate_files("hidden.npy", "labels.npy", linear_bias="b.npy")
    with pytest.raises(TypeError, match="linear_weight must be the path of a .npy/.npz file, "
                                        "got ndarray"):
        evaluate_files("hidden.npy", "labels.npy", linear_weight=np.zeros((V, D)))


# --------------------------------------------------------------------------------------------
# The command line


LINEAR = ("--linear-weight", "w.npy", "--linear-bias", "b.npy", "hidden.npy", "labels.npy",
          "--ignore-index", "-100")


def test_cli_json_and_table_equal_evaluate_linear(layer, capsys):
    h, w, b, y = layer
    status, out, err = eval_main(capsys, *LINEAR, "--json", "--topk", "1", "3",
                                 "--chunk-rows", "64")
    assert status == 0 and err == ""
    want = fastxent.evaluate_linear(h, w, y, linear_bias=b, ignore_index=-100, topk=(1, 3),
                                    chunk_rows=64)
    assert strict_loads(out) == json.loads(json.dumps(cli.strict_json(want.to_dict())))
    status, out, _ = eval_main(capsys, *LINEAR, "--no-progress")
    assert status == 0
    want = fastxent.evaluate_linear(h, w, y, linear_bias=b, ignore_index=-100)
    assert out.splitlines()[0] == want.summary()
    cells = metric_cells(out)
    assert cells["loss (nats)"].startswith(f"{want.loss:.6f} ± ")
    assert cells["perplexity"] == f"{want.perplexity:.6f}"
    assert cells["top-5"].startswith(f"{want.topk[5]:.6f} ± ")
    assert cells["count"] == str(want.count)


def test_cli_help_documents_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["eval", "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--linear-weight FILE" in text and "--linear-bias FILE" in text
    assert "hidden states" in text and "H @ W.T + b" in text


def _bad_files(h, w, b, y):
    np.save("w_wide.npy", np.zeros((V, D + 1), np.float32))
    np.save("w64.npy", w.astype(np.float64))
    np.save("b_short.npy", b[:-1])
    np.save("b64.npy", b.astype(np.float64))
    np.save("w_int.npy", np.zeros((V, D), np.int32))
    np.save("w16.npy", np.zeros((V, D), np.float16))
    np.save("w_small.npy", w[:V - 10])              # V = 40: labels up to 49 are out of range
    np.save("weight3.npy", np.ones(3))
    with open("w.npy", "rb") as fp:
        data = fp.read()
    with open("w_cut.npy", "wb") as fp:
        fp.write(data[:-100])
    with open("w_garbage.npy", "wb") as fp:
        fp.write(b"not an array")


@pytest.mark.parametrize("argv, message", [
    (["--linear-weight", "w_wide.npy", "hidden.npy", "labels.npy"],
     f"w_wide.npy: shape ({V}, {D + 1}): the linear layer's weight must have shape (V, {D}) "
     f"for hidden.npy of shape ({N}, {D}) (d = {D})"),
    (["--linear-weight", "w64.npy", "hidden.npy", "labels.npy"],
     "w64.npy is float64 but hidden.npy is float32: the hidden states and the linear layer "
     "must both be float32 or both float64"),
    (["--linear-weight", "w.npy", "--linear-bias", "b64.npy", "hidden.npy", "labels.npy"],
     "b64.npy is float64 but hidden.npy is float32"),
    (["--linear-weight", "w.npy", "--linear-bias", "b_short.npy", "hidden.npy", "labels.npy"],
     f"b_short.npy: shape ({V - 1},): the linear layer's bias must have shape ({V},) for "
     f"w.npy of shape ({V}, {D}) (V = {V})"),
    (["--linear-weight", "w_int.npy", "hidden.npy", "labels.npy"],
     "w_int.npy: dtype int32: a linear layer's weight and bias must be float32 or float64"),
    (["--linear-weight", "w16.npy", "hidden.npy", "labels.npy"],
     "w16.npy: dtype float16: a linear layer's weight and bias must be float32 or float64"),
    (["--linear-weight", "w_small.npy", "hidden.npy", "labels.npy", "--ignore-index", "-100"],
     "is out of range [0, 40) and is not ignore_index -100"),
    (["--linear-weight", "w_cut.npy", "hidden.npy", "labels.npy"],
     f"w_cut.npy: truncated: header says ({V}, {D}) float32"),
    (["--linear-weight", "w_garbage.npy", "hidden.npy", "labels.npy"],
     "w_garbage.npy: not a .npy or .npz file"),
    (["--linear-weight", "missing.npy", "hidden.npy", "labels.npy"],
     "missing.npy: no such file"),
    (["--linear-weight", "w.npy", "--weight", "weight3.npy", "hidden.npy", "labels.npy"],
     f"weight has 3 entries, but w.npy has {V} classes"),
    (["--linear-weight", "w.npy", "w.npy", "labels.npy"],
     f"labels.npy: {N} rows, but w.npy has {V}"),
    (["--linear-weight", "w.npy", "--from-probs", "hidden.npy", "labels.npy"],
     "--from-probs cannot be used with --linear-weight"),
    (["--linear-bias", "b.npy", "hidden.npy", "labels.npy"],
     "--linear-bias needs --linear-weight"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_cli_errors_are_one_line_with_status_2(layer, capsys, argv, message):
    _bad_files(*layer)
    status, out, err = eval_main(capsys, *argv)
    assert status == 2 and out == ""
    assert err.startswith("fastxent eval: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err


def test_cli_error_in_a_process_has_no_traceback(layer):
    _bad_files(*layer)
    done = subprocess.run(eval_command("--linear-weight", "w64.npy", "hidden.npy", "labels.npy"),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("fastxent eval: error: w64.npy is float64 but hidden.npy is "
                                  "float32") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


def test_cli_resume_with_another_weight_is_refused(layer, capsys):
    h, w, b, y = layer
    assert eval_main(capsys, *LINEAR, "--checkpoint", "state.json")[0] == 0
    np.save("w2.npy", w)
    status, out, err = eval_main(capsys, "--linear-weight", "w2.npy", "--linear-bias", "b.npy",
                                 "hidden.npy", "labels.npy", "--ignore-index", "-100",
                                 "--checkpoint", "state.json")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "state.json: checkpoint of another run (linear_weight path was" in err


def test_cli_kill_and_resume(tmp_path, monkeypatch):
    """SIGKILL a checkpointed linear run mid-way; the same command resumes to identical
    output."""
    monkeypatch.chdir(tmp_path)
    rows, features, classes, chunk = 20_000, 8, 16, 100
    rng = np.random.default_rng(7)
    np.save("hidden.npy", rng.standard_normal((rows, features)).astype(np.float32))
    np.save("w.npy", rng.standard_normal((classes, features)).astype(np.float32))
    np.save("b.npy", rng.standard_normal(classes).astype(np.float32))
    np.save("labels.npy", rng.integers(0, classes, rows).astype(np.int32))
    state = tmp_path / "state.json"
    command = eval_command("--linear-weight", "w.npy", "--linear-bias", "b.npy", "hidden.npy",
                           "labels.npy", "--json", "--no-progress", "--chunk-rows", str(chunk),
                           "--checkpoint", str(state))
    reference = run_eval_command(command[:-2], timeout=60)
    assert reference.returncode == 0, reference.stderr

    saved = kill_at_first_checkpoint(command, state, rows, timeout=60)

    resumed = run_eval_command(command, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {state} at row {saved['next_row']} of {rows}" in resumed.stderr
    assert resumed.stdout == reference.stdout                       # bitwise, as text
    hidden, w, b, y = (np.load(name) for name in ("hidden.npy", "w.npy", "b.npy",
                                                   "labels.npy"))
    want = fastxent.evaluate_linear(hidden, w, y, linear_bias=b, chunk_rows=chunk)
    assert json.loads(resumed.stdout) == json.loads(json.dumps(cli.strict_json(
        want.to_dict())))
