#!/usr/bin/env bash
# Valgrind memcheck over a subset of fastxent's kernels: a small Python script calls every
# public function once (both dtypes, every row path: short and wide rows, strided axis, soft
# targets, probabilities, binary weights, the softmax family, evaluate, one input above
# SERIAL_BELOW with two OpenMP threads) on small arrays, under valgrind with
# PYTHONMALLOC=malloc.
#
#   scripts/memcheck.sh                 # the installed/importable fastxent, ISA auto + baseline
#
# CPython, NumPy and libgomp produce valgrind noise of their own; the script fails (exit 1)
# only on errors with a frame in fastxent's extension modules (_kernels_*), and prints the
# counts of both. Environment: PYTHON (default python3), MEMCHECK_ISAS (default "auto
# baseline": the dispatch's choice, then the baseline kernels).
set -euo pipefail

PYTHON=${PYTHON:-python3}
# the interpreter itself, not a wrapper script (pyenv shims are bash scripts, and valgrind
# would check bash without --trace-children)
PYTHON=$("$PYTHON" -c 'import sys; print(sys.executable)')
WORK=$(mktemp -d "${TMPDIR:-/tmp}/fastxent-memcheck.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SCRIPT=$WORK/kernels.py
cat > "$SCRIPT" <<'PY'
import numpy as np
import fastxent

rng = np.random.default_rng(0)
print("isa", fastxent.config()["isa"])
for dt in (np.float32, np.float64):
    x = rng.normal(size=(37, 5)).astype(dt)           # short rows, vectorised across rows
    y = rng.integers(0, 5, 37)
    w = rng.uniform(0.5, 2, 5)
    s = rng.uniform(0.5, 2, 37)
    fastxent.cross_entropy_loss_and_grad(x, y)
    fastxent.cross_entropy_loss_and_grad(x, y, weight=w, sample_weight=s, label_smoothing=0.1,
                                         reduction="none")
    xc = x.copy(); fastxent.cross_entropy_grad(xc, y, out=xc)
    xw = rng.normal(size=(9, 70)).astype(dt)          # wide rows
    fastxent.cross_entropy_loss_and_grad(xw, rng.integers(0, 70, 9), reduction="sum")
    x4 = rng.normal(size=(3, 4, 2, 5)).astype(dt)     # strided rows (axis=1)
    fastxent.cross_entropy_loss_and_grad(x4, rng.integers(0, 4, (3, 2, 5)), axis=1)
    fastxent.cross_entropy_grad_hess(x4, rng.integers(0, 4, (3, 2, 5)), axis=1,
                                     hess_out=x4.copy())
    t = rng.uniform(size=(37, 5)).astype(dt); t /= t.sum(1, keepdims=True)
    fastxent.cross_entropy_loss_and_grad(x, t, label_smoothing=0.2)          # soft targets
    p = rng.uniform(0.01, 1, (37, 5)).astype(dt)
    fastxent.cross_entropy_loss_and_grad(p, y, from_logits=False, eps=1e-3)  # probabilities
    fastxent.cross_entropy_loss_and_grad(p, t, from_logits=False)
    fastxent.cross_entropy_grad_hess(p, y, from_logits=False, label_smoothing=0.1)
    fastxent.cross_entropy_grad_hess(x, t, weight=rng.uniform(size=5))
    fastxent.cross_entropy(x, np.where(y == 1, -100, y), ignore_index=-100)
    xb = rng.normal(size=(6, 70)).astype(dt)
    tb = (rng.uniform(size=(6, 70)) < 0.5).astype(dt)
    fastxent.binary_cross_entropy_loss_and_grad(xb, tb, pos_weight=rng.uniform(1, 2, 70),
                                                weight=rng.uniform(size=(6, 1)))
    fastxent.binary_cross_entropy_loss_and_grad(rng.uniform(0.01, 0.99, (6, 70)).astype(dt),
                                                tb, from_logits=False, reduction="none")
    tb2 = tb.copy(); tb2[0, :3] = -1
    fastxent.binary_cross_entropy(xb, tb2, ignore_index=-1, label_smoothing=0.1)
    fastxent.binary_cross_entropy_grad_hess(xb, tb, pos_weight=2.0, weight=rng.uniform(size=70))
    terms = dict(z_loss=1e-3, softcap=5.0, focal_gamma=2.0, focal_alpha=rng.uniform(size=5))
    fastxent.cross_entropy_loss_and_grad(x, y, return_lse=True, **terms)    # option loops
    fastxent.cross_entropy_grad_hess(x4, rng.integers(0, 4, (3, 2, 5)), axis=1, focal_gamma=0.5,
                                     softcap=3.0, hess_out=x4.copy())
    fastxent.cross_entropy_grad_hess(p, t, from_logits=False, focal_gamma=2.0)
    fastxent.cross_entropy(x, np.where(y == 1, -100, y), ignore_index=-100, return_lse=True)
    fastxent.binary_cross_entropy_grad_hess(xb, tb, softcap=3.0, focal_gamma=2.0,
                                            focal_alpha=0.25, pos_weight=2.0)
    fastxent.binary_cross_entropy(rng.uniform(0.01, 0.99, (6, 70)).astype(dt), tb,
                                  from_logits=False, focal_gamma=0.5, reduction="none")
    fastxent.binary_cross_entropy_grad_hess(rng.uniform(0.01, 0.99, (6, 70)).astype(dt), tb,
                                            from_logits=False, hess_out=np.empty_like(xb))
    for fn in (fastxent.softmax, fastxent.log_softmax, fastxent.logsumexp):
        fn(x); fn(x4, axis=1)
    fastxent.softmax(xc, out=xc)
    special = np.array([[np.inf, 0, 1], [np.nan, 1, 2], [-np.inf, -np.inf, -np.inf],
                        [1e30, -1e30, 0]], dt)
    fastxent.cross_entropy_loss_and_grad(special, np.array([0, 1, 2, 1]))
    fastxent.logsumexp(special)
    fastxent.cross_entropy(np.zeros((0, 3), dt), np.zeros(0, int))        # empty
    fastxent.evaluate(x, np.where(y == 1, -100, y), ignore_index=-100, sample_weight=s,
                      weight=w, topk=(1, 3))                              # short rows
    fastxent.evaluate(xw, rng.integers(0, 70, 9))                         # wide rows
    fastxent.evaluate(x4, rng.integers(0, 4, (3, 2, 5)), axis=1)          # strided rows
    fastxent.evaluate(x, t, weight=w)                                     # soft targets
    fastxent.evaluate(p, y, from_logits=False)                            # probabilities
    fastxent.evaluate(p, t, from_logits=False)
    fastxent.evaluate(special, np.array([0, 1, 2, 1]))
    try:
        fastxent.cross_entropy(x, np.where(y == 1, 7, y))                  # bad label
    except ValueError:
        pass
big = rng.normal(size=(8200, 4)).astype(np.float32)                    # 2 OpenMP threads
fastxent.cross_entropy_loss_and_grad(big, rng.integers(0, 4, 8200), n_threads=2)
fastxent.binary_cross_entropy(big, (big > 0).astype(np.float32), n_threads=2)
fastxent.evaluate(big, rng.integers(0, 4, 8200), n_threads=2)
# ignored rows with class weights (the kernel once read w[ignore_index] for them)
fastxent.cross_entropy(rng.uniform(0.1, 1, (4, 3)), np.array([0, -100, 1, -100]),
                       from_logits=False, weight=np.ones(3), ignore_index=-100)
print("done")
PY

status=0
start=$(date +%s)
for isa in ${MEMCHECK_ISAS:-auto baseline}; do
    log=$WORK/valgrind-$isa.log
    env_isa=$([[ $isa == auto ]] && echo "" || echo "$isa")
    echo "== valgrind memcheck, FASTXENT_ISA=${env_isa:-<auto>}"
    t0=$(date +%s)
    FASTXENT_ISA=$env_isa PYTHONMALLOC=malloc OMP_WAIT_POLICY=passive valgrind --tool=memcheck --error-limit=no \
        --num-callers=30 --track-origins=yes --log-file="$log.%p" \
        "$PYTHON" "$SCRIPT" || { echo "the script failed under valgrind"; status=1; }
    cat "$log".* > "$log"                  # one file per process (forked helpers too)
    total=$(grep -E "ERROR SUMMARY" "$log" | sed -E 's/.*ERROR SUMMARY: ([0-9]+) errors.*/\1/' |
            paste -sd+ | bc || true)
    # error blocks (separated by blank "==pid== " lines) with a frame in _kernels_*
    ours=$("$PYTHON" - "$log" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.split(r"\n==\d+== \n", text)
hits = [b for b in blocks if re.search(r"(at|by) 0x[0-9A-F]+: .*\(.*_kernels_\w+", b)
        and re.search(r"Invalid|uninitialised|Uninitialised|Mismatched|overlap|leak", b)]
for b in hits[:5]:
    print(b, file=sys.stderr)
print(len(hits))
PY
)
    echo "   $(( $(date +%s) - t0 ))s; valgrind errors: ${total:-?} in all, $ours in fastxent's frames"
    [[ $ours == 0 ]] || status=1
done
echo "== total $(( $(date +%s) - start ))s"
if [[ $status == 0 ]]; then echo "CLEAN"; else echo "NOT CLEAN"; fi
exit $status
