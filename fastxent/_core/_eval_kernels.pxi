# The kernel of fastxent.evaluate (included by _kernels.pxi): every metric from one read of
# each row. Per row the loops of _eval_loops.h give the sums below; the row's metrics are
# formed here and added, weighted by its sample weight, into fixed blocks of statistics that
# are summed in order afterwards (so the totals do not depend on the thread count). The same
# pass adds each row to the loss histogram, the class prior seen, its class's and group's
# rows of the tables asked for (per superblock, a fixed run of blocks: see evaluate_rows) and
# the per-row outputs asked for; paired_sums gives fastxent.compare's sums from two models'
# per-row outputs.
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
    double fx_target_row_f(const float *t, Py_ssize_t n, double s, double *mass) noexcept
    double fx_target_row_d(const double *t, Py_ssize_t n, double s, double *mass) noexcept
    enum:
        FX_HIST_LOW
        FX_HIST_OCTAVES
        FX_HIST_STEPS
        FX_HIST_BINS
    Py_ssize_t fx_hist_bin(double v) noexcept
    void fx_prefetch(const void *x, Py_ssize_t start, Py_ssize_t len, size_t size) noexcept
    void fx_add_slots(double *t, const double *v, Py_ssize_t n) noexcept
    enum:
        FX_STAT_LOSS
        FX_STAT_COUNT
        FX_STAT_ENTROPY
        FX_STAT_BRIER
        FX_STAT_LOSS_SQ
        FX_STAT_CONFIDENCE
        FX_STAT_LOSS_WEIGHT
        FX_STAT_WEIGHT
        FX_STAT_WEIGHT_SQ
        FX_STAT_LOSS_CROSS
        FX_STAT_LOSS_WEIGHT_SQ
        FX_STAT_TARGET_ENTROPY
        FX_STAT_PREDICTED
        FX_STAT_TOPK
    void fx_short_metrics_f(Py_ssize_t R, const float *m, const int *kmax, const int *y,
                            const float *zy, const double *rest, const double *l1p,
                            const double *ey, const float *ent, const float *sq,
                            const double *w_y, double *loss, double *ce, double *entropy,
                            double *brier, double *confidence, int *nan) noexcept
    void fx_short_metrics_d(Py_ssize_t R, const double *m, const int *kmax, const int *y,
                            const double *zy, const double *rest, const double *l1p,
                            const double *ey, const double *ent, const double *sq,
                            const double *w_y, double *loss, double *ce, double *entropy,
                            double *brier, double *confidence, int *nan) noexcept
    void fx_short_slot_terms(Py_ssize_t R, const int *counted, const double *s,
                             const double *w_y, const double *loss, const double *entropy,
                             const double *brier, const double *confidence, const int *nan,
                             const int *rank, const int64_t *topk, Py_ssize_t n_topk,
                             double *V) noexcept
    void fx_sum_slot_terms(Py_ssize_t R, const double *V, Py_ssize_t n_slots,
                           double *t) noexcept
    void fx_scatter_slot_terms(Py_ssize_t R, const int *counted, const int *labels,
                               double *class_table, const int64_t *groups,
                               double *group_table, const double *V, Py_ssize_t n_slots,
                               Py_ssize_t n_lead) noexcept


# The slots of a slice's sums are FX_STAT_* of _eval_loops.h; a slice's top-k slots follow
# FX_STAT_TOPK, and the whole's confidence bins (weight, weight * confidence, weight * [correct]
# per bin) follow those.
EVAL_STATS = ("loss", "count", "entropy", "brier", "loss_sq", "confidence", "loss_weight",
              "weight", "weight_sq", "loss_cross", "loss_weight_sq", "target_entropy",
              "predicted")
# The loss histogram (see _eval_loops.h): HIST_BINS bins from 2**HIST_LOW, HIST_STEPS per
# octave over HIST_OCTAVES octaves.
HIST_LOW = FX_HIST_LOW
HIST_OCTAVES = FX_HIST_OCTAVES
HIST_STEPS = FX_HIST_STEPS
HIST_BINS = FX_HIST_BINS
# Bytes of per-class and per-group tables (all superblocks' together) that rows are added into
# at once, and the most row ranges (superblocks) that get their own tables (see
# evaluate_rows). Each thread takes whole superblocks: more superblocks spread the work more
# evenly over many threads, fewer cost less to clear and sum.
TABLE_BYTES = 4 * 2**20
MAX_SUPERBLOCKS = 16
# Short rows prefetch their group table's rows when the table is larger than this (a smaller
# one stays in the core's cache).
cdef enum:
    PREFETCHED_TABLE_BYTES = 512 * 1024


