# The kernel of fastxent.evaluate (included by _kernels.pxi): every metric from one read of
# each row. Per row the loops of _eval_loops.h give the sums below; the row's metrics are
# formed here and added, weighted by its sample weight, into fixed blocks of statistics that
# are summed in order afterwards (so the totals do not depend on the thread count).
#
# Logits z, m = max z at index kmax, e_c = exp(z_c - m), rest = sum_{c != kmax} e_c, S = 1 + rest:
#   loss    = (m - z_y) + log1p(rest)                     (times w_y; soft: lin + asum log1p(rest))
#   entropy = log1p(rest) + sum_c e_c (m - z_c) / S       (all terms non-negative)
#   brier   = [(S - e_y)^2 + sum_{c != y} e_c^2] / S^2    (soft: sum p^2 - 2 sum p t + sum t^2)
#   confidence = 1 / S,  rank = #{c : z_c > z_y} + #{c < y : z_c == z_y}

cdef extern from "_eval_loops.h" nogil:
    enum:
        FX_REST
        FX_ENT
        FX_SQ
        FX_LIN
        FX_ASUM
        FX_DOT
        FX_TT
        FX_ROW_SUMS
    Py_ssize_t fx_eval_logits_f(const float *z, const float *t, const float *w, Py_ssize_t n,
                                float m, float zy, Py_ssize_t tie_end, double *sums) noexcept
    Py_ssize_t fx_eval_logits_d(const double *z, const double *t, const double *w,
                                Py_ssize_t n, double m, double zy, Py_ssize_t tie_end,
                                double *sums) noexcept
    void fx_eval_short_f(const float *x, Py_ssize_t R, Py_ssize_t C, const int *y,
                         const float *zy, float *X, float *m, int *kmax, double *rest,
                         double *l1p, double *ey, float *ent, float *sq, int *rank) noexcept
    void fx_eval_short_d(const double *x, Py_ssize_t R, Py_ssize_t C, const int *y,
                         const double *zy, double *X, double *m, int *kmax, double *rest,
                         double *l1p, double *ey, double *ent, double *sq, int *rank) noexcept
    Py_ssize_t fx_eval_probs_f(const float *p, const float *t, const float *w, Py_ssize_t n,
                               float lo, float hi, float py, Py_ssize_t tie_end,
                               double *sums) noexcept
    Py_ssize_t fx_eval_probs_d(const double *p, const double *t, const double *w,
                               Py_ssize_t n, double lo, double hi, double py,
                               Py_ssize_t tie_end, double *sums) noexcept


cdef enum:
    # Slots of the statistics evaluate_rows returns (sums over the counted rows), named in
    # EVAL_STATS for the Python layer.
    STAT_LOSS = 0               # sample_weight * class-weighted loss
    STAT_LOSS_WEIGHT = 1        # sample_weight * w_y (soft targets: sample_weight)
    STAT_WEIGHT = 2             # sample_weight
    STAT_COUNT = 3              # 1
    STAT_ENTROPY = 4            # sample_weight * entropy
    STAT_BRIER = 5              # sample_weight * Brier score
    # one slot per k: sample_weight * [rank < k]; then per bin b: weight,
    # weight * confidence, weight * [prediction correct]
    STAT_TOPK = 6

EVAL_STATS = ("loss", "loss_weight", "weight", "count", "entropy", "brier")


cdef struct RowMetrics:
    double loss                 # class-weighted
    double loss_weight          # the row's share of the loss denominator before sample_weight
    double entropy
    double brier
    double confidence
    Py_ssize_t rank             # of the true class; -1 for soft targets


cdef inline Py_ssize_t _eval_logits(const real *z, const real *t, const real *w, Py_ssize_t n,
                                    real m, real zy, Py_ssize_t tie_end,
                                    double *sums) noexcept nogil:
    if real is float:
        return fx_eval_logits_f(z, t, w, n, m, zy, tie_end, sums)
    else:
        return fx_eval_logits_d(z, t, w, n, m, zy, tie_end, sums)


cdef inline Py_ssize_t _eval_probs(const real *p, const real *t, const real *w, Py_ssize_t n,
                                   real lo, real hi, real py, Py_ssize_t tie_end,
                                   double *sums) noexcept nogil:
    if real is float:
        return fx_eval_probs_f(p, t, w, n, lo, hi, py, tie_end, sums)
    else:
        return fx_eval_probs_d(p, t, w, n, lo, hi, py, tie_end, sums)


cdef inline RowMetrics _nan_row(bint has_label) noexcept nogil:
    """A row holding NaN: every metric NaN."""
    cdef RowMetrics r
    r.loss = NAN
    r.loss_weight = 0.0
    r.entropy = NAN
    r.brier = NAN
    r.confidence = NAN
    r.rank = 0 if has_label else -1
    return r


