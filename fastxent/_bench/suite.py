"""Built-in benchmark workloads for fastxent and its peers.

Every workload is timed for fastxent and for each installed peer (NumPy always; PyTorch,
scikit-learn and JAX when importable) on the same seeded synthetic data, in the same process.
``fastxent bench`` (see :mod:`fastxent.cli`) and the pytest-benchmark suite in ``bench/``
both drive the functions defined here.

Each implementation is a set of *builders*, one per workload kind. A builder takes the data
and a thread count, does every untimed preparation (allocating outputs, converting arrays,
compiling) and returns a zero-argument callable that performs one timed call and returns the
loss as a Python float.
"""

import concurrent.futures
import importlib
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import fastxent

SOFTMAX_CE = "softmax_ce"
SOFTMAX_CE_LOSS = "softmax_ce_loss"
BINARY_CE = "binary_ce"
BINARY_LOGLOSS = "binary_logloss"
EVALUATE = "evaluate"
KINDS_WITH_GRAD = frozenset({SOFTMAX_CE, BINARY_CE})
SOFTMAX_KINDS = frozenset({SOFTMAX_CE, SOFTMAX_CE_LOSS, EVALUATE})

FULL_SIZES = {
    SOFTMAX_CE: [(200_000, 100), (20_000, 1000), (2048, 32_000), (1_000_000, 10), (64, 10)],
    SOFTMAX_CE_LOSS: [(20_000, 1000)],
    BINARY_CE: [(10_000_000,)],
    BINARY_LOGLOSS: [(10_000_000,)],
    EVALUATE: [(1_000_000, 10)],
}
QUICK_SIZES = {
    SOFTMAX_CE: [(2000, 100), (64, 1000), (64, 10)],
    SOFTMAX_CE_LOSS: [(200, 1000)],
    BINARY_CE: [(100_000,)],
    BINARY_LOGLOSS: [(100_000,)],
    EVALUATE: [(2000, 10), (64, 1000)],
}
DTYPES = ("float32", "float64")
MAX_COPY_BYTES = 256 * 2**20
# Keeps probabilities away from 0 and 1 so that no implementation has to clip them.
PROBABILITY_MARGIN = 1e-4
# The "evaluate" workload: top-1 and top-TOP_K accuracy, and the ECE over ECE_BINS equal-width
# bins (bin b holds the confidences in (b/ECE_BINS, (b+1)/ECE_BINS]), as fastxent.evaluate has.
TOP_K = 5
EVALUATE_TOPK = (1, TOP_K)
ECE_BINS = 15
# The metrics every "evaluate" implementation computes (see EVALUATE_METRICS).
EVALUATE_METRIC_NAMES = (
    "loss", "perplexity", "accuracy", f"top{TOP_K}", "entropy", "brier", "ece")

Run = Callable[[], float]
Builder = Callable[["Data", int], Run]


@dataclass(frozen=True)
class Workload:
    """One benchmark case.

    Parameters
    ----------
    kind : str
        ``"softmax_ce"`` (loss and gradient, integer labels), ``"softmax_ce_loss"`` (loss
        only), ``"binary_ce"`` (binary CE with logits, loss and gradient),
        ``"binary_logloss"`` (binary CE on probabilities, loss only) or ``"evaluate"``
        (every metric of :func:`fastxent.evaluate` from logits and integer labels, top-1 and
        top-5).
    dtype : str
        ``"float32"`` or ``"float64"``.
    shape : tuple of int
        Shape of the input; for softmax kinds the last axis holds the classes.
    """

    kind: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def with_grad(self):
        """bool : Whether the timed call also computes the gradient."""
        return self.kind in KINDS_WITH_GRAD

    @property
    def shape_text(self):
        """str : The shape written as ``2048x32000``."""
        return "x".join(map(str, self.shape))

    @property
    def label(self):
        """str : A unique, human-readable name, used as the pytest-benchmark group."""
        return f"{self.kind}-{self.dtype}-{self.shape_text}"