cdef struct RowMetrics:
    double loss                 # class-weighted
    double loss_weight          # the row's share of the loss denominator before sample_weight
    double ce                   # the cross-entropy without class weights (soft: loss)
    double entropy
    double brier
    double confidence
    double target_entropy       # soft targets; 0 with labels
    Py_ssize_t rank             # of the true class; -1 for soft targets
    Py_ssize_t prediction       # the arg-max; -1 for a row holding NaN


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
    r.ce = NAN
    r.entropy = NAN
    r.brier = NAN
    r.confidence = NAN
    r.target_entropy = 0.0
    r.rank = 0 if has_label else -1
    r.prediction = -1
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
    r.prediction = kmax
    r.entropy = l1p + ent * inv
    r.confidence = inv
    r.target_entropy = 0.0
    r.loss_weight = w_y
    if y == kmax:
        r.ce = l1p
        r.loss = w_y * l1p
        r.brier = (rest * rest + sq) * inv * inv
    else:
        r.ce = (m - zy) + l1p
        r.loss = w_y * r.ce if w_y != 0.0 else 0.0
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
    r.prediction = kmax
    r.entropy = l1p + sums[FX_ENT] * inv
    r.confidence = inv
    r.target_entropy = 0.0                       # added by _eval_rows
    r.loss_weight = 1.0
    r.loss = sums[FX_LIN] + (sums[FX_ASUM] + w[kmax] * t_k) * l1p
    r.ce = r.loss
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
    r.prediction = kmax
    r.entropy = -sums[FX_ENT]
    r.confidence = m
    r.target_entropy = 0.0
    if t == NULL:
        w_y = w[y] if w != NULL else 1.0
        cp = lo if py < lo else (hi if py > hi else py)
        r.loss_weight = w_y
        r.ce = -log(<double>cp)
        r.loss = w_y * r.ce if w_y != 0.0 else 0.0
        r.brier = (1.0 - py) * (1.0 - py) + (sums[FX_SQ] - <double>py * py)
    else:
        r.rank = -1
        r.loss_weight = 1.0
        r.loss = sums[FX_LIN]
        r.ce = r.loss
        r.brier = sums[FX_SQ] - 2.0 * sums[FX_DOT] + sums[FX_TT]
    return r


cdef struct StatLayout:
    const int64_t *topk         # the k of each top-k slot
    Py_ssize_t n_topk
    Py_ssize_t n_slots          # FX_STAT_TOPK + n_topk: the slots of a slice
    # short rows add slots [0, n_lead) and the top-k slots to the tables: n_lead is
    # FX_STAT_LOSS_WEIGHT without weights (the slots after it repeat others), else
    # FX_STAT_PREDICTED (added on its own)
    Py_ssize_t n_lead
    Py_ssize_t n_bins           # equal-width confidence bins
    const double *edges         # (n_bins + 1,): edges[b] = b / n_bins


cdef struct RowSink:
    # Where a superblock's rows go besides the per-block statistics: its own tables (summed in
    # superblock order afterwards) and the per-row outputs.
    const StatLayout *layout
    const int64_t *groups       # (rows,) group ids, or NULL
    bint prefetch_groups        # whether the group table is large enough to prefetch from
    double *group_table         # (n_groups, n_slots), or NULL
    double *class_table         # (C, n_slots), or NULL
    double *class_mass          # (C,): s per label, or s t_c for soft targets
    # histogram: (2 HIST_BINS + 1,) loss mass and mass * ce per bin, then the number of rows
    # of negative mass; slots: (n_slots SHORT_BATCH,) the slice terms of the rows being
    # added, by slot then by row
    double *histogram
    double *slots
    double *row_loss            # (rows,) s-free class-weighted loss, or NULL
    int64_t *row_prediction     # (rows,) arg-max (-1: ignored or NaN row), or NULL


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