cdef inline RowMetrics _logit_label_metrics(double m, Py_ssize_t kmax, Py_ssize_t y, double zy,
                                            double rest, double l1p, double e_y, double ent,
                                            double sq, double w_y,
                                            Py_ssize_t rank) noexcept nogil:
    """Metrics of a logit row with label y from its sums over c != kmax (see the top),
    l1p = log1p(rest) and e_y = exp(zy - m)."""
    cdef RowMetrics r
    cdef double inv = 1.0 / (1.0 + rest)        # 1 / S: one division per row
    cdef double not_y = 1.0 + (rest - e_y)      # S - e_y
    r.rank = rank
    r.entropy = l1p + ent * inv
    r.confidence = inv
    r.loss_weight = w_y
    if y == kmax:
        r.loss = w_y * l1p
        r.brier = (rest * rest + sq) * inv * inv
    else:
        r.loss = w_y * ((m - zy) + l1p) if w_y != 0.0 else 0.0
        r.brier = (not_y * not_y + 1.0 + (sq - e_y * e_y)) * inv * inv
    return r


cdef inline RowMetrics _eval_logit_row(const real *z, const real *t, const real *w,
                                       Py_ssize_t n_classes, Py_ssize_t y) noexcept nogil:
    """Metrics of one logit row with label y, or soft targets t (then w is not NULL)."""
    cdef double sums[FX_ROW_SUMS]
    cdef RowMetrics r
    cdef real m
    cdef Py_ssize_t kmax = _argmax(z, n_classes, &m), i, rank
    cdef real zy = z[y] if t == NULL else 0
    cdef double rest, l1p, inv, t_k
    if z[kmax] != m:                             # NaN is all the row holds
        return _nan_row(t == NULL)
    for i in range(FX_ROW_SUMS):
        sums[i] = 0.0
    rank = (_eval_logits(z, t, w, kmax, m, zy, y, sums)
            + _eval_logits(z + kmax + 1, _at(t, kmax + 1), _at(w, kmax + 1),
                           n_classes - kmax - 1, m, zy, y - kmax - 1, sums))
    rest = sums[FX_REST]
    if t == NULL:
        return _logit_label_metrics(m, kmax, y, zy, rest, log1p(rest),
                                    exp(<double>zy - <double>m), sums[FX_ENT], sums[FX_SQ],
                                    w[y] if w != NULL else 1.0,
                                    rank + ((m > zy) or (m == zy and kmax < y)))
    l1p = log1p(rest)                            # soft targets: the arg-max adds a_kmax to
    inv = 1.0 / (1.0 + rest)                     # asum and 1 to the exponentials
    t_k = t[kmax]
    r.rank = -1
    r.entropy = l1p + sums[FX_ENT] * inv
    r.confidence = inv
    r.loss_weight = 1.0
    r.loss = sums[FX_LIN] + (sums[FX_ASUM] + w[kmax] * t_k) * l1p
    r.brier = ((1.0 + sums[FX_SQ]) * inv * inv - 2.0 * (sums[FX_DOT] + t_k) * inv
               + sums[FX_TT] + t_k * t_k)
    return r


cdef inline RowMetrics _eval_prob_row(const real *p, const real *t, const real *w,
                                      Py_ssize_t n_classes, Py_ssize_t y, real lo,
                                      real hi) noexcept nogil:
    """Metrics of one row of probabilities, as _eval_logit_row."""
    cdef double sums[FX_ROW_SUMS]
    cdef RowMetrics r
    cdef real m
    cdef Py_ssize_t kmax = _argmax(p, n_classes, &m), i
    cdef real py = p[y] if t == NULL else 0
    cdef real cp
    cdef double w_y
    if p[kmax] != m:
        return _nan_row(t == NULL)
    for i in range(FX_ROW_SUMS):
        sums[i] = 0.0
    r.rank = _eval_probs(p, t, w, n_classes, lo, hi, py, y, sums)
    r.entropy = -sums[FX_ENT]
    r.confidence = m
    if t == NULL:
        w_y = w[y] if w != NULL else 1.0
        cp = lo if py < lo else (hi if py > hi else py)
        r.loss_weight = w_y
        r.loss = -w_y * log(<double>cp) if w_y != 0.0 else 0.0
        r.brier = (1.0 - py) * (1.0 - py) + (sums[FX_SQ] - <double>py * py)
    else:
        r.rank = -1
        r.loss_weight = 1.0
        r.loss = sums[FX_LIN]
        r.brier = sums[FX_SQ] - 2.0 * sums[FX_DOT] + sums[FX_TT]
    return r


cdef struct StatLayout:
    const int64_t *topk         # the k of each top-k slot
    Py_ssize_t n_topk
    Py_ssize_t n_bins           # equal-width confidence bins
    const double *edges         # (n_bins + 1,): edges[b] = b / n_bins