@dataclass(frozen=True)
class Data:
    """Inputs of one workload: logits or probabilities, and labels or 0/1 targets."""

    inputs: np.ndarray
    targets: np.ndarray


@dataclass(frozen=True)
class Timing:
    """Median and minimum wall time of the repeated calls, in seconds."""

    median: float
    min: float


@dataclass(frozen=True)
class Implementation:
    """An implementation: the module it needs and one builder per workload kind it supports."""

    module: str
    builders: dict[str, Builder]


def default_workloads(*, dtypes=("float32",), softmax_shapes=None, quick=False):
    """List the workloads of a run.

    Parameters
    ----------
    dtypes : sequence of str, default ("float32",)
        Floating dtypes; every workload is run in each.
    softmax_shapes : sequence of tuple of int, optional
        When given, the run is restricted to softmax CE loss and gradient at these shapes.
    quick : bool, default False
        Use tiny sizes (CI smoke runs) instead of the full set.

    Returns
    -------
    list of Workload
    """
    sizes = {SOFTMAX_CE: softmax_shapes} if softmax_shapes else QUICK_SIZES if quick else FULL_SIZES
    return [
        Workload(kind, dtype, tuple(shape))
        for kind, shapes in sizes.items()
        for dtype in dtypes
        for shape in shapes
    ]


def make_data(workload, seed=0):
    """Generate the seeded synthetic data of a workload.

    Parameters
    ----------
    workload : Workload
    seed : int, default 0

    Returns
    -------
    Data
        Softmax kinds: standard-normal logits and int64 labels of shape ``shape[:-1]``.
        Binary kinds: standard-normal logits, or probabilities kept at least
        ``PROBABILITY_MARGIN`` away from 0 and 1, with 0/1 targets of the input's dtype.
    """
    rng = np.random.default_rng(seed)
    inputs = rng.standard_normal(workload.shape, dtype=workload.dtype)
    if workload.kind in SOFTMAX_KINDS:
        labels = rng.integers(0, workload.shape[-1], size=workload.shape[:-1], dtype=np.int64)
        return Data(inputs, labels)
    targets = rng.integers(0, 2, size=workload.shape).astype(workload.dtype)
    if workload.kind == BINARY_LOGLOSS:
        inputs = np.clip(_numpy_sigmoid(inputs), PROBABILITY_MARGIN, 1 - PROBABILITY_MARGIN)
    return Data(inputs, targets)


def bytes_moved(workload, data):
    """Bytes a workload must at least read and write: inputs, targets and the gradient."""
    grad_bytes = data.inputs.nbytes if workload.with_grad else 0
    return data.inputs.nbytes + data.targets.nbytes + grad_bytes


def time_call(run, repeat):
    """Time ``run()`` after one warm-up call.

    Parameters
    ----------
    run : callable
        Called with no arguments.
    repeat : int
        Number of timed calls.

    Returns
    -------
    Timing
    """
    run()
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return Timing(statistics.median(seconds), min(seconds))


def copy_bandwidth(nbytes, threads, repeat=5):
    """Measure memory copy bandwidth with ``np.copyto`` on ``threads`` threads.

    NumPy copies on one thread, so the buffer is split into ``threads`` chunks that are copied
    concurrently from a thread pool (``np.copyto`` releases the GIL).

    Parameters
    ----------
    nbytes : int
        Size of the source buffer.
    threads : int
    repeat : int, default 5

    Returns
    -------
    float
        Bytes read plus bytes written per second (median over the repeats).
    """
    sources = np.array_split(np.ones(nbytes, dtype=np.uint8), threads)
    destinations = [np.empty_like(chunk) for chunk in sources]
    with concurrent.futures.ThreadPoolExecutor(max_workers=threads) as pool:
        timing = time_call(lambda: list(pool.map(np.copyto, destinations, sources)), repeat)
    return 2 * nbytes / timing.median


def import_peer(name):
    """Import the module an implementation needs.

    Returns
    -------
    module or None
        None when the import fails in any way (JAX can fail with more than ImportError).
    """
    try:
        return importlib.import_module(IMPLEMENTATIONS[name].module)
    except Exception:
        return None