cdef inline void _row_slots(double *v, const RowMetrics *r, double s, bint nan_row,
                            const StatLayout *L) noexcept nogil:
    """A row's terms of the slice sums (see EVAL_STATS): its metrics r with sample weight s,
    into v (n_slots values)."""
    cdef double a = s * r.loss, b = s * r.loss_weight
    cdef Py_ssize_t j
    v[FX_STAT_LOSS] = a
    v[FX_STAT_LOSS_WEIGHT] = b
    v[FX_STAT_WEIGHT] = s
    v[FX_STAT_COUNT] = 1.0
    v[FX_STAT_ENTROPY] = s * r.entropy
    v[FX_STAT_BRIER] = s * r.brier
    v[FX_STAT_WEIGHT_SQ] = s * s
    v[FX_STAT_LOSS_SQ] = a * a
    v[FX_STAT_LOSS_CROSS] = a * b
    v[FX_STAT_LOSS_WEIGHT_SQ] = b * b
    v[FX_STAT_CONFIDENCE] = s * r.confidence
    v[FX_STAT_TARGET_ENTROPY] = s * r.target_entropy
    v[FX_STAT_PREDICTED] = 0.0
    for j in range(L.n_topk):                    # soft targets (rank -1) add nothing
        v[FX_STAT_TOPK + j] = (0.0 if r.rank < 0 else
                               (NAN if nan_row else (s if r.rank < L.topk[j] else 0.0)))


cdef inline void _skip_row(const RowSink *k, Py_ssize_t row) noexcept nogil:
    """A row whose label is ignore_index: only its per-row outputs are written."""
    if k.row_loss != NULL:
        k.row_loss[row] = 0.0
        k.row_prediction[row] = -1


cdef inline void _add_row(double *stats, RowMetrics r, double s, Py_ssize_t row, Py_ssize_t y,
                          const RowSink *k) noexcept nogil:
    """Add row `row` (label y, or -1 for soft targets) with metrics r and sample weight s to
    the block statistics `stats` and to the superblock's tables and outputs in k."""
    cdef bint nan_row = not (r.loss == r.loss and r.entropy == r.entropy
                             and r.brier == r.brier and r.confidence == r.confidence)
    if nan_row:                                  # every metric becomes NaN
        r.loss = r.entropy = r.brier = r.confidence = r.ce = NAN
        r.prediction = -1
    _row_slots(k.slots, &r, s, nan_row, k.layout)
    fx_add_slots(stats, k.slots, k.layout.n_slots)
    _scatter_row(stats, &r, s, row, y, nan_row, k, True)


cdef inline void _scatter_row(double *stats, const RowMetrics *r, double s, Py_ssize_t row,
                              Py_ssize_t y, bint nan_row, const RowSink *k,
                              bint to_tables) noexcept nogil:
    """What _add_row adds besides the whole's slice sums: the confidence bin, the histogram,
    the class prior, the predicted-class count, the per-row outputs and, with `to_tables`,
    the row's slice terms (in k.slots) to its class's and group's rows of the tables (r
    already NaN for a NaN row)."""
    cdef const StatLayout *L = k.layout
    cdef double *bins = stats + L.n_slots
    cdef double *hist = k.histogram
    cdef Py_ssize_t b, n_bins = L.n_bins, n_slots = L.n_slots
    cdef double mass
    if k.row_loss != NULL:
        k.row_loss[row] = r.loss
        k.row_prediction[row] = r.prediction
    if to_tables and k.groups != NULL:
        fx_add_slots(k.group_table + k.groups[row] * n_slots, k.slots, n_slots)
    if not nan_row:
        mass = s * r.loss_weight
        b = fx_hist_bin(r.ce)
        hist[b] += mass
        hist[FX_HIST_BINS + b] += mass * r.ce
        if mass < 0.0:
            hist[2 * FX_HIST_BINS] += 1.0
    if r.rank < 0:                               # soft targets: no rank, no calibration
        return
    k.class_mass[y] += s
    if k.class_table != NULL:
        if to_tables:
            fx_add_slots(k.class_table + y * n_slots, k.slots, n_slots)
        if r.prediction >= 0:
            k.class_table[r.prediction * n_slots + FX_STAT_PREDICTED] += s
    b = 0 if nan_row else _confidence_bin(r.confidence, L)
    bins[b] += s
    bins[n_bins + b] += s * r.confidence
    bins[2 * n_bins + b] += NAN if nan_row else (s if r.rank == 0 else 0.0)