cdef inline Py_ssize_t _confidence_bin(double confidence, const StatLayout *L) noexcept nogil:
    """Bin b holds (edges[b], edges[b + 1]]; confidences <= 0 fall into the first bin, > 1
    into the last."""
    cdef Py_ssize_t b, n_bins = L.n_bins
    if not confidence > 0.0:
        return 0
    if confidence >= 1.0:
        return n_bins - 1
    b = min(<Py_ssize_t>(confidence * n_bins), n_bins - 1)   # the right bin or next to it
    while b > 0 and confidence <= L.edges[b]:
        b -= 1
    while b < n_bins - 1 and confidence > L.edges[b + 1]:
        b += 1
    return b


cdef inline void _add_row(double *stats, RowMetrics r, double s,
                          const StatLayout *L) noexcept nogil:
    """Add row metrics r with sample weight s to the statistics (see EVAL_STATS)."""
    cdef double *bins = stats + STAT_TOPK + L.n_topk
    cdef Py_ssize_t j, b, n_bins = L.n_bins
    cdef bint nan_row = not (r.loss == r.loss and r.entropy == r.entropy
                             and r.brier == r.brier and r.confidence == r.confidence)
    if nan_row:                                  # every metric becomes NaN
        r.loss = r.entropy = r.brier = r.confidence = NAN
    stats[STAT_LOSS] += s * r.loss
    stats[STAT_LOSS_WEIGHT] += s * r.loss_weight
    stats[STAT_WEIGHT] += s
    stats[STAT_COUNT] += 1.0
    stats[STAT_ENTROPY] += s * r.entropy
    stats[STAT_BRIER] += s * r.brier
    if r.rank < 0:                               # soft targets: no rank, no calibration
        return
    for j in range(L.n_topk):
        stats[STAT_TOPK + j] += NAN if nan_row else (s if r.rank < L.topk[j] else 0.0)
    b = 0 if nan_row else _confidence_bin(r.confidence, L)
    bins[b] += s
    bins[n_bins + b] += s * r.confidence
    bins[2 * n_bins + b] += NAN if nan_row else (s if r.rank == 0 else 0.0)


cdef void _eval_short_rows(const real *x, const real *w, const ClassOptions *o, Py_ssize_t r0,
                           Py_ssize_t r1, const StatLayout *L, double *stats) noexcept nogil:
    """Rows [r0, r1) of contiguous logits with labels and C <= SHORT_ROW, as _eval_rows,
    SHORT_BATCH rows at a time vectorised across rows (fx_eval_short)."""
    cdef real X[SHORT_ROW * SHORT_BATCH]
    cdef real m[SHORT_BATCH]
    cdef real zy[SHORT_BATCH]
    cdef int ys[SHORT_BATCH]
    cdef int kmax[SHORT_BATCH]
    cdef int rank[SHORT_BATCH]
    cdef double rest[SHORT_BATCH]
    cdef real ent[SHORT_BATCH]
    cdef real sq[SHORT_BATCH]
    cdef double l1p[SHORT_BATCH]
    cdef double ey[SHORT_BATCH]
    cdef Py_ssize_t C = o.n_classes, start, n, i, r, y
    start = r0
    while start < r1:
        n = min(<Py_ssize_t>SHORT_BATCH, r1 - start)
        for i in range(n):
            y = o.labels[start + i]
            ys[i] = 0 if o.has_ignore and y == o.ignore_index else <int>y   # an ignored label
            zy[i] = x[(start + i) * C + ys[i]]                         # indexes nothing
        for i in range(n, FX_PADDED_ROWS(n)):   # the loops read whole vectors of rows
            ys[i] = 0
            zy[i] = 0
        if real is float:
            fx_eval_short_f(x + start * C, n, C, ys, zy, X, m, kmax, rest, l1p, ey, ent, sq,
                            rank)
        else:
            fx_eval_short_d(x + start * C, n, C, ys, zy, X, m, kmax, rest, l1p, ey, ent, sq,
                            rank)
        for i in range(n):
            r = start + i
            y = o.labels[r]
            if o.has_ignore and y == o.ignore_index:
                continue
            _add_row(stats, _logit_label_metrics(m[i], kmax[i], y, zy[i], rest[i], l1p[i], ey[i],
                                                 ent[i], sq[i], w[y] if w != NULL else 1.0,
                                                 rank[i]),
                     o.sample_weight[r] if o.sample_weight != NULL else 1.0, L)
        start += n