def available_peers():
    """Names of the peers (implementations other than fastxent) that can be imported."""
    return [name for name in PEERS if import_peer(name) is not None]


def supports(name, kind):
    """Whether implementation ``name`` has a builder for workload kind ``kind``.

    A peer without one is not applicable to that kind: it is left out of the kind's results.
    """
    return kind in IMPLEMENTATIONS[name].builders


def prepare(name, workload, data, threads):
    """Build the timed callable of implementation ``name`` for a workload.

    Parameters
    ----------
    name : str
        A key of ``IMPLEMENTATIONS``.
    workload : Workload
    data : Data
    threads : int

    Returns
    -------
    callable
        One call computes the workload and returns the loss as a float.
    """
    return IMPLEMENTATIONS[name].builders[workload.kind](data, threads)


def benchmark_workload(workload, *, threads, repeat, peers, copy_bytes_per_s):
    """Time fastxent and each peer on one workload.

    Returns
    -------
    dict
        Workload description, fastxent timings, GB/s, percentage of copy bandwidth, and under
        ``"peers"`` for each peer ``{"median_s", "ratio"}`` (ratio = peer time / fastxent
        time) or ``{"error": message}`` when the peer failed. A peer with no builder for the
        workload's kind (not applicable) is absent from ``"peers"``.
    """
    data = make_data(workload)
    timing = time_call(prepare("fastxent", workload, data, threads), repeat)
    bytes_per_s = bytes_moved(workload, data) / timing.median
    return {
        "workload": workload.kind,
        "dtype": workload.dtype,
        "shape": list(workload.shape),
        "threads": threads,
        "bytes": bytes_moved(workload, data),
        "fastxent_median_s": timing.median,
        "fastxent_min_s": timing.min,
        "gb_per_s": bytes_per_s / 1e9,
        "pct_of_copy": 100 * bytes_per_s / copy_bytes_per_s,
        "peers": {
            peer: _time_peer(peer, workload, data, threads, repeat, timing.median)
            for peer in peers
            if supports(peer, workload.kind)
        },
    }


def _time_peer(peer, workload, data, threads, repeat, fastxent_seconds):
    try:
        seconds = time_call(prepare(peer, workload, data, threads), repeat).median
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}
    return {"median_s": seconds, "ratio": seconds / fastxent_seconds}


def run_suite(workloads, *, threads, repeat, progress=iter):
    """Benchmark a list of workloads on one machine.

    Parameters
    ----------
    workloads : list of Workload
    threads : int
        Threads given to fastxent, each peer that accepts a thread count, and the copy.
    repeat : int
        Timed calls per implementation and workload.
    progress : callable, default iter
        Wraps the workload list in an iterable, e.g. to report progress.

    Returns
    -------
    dict
        ``{"machine": machine_info(...), "results": [benchmark_workload(...), ...]}``.
    """
    peers = available_peers()
    largest_input = max(np.dtype(w.dtype).itemsize * int(np.prod(w.shape)) for w in workloads)
    copy_bytes = min(largest_input, MAX_COPY_BYTES)
    copy_bytes_per_s = copy_bandwidth(copy_bytes, threads)
    results = [
        benchmark_workload(
            workload, threads=threads, repeat=repeat, peers=peers,
            copy_bytes_per_s=copy_bytes_per_s,
        )
        for workload in progress(workloads)
    ]
    machine = machine_info(threads, peers)
    machine.update(copy_bytes=copy_bytes, copy_gb_per_s=copy_bytes_per_s / 1e9)
    return {"machine": machine, "results": results}


def machine_info(threads, peers):
    """Describe the build, the machine and the peer versions.

    Parameters
    ----------
    threads : int
    peers : list of str

    Returns
    -------
    dict
    """
    config = fastxent.config()
    return {
        "fastxent": config["version"],
        "isa": config["isa"],
        "openmp": config["openmp"],
        "threads": threads,
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "peer_versions": {
            peer: getattr(import_peer(peer), "__version__", "unknown") for peer in peers
        },
    }