cdef void _eval_short_rows(const real *x, const real *w, const ClassOptions *o, Py_ssize_t r0,
                           Py_ssize_t r1, double *stats, const RowSink *k) noexcept nogil:
    """Rows [r0, r1) of contiguous logits with labels and C <= SHORT_ROW, as _eval_rows,
    SHORT_BATCH rows at a time vectorised across rows: fx_eval_short gives their sums,
    fx_short_metrics their metrics, fx_short_slot_terms their slice terms, which go to the
    whole's sums and the tables' rows; the rest goes row by row (_scatter_row)."""
    cdef real X[SHORT_ROW * SHORT_BATCH]
    cdef real m[SHORT_BATCH]
    cdef real zy[SHORT_BATCH]
    cdef int ys[SHORT_BATCH]
    cdef int kmax[SHORT_BATCH]
    cdef int rank[SHORT_BATCH]
    cdef int counted[SHORT_BATCH]
    cdef int nan[SHORT_BATCH]
    cdef double rest[SHORT_BATCH]
    cdef real ent[SHORT_BATCH]
    cdef real sq[SHORT_BATCH]
    cdef double l1p[SHORT_BATCH]
    cdef double ey[SHORT_BATCH]
    cdef double s[SHORT_BATCH]
    cdef double w_y[SHORT_BATCH]
    cdef double loss[SHORT_BATCH]
    cdef double ce[SHORT_BATCH]
    cdef double entropy[SHORT_BATCH]
    cdef double brier[SHORT_BATCH]
    cdef double confidence[SHORT_BATCH]
    cdef RowMetrics metrics
    cdef Py_ssize_t C = o.n_classes, start, n, i, r, y
    start = r0
    while start < r1:
        n = min(<Py_ssize_t>SHORT_BATCH, r1 - start)
        for i in range(n):
            r = start + i
            y = o.labels[r]
            counted[i] = not (o.has_ignore and y == o.ignore_index)
            ys[i] = <int>y if counted[i] else 0          # an ignored label indexes nothing
            zy[i] = x[r * C + ys[i]]
            s[i] = o.sample_weight[r] if o.sample_weight != NULL else 1.0
            w_y[i] = 0.0 if not counted[i] else (w[y] if w != NULL else 1.0)
        for i in range(n, FX_PADDED_ROWS(n)):   # the loops read whole vectors of rows
            ys[i] = 0
            zy[i] = 0
        if k.prefetch_groups:                    # the batch's group rows, while it computes
            for i in range(n):
                fx_prefetch(k.group_table, k.groups[start + i] * k.layout.n_slots,
                            k.layout.n_slots, sizeof(double))
        if real is float:
            fx_eval_short_f(x + start * C, n, C, ys, zy, X, m, kmax, rest, l1p, ey, ent, sq,
                            rank)
            fx_short_metrics_f(n, m, kmax, ys, zy, rest, l1p, ey, ent, sq, w_y, loss, ce,
                               entropy, brier, confidence, nan)
        else:
            fx_eval_short_d(x + start * C, n, C, ys, zy, X, m, kmax, rest, l1p, ey, ent, sq,
                            rank)
            fx_short_metrics_d(n, m, kmax, ys, zy, rest, l1p, ey, ent, sq, w_y, loss, ce,
                               entropy, brier, confidence, nan)
        fx_short_slot_terms(n, counted, s, w_y, loss, entropy, brier, confidence, nan, rank,
                            k.layout.topk, k.layout.n_topk, k.slots)
        fx_sum_slot_terms(n, k.slots, k.layout.n_slots, stats)
        if k.groups != NULL or k.class_table != NULL:
            fx_scatter_slot_terms(n, counted, ys, k.class_table,
                                  k.groups + start if k.groups != NULL else NULL,
                                  k.group_table, k.slots, k.layout.n_slots, k.layout.n_lead)
        for i in range(n):
            r = start + i
            if not counted[i]:
                _skip_row(k, r)
                continue
            metrics.loss = loss[i]
            metrics.loss_weight = w_y[i]
            metrics.ce = ce[i]
            metrics.entropy = entropy[i]
            metrics.brier = brier[i]
            metrics.confidence = confidence[i]
            metrics.target_entropy = 0.0
            metrics.rank = 0 if nan[i] else rank[i]
            metrics.prediction = -1 if nan[i] else kmax[i]
            _scatter_row(stats, &metrics, s[i], r, ys[i], nan[i], k, False)
        start += n