cdef void _eval_rows(const real *x, const real *soft, const real *w, const ClassOptions *o,
                     Py_ssize_t r0, Py_ssize_t r1, const StatLayout *L, double *stats,
                     real *scratch) noexcept nogil:
    """Add rows [r0, r1) to stats; scratch holds 2 C values for strided rows."""
    cdef Py_ssize_t r, y, base, C = o.n_classes, step = o.n_inner
    cdef const real *row
    cdef const real *trow
    cdef RowMetrics metrics
    if step == 1 and C <= SHORT_ROW and o.labels != NULL and o.from_logits:
        _eval_short_rows(x, w, o, r0, r1, L, stats)
        return
    for r in range(r0, r1):
        y = -1
        if o.labels != NULL:
            y = o.labels[r]
            if o.has_ignore and y == o.ignore_index:
                continue
        base = _row_base(r, C, step)
        if step == 1:
            row = x + base
            trow = _at(soft, base)
        else:                                    # strided row: through this thread's buffer
            _gather(scratch, x, base, step, C)
            if soft != NULL:
                _gather(scratch + C, soft, base, step, C)
            row = scratch
            trow = scratch + C if soft != NULL else NULL
        if o.from_logits:
            metrics = _eval_logit_row(row, trow, w, C, y)
        else:
            metrics = _eval_prob_row(row, trow, w, C, y, <real>o.clip_lo, <real>o.clip_hi)
        _add_row(stats, metrics, o.sample_weight[r] if o.sample_weight != NULL else 1.0, L)


def evaluate_rows(const real[::1] x,                    # IN  (outer, C, inner) C-order
                  Py_ssize_t n_classes, Py_ssize_t n_inner,
                  const int64_t[::1] labels,            # IN  (rows,) in [0, C), or None
                  const real[::1] soft,                 # IN  like x, or None
                  const real[::1] class_weight,         # IN  (C,); required with soft
                  const double[::1] sample_weight,      # IN  (rows,), or None
                  bint has_ignore, int64_t ignore_index, bint from_logits, double clip_eps,
                  const int64_t[::1] topk,              # IN  (K,) the k of each top-k slot
                  Py_ssize_t n_bins,
                  double[::1] stats,                    # OUT (STAT_TOPK + K + 3 n_bins,)
                  int n_threads):
    """Evaluation statistics of every row of `x` (see EVAL_STATS), written into `stats`.

    Rows are laid out as for class_cross_entropy. Arguments must be validated: labels in
    range (or equal to ignore_index), exactly one of labels and soft given.
    """
    cdef ClassOptions o
    cdef StatLayout layout
    cdef Py_ssize_t n_rows = x.shape[0] // n_classes if n_classes > 0 else 0
    cdef Py_ssize_t per_block = _rows_per_block(n_classes)
    cdef Py_ssize_t n_blocks = _n_blocks(n_rows, per_block)
    cdef Py_ssize_t n_topk = topk.shape[0], n_stats = stats.shape[0], b, j
    cdef double *edges
    cdef real clip_lo = <real>clip_eps, clip_hi = <real>1.0 - <real>clip_eps
    cdef double *partial
    cdef real *scratch = NULL
    cdef const real *soft_p = NULL
    cdef const real *w_p = NULL
    if n_stats != STAT_TOPK + n_topk + 3 * n_bins or n_bins < 1:
        raise ValueError("evaluate_rows: stats has the wrong length")
    stats[:] = 0.0
    if n_rows == 0:
        return
    o = _class_options(n_rows, n_classes, n_inner, &labels[0] if labels is not None else NULL,
                       &sample_weight[0] if sample_weight is not None else NULL, has_ignore,
                       ignore_index, 0.0, from_logits, clip_lo, clip_hi, 1.0)
    if soft is not None:
        soft_p = &soft[0]
    if class_weight is not None:
        w_p = &class_weight[0]
    n_threads = _block_threads(n_threads, n_blocks)
    partial = <double *> calloc(n_blocks * n_stats, sizeof(double))
    edges = <double *> malloc((n_bins + 1) * sizeof(double))
    if n_inner > 1:
        scratch = <real *> malloc(n_threads * 2 * n_classes * sizeof(real))
    if partial == NULL or edges == NULL or (n_inner > 1 and scratch == NULL):
        free(partial)
        free(edges)
        free(scratch)
        raise MemoryError("fastxent: cannot allocate kernel work space")
    for b in range(n_bins + 1):
        edges[b] = <double>b / n_bins           # as np.arange(n_bins + 1) / n_bins
    layout.topk = &topk[0] if n_topk > 0 else NULL
    layout.n_topk = n_topk
    layout.n_bins = n_bins
    layout.edges = edges
    with nogil:
        for b in prange(n_blocks, schedule="static", num_threads=n_threads):
            _eval_rows(&x[0], soft_p, w_p, &o, b * per_block,
                       min((b + 1) * per_block, n_rows), &layout, partial + b * n_stats,
                       _at_out(scratch, threadid() * 2 * n_classes))
        for j in range(n_stats):
            stats[j] = _ordered_sum(partial + j, n_blocks, n_stats)
    free(partial)
    free(edges)
    free(scratch)