def cpu_model():
    """The CPU model name from ``/proc/cpuinfo``, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# --- fastxent -------------------------------------------------------------------------------

def _fastxent_softmax_ce(data, threads):
    grad = np.empty_like(data.inputs)

    def run():
        loss, _ = fastxent.cross_entropy_loss_and_grad(
            data.inputs, data.targets, out=grad, n_threads=threads)
        return float(loss)
    return run


def _fastxent_softmax_ce_loss(data, threads):
    return lambda: float(fastxent.cross_entropy(data.inputs, data.targets, n_threads=threads))


def _fastxent_binary_ce(data, threads):
    grad = np.empty_like(data.inputs)

    def run():
        loss, _ = fastxent.binary_cross_entropy_loss_and_grad(
            data.inputs, data.targets, out=grad, n_threads=threads)
        return float(loss)
    return run


def _fastxent_binary_logloss(data, threads):
    return lambda: float(fastxent.binary_cross_entropy(
        data.inputs, data.targets, from_logits=False, n_threads=threads))


def _fastxent_evaluate_metrics(data, threads):
    def run():
        result = fastxent.evaluate(data.inputs, data.targets, topk=EVALUATE_TOPK,
                                   n_threads=threads)
        return _metrics(result.loss, result.perplexity, result.accuracy, result.topk[TOP_K],
                        result.entropy, result.brier, result.ece)
    return run


def _metrics(*values):
    """The metrics of an "evaluate" run as a dict of floats keyed by EVALUATE_METRIC_NAMES."""
    return dict(zip(EVALUATE_METRIC_NAMES, map(float, values), strict=True))


# --- NumPy (single-threaded vectorised reference; `threads` is ignored) ---------------------

def _numpy_sigmoid(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


def _as_rows(data):
    """View softmax data as 2-D logits and 1-D labels."""
    return data.inputs.reshape(-1, data.inputs.shape[-1]), data.targets.reshape(-1)


def _numpy_softmax_loss_into(logits, labels, exp_out):
    """Mean softmax CE; leaves ``exp(logits - row max)`` in ``exp_out``.

    Returns
    -------
    loss : numpy scalar
    row_sum : ndarray of shape (n_rows, 1)
        Row sums of ``exp_out``.
    """
    row_max = logits.max(axis=1, keepdims=True)
    np.subtract(logits, row_max, out=exp_out)
    np.exp(exp_out, out=exp_out)
    row_sum = exp_out.sum(axis=1, keepdims=True)
    label_logit = logits[np.arange(len(labels)), labels]
    loss = np.mean(np.log(row_sum[:, 0]) + row_max[:, 0] - label_logit)
    return loss, row_sum


def _numpy_softmax_ce(data, threads):
    logits, labels = _as_rows(data)
    grad = np.empty_like(logits)
    rows = np.arange(len(labels))

    def run():
        loss, row_sum = _numpy_softmax_loss_into(logits, labels, grad)
        np.multiply(grad, 1 / (row_sum * len(labels)), out=grad)
        grad[rows, labels] -= 1 / len(labels)
        return float(loss)
    return run


def _numpy_softmax_ce_loss(data, threads):
    logits, labels = _as_rows(data)
    work = np.empty_like(logits)
    return lambda: float(_numpy_softmax_loss_into(logits, labels, work)[0])


def _numpy_binary_ce(data, threads):
    logits, targets = data.inputs, data.targets
    grad = np.empty_like(logits)

    def run():
        np.logaddexp(0, logits, out=grad)
        loss = (grad.sum() - np.dot(logits, targets)) / len(logits)
        np.multiply(logits, 0.5, out=grad)
        np.tanh(grad, out=grad)
        np.multiply(grad, 0.5, out=grad)
        np.add(grad, 0.5, out=grad)
        np.subtract(grad, targets, out=grad)
        np.divide(grad, len(logits), out=grad)
        return float(loss)
    return run


def _numpy_binary_logloss(data, threads):
    probabilities, targets = data.inputs, data.targets
    log_p = np.empty_like(probabilities)
    log_q = np.empty_like(probabilities)

    def run():
        np.log(probabilities, out=log_p)
        np.negative(probabilities, out=log_q)
        np.log1p(log_q, out=log_q)
        total = np.dot(targets, log_p) + log_q.sum() - np.dot(targets, log_q)
        return float(-total / len(probabilities))
    return run


def _numpy_brier(probabilities, label_probabilities):
    """Mean Brier score with one-hot targets: ``sum_c p_c**2 - 2 p_y + 1`` per row."""
    return np.mean((probabilities ** 2).sum(axis=1) - 2 * label_probabilities + 1)


def _numpy_ece(confidence, correct):
    """Expected calibration error over ``ECE_BINS`` equal-width confidence bins."""
    edges = np.arange(ECE_BINS + 1) / ECE_BINS
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, ECE_BINS - 1)
    confidence_sums = np.bincount(bins, weights=confidence, minlength=ECE_BINS)
    correct_sums = np.bincount(bins, weights=correct, minlength=ECE_BINS)
    return np.abs(correct_sums - confidence_sums).sum() / len(confidence)


def _numpy_evaluate_metrics(data, threads):
    logits, labels = _as_rows(data)
    rows = np.arange(len(labels))

    def run():
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        probs = np.exp(log_probs)
        label_log_probs = log_probs[rows, labels]
        loss = -label_log_probs.mean()
        correct = logits.argmax(axis=1) == labels
        top_k = np.argpartition(logits, -TOP_K, axis=1)[:, -TOP_K:]
        top_k_accuracy = (top_k == labels[:, None]).any(axis=1).mean()
        entropy = -(probs * log_probs).sum(axis=1).mean()
        brier = _numpy_brier(probs, np.exp(label_log_probs))
        ece = _numpy_ece(probs.max(axis=1), correct)
        return _metrics(loss, np.exp(loss), correct.mean(), top_k_accuracy, entropy, brier, ece)
    return run


# --- PyTorch --------------------------------------------------------------------------------

def _torch_setup(data, threads, softmax, requires_grad):
    """Set torch's thread count and wrap the data (shared memory) as tensors."""
    import torch
    torch.set_num_threads(threads)
    inputs, targets = _as_rows(data) if softmax else (data.inputs, data.targets)
    return torch.from_numpy(inputs).requires_grad_(requires_grad), torch.from_numpy(targets)