cdef void _eval_rows(const real *x, const real *soft, const real *w, const ClassOptions *o,
                     Py_ssize_t r0, Py_ssize_t r1, double *stats, const RowSink *k,
                     real *scratch) noexcept nogil:
    """Add rows [r0, r1) to the block statistics `stats` and to k; scratch holds 2 C values
    for strided rows."""
    cdef Py_ssize_t r, y, base, C = o.n_classes, step = o.n_inner
    cdef const real *row
    cdef const real *trow
    cdef RowMetrics metrics
    cdef double s
    if step == 1 and C <= SHORT_ROW and o.labels != NULL and o.from_logits:
        _eval_short_rows(x, w, o, r0, r1, stats, k)
        return
    for r in range(r0, r1):
        y = -1
        if o.labels != NULL:
            y = o.labels[r]
            if o.has_ignore and y == o.ignore_index:
                _skip_row(k, r)
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
        s = o.sample_weight[r] if o.sample_weight != NULL else 1.0
        if trow != NULL:                         # the target's entropy and the class prior
            if real is float:
                metrics.target_entropy = fx_target_row_f(trow, C, s, k.class_mass)
            else:
                metrics.target_entropy = fx_target_row_d(trow, C, s, k.class_mass)
        _add_row(stats, metrics, s, r, y, k)


cdef void _eval_superblock(const real *x, const real *soft, const real *w, const ClassOptions *o,
                           Py_ssize_t b0, Py_ssize_t b1, Py_ssize_t per_block,
                           Py_ssize_t n_stats, double *partial, RowSink k, double *tables,
                           Py_ssize_t n_classes, Py_ssize_t n_groups, bint per_class,
                           double *slots, real *scratch) noexcept nogil:
    """Blocks [b0, b1) of rows, in order, with their own statistics in `partial` and one set
    of tables, `tables`, laid out as evaluate_rows's: histogram, class mass, class table,
    group table; `slots` (n_slots SHORT_BATCH values) is its scratch for rows' slice
    terms."""
    cdef Py_ssize_t b, n_slots = k.layout.n_slots
    k.slots = slots
    k.histogram = tables
    k.class_mass = tables + 2 * FX_HIST_BINS + 1
    k.class_table = k.class_mass + n_classes if per_class else NULL
    k.group_table = (k.class_mass + n_classes + (n_classes * n_slots if per_class else 0)
                     if k.groups != NULL else NULL)
    for b in range(b0, b1):
        _eval_rows(x, soft, w, o, b * per_block, min((b + 1) * per_block, o.n_rows),
                   partial + b * n_stats, &k, scratch)


# Without sample or class weights (s = w_y = 1) the slots from FX_STAT_LOSS_WEIGHT on repeat
# others (weight, loss_weight, weight_sq and loss_weight_sq are the count, loss_cross is the
# loss) or are 0 (target_entropy, with labels): short rows then add only the slots before them
# (and the top-k slots) to the tables, and _fill_repeated_slots writes these afterwards.


cdef void _fill_repeated_slots(double *table, Py_ssize_t n_rows,
                               Py_ssize_t n_slots) noexcept nogil:
    """Write the slots that repeat others without weights in each row of a table."""
    cdef Py_ssize_t r
    cdef double *t
    for r in range(n_rows):
        t = table + r * n_slots
        t[FX_STAT_WEIGHT] = t[FX_STAT_LOSS_WEIGHT] = t[FX_STAT_COUNT]
        t[FX_STAT_WEIGHT_SQ] = t[FX_STAT_LOSS_WEIGHT_SQ] = t[FX_STAT_COUNT]
        t[FX_STAT_LOSS_CROSS] = t[FX_STAT_LOSS]