def _torch_loss_and_grad(loss_fn, inputs, targets):
    def run():
        inputs.grad = None
        loss = loss_fn(inputs, targets)
        loss.backward()
        return loss.item()
    return run


def _torch_loss_only(loss_fn, inputs, targets):
    import torch

    def run():
        with torch.no_grad():
            return loss_fn(inputs, targets).item()
    return run


def _torch_softmax_ce(data, threads):
    import torch.nn.functional as F
    return _torch_loss_and_grad(F.cross_entropy, *_torch_setup(data, threads, True, True))


def _torch_softmax_ce_loss(data, threads):
    import torch.nn.functional as F
    return _torch_loss_only(F.cross_entropy, *_torch_setup(data, threads, True, False))


def _torch_binary_ce(data, threads):
    import torch.nn.functional as F
    return _torch_loss_and_grad(
        F.binary_cross_entropy_with_logits, *_torch_setup(data, threads, False, True))


def _torch_binary_logloss(data, threads):
    import torch.nn.functional as F
    return _torch_loss_only(F.binary_cross_entropy, *_torch_setup(data, threads, False, False))


def _torch_evaluate_metrics(data, threads):
    import torch
    import torch.nn.functional as F
    logits, labels = _torch_setup(data, threads, True, False)
    edges = torch.arange(ECE_BINS + 1, dtype=logits.dtype) / ECE_BINS

    def run():
        with torch.no_grad():
            loss = F.cross_entropy(logits, labels)
            log_probs = F.log_softmax(logits, dim=1)
            probs = log_probs.exp()
            correct = logits.argmax(dim=1) == labels
            top_k = logits.topk(TOP_K, dim=1).indices
            top_k_accuracy = (top_k == labels[:, None]).any(dim=1).float().mean()
            entropy = -(probs * log_probs).sum(dim=1).mean()
            label_probs = probs.gather(1, labels[:, None]).squeeze(1)
            brier = (probs.square().sum(dim=1) - 2 * label_probs + 1).mean()
            confidence = probs.amax(dim=1)
            bins = (torch.bucketize(confidence, edges) - 1).clamp(0, ECE_BINS - 1)
            confidence_sums = torch.bincount(bins, weights=confidence, minlength=ECE_BINS)
            correct_sums = torch.bincount(bins, weights=correct.to(confidence.dtype),
                                          minlength=ECE_BINS)
            ece = (correct_sums - confidence_sums).abs().sum() / len(labels)
            return _metrics(loss, loss.exp(), correct.float().mean(), top_k_accuracy, entropy,
                            brier, ece)
    return run


# --- scikit-learn (per-sample losses and gradients, reduced to the mean loss) ---------------

def _sklearn_loss_gradient(loss, inputs, targets, threads):
    """Time ``loss.loss_gradient`` into preallocated outputs; labels become input's dtype."""
    y_true = np.ascontiguousarray(targets, dtype=inputs.dtype)
    loss_out = np.empty_like(y_true)
    gradient_out = np.empty_like(inputs)

    def run():
        loss.loss_gradient(y_true=y_true, raw_prediction=inputs, loss_out=loss_out,
                           gradient_out=gradient_out, n_threads=threads)
        return float(loss_out.mean())
    return run


def _sklearn_softmax_ce(data, threads):
    from sklearn._loss.loss import HalfMultinomialLoss
    logits, labels = _as_rows(data)
    return _sklearn_loss_gradient(
        HalfMultinomialLoss(n_classes=logits.shape[1]), logits, labels, threads)


def _sklearn_softmax_ce_loss(data, threads):
    from sklearn._loss.loss import HalfMultinomialLoss
    logits, labels = _as_rows(data)
    loss = HalfMultinomialLoss(n_classes=logits.shape[1])
    y_true = labels.astype(logits.dtype)
    loss_out = np.empty_like(y_true)

    def run():
        loss.loss(y_true=y_true, raw_prediction=logits, loss_out=loss_out, n_threads=threads)
        return float(loss_out.mean())
    return run


def _sklearn_binary_ce(data, threads):
    from sklearn._loss.loss import HalfBinomialLoss
    return _sklearn_loss_gradient(HalfBinomialLoss(), data.inputs, data.targets, threads)


def _sklearn_binary_logloss(data, threads):
    from sklearn.metrics import log_loss
    return lambda: float(log_loss(data.targets, data.inputs))


def _sklearn_evaluate_metrics(data, threads):
    from scipy.special import softmax
    from scipy.stats import entropy
    from sklearn.metrics import accuracy_score, log_loss, top_k_accuracy_score
    logits, labels = _as_rows(data)
    classes = np.arange(logits.shape[1])
    rows = np.arange(len(labels))

    def run():
        probs = softmax(logits, axis=1)
        loss = log_loss(labels, probs, labels=classes)
        predictions = probs.argmax(axis=1)
        accuracy = accuracy_score(labels, predictions)
        top_k_accuracy = top_k_accuracy_score(labels, probs, k=TOP_K, labels=classes)
        mean_entropy = entropy(probs, axis=1).mean()
        brier = _numpy_brier(probs, probs[rows, labels])
        ece = _numpy_ece(probs.max(axis=1), predictions == labels)
        return _metrics(loss, np.exp(loss), accuracy, top_k_accuracy, mean_entropy, brier, ece)
    return run


# --- JAX (jit-compiled; uses XLA's own thread pool, `threads` is ignored) -------------------

def _jax_setup(data, softmax):
    """Enable float64 if needed and move the data to JAX arrays."""
    import jax
    import jax.numpy as jnp
    if data.inputs.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    inputs, targets = _as_rows(data) if softmax else (data.inputs, data.targets)
    return jnp.asarray(inputs), jnp.asarray(targets)