def evaluate_rows(const real[::1] x,                    # IN  (outer, C, inner) C-order
                  Py_ssize_t n_classes, Py_ssize_t n_inner,
                  const int64_t[::1] labels,            # IN  (rows,) in [0, C), or None
                  const real[::1] soft,                 # IN  like x, or None
                  const real[::1] class_weight,         # IN  (C,); required with soft
                  const double[::1] sample_weight,      # IN  (rows,), or None
                  bint has_ignore, int64_t ignore_index, bint from_logits, double clip_eps,
                  const int64_t[::1] topk,              # IN  (K,) the k of each top-k slot
                  Py_ssize_t n_bins,
                  const int64_t[::1] groups,            # IN  (rows,) in [0, n_groups), or None
                  Py_ssize_t n_groups,
                  bint per_class,                       # per-class table (labels only)
                  double[::1] stats,                    # OUT (FX_STAT_TOPK + K + 3 n_bins,)
                  double[::1] histogram,                # OUT (2 HIST_BINS + 1,)
                  double[::1] class_mass,               # OUT (C,)
                  double[::1] class_table,              # OUT (C (FX_STAT_TOPK + K),) or None
                  double[::1] group_table,              # OUT (n_groups (FX_STAT_TOPK + K),) or None
                  double[::1] row_loss,                 # OUT (rows,) or None
                  int64_t[::1] row_prediction,          # OUT (rows,) or None
                  int n_threads):
    """Evaluation statistics of every row of `x` (see EVAL_STATS), written into `stats`, and
    the loss histogram, the class prior seen, the per-class and per-group tables and the
    per-row outputs that are not None.

    Rows are laid out as for class_cross_entropy. Arguments must be validated: labels in
    range (or equal to ignore_index), exactly one of labels and soft given, group ids in
    range, per_class only with labels, row_loss and row_prediction both or neither.

    The per-block statistics are summed in block order. Rows go to the tables in superblocks,
    consecutive runs of blocks, each with its own tables, summed in superblock order: their
    number depends on the rows and the size of the tables (at most MAX_SUPERBLOCKS, fewer
    when tables would exceed TABLE_BYTES), never on the threads, so nor do the results.
    """
    cdef ClassOptions o
    cdef StatLayout layout
    cdef RowSink sink
    cdef Py_ssize_t n_rows = x.shape[0] // n_classes if n_classes > 0 else 0
    cdef Py_ssize_t per_block = _rows_per_block(n_classes)
    cdef Py_ssize_t n_blocks = _n_blocks(n_rows, per_block)
    cdef Py_ssize_t n_topk = topk.shape[0], n_stats = stats.shape[0], b, j, s
    cdef Py_ssize_t n_slots = FX_STAT_TOPK + n_topk
    cdef Py_ssize_t table_size = (2 * FX_HIST_BINS + 1 + n_classes
                                  + (n_classes * n_slots if per_class else 0)
                                  + (n_groups * n_slots if groups is not None else 0))
    cdef Py_ssize_t n_super = max(1, min(min(n_blocks, <Py_ssize_t>MAX_SUPERBLOCKS),
                                         TABLE_BYTES // (8 * table_size)))
    cdef double *edges
    cdef real clip_lo = <real>clip_eps, clip_hi = <real>1.0 - <real>clip_eps
    cdef double *partial
    cdef double *tables
    cdef double *slots
    cdef bint unweighted = (sample_weight is None and class_weight is None
                            and labels is not None)
    cdef real *scratch = NULL
    cdef const real *soft_p = NULL
    cdef const real *w_p = NULL
    if (n_stats != n_slots + 3 * n_bins or n_bins < 1
            or histogram.shape[0] != 2 * FX_HIST_BINS + 1 or class_mass.shape[0] != n_classes
            or (class_table is not None) != per_class
            or (per_class and class_table.shape[0] != n_classes * n_slots)
            or (group_table is not None) != (groups is not None)
            or (groups is not None and group_table.shape[0] != n_groups * n_slots)
            or (row_loss is None) != (row_prediction is None)):
        raise ValueError("evaluate_rows: an output has the wrong length")
    stats[:] = 0.0
    histogram[:] = 0.0
    class_mass[:] = 0.0
    if class_table is not None:
        class_table[:] = 0.0
    if group_table is not None:
        group_table[:] = 0.0
    if n_rows == 0:
        return
    o = _class_options(n_rows, n_classes, n_inner, &labels[0] if labels is not None else NULL,
                       &sample_weight[0] if sample_weight is not None else NULL, has_ignore,
                       ignore_index, 0.0, from_logits, clip_lo, clip_hi, 1.0)
    if soft is not None:
        soft_p = &soft[0]
    if class_weight is not None:
        w_p = &class_weight[0]
    n_threads = _block_threads(n_threads, n_super)
    partial = <double *> calloc(n_blocks * n_stats, sizeof(double))
    tables = <double *> calloc(n_super * table_size, sizeof(double))
    slots = <double *> malloc(n_super * n_slots * SHORT_BATCH * sizeof(double))
    edges = <double *> malloc((n_bins + 1) * sizeof(double))
    if n_inner > 1:
        scratch = <real *> malloc(n_threads * 2 * n_classes * sizeof(real))
    if (partial == NULL or tables == NULL or slots == NULL or edges == NULL
            or (n_inner > 1 and scratch == NULL)):
        free(partial)
        free(tables)
        free(slots)
        free(edges)
        free(scratch)
        raise MemoryError("fastxent: cannot allocate kernel work space")
    for b in range(n_bins + 1):
        edges[b] = <double>b / n_bins           # as np.arange(n_bins + 1) / n_bins
    layout.topk = &topk[0] if n_topk > 0 else NULL
    layout.n_topk = n_topk
    layout.n_slots = n_slots
    layout.n_lead = FX_STAT_LOSS_WEIGHT if unweighted else FX_STAT_PREDICTED
    layout.n_bins = n_bins
    layout.edges = edges
    sink.layout = &layout
    sink.groups = &groups[0] if groups is not None else NULL
    sink.prefetch_groups = (groups is not None
                            and n_groups * n_slots * sizeof(double) > PREFETCHED_TABLE_BYTES)
    sink.row_loss = &row_loss[0] if row_loss is not None else NULL
    sink.row_prediction = &row_prediction[0] if row_prediction is not None else NULL
    with nogil:
        for s in prange(n_super, schedule="static", num_threads=n_threads):
            _eval_superblock(&x[0], soft_p, w_p, &o, s * n_blocks // n_super,
                             (s + 1) * n_blocks // n_super, per_block, n_stats, partial, sink,
                             tables + s * table_size, n_classes, n_groups, per_class,
                             slots + s * n_slots * SHORT_BATCH,
                             _at_out(scratch, threadid() * 2 * n_classes))
        for j in range(n_stats):
            stats[j] = _ordered_sum(partial + j, n_blocks, n_stats)
        for j in prange(table_size, schedule="static", num_threads=n_threads):
            tables[j] = _ordered_sum(tables + j, n_super, table_size)
    # superblock 0's tables now hold the totals
    memcpy(&histogram[0], tables, (2 * FX_HIST_BINS + 1) * sizeof(double))
    memcpy(&class_mass[0], tables + 2 * FX_HIST_BINS + 1, n_classes * sizeof(double))
    if per_class:
        memcpy(&class_table[0], tables + 2 * FX_HIST_BINS + 1 + n_classes,
               n_classes * n_slots * sizeof(double))
        if unweighted:
            _fill_repeated_slots(&class_table[0], n_classes, n_slots)
    if groups is not None and n_groups > 0:
        memcpy(&group_table[0], tables + 2 * FX_HIST_BINS + 1 + n_classes
               + (n_classes * n_slots if per_class else 0), n_groups * n_slots * sizeof(double))
        if unweighted:
            _fill_repeated_slots(&group_table[0], n_groups, n_slots)
    free(partial)
    free(tables)
    free(slots)
    free(edges)
    free(scratch)


# The paired sums of fastxent.compare over the counted rows, from the two models' per-row
# outputs: d = s (loss_a - loss_b) (class-weighted losses), b = s w_y, c = s ([a right] -
# [b right]) (labels only), s the sample weight.
PAIRED_SUMS = ("count", "diff", "diff_sq", "diff_cross", "loss_weight", "loss_weight_sq",
               "correct_diff", "correct_diff_sq", "correct_cross", "weight", "weight_sq",
               "only_a_correct", "only_b_correct")
cdef enum:
    N_PAIRED = 13
    PAIRED_BLOCK = 4096         # rows per block of partial sums


cdef void _paired_block(const double *loss_a, const double *loss_b, const int64_t *pred_a,
                        const int64_t *pred_b, const int64_t *labels, const double *w,
                        const double *sample_weight, bint has_ignore, int64_t ignore_index,
                        Py_ssize_t r0, Py_ssize_t r1, double *out) noexcept nogil:
    """Add rows [r0, r1) to the paired sums `out` (PAIRED_SUMS)."""
    cdef Py_ssize_t r, j
    cdef double t[N_PAIRED]
    cdef double s, b, d, c
    cdef int64_t y
    cdef bint right_a, right_b
    for j in range(N_PAIRED):
        t[j] = 0.0
    for r in range(r0, r1):
        y = labels[r] if labels != NULL else -1
        if has_ignore and y == ignore_index:
            continue
        s = sample_weight[r] if sample_weight != NULL else 1.0
        b = s * (w[y] if w != NULL and y >= 0 else 1.0)
        d = s * (loss_a[r] - loss_b[r])
        t[0] += 1.0
        t[1] += d
        t[2] += d * d
        t[3] += d * b
        t[4] += b
        t[5] += b * b
        t[9] += s
        t[10] += s * s
        if labels != NULL:
            right_a = pred_a[r] == y
            right_b = pred_b[r] == y
            c = s * (<double>right_a - <double>right_b)
            if pred_a[r] < 0 or pred_b[r] < 0:   # a row holding NaN has no prediction
                c = NAN
            t[6] += c
            t[7] += c * c
            t[8] += c * s
            if s != 0.0 and c == c:              # McNemar counts rows that have predictions
                t[11] += right_a and not right_b
                t[12] += right_b and not right_a
    for j in range(N_PAIRED):
        out[j] += t[j]


def paired_sums(const double[::1] loss_a,              # IN  (rows,) row_loss of model A
                const double[::1] loss_b,              # IN  (rows,) of model B
                const int64_t[::1] pred_a,             # IN  (rows,) row_prediction of A
                const int64_t[::1] pred_b,             # IN  (rows,) of B
                const int64_t[::1] labels,             # IN  (rows,), or None (soft targets)
                const double[::1] class_weight,        # IN  (C,), or None
                const double[::1] sample_weight,       # IN  (rows,), or None
                bint has_ignore, int64_t ignore_index,
                double[::1] out,                       # OUT (N_PAIRED,)
                int n_threads):
    """The paired sums (PAIRED_SUMS) of two models' per-row outputs from evaluate_rows, in
    blocks of PAIRED_BLOCK rows summed in order (the same for every thread count)."""
    cdef Py_ssize_t n_rows = loss_a.shape[0]
    cdef Py_ssize_t n_blocks = _n_blocks(n_rows, PAIRED_BLOCK), b, j
    cdef double *partial
    if (out.shape[0] != N_PAIRED or loss_b.shape[0] != n_rows or pred_a.shape[0] != n_rows
            or pred_b.shape[0] != n_rows):
        raise ValueError("paired_sums: arrays of different lengths")
    out[:] = 0.0
    if n_rows == 0:
        return
    partial = <double *> calloc(n_blocks * N_PAIRED, sizeof(double))
    if partial == NULL:
        raise MemoryError("fastxent: cannot allocate kernel work space")
    n_threads = _block_threads(n_threads, n_blocks)
    with nogil:
        for b in prange(n_blocks, schedule="static", num_threads=n_threads):
            _paired_block(&loss_a[0], &loss_b[0], &pred_a[0], &pred_b[0],
                          &labels[0] if labels is not None else NULL,
                          &class_weight[0] if class_weight is not None else NULL,
                          &sample_weight[0] if sample_weight is not None else NULL,
                          has_ignore, ignore_index, b * PAIRED_BLOCK,
                          min((b + 1) * PAIRED_BLOCK, n_rows), partial + b * N_PAIRED)
        for j in range(N_PAIRED):
            out[j] = _ordered_sum(partial + j, n_blocks, N_PAIRED)
    free(partial)