def _jax_softmax_loss(logits, labels):
    import jax
    import jax.numpy as jnp
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], axis=-1))


def _jax_binary_loss(logits, targets):
    import jax
    import jax.numpy as jnp
    return jnp.mean(jax.nn.softplus(logits) - logits * targets)


def _jax_logloss(probabilities, targets):
    import jax.numpy as jnp
    return -jnp.mean(targets * jnp.log(probabilities) + (1 - targets) * jnp.log1p(-probabilities))


def _jax_loss_and_grad(loss_fn, inputs, targets):
    import jax
    compiled = jax.jit(jax.value_and_grad(loss_fn))

    def run():
        loss, grad = compiled(inputs, targets)
        grad.block_until_ready()
        return float(loss)
    return run


def _jax_loss_only(loss_fn, inputs, targets):
    import jax
    compiled = jax.jit(loss_fn)
    return lambda: float(compiled(inputs, targets).block_until_ready())


def _jax_softmax_ce(data, threads):
    return _jax_loss_and_grad(_jax_softmax_loss, *_jax_setup(data, softmax=True))


def _jax_softmax_ce_loss(data, threads):
    return _jax_loss_only(_jax_softmax_loss, *_jax_setup(data, softmax=True))


def _jax_binary_ce(data, threads):
    return _jax_loss_and_grad(_jax_binary_loss, *_jax_setup(data, softmax=False))


def _jax_binary_logloss(data, threads):
    return _jax_loss_only(_jax_logloss, *_jax_setup(data, softmax=False))


def _loss_of(metrics_builder):
    """The builder that times ``metrics_builder``'s call and returns only its loss."""
    def builder(data, threads):
        run = metrics_builder(data, threads)
        return lambda: run()["loss"]
    return builder


def _implementation(module, softmax_ce, softmax_ce_loss, binary_ce, binary_logloss,
                    evaluate_metrics=None):
    builders = {
        SOFTMAX_CE: softmax_ce,
        SOFTMAX_CE_LOSS: softmax_ce_loss,
        BINARY_CE: binary_ce,
        BINARY_LOGLOSS: binary_logloss,
    }
    if evaluate_metrics is not None:
        builders[EVALUATE] = _loss_of(evaluate_metrics)
    return Implementation(module, builders)


# Builders of the "evaluate" kind whose call returns every metric, as a dict keyed by
# EVALUATE_METRIC_NAMES (the timed builders return only the loss). JAX has none: the kind is
# not applicable to it.
EVALUATE_METRICS = {
    "fastxent": _fastxent_evaluate_metrics,
    "numpy": _numpy_evaluate_metrics,
    "torch": _torch_evaluate_metrics,
    "sklearn": _sklearn_evaluate_metrics,
}

IMPLEMENTATIONS = {
    "fastxent": _implementation("fastxent", _fastxent_softmax_ce, _fastxent_softmax_ce_loss,
                                _fastxent_binary_ce, _fastxent_binary_logloss,
                                EVALUATE_METRICS["fastxent"]),
    "numpy": _implementation("numpy", _numpy_softmax_ce, _numpy_softmax_ce_loss,
                             _numpy_binary_ce, _numpy_binary_logloss,
                             EVALUATE_METRICS["numpy"]),
    "torch": _implementation("torch", _torch_softmax_ce, _torch_softmax_ce_loss,
                             _torch_binary_ce, _torch_binary_logloss,
                             EVALUATE_METRICS["torch"]),
    "sklearn": _implementation("sklearn", _sklearn_softmax_ce, _sklearn_softmax_ce_loss,
                               _sklearn_binary_ce, _sklearn_binary_logloss,
                               EVALUATE_METRICS["sklearn"]),
    "jax": _implementation("jax", _jax_softmax_ce, _jax_softmax_ce_loss,
                           _jax_binary_ce, _jax_binary_logloss),
}
PEERS = tuple(name for name in IMPLEMENTATIONS if name != "fastxent")
