// One lifting step along one axis, forward and backward, fused per line (SPEC 1).
//
// Plain C ABI on raw pointers (no torch headers), so it compiles in about a second; see
// native.py, which builds it on first use and calls it through ctypes. The tensor is viewed
// as (G, P, L, B): G = N * C groups of lines (channel c = g % C), P outer positions, L the
// lifted axis, B the inner (contiguous) positions. Each line (g, p) is copied into small
// per-thread buffers with replicate-padded rows, so every loop below is a flat, branch-free,
// vectorisable pass with constant offsets of B; backward recomputes the forward of its line
// in cache instead of keeping intermediates in memory. A 2-D layer's two lifts (and an up
// pool's two inverse lifts) also run as one pass, a tile of whole planes at a time
// (forward2_impl and the functions after it).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

// Helpers called inside the vectorised loops (or per line) must be inlined there, or those loops
// stay scalar (or pay a call per line of a few values).
#define LIFTSWAP_INLINE inline __attribute__((always_inline))

// tanh from a vectorisable exp (Cephes polynomial, ~1 ulp); libm's tanhf does not vectorise.
LIFTSWAP_INLINE float exp_neg(float x) {  // x <= 0
  x = std::max(x, -87.0f);         // keeps NaN: max(a, b) is a < b ? b : a
  float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * __builtin_bit_cast(float, ((int32_t)n + 127) << 23);
}

// Branch-free so that the loops calling it vectorise; NaN in gives NaN out.
LIFTSWAP_INLINE float tanh_(float z) {
  float e = exp_neg(-2.0f * std::fabs(z));
  return std::copysign((1.0f - e) / (1.0f + e), z);
}

LIFTSWAP_INLINE double tanh_(double z) { return std::tanh(z); }

template <typename T>
struct Op {
  const T* w;   // (C, K) depthwise taps
  const T* b;   // (C,) depthwise bias
  const T* pw;  // (C,) pointwise weight
  const T* pb;  // (C,) pointwise bias
  T base;
};

template <typename T>
struct Chan {  // one operator's weights for one channel
  const T* w;
  T b, pw, pb, base;
  Chan(const Op<T>& o, int64_t c, int K) : w(o.w + c * K), b(o.b[c]), pw(o.pw[c]), pb(o.pb[c]), base(o.base) {}
  // base * t, and no term at all for base 0 (lazy, paper): 0 * inf would be NaN where the
  // operator has no linear part, as the PyTorch path (which skips the op) has it.
  LIFTSWAP_INLINE T linear(T t) const { return base != T(0) ? base * t : T(0); }
  // h = dw_K(t) + b at position e of a tile (rows B apart, K / 2 padding rows either side).
  template <int KC>
  LIFTSWAP_INLINE T filter(const T* t, int64_t e, int64_t B, int Kr) const {
    const int K = KC ? KC : Kr, m = K / 2;
    T h = b;
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) h += w[k] * t[e + (k - m) * B];
    return h;
  }
  LIFTSWAP_INLINE T activate(T h) const { return tanh_(pw * std::max(h, T(0)) + pb); }  // r = tanh(pw relu(h) + pb)
};

// acc[k] += sum_e gh[e] t[e + (k - m) B]: the taps' gradients, for K the main loops do not carry.
template <typename T>
inline void tap_sums(const T* gh, const T* t, int64_t total, int64_t B, int K, double* acc) {
  const int m = K / 2;
  for (int k = 0; k < K; ++k) {
    T a = 0;
#pragma omp simd reduction(+ : a)
    for (int64_t e = 0; e < total; ++e) a += gh[e] * t[e + (k - m) * B];
    acc[k] += a;
  }
}

// Rows here are short (7 to a few hundred values): an inlined loop beats a call to memcpy.
template <typename T>
LIFTSWAP_INLINE void copy(T* dst, const T* src, int64_t count) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) dst[i] = src[i];
}

// dst[2j] = a[j], dst[2j + 1] = b[j]: two bands' rows side by side, as their polyphase places have them.
template <typename T>
LIFTSWAP_INLINE void zip(T* dst, const T* a, const T* b, int64_t count) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) {
    dst[2 * i] = a[i];
    dst[2 * i + 1] = b[i];
  }
}

// Inverse of zip.
template <typename T>
LIFTSWAP_INLINE void unzip(const T* src, T* a, T* b, int64_t count) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) {
    a[i] = src[2 * i];
    b[i] = src[2 * i + 1];
  }
}

// Copies line x (L rows of B) into xe (Lh rows, m replicated rows either side) and xo (Lh rows).
// An odd L repeats its last row as the last odd sample. With `even_first` the line's rows are
// stored even rows first (as the previous lift wrote them for this one): two bulk copies.
template <typename T>
LIFTSWAP_INLINE void split(const T* x, T* xe, T* xo, int64_t L, int64_t Lh, int64_t B, int m, bool even_first) {
  T* e0 = xe + (int64_t)m * B;
  if (even_first) {
    copy(e0, x, Lh * B);
    copy(xo, x + Lh * B, (L / 2) * B);
    if (L % 2) copy(xo + (L / 2) * B, x + (Lh - 1) * B, B);
  } else if (B == 1) {
    const int64_t pairs = L / 2;
    for (int64_t j = 0; j < pairs; ++j) {
      e0[j] = x[2 * j];
      xo[j] = x[2 * j + 1];
    }
    if (L % 2) e0[Lh - 1] = xo[Lh - 1] = x[L - 1];
  } else {
    for (int64_t j = 0; j < Lh; ++j) {
      const int64_t jo = std::min(2 * j + 1, L - 1);
      copy(e0 + j * B, x + 2 * j * B, B);
      copy(xo + j * B, x + jo * B, B);
    }
  }
}

template <typename T>
LIFTSWAP_INLINE void pad_rows(T* buf, int64_t Lh, int64_t B, int m) {
  for (int r = 0; r < m; ++r) {
    copy(buf + r * B, buf + (int64_t)m * B, B);
    copy(buf + (m + Lh + r) * B, buf + (m + Lh - 1) * B, B);
  }
}

// Inverse of split for gradients: gx[2j] = gxe[j], gx[2j+1] = gxo[j] (odd L: both onto the last row).
template <typename T>
LIFTSWAP_INLINE void merge(T* gx, const T* gxe, const T* gxo, int64_t L, int64_t Lh, int64_t B, bool even_first) {
  if (even_first) {
    copy(gx, gxe, Lh * B);
    copy(gx + Lh * B, gxo, (L / 2) * B);
    if (L % 2) {
      T* row = gx + (Lh - 1) * B;
      const T* o = gxo + (Lh - 1) * B;
      for (int64_t b = 0; b < B; ++b) row[b] += o[b];
    }
  } else if (B == 1) {
    const int64_t pairs = L / 2;
    for (int64_t j = 0; j < pairs; ++j) {
      gx[2 * j] = gxe[j];
      gx[2 * j + 1] = gxo[j];
    }
    if (L % 2) gx[L - 1] = gxe[Lh - 1] + gxo[Lh - 1];
  } else {
    for (int64_t j = 0; j < Lh; ++j) {
      copy(gx + 2 * j * B, gxe + j * B, B);
      if (2 * j + 1 < L) {
        copy(gx + (2 * j + 1) * B, gxo + j * B, B);
      } else {
        T* row = gx + 2 * j * B;
        const T* o = gxo + j * B;
        for (int64_t b = 0; b < B; ++b) row[b] += o[b];
      }
    }
  }
}

}  // namespace

// How a call sees its tensor: (G, P, L, B) with channel c = g % C (see the top of the file).
// even_first: the input's rows along L are stored even rows first. next_A > 0: write the output
// that way along the axis the next lift takes, found in P as (outer, next_A, next_In). N: the
// layer's batch, for the last lift's backward to find the pooled output's gradient.
extern "C" struct LiftLayout {
  int64_t G, C, P, L, B;
  int64_t even_first, next_A, next_In, N;
};

namespace {

// Where the lines of a tile are read from and where their results go, without a division per
// line (lines are a few values long at 14 x 14): the i-th line of channel c is (nb, q) with
// i = nb * P + q, read at (nb * C + c) * P + q and written at q's place in the output order.
struct Lines {
  const LiftLayout& l;
  int64_t NB;
  std::vector<int64_t> order;  // q -> q', the output order along P (even rows first on next_A)
  explicit Lines(const LiftLayout& l_) : l(l_), NB(l_.G / l_.C), order(l_.P) {
    for (int64_t q = 0; q < l.P; ++q) {
      int64_t to = q;
      if (l.next_A > 0) {
        const int64_t a = (q / l.next_In) % l.next_A, rest = q - a * l.next_In;
        to = rest + (a % 2 ? (l.next_A + 1) / 2 + a / 2 : a / 2) * l.next_In;
      }
      order[q] = to;
    }
  }
  struct Batch {  // per thread: the current tile's lines
    std::vector<int64_t> in, out, nb, q;
    explicit Batch(int64_t cap) : in(cap), out(cap), nb(cap), q(cap) {}
  };
  void fill(Batch& t, int64_t c, int64_t i0, int64_t lines, int64_t at = 0) const {
    int64_t nb = i0 / l.P, q = i0 % l.P;
    for (int64_t i = at; i < at + lines; ++i) {
      const int64_t plane = (nb * l.C + c) * l.P;
      t.in[i] = plane + q;
      t.out[i] = plane + order[q];
      t.nb[i] = nb;
      t.q[i] = q;
      if (++q == l.P) {
        q = 0;
        ++nb;
      }
    }
  }
};

// Lines of one group are lifted a tile at a time, so that short lines (W = 7, 14, 28) still
// fill the vector units: `lines` segments of (Lh + 2m) rows of B, each line's Lh rows in the
// middle with m replicated (or zero) rows either side, and m zero rows before and after the tile.
// Flat loops run over every position of the tile; what they compute on padding rows is thrown away.
constexpr int64_t kTileElems = 4096;

struct Tile {
  int m;
  int64_t Lh, B, n, seg, margin, cap, span;
  Tile(int64_t L, int64_t B_, int64_t P, int m_, int64_t cap_ = 0)
      : m(m_), Lh((L + 1) / 2), B(B_), n(Lh * B_), seg((Lh + 2 * m_) * B_), margin(m_ * B_) {
    cap = cap_ > 0 ? cap_ : std::max<int64_t>(1, std::min<int64_t>(P, kTileElems / seg));
    span = cap * seg + 2 * margin;
  }
};

// Per-thread zeroed buffers of one tile each; get(i) points past the leading margin.
template <typename T>
struct Buffers {
  std::vector<T> mem;
  const Tile& t;
  Buffers(const Tile& t_, int count) : mem(count * t_.span, T(0)), t(t_) {}
  T* get(int i) { return mem.data() + i * t.span + t.margin; }
  void fill_mask(T* mask) {  // 1 on lines' rows, 0 on padding rows
    for (int64_t i = 0; i < t.cap; ++i)
      std::fill(mask + i * t.seg + t.margin, mask + i * t.seg + t.margin + t.n, T(1));
  }
};

// The transpose of the replicate-padded K-tap filter applied to gh (zero off the lines' rows) has
// values on padding rows too: those before a line fold onto its first row, those after onto its last.
template <typename T, int KC>
inline void fold_transpose(const T* gh, T* gt, const T* w, const Tile& t, int64_t lines, int Kr) {
  const int K = KC ? KC : Kr, m = K / 2;
  const int64_t B = t.B;
  for (int64_t i = 0; i < lines; ++i) {
    const int64_t first = i * t.seg + t.margin, last = first + (t.Lh - 1) * B;
    for (int r = 0; r < m; ++r) {
      const T* before = gh + i * t.seg + r * B;
      const T* after = gh + first + (t.Lh + r) * B;
      for (int64_t b = 0; b < B; ++b) {
        T lo = 0, hi = 0;
        for (int k = 0; k < K; ++k) {
          lo += w[k] * before[b + (m - k) * B];
          hi += w[k] * after[b + (m - k) * B];
        }
        gt[first + b] += lo;
        gt[last + b] += hi;
      }
    }
  }
}

// gt += the whole transpose: the lines' rows here, the padding rows folded.
template <typename T, int KC>
inline void filter_transpose(const T* gh, T* gt, const T* mask, const T* w, const Tile& t, int64_t lines, int Kr) {
  const int K = KC ? KC : Kr, m = K / 2;
  const int64_t total = lines * t.seg, B = t.B;
#pragma omp simd
  for (int64_t e = 0; e < total; ++e) {
    T acc = 0;
#pragma GCC unroll 16
    for (int k = 0; k < K; ++k) acc += w[k] * gh[e + (m - k) * B];
    gt[e] += mask[e] != 0 ? acc : T(0);
  }
  fold_transpose<T, KC>(gh, gt, w, t, lines, K);
}

// out = a - base b - r(b) over a tile, r = tanh(pw relu(h) + pb) of h = the K-tap filter of b:
// the predict step (d = x_o - P(x_e)) and the inverse update step (x_e = s - U(d)). With Keep,
// h and r are kept for backward.
template <typename T, int KC, bool Keep>
LIFTSWAP_INLINE void subtract_operator(const Chan<T>& op, const T* a, const T* b, T* out, T* hk, T* rk,
                                       int64_t total, int64_t B, int Kr) {
  const int K = KC ? KC : Kr;
#pragma omp simd
  for (int64_t e = 0; e < total; ++e) {
    T h = op.template filter<KC>(b, e, B, K);
    T r = op.activate(h);
    if constexpr (Keep) {
      hk[e] = h;
      rk[e] = r;
    }
    out[e] = a[e] - op.linear(b[e]) - r;
  }
}

// The predict step of one tile, as forward and backward (which recomputes it) both run it: the
// lines' x_e (with padding rows) and x_o from x, then d = x_o - base_p x_e - r_p(x_e), its rows
// padded for U's filter. With Keep, also P's pre-activation h and r (backward needs them).
template <typename T, int KC, bool Keep>
inline void predict_tile(const T* x, const Lines::Batch& lb, int64_t lines, const LiftLayout& lay, const Tile& t,
                         const Chan<T>& p, int Kr, T* xe, T* xo, T* dp, T* hp, T* rp) {
  const int K = KC ? KC : Kr, m = K / 2;
  const int64_t L = lay.L, B = lay.B, seg = t.seg, Lh = t.Lh, total = lines * seg;
  for (int64_t i = 0; i < lines; ++i) {
    split(x + lb.in[i] * L * B, xe + i * seg, xo + i * seg + t.margin, L, Lh, B, m, lay.even_first);
    pad_rows(xe + i * seg, Lh, B, m);
  }
  subtract_operator<T, KC, Keep>(p, xo, xe, dp, hp, rp, total, B, K);
  for (int64_t i = 0; i < lines; ++i) pad_rows(dp + i * seg, Lh, B, m);
}

// The update step of one tile: s = x_e + base_u d + r_u(d) into sb, and (on the lines' rows)
// the sums of (s - x_o)^2 and d^2, the regulariser's terms.
template <typename T, int KC>
inline void update_tile(const Chan<T>& u, const T* xe, const T* xo, const T* dp, const T* mask, T* sb, int64_t total,
                        int64_t B, int Kr, double& cu, double& cp) {
  const int K = KC ? KC : Kr;
  T su = 0, sp = 0;
#pragma omp simd reduction(+ : su, sp)
  for (int64_t e = 0; e < total; ++e) {
    T h = u.template filter<KC>(dp, e, B, K);
    T r = u.activate(h);
    T dv = dp[e];
    T sv = xe[e] + u.linear(dv) + r;
    sb[e] = sv;
    const bool on = mask[e] != 0;
    su += on ? (sv - xo[e]) * (sv - xo[e]) : T(0);
    sp += on ? dv * dv : T(0);
  }
  cu += su;
  cp += sp;
}

// The tile's lines' s and d rows to their places in the output.
template <typename T>
inline void write_lines(const Lines::Batch& lb, int64_t lines, const Tile& t, const T* sb, const T* dp, T* s, T* d) {
  for (int64_t i = 0; i < lines; ++i) {
    const int64_t line = lb.out[i];
    copy(s + line * t.n, sb + i * t.seg + t.margin, t.n);
    if (d) copy(d + line * t.n, dp + i * t.seg + t.margin, t.n);
  }
}

template <typename T, int KC>
void forward_impl(const T* x, T* s, T* d, const LiftLayout& lay, int Kr, Op<T> po, Op<T> uo, double* costs,
                  int threads) {
  const int64_t C = lay.C, B = lay.B;
  const Lines lines_of(lay);
  const int K = KC ? KC : Kr;
  // Lines of one channel share P and U, so a tile gathers them (from every batch entry).
  const int64_t count = lines_of.NB * lay.P;
  const Tile t(lay.L, B, count, K / 2);
#pragma omp parallel num_threads(threads)
  {
    Buffers<T> buf(t, 5);
    Lines::Batch lb(t.cap);
    T *xe = buf.get(0), *xo = buf.get(1), *dp = buf.get(2), *sb = buf.get(3), *mask = buf.get(4);
    buf.fill_mask(mask);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      const Chan<T> p(po, c, K), u(uo, c, K);
      double cu = 0, cp = 0;
      for (int64_t i0 = 0; i0 < count; i0 += t.cap) {
        const int64_t lines = std::min(t.cap, count - i0);
        lines_of.fill(lb, c, i0, lines);
        predict_tile<T, KC, false>(x, lb, lines, lay, t, p, K, xe, xo, dp, nullptr, nullptr);
        update_tile<T, KC>(u, xe, xo, dp, mask, sb, lines * t.seg, B, K, cu, cp);
        write_lines(lb, lines, t, sb, dp, s, d);
      }
      if (costs) {
        costs[2 * c] = cu;
        costs[2 * c + 1] = cp;
      }
    }
  }
}

// One lift, a tile of lines at a time (one per thread), for the fused two-lift passes and each
// lift's backward: recompute() runs the tile's predict step from the lift's input, write_outputs()
// its update step and writes s and d, backward() turns the gradient of its outputs into the
// input's (merged into gx) and the parameters' (summed into acc: P taps, P dw bias, P pw, P pw
// bias, then the same for U). gs, gd: the gradient of s and d; in the last lift (lay.N > 0) they
// may be null, and then are coef[band, c] * gy (the pooled output's gradient; no details
// gradient), made per tile. gcoef (last lift only): per band and channel, the sum of gy times the
// band, gamma's gradient.
template <typename T, int KC>
struct LiftTiles {
  const LiftLayout& lay;
  const Lines lines_of;
  const int K, m;
  const int64_t count;  // lines per channel
  const Tile t;
  const T tcu, tcp;
  const int64_t parts;  // bands coming into this (last) lift
  Buffers<T> buf;
  Lines::Batch lb;
  std::vector<double> acc;
  // The forward (recompute<false>, write_outputs) needs the first FORWARD buffers only.
  enum { XE, XO, DP, SB, MASK, FORWARD, HP = FORWARD, RP, GSB, GDB, GXE, GXO, GHU, GHP, GYB, COUNT };

  LiftTiles(const LiftLayout& l, int Kr, double kcu, double kcp, int64_t cap = 0, int buffers = COUNT)
      : lay(l), lines_of(l), K(KC ? KC : Kr), m(K / 2), count(lines_of.NB * l.P), t(l.L, l.B, count, m, cap),
        tcu(T(kcu)), tcp(T(kcp)), parts(l.N > 0 ? lines_of.NB / l.N : 0), buf(t, buffers), lb(t.cap), acc(2 * (K + 3)) {
    buf.fill_mask(buf.get(MASK));
  }

  // The tile's x_e, x_o, d (the lines in lb, read from x), and with Keep P's pre-activation and r.
  template <bool Keep = true>
  void recompute(const T* x, const Chan<T>& p, int64_t lines) {
    const int64_t total = lines * t.seg;
    if constexpr (Keep) {
      for (int b : {GHU, GHP})  // a shorter last tile: no stale values past it
        std::fill(buf.get(b) + total, buf.get(b) + total + t.margin, T(0));
    }
    predict_tile<T, KC, Keep>(x, lb, lines, lay, t, p, K, buf.get(XE), buf.get(XO), buf.get(DP),
                              Keep ? buf.get(HP) : nullptr, Keep ? buf.get(RP) : nullptr);
  }

  // After recompute: the tile's s and d written where the lift's forward writes them; cu and cp
  // get the regulariser's sums.
  void write_outputs(const Chan<T>& u, int64_t lines, T* s, T* d, double& cu, double& cp) {
    T* sb = buf.get(SB);
    update_tile<T, KC>(u, buf.get(XE), buf.get(XO), buf.get(DP), buf.get(MASK), sb, lines * t.seg, t.B, K, cu, cp);
    write_lines(lb, lines, t, sb, buf.get(DP), s, d);
  }

  // write_outputs of a 2-D layer's last lift (along H, P = 1) over a tile of `planes` planes' s
  // bands, then their d bands (fill_plane_tile's order): each band written at its polyphase
  // place in z (N, C, 2 Lh, 2 B), band (r, q) at rows 2i + r, columns 2j + q, as the lazy inverse
  // lift puts them, instead of as four bands.
  void write_polyphase(const Chan<T>& u, int64_t planes, int64_t n0, int64_t c, T* z, double& cu, double& cp) {
    T *const sb = buf.get(SB), *const dp = buf.get(DP);
    update_tile<T, KC>(u, buf.get(XE), buf.get(XO), dp, buf.get(MASK), sb, 2 * planes * t.seg, t.B, K, cu, cp);
    const int64_t Lh = t.Lh, B = t.B;
    for (int64_t i = 0; i < planes; ++i) {
      T* zp = z + ((n0 + i) * lay.C + c) * 4 * Lh * B;
      const int64_t e0 = i * t.seg + t.margin, e1 = (i + planes) * t.seg + t.margin;
      for (int64_t r = 0; r < Lh; ++r) {
        zip(zp + 4 * r * B, sb + e0 + r * B, sb + e1 + r * B, B);
        zip(zp + (4 * r + 2) * B, dp + e0 + r * B, dp + e1 + r * B, B);
      }
    }
  }

  // After recompute: gs, gd of the tile's lines -> gx (merged in), acc (added), gcoef (added).
  void backward(const T* gs, const T* gd, T* gx, const T* gy, const T* coef, double* gcoef, const Chan<T> p,
                const Chan<T> u, int64_t c, int64_t lines) {
    const int64_t C = lay.C, L = lay.L, B = lay.B, n = this->t.n, seg = this->t.seg, Lh = this->t.Lh;
    const int64_t total = lines * seg;
    const bool even_first = lay.even_first;
    const int K = KC ? KC : this->K, m = K / 2;  // a constant where KC is: the tap loops unroll
    const T tcu = this->tcu, tcp = this->tcp;
    // Locals, not members (and p, u by value), in the loops: the compiler cannot tell that stores
    // through the buffers leave members alone, and would reload them each iteration (or not vectorise).
    T *const xe = buf.get(XE), *const xo = buf.get(XO), *const dp = buf.get(DP), *const hp = buf.get(HP);
    T *const rp = buf.get(RP), *const gsb = buf.get(GSB), *const gdb = buf.get(GDB), *const gxe = buf.get(GXE);
    T *const gxo = buf.get(GXO), *const ghu = buf.get(GHU), *const ghp = buf.get(GHP), *const sb = buf.get(SB);
    T *const mask = buf.get(MASK), *const gyb = buf.get(GYB);
    const Tile t = this->t;
    const int64_t margin = t.margin, N = lay.N, P = lay.P, parts = this->parts;
    const int64_t *const in = lb.in.data(), *const out = lb.out.data(), *const nb = lb.nb.data(), *const q = lb.q.data();
    // The taps' gradients ride along in the main loops for K <= 3; other K take extra passes.
    constexpr bool fused_taps = KC == 1 || KC == 3;
    for (int64_t i = 0; i < lines; ++i) {
      const int64_t line = out[i];
      T *gsl = gsb + i * seg + margin, *gdl = gdb + i * seg + margin;
      const T* gyl = gy ? gy + (((nb[i] % N) * C + c) * P + q[i]) * n : nullptr;
      if (gs) {
        copy(gsl, gs + line * n, n);
        copy(gdl, gd + line * n, n);
      } else {  // the bands' gradient is coef * g_y: made here, not read from memory
        const int64_t part = nb[i] / N;
        const T cs = coef[part * C + c], cd = coef[(parts + part) * C + c];
#pragma omp simd
        for (int64_t e = 0; e < n; ++e) {
          gsl[e] = cs * gyl[e];
          gdl[e] = cd * gyl[e];
        }
      }
      if (gcoef) copy(gyb + i * seg + margin, gyl, n);
    }
    // Update operator: s = x_e + base_u d + r_u.
    T a_pw = 0, a_pb = 0, a_b = 0, w0 = 0, w1 = 0, w2 = 0;
#pragma omp simd reduction(+ : a_pw, a_pb, a_b, w0, w1, w2)
    for (int64_t e = 0; e < total; ++e) {
      T h = u.template filter<KC>(dp, e, B, K);
      T relu = std::max(h, T(0));
      T r = u.activate(h);
      T dv = dp[e];
      T sv = xe[e] + u.linear(dv) + r;
      sb[e] = sv;
      T res = sv - xo[e];
      const bool on = mask[e] != 0;
      T g_s = on ? gsb[e] + tcu * res : T(0);
      gxe[e] = g_s;
      gxo[e] = on ? -tcu * res : T(0);
      gdb[e] = on ? gdb[e] + u.linear(g_s) + tcp * dv : T(0);
      T gz = g_s * (T(1) - r * r);
      a_pw += gz * relu;
      a_pb += gz;
      T ghv = h > 0 ? gz * u.pw : T(0);
      a_b += ghv;
      ghu[e] = ghv;
      if constexpr (KC == 3) {
        w0 += ghv * dp[e - B];
        w1 += ghv * dv;
        w2 += ghv * dp[e + B];
      } else if constexpr (KC == 1) {
        w0 += ghv * dv;
      }
    }
    if (gcoef) {  // gamma's gradient: the pooled output's gradient times the bands recomputed here
      for (int64_t i = 0; i < lines; ++i) {
        const T *g = gyb + i * seg + margin, *sv = sb + i * seg + margin, *dv = dp + i * seg + margin;
        T as = 0, ad = 0;
#pragma omp simd reduction(+ : as, ad)
        for (int64_t e = 0; e < n; ++e) {
          as += g[e] * sv[e];
          ad += g[e] * dv[e];
        }
        const int64_t part = nb[i] / N;  // s of part p is band p, d is band parts + p
        gcoef[part * C + c] += as;
        gcoef[(parts + part) * C + c] += ad;
      }
    }
    acc[K + 3 + K] += a_b;
    acc[K + 3 + K + 1] += a_pw;
    acc[K + 3 + K + 2] += a_pb;
    if constexpr (fused_taps) {
      const T ws[3] = {w0, w1, w2};
      for (int k = 0; k < K; ++k) acc[K + 3 + k] += ws[k];
    } else {
      tap_sums(ghu, dp, total, B, K, acc.data() + K + 3);
    }
    // Predict operator: d = x_o - base_p x_e - r_p. Its input gradient is U's transpose of ghu
    // added to gdb: padding rows folded first, the lines' rows inside the loop.
    fold_transpose<T, KC>(ghu, gdb, u.w, t, lines, K);
    a_pw = a_pb = a_b = w0 = w1 = w2 = 0;
#pragma omp simd reduction(+ : a_pw, a_pb, a_b, w0, w1, w2)
    for (int64_t e = 0; e < total; ++e) {
      T tr = 0;
#pragma GCC unroll 16
      for (int k = 0; k < K; ++k) tr += u.w[k] * ghu[e + (m - k) * B];
      T g_d = gdb[e] + (mask[e] != 0 ? tr : T(0));
      gxo[e] += g_d;
      gxe[e] -= p.linear(g_d);
      T h = hp[e];
      T relu = std::max(h, T(0));
      T gz = -g_d * (T(1) - rp[e] * rp[e]);
      a_pw += gz * relu;
      a_pb += gz;
      T ghv = h > 0 ? gz * p.pw : T(0);
      a_b += ghv;
      ghp[e] = ghv;
      if constexpr (KC == 3) {
        w0 += ghv * xe[e - B];
        w1 += ghv * xe[e];
        w2 += ghv * xe[e + B];
      } else if constexpr (KC == 1) {
        w0 += ghv * xe[e];
      }
    }
    acc[K] += a_b;
    acc[K + 1] += a_pw;
    acc[K + 2] += a_pb;
    if constexpr (fused_taps) {
      const T ws[3] = {w0, w1, w2};
      for (int k = 0; k < K; ++k) acc[k] += ws[k];
    } else {
      tap_sums(ghp, xe, total, B, K, acc.data());
    }
    filter_transpose<T, KC>(ghp, gxe, mask, p.w, t, lines, K);
    for (int64_t i = 0; i < lines; ++i)
      merge(gx + in[i] * L * B, gxe + i * seg + margin, gxo + i * seg + margin, L, Lh, B,
            even_first);
  }
};

template <typename T, int KC>
void backward_impl(const T* x, const T* gs, const T* gd, T* gx, const T* gy, const T* coef, double* gcoef,
                   double* pgrad, const LiftLayout& lay, int Kr, Op<T> po, Op<T> uo, double kcu, double kcp,
                   int threads) {
#pragma omp parallel num_threads(threads)
  {
    LiftTiles<T, KC> w(lay, Kr, kcu, kcp);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < lay.C; ++c) {
      const Chan<T> p(po, c, w.K), u(uo, c, w.K);
      std::fill(w.acc.begin(), w.acc.end(), 0.0);
      for (int64_t i0 = 0; i0 < w.count; i0 += w.t.cap) {
        const int64_t lines = std::min(w.t.cap, w.count - i0);
        w.lines_of.fill(w.lb, c, i0, lines);
        w.recompute(x, p, lines);
        w.backward(gs, gd, gx, gy, coef, gcoef, p, u, c, lines);
      }
      std::copy(w.acc.begin(), w.acc.end(), pgrad + c * w.acc.size());
    }
  }
}

// A 2-D layer's two lifts (a: along W, then b: along H, the last) can go a tile of whole (n, c)
// planes at a time: a's output on the tile's planes lives in a per-thread scratch (their s planes,
// then their d planes) instead of a whole-tensor buffer, and b reads it from there. Planes per
// tile: as many as fill a tile, else one up to kPlaneElems values (a tile's buffers then outgrow
// L1, but lifting the whole tensor by lifts instead writes and re-reads a buffer of its size, and a
// fresh buffer that large costs page faults: measured faster at every plane size up to 1024x768);
// 0 for larger planes: lift by lift. The cap bounds the per-thread buffers (about 30 planes' worth
// in backward, 8 MB at 256x256), which for very large planes outgrow the whole-tensor buffer.
constexpr int64_t kPlaneElems = 256 * 256;

inline int64_t planes_per_tile(const LiftLayout& la, const LiftLayout& lb, int K) {
  const int64_t N = la.G / la.C;
  const Tile ta(la.L, la.B, N * la.P, K / 2), tb(lb.L, lb.B, 2 * N * lb.P, K / 2);
  const int64_t fit = std::min({ta.cap / la.P, tb.cap / (2 * lb.P), N});
  return fit > 0 ? fit : (la.P * la.L * la.B <= kPlaneElems ? 1 : 0);
}

// a's lines of planes n0 .. n0 + k - 1 of channel c, written to the scratch, and b's lines of
// the same planes (their s bands, then their d bands), read from it.
template <typename T, int KC>
void fill_plane_tile(LiftTiles<T, KC>& a, LiftTiles<T, KC>& b, int64_t c, int64_t n0, int64_t k) {
  const LiftLayout &la = a.lay, &lb = b.lay;
  const int64_t N = la.G / la.C, lines_a = k * la.P, lines_b = k * lb.P;
  a.lines_of.fill(a.lb, c, n0 * la.P, lines_a);
  for (int64_t i = 0; i < lines_a; ++i) a.lb.out[i] = (a.lb.nb[i] - n0) * la.P + a.lines_of.order[a.lb.q[i]];
  b.lines_of.fill(b.lb, c, n0 * lb.P, lines_b);
  b.lines_of.fill(b.lb, c, (N + n0) * lb.P, lines_b, lines_b);
  for (int64_t i = 0; i < 2 * lines_b; ++i) {
    const int64_t nb = b.lb.nb[i];
    b.lb.in[i] = ((nb / N) * k + nb % N - n0) * lb.P + b.lb.q[i];
  }
}

// forward_impl of both lifts by tiles of planes: b's s and d (its whole output), or with z the
// bands in their polyphase places (write_polyphase; NCHW lifted along W then H), or without d (and
// no costs) the approximation band alone into s: b lifts a's s planes only. With costs each lift's
// per-channel sums (costs_a, costs_b) as forward_impl gives them.
template <typename T, int KC>
bool forward2_impl(const T* x, T* s, T* d, T* z, const LiftLayout& la, const LiftLayout& lb, int Kr, Op<T> po,
                   Op<T> uo, double* costs_a, double* costs_b, int threads) {
  const int K = KC ? KC : Kr;
  const int64_t planes = planes_per_tile(la, lb, K), N = la.G / la.C;
  if (planes < 1 || (z && lb.P != 1)) return false;
#pragma omp parallel num_threads(threads)
  {
    using Tiles = LiftTiles<T, KC>;
    Tiles a(la, K, 0, 0, planes * la.P, Tiles::FORWARD), b(lb, K, 0, 0, 2 * planes * lb.P, Tiles::FORWARD);
    const int64_t plane = la.P * a.t.n;
    std::vector<T> t(2 * planes * plane);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < la.C; ++c) {
      const Chan<T> p(po, c, K), u(uo, c, K);
      double cost[4] = {0, 0, 0, 0};
      for (int64_t n0 = 0; n0 < N; n0 += planes) {
        const int64_t k = std::min(planes, N - n0);
        fill_plane_tile(a, b, c, n0, k);
        a.template recompute<false>(x, p, k * la.P);
        a.write_outputs(u, k * la.P, t.data(), t.data() + k * plane, cost[0], cost[1]);
        const int64_t parts = z || d ? 2 : 1;  // b's lines: those of a's s planes, then of its d planes
        b.template recompute<false>(t.data(), p, parts * k * lb.P);
        if (z)
          b.write_polyphase(u, k, n0, c, z, cost[2], cost[3]);
        else
          b.write_outputs(u, parts * k * lb.P, s, d, cost[2], cost[3]);
      }
      if (costs_a) std::copy(cost, cost + 2, costs_a + 2 * c);
      if (costs_b) std::copy(cost + 2, cost + 4, costs_b + 2 * c);
    }
  }
  return true;
}

// backward_impl of both lifts by tiles of planes. Lift by lift, the backward re-lifts the whole
// input along W (b needs a's output), then runs b's backward, then a's, which recomputes a's
// forward once more. Here a's forward is recomputed once and kept in a's tile, its output goes
// to the scratch, b's backward runs on it (its input gradient into a second scratch), then a's
// backward from the kept tile.
template <typename T, int KC>
bool backward2_impl(const T* x, T* gx, const T* g_out, const T* gy, const T* coef, double* gcoef, double* pgrad_a,
                    double* pgrad_b, const LiftLayout& la, const LiftLayout& lb, int Kr, Op<T> po, Op<T> uo,
                    double kcu_a, double kcp_a, double kcu_b, double kcp_b, int threads) {
  const int K = KC ? KC : Kr;
  const int64_t planes = planes_per_tile(la, lb, K), N = la.G / la.C;
  if (planes < 1) return false;
  const T* gs = g_out;
  const T* gd = g_out ? g_out + lb.G * lb.P * ((lb.L + 1) / 2) * lb.B : nullptr;  // b's d bands follow its s bands
#pragma omp parallel num_threads(threads)
  {
    LiftTiles<T, KC> a(la, K, kcu_a, kcp_a, planes * la.P), b(lb, K, kcu_b, kcp_b, 2 * planes * lb.P);
    const int64_t plane = la.P * a.t.n;
    std::vector<T> t(2 * planes * plane), gt(2 * planes * plane);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < la.C; ++c) {
      const Chan<T> p(po, c, K), u(uo, c, K);
      std::fill(a.acc.begin(), a.acc.end(), 0.0);
      std::fill(b.acc.begin(), b.acc.end(), 0.0);
      for (int64_t n0 = 0; n0 < N; n0 += planes) {
        const int64_t k = std::min(planes, N - n0);
        double unused[2];
        fill_plane_tile(a, b, c, n0, k);
        a.recompute(x, p, k * la.P);
        a.write_outputs(u, k * la.P, t.data(), t.data() + k * plane, unused[0], unused[1]);
        b.recompute(t.data(), p, 2 * k * lb.P);
        b.backward(gs, gd, gt.data(), gy, coef, gcoef, p, u, c, 2 * k * lb.P);
        a.backward(gt.data(), gt.data() + k * plane, gx, nullptr, nullptr, nullptr, p, u, c, k * la.P);
      }
      std::copy(a.acc.begin(), a.acc.end(), pgrad_a + c * a.acc.size());
      std::copy(b.acc.begin(), b.acc.end(), pgrad_b + c * b.acc.size());
    }
  }
  return true;
}

// The inverse step (SPEC 1): x_e = s - base_u d - r_u(d), x_o = d + base_p x_e + r_p(x_e), rows
// interleaved, a tile of lines at a time (one per thread). The layout describes s (and d): L = Lh
// rows each; an output line has 2 Lh rows. Lines come from lb: s and d (and their gradients) at
// lb.in, the output (and its gradient) at lb.out, both the line's place in the whole tensors
// unless a fused pass points one of them at its scratch. load() reads the tile's s and d,
// update() makes x_e (with Keep, keeping U's pre-activation and r for backward()), predict()
// makes x_o and writes the output, backward() turns the output's gradient into s's, d's and the
// parameters' (summed into acc, laid out as in LiftTiles).
template <typename T, int KC>
struct UnliftTiles {
  const LiftLayout& lay;
  const Lines lines_of;
  const int K, m;
  const int64_t count;  // lines per channel
  const Tile t;
  Buffers<T> buf;
  Lines::Batch lb;
  std::vector<double> acc;
  // The forward (load, update<false>, predict) needs the first FORWARD buffers only.
  enum { DP, SB, XE, XO, FORWARD, HU = FORWARD, RU, GXE, GXO, GDB, GH, MASK, COUNT };

  UnliftTiles(const LiftLayout& l, int Kr, int64_t cap = 0, int buffers = COUNT)
      : lay(l), lines_of(l), K(KC ? KC : Kr), m(K / 2), count(lines_of.NB * l.P), t(2 * l.L, l.B, count, m, cap),
        buf(t, buffers), lb(t.cap), acc(2 * (K + 3)) {
    if (buffers > MASK) buf.fill_mask(buf.get(MASK));
  }

  LIFTSWAP_INLINE void load(const T* s, const T* d, int64_t lines) {
    const int m = (KC ? KC : K) / 2;
    const int64_t seg = t.seg, margin = t.margin, n = t.n, Lh = t.Lh, B = t.B;
    T *const dp = buf.get(DP), *const sb = buf.get(SB);
    const int64_t* const in = lb.in.data();
    for (int64_t i = 0; i < lines; ++i) {
      copy(dp + i * seg + margin, d + in[i] * n, n);
      copy(sb + i * seg + margin, s + in[i] * n, n);
      pad_rows(dp + i * seg, Lh, B, m);
    }
  }

  template <bool Keep>
  LIFTSWAP_INLINE void update(const Chan<T> u, int64_t lines) {
    const int K = KC ? KC : this->K, m = K / 2;
    const int64_t total = lines * t.seg, B = t.B, seg = t.seg, Lh = t.Lh;
    T *const dp = buf.get(DP), *const sb = buf.get(SB), *const xe = buf.get(XE);
    T *const hu = Keep ? buf.get(HU) : nullptr, *const ru = Keep ? buf.get(RU) : nullptr;
    subtract_operator<T, KC, Keep>(u, sb, dp, xe, hu, ru, total, B, K);
    for (int64_t i = 0; i < lines; ++i) pad_rows(xe + i * seg, Lh, B, m);
  }

  LIFTSWAP_INLINE void predict(const Chan<T> p, int64_t lines, T* x) {
    const int K = KC ? KC : this->K;
    const int64_t total = lines * t.seg, B = t.B, seg = t.seg, Lh = t.Lh, n = t.n, margin = t.margin;
    T *const dp = buf.get(DP), *const xe = buf.get(XE), *const xo = buf.get(XO);
#pragma omp simd
    for (int64_t e = 0; e < total; ++e) {
      T h = p.template filter<KC>(xe, e, B, K);
      xo[e] = dp[e] + p.linear(xe[e]) + p.activate(h);
    }
    const int64_t* const out = lb.out.data();
    for (int64_t i = 0; i < lines; ++i)
      merge(x + out[i] * 2 * n, xe + i * seg + margin, xo + i * seg + margin, 2 * Lh, Lh, B, false);
  }

  // After load and update<true>.
  void backward(const T* gx, T* gs, T* gd, const Chan<T> p, const Chan<T> u, int64_t lines) {
    const int K = KC ? KC : this->K, m = K / 2;
    const Tile t = this->t;
    const int64_t B = t.B, seg = t.seg, Lh = t.Lh, n = t.n, margin = t.margin, total = lines * seg;
    T *const dp = buf.get(DP), *const xe = buf.get(XE), *const hu = buf.get(HU), *const ru = buf.get(RU);
    T *const gxe = buf.get(GXE), *const gxo = buf.get(GXO), *const gdb = buf.get(GDB), *const gh = buf.get(GH);
    T *const mask = buf.get(MASK);
    const int64_t *const in = lb.in.data(), *const out = lb.out.data();
    std::fill(gh + total, gh + total + margin, T(0));  // a shorter last tile: no stale values past it
    for (int64_t i = 0; i < lines; ++i)
      split(gx + out[i] * 2 * n, gxe + i * seg, gxo + i * seg + margin, 2 * Lh, Lh, B, m, false);
    // Predict: x_o = d + base_p x_e + r_p(x_e).
    T a_pw = 0, a_pb = 0, a_b = 0;
#pragma omp simd reduction(+ : a_pw, a_pb, a_b)
    for (int64_t e = 0; e < total; ++e) {
      T h = p.template filter<KC>(xe, e, B, K);
      T relu = std::max(h, T(0));
      T r = p.activate(h);
      const bool on = mask[e] != 0;
      T g_o = on ? gxo[e] : T(0);
      gdb[e] = g_o;
      gxe[e] = on ? gxe[e] + p.linear(g_o) : T(0);
      T gz = g_o * (T(1) - r * r);
      a_pw += gz * relu;
      a_pb += gz;
      T ghv = h > 0 ? gz * p.pw : T(0);
      a_b += ghv;
      gh[e] = ghv;
    }
    acc[K] += a_b;
    acc[K + 1] += a_pw;
    acc[K + 2] += a_pb;
    tap_sums(gh, xe, total, B, K, acc.data());
    filter_transpose<T, KC>(gh, gxe, mask, p.w, t, lines, K);
    // Update: x_e = s - base_u d - r_u(d).
    a_pw = a_pb = a_b = 0;
#pragma omp simd reduction(+ : a_pw, a_pb, a_b)
    for (int64_t e = 0; e < total; ++e) {
      T g_e = gxe[e];  // zero on padding rows
      T h = hu[e];
      T relu = std::max(h, T(0));
      T r = ru[e];
      gdb[e] -= u.linear(g_e);
      T gz = -g_e * (T(1) - r * r);
      a_pw += gz * relu;
      a_pb += gz;
      T ghv = h > 0 ? gz * u.pw : T(0);
      a_b += ghv;
      gh[e] = ghv;
    }
    acc[K + 3 + K] += a_b;
    acc[K + 3 + K + 1] += a_pw;
    acc[K + 3 + K + 2] += a_pb;
    tap_sums(gh, dp, total, B, K, acc.data() + K + 3);
    filter_transpose<T, KC>(gh, gdb, mask, u.w, t, lines, K);
    for (int64_t i = 0; i < lines; ++i) {
      copy(gs + in[i] * n, gxe + i * seg + margin, n);
      copy(gd + in[i] * n, gdb + i * seg + margin, n);
    }
  }
};

template <typename T, int KC>
void unlift_forward_impl(const T* s, const T* d, T* x, const LiftLayout& lay, int Kr, Op<T> po, Op<T> uo,
                         int threads) {
#pragma omp parallel num_threads(threads)
  {
    using Tiles = UnliftTiles<T, KC>;
    Tiles w(lay, Kr, 0, Tiles::FORWARD);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < lay.C; ++c) {
      const Chan<T> p(po, c, w.K), u(uo, c, w.K);
      for (int64_t i0 = 0; i0 < w.count; i0 += w.t.cap) {
        const int64_t lines = std::min(w.t.cap, w.count - i0);
        w.lines_of.fill(w.lb, c, i0, lines);
        w.load(s, d, lines);
        w.template update<false>(u, lines);
        w.predict(p, lines, x);
      }
    }
  }
}

// Gradients of unlift: gs, gd (same layout as s, d) and pgrad as in backward_impl, from gx.
template <typename T, int KC>
void unlift_backward_impl(const T* s, const T* d, const T* gx, T* gs, T* gd, double* pgrad, const LiftLayout& lay,
                          int Kr, Op<T> po, Op<T> uo, int threads) {
#pragma omp parallel num_threads(threads)
  {
    UnliftTiles<T, KC> w(lay, Kr);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < lay.C; ++c) {
      const Chan<T> p(po, c, w.K), u(uo, c, w.K);
      std::fill(w.acc.begin(), w.acc.end(), 0.0);
      for (int64_t i0 = 0; i0 < w.count; i0 += w.t.cap) {
        const int64_t lines = std::min(w.t.cap, w.count - i0);
        w.lines_of.fill(w.lb, c, i0, lines);
        w.load(s, d, lines);
        w.template update<true>(u, lines);
        w.backward(gx, gs, gd, p, u, lines);
      }
      std::copy(w.acc.begin(), w.acc.end(), pgrad + c * w.acc.size());
    }
  }
}

// An up pool's two inverse lifts (a: along H, then b: along W, the last) by tiles of whole (n, c)
// planes of the output, as forward2_impl / backward2_impl do the down pool's: a's output on the
// tile's planes (b's s planes, then its d planes) lives in a per-thread scratch. Planes per tile
// as planes_per_tile counts them.
inline int64_t unlift_planes_per_tile(const LiftLayout& la, const LiftLayout& lb, int K) {
  const int64_t N = lb.G / lb.C;
  const Tile ta(2 * la.L, la.B, 2 * N * la.P, K / 2), tb(2 * lb.L, lb.B, N * lb.P, K / 2);
  const int64_t fit = std::min({ta.cap / (2 * la.P), tb.cap / lb.P, N});
  return fit > 0 ? fit : (lb.P * 2 * lb.L * lb.B <= kPlaneElems ? 1 : 0);
}

// a's lines of output planes n0 .. n0 + k - 1 of channel c (their s parts, then their d parts),
// written to the scratch, and b's lines of the same planes, read from it.
template <typename T, int KC>
void fill_unlift_plane_tile(UnliftTiles<T, KC>& a, UnliftTiles<T, KC>& b, int64_t c, int64_t n0, int64_t k) {
  const LiftLayout &la = a.lay, &lb = b.lay;
  const int64_t N = lb.G / lb.C, lines_a = k * la.P, lines_b = k * lb.P;
  a.lines_of.fill(a.lb, c, n0 * la.P, lines_a);
  a.lines_of.fill(a.lb, c, (N + n0) * la.P, lines_a, lines_a);
  for (int64_t i = 0; i < 2 * lines_a; ++i) {
    const int64_t nb = a.lb.nb[i];
    a.lb.out[i] = ((nb / N) * k + nb % N - n0) * la.P + a.lb.q[i];
  }
  b.lines_of.fill(b.lb, c, n0 * lb.P, lines_b);
  for (int64_t i = 0; i < lines_b; ++i) b.lb.in[i] = (b.lb.nb[i] - n0) * lb.P + b.lb.q[i];
}

// The up pool's output x from the stacked bands (s, d: a's input halves).
template <typename T, int KC>
bool unlift_forward2_impl(const T* s, const T* d, T* x, const LiftLayout& la, const LiftLayout& lb, int Kr, Op<T> po,
                          Op<T> uo, int threads) {
  const int K = KC ? KC : Kr;
  const int64_t planes = unlift_planes_per_tile(la, lb, K), N = lb.G / lb.C;
  if (planes < 1) return false;
#pragma omp parallel num_threads(threads)
  {
    using Tiles = UnliftTiles<T, KC>;
    Tiles a(la, K, 2 * planes * la.P, Tiles::FORWARD), b(lb, K, planes * lb.P, Tiles::FORWARD);
    const int64_t plane = lb.P * b.t.n;
    std::vector<T> t(2 * planes * plane);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < la.C; ++c) {
      const Chan<T> p(po, c, K), u(uo, c, K);
      for (int64_t n0 = 0; n0 < N; n0 += planes) {
        const int64_t k = std::min(planes, N - n0);
        fill_unlift_plane_tile(a, b, c, n0, k);
        a.load(s, d, 2 * k * la.P);
        a.template update<false>(u, 2 * k * la.P);
        a.predict(p, 2 * k * la.P, t.data());
        b.load(t.data(), t.data() + k * plane, k * lb.P);
        b.template update<false>(u, k * lb.P);
        b.predict(p, k * lb.P, x);
      }
    }
  }
  return true;
}

// Gradients of unlift_forward2_impl: gs, gd (as s, d) and each inverse lift's parameter sums.
template <typename T, int KC>
bool unlift_backward2_impl(const T* s, const T* d, const T* gx, T* gs, T* gd, double* pgrad_a, double* pgrad_b,
                           const LiftLayout& la, const LiftLayout& lb, int Kr, Op<T> po, Op<T> uo, int threads) {
  const int K = KC ? KC : Kr;
  const int64_t planes = unlift_planes_per_tile(la, lb, K), N = lb.G / lb.C;
  if (planes < 1) return false;
#pragma omp parallel num_threads(threads)
  {
    UnliftTiles<T, KC> a(la, K, 2 * planes * la.P), b(lb, K, planes * lb.P);
    const int64_t plane = lb.P * b.t.n;
    std::vector<T> t(2 * planes * plane), gt(2 * planes * plane);
#pragma omp for schedule(static)
    for (int64_t c = 0; c < la.C; ++c) {
      const Chan<T> p(po, c, K), u(uo, c, K);
      std::fill(a.acc.begin(), a.acc.end(), 0.0);
      std::fill(b.acc.begin(), b.acc.end(), 0.0);
      for (int64_t n0 = 0; n0 < N; n0 += planes) {
        const int64_t k = std::min(planes, N - n0);
        fill_unlift_plane_tile(a, b, c, n0, k);
        a.load(s, d, 2 * k * la.P);
        a.template update<true>(u, 2 * k * la.P);
        a.predict(p, 2 * k * la.P, t.data());
        b.load(t.data(), t.data() + k * plane, k * lb.P);
        b.template update<true>(u, k * lb.P);
        b.backward(gx, gt.data(), gt.data() + k * plane, p, u, k * lb.P);
        a.backward(gt.data(), gs, gd, p, u, 2 * k * la.P);
      }
      std::copy(a.acc.begin(), a.acc.end(), pgrad_a + c * a.acc.size());
      std::copy(b.acc.begin(), b.acc.end(), pgrad_b + c * b.acc.size());
    }
  }
  return true;
}

template <typename T>
void forward_dispatch(const T* x, T* s, T* d, const LiftLayout& lay, int K, Op<T> po, Op<T> uo, double* costs,
                      int threads) {
  switch (K) {
    case 1: return forward_impl<T, 1>(x, s, d, lay, K, po, uo, costs, threads);
    case 3: return forward_impl<T, 3>(x, s, d, lay, K, po, uo, costs, threads);
    case 5: return forward_impl<T, 5>(x, s, d, lay, K, po, uo, costs, threads);
    default: return forward_impl<T, 0>(x, s, d, lay, K, po, uo, costs, threads);
  }
}

template <typename T>
void backward_dispatch(const T* x, const T* gs, const T* gd, T* gx, const T* gy, const T* coef, double* gcoef,
                       double* pgrad, const LiftLayout& lay, int K, Op<T> po, Op<T> uo, double kcu, double kcp,
                       int threads) {
  switch (K) {
    case 1: return backward_impl<T, 1>(x, gs, gd, gx, gy, coef, gcoef, pgrad, lay, K, po, uo, kcu, kcp, threads);
    case 3: return backward_impl<T, 3>(x, gs, gd, gx, gy, coef, gcoef, pgrad, lay, K, po, uo, kcu, kcp, threads);
    case 5: return backward_impl<T, 5>(x, gs, gd, gx, gy, coef, gcoef, pgrad, lay, K, po, uo, kcu, kcp, threads);
    default: return backward_impl<T, 0>(x, gs, gd, gx, gy, coef, gcoef, pgrad, lay, K, po, uo, kcu, kcp, threads);
  }
}

template <typename T>
bool forward2_dispatch(const T* x, T* s, T* d, T* z, const LiftLayout& la, const LiftLayout& lb, int K, Op<T> po,
                       Op<T> uo, double* costs_a, double* costs_b, int threads) {
  switch (K) {
    case 1: return forward2_impl<T, 1>(x, s, d, z, la, lb, K, po, uo, costs_a, costs_b, threads);
    case 3: return forward2_impl<T, 3>(x, s, d, z, la, lb, K, po, uo, costs_a, costs_b, threads);
    case 5: return forward2_impl<T, 5>(x, s, d, z, la, lb, K, po, uo, costs_a, costs_b, threads);
    default: return forward2_impl<T, 0>(x, s, d, z, la, lb, K, po, uo, costs_a, costs_b, threads);
  }
}

// A 2-D layer's bands (4, planes, h, w) to their polyphase places z (planes, 2h, 2w), band (r, q)
// at rows 2i + r, columns 2j + q, or back (to_bands): for the lift-by-lift path and the gradient.
template <typename T>
void polyphase_impl(T* bands, T* z, int64_t planes, int64_t h, int64_t w, bool to_bands, int threads) {
  const int64_t S = h * w, band = planes * S;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t q = 0; q < planes; ++q) {
    for (int64_t i = 0; i < h; ++i) {
      T* b = bands + q * S + i * w;
      T* top = z + q * 4 * S + 4 * i * w;
      if (to_bands) {
        unzip(top, b, b + band, w);
        unzip(top + 2 * w, b + 2 * band, b + 3 * band, w);
      } else {
        zip(top, b, b + band, w);
        zip(top + 2 * w, b + 2 * band, b + 3 * band, w);
      }
    }
  }
}

template <typename T>
bool backward2_dispatch(const T* x, T* gx, const T* g_out, const T* gy, const T* coef, double* gcoef,
                        double* pgrad_a, double* pgrad_b, const LiftLayout& la, const LiftLayout& lb, int K, Op<T> po,
                        Op<T> uo, double kcu_a, double kcp_a, double kcu_b, double kcp_b, int threads) {
#define LIFTSWAP_B2(KC) \
  backward2_impl<T, KC>(x, gx, g_out, gy, coef, gcoef, pgrad_a, pgrad_b, la, lb, K, po, uo, kcu_a, kcp_a, \
                        kcu_b, kcp_b, threads)
  switch (K) {
    case 1: return LIFTSWAP_B2(1);
    case 3: return LIFTSWAP_B2(3);
    case 5: return LIFTSWAP_B2(5);
    default: return LIFTSWAP_B2(0);
  }
#undef LIFTSWAP_B2
}

// Max pooling at stride 1 over (planes, H, W), -inf padding: a max over W, then over H, keeping
// for each output which window element won (code = i * kw + j, i along H) for backward. Both
// passes keep the first maximum (a NaN always wins), so the winner is the row-major first, as
// PyTorch's max_pool2d picks it. Without a backward to come, maxpool_s1_values_impl.
template <typename T>
void maxpool_s1_forward_impl(const T* x, T* out, uint8_t* code, int64_t planes, int64_t H, int64_t W, int kh, int kw,
                             int dh, int dw, int ph, int pw, int threads) {
  const int64_t Ho = H + 2 * ph - (int64_t)dh * (kh - 1), Wo = W + 2 * pw - (int64_t)dw * (kw - 1);
  const T lowest = -std::numeric_limits<T>::infinity();
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> rm(H * Wo);
    std::vector<uint8_t> rc(H * Wo);
#pragma omp for schedule(static)
    for (int64_t q = 0; q < planes; ++q) {
      const T* xp = x + q * H * W;
      // Tap by tap over whole rows, so the loops over positions vectorise.
      std::fill(rm.begin(), rm.end(), lowest);
      std::fill(rc.begin(), rc.end(), uint8_t(0));
      for (int64_t h = 0; h < H; ++h) {
        T* m = rm.data() + h * Wo;
        uint8_t* c = rc.data() + h * Wo;
        for (int j = 0; j < kw; ++j) {
          const int64_t shift = (int64_t)j * dw - pw;  // input w = wo + shift
          const int64_t lo = std::max<int64_t>(0, -shift), hi = std::min<int64_t>(Wo, W - shift);
          const T* row = xp + h * W + shift;
#pragma omp simd
          for (int64_t wo = lo; wo < hi; ++wo) {
            const T v = row[wo];
            const bool take = v > m[wo] || v != v;
            m[wo] = take ? v : m[wo];
            c[wo] = take ? (uint8_t)j : c[wo];
          }
        }
      }
      T* o = out + q * Ho * Wo;
      uint8_t* oc = code + q * Ho * Wo;
      std::fill(o, o + Ho * Wo, lowest);
      std::fill(oc, oc + Ho * Wo, uint8_t(0));
      for (int i = 0; i < kh; ++i) {
        const int64_t shift = (int64_t)i * dh - ph;  // input h = ho + shift
        const int64_t lo = std::max<int64_t>(0, -shift), hi = std::min<int64_t>(Ho, H - shift);
        for (int64_t ho = lo; ho < hi; ++ho) {
          const T* m = rm.data() + (ho + shift) * Wo;
          const uint8_t* c = rc.data() + (ho + shift) * Wo;
          T* orow = o + ho * Wo;
          uint8_t* crow = oc + ho * Wo;
          const uint8_t base = (uint8_t)(i * kw);
#pragma omp simd
          for (int64_t wo = 0; wo < Wo; ++wo) {
            const T v = m[wo];
            const bool take = v > orow[wo] || v != v;
            orow[wo] = take ? v : orow[wo];
            crow[wo] = take ? (uint8_t)(base + c[wo]) : crow[wo];
          }
        }
      }
    }
  }
}

// maxpool_s1_forward_impl without codes: rows copied between -inf margins, so that every tap is
// one flat, branch-free pass over whole rows (W) and then the whole plane (H).
template <typename T>
LIFTSWAP_INLINE void max_into(T* m, const T* v, int64_t count) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) m[i] = (v[i] > m[i] || v[i] != v[i]) ? v[i] : m[i];  // NaN wins
}

template <typename T>
void maxpool_s1_values_impl(const T* x, T* out, int64_t planes, int64_t H, int64_t W, int kh, int kw, int dh, int dw,
                            int ph, int pw, int threads) {
  const int64_t Ho = H + 2 * ph - (int64_t)dh * (kh - 1), Wo = W + 2 * pw - (int64_t)dw * (kw - 1);
  const T lowest = -std::numeric_limits<T>::infinity();
#pragma omp parallel num_threads(threads)
  {
    std::vector<T> row(W + 2 * pw, lowest), rm((H + 2 * ph) * Wo, lowest);  // margins stay -inf
#pragma omp for schedule(static)
    for (int64_t q = 0; q < planes; ++q) {
      const T* xp = x + q * H * W;
      for (int64_t h = 0; h < H; ++h) {
        copy(row.data() + pw, xp + h * W, W);
        T* m = rm.data() + (h + ph) * Wo;
        copy(m, row.data(), Wo);
        for (int j = 1; j < kw; ++j) max_into(m, row.data() + (int64_t)j * dw, Wo);
      }
      T* o = out + q * Ho * Wo;
      copy(o, rm.data(), Ho * Wo);
      for (int i = 1; i < kh; ++i) max_into(o, rm.data() + (int64_t)i * dh * Wo, Ho * Wo);
    }
  }
}

// gx (zeroed here) += g at each output's winning input.
template <typename T>
void maxpool_s1_backward_impl(const T* g, const uint8_t* code, T* gx, int64_t planes, int64_t H, int64_t W, int kh,
                              int kw, int dh, int dw, int ph, int pw, int threads) {
  const int64_t Ho = H + 2 * ph - (int64_t)dh * (kh - 1), Wo = W + 2 * pw - (int64_t)dw * (kw - 1);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t q = 0; q < planes; ++q) {
    T* gp = gx + q * H * W;
    std::fill(gp, gp + H * W, T(0));
    const T* gq = g + q * Ho * Wo;
    const uint8_t* cq = code + q * Ho * Wo;
    for (int64_t ho = 0; ho < Ho; ++ho) {
      for (int64_t wo = 0; wo < Wo; ++wo) {
        const int c = cq[ho * Wo + wo];
        const int64_t h = ho + (int64_t)(c / kw) * dh - ph, w = wo + (int64_t)(c % kw) * dw - pw;
        if (h >= 0 && h < H && w >= 0 && w < W) gp[h * W + w] += gq[ho * Wo + wo];
      }
    }
  }
}

template <typename T>
void unlift_forward_dispatch(const T* s, const T* d, T* x, const LiftLayout& lay, int K, Op<T> po, Op<T> uo,
                             int threads) {
  switch (K) {
    case 1: return unlift_forward_impl<T, 1>(s, d, x, lay, K, po, uo, threads);
    case 3: return unlift_forward_impl<T, 3>(s, d, x, lay, K, po, uo, threads);
    case 5: return unlift_forward_impl<T, 5>(s, d, x, lay, K, po, uo, threads);
    default: return unlift_forward_impl<T, 0>(s, d, x, lay, K, po, uo, threads);
  }
}

template <typename T>
bool unlift_forward2_dispatch(const T* s, const T* d, T* x, const LiftLayout& la, const LiftLayout& lb, int K,
                              Op<T> po, Op<T> uo, int threads) {
  switch (K) {
    case 1: return unlift_forward2_impl<T, 1>(s, d, x, la, lb, K, po, uo, threads);
    case 3: return unlift_forward2_impl<T, 3>(s, d, x, la, lb, K, po, uo, threads);
    case 5: return unlift_forward2_impl<T, 5>(s, d, x, la, lb, K, po, uo, threads);
    default: return unlift_forward2_impl<T, 0>(s, d, x, la, lb, K, po, uo, threads);
  }
}

template <typename T>
bool unlift_backward2_dispatch(const T* s, const T* d, const T* gx, T* gs, T* gd, double* pgrad_a, double* pgrad_b,
                               const LiftLayout& la, const LiftLayout& lb, int K, Op<T> po, Op<T> uo, int threads) {
#define LIFTSWAP_UB2(KC) unlift_backward2_impl<T, KC>(s, d, gx, gs, gd, pgrad_a, pgrad_b, la, lb, K, po, uo, threads)
  switch (K) {
    case 1: return LIFTSWAP_UB2(1);
    case 3: return LIFTSWAP_UB2(3);
    case 5: return LIFTSWAP_UB2(5);
    default: return LIFTSWAP_UB2(0);
  }
#undef LIFTSWAP_UB2
}

template <typename T>
void unlift_backward_dispatch(const T* s, const T* d, const T* gx, T* gs, T* gd, double* pgrad, const LiftLayout& lay,
                              int K, Op<T> po, Op<T> uo, int threads) {
  switch (K) {
    case 1: return unlift_backward_impl<T, 1>(s, d, gx, gs, gd, pgrad, lay, K, po, uo, threads);
    case 3: return unlift_backward_impl<T, 3>(s, d, gx, gs, gd, pgrad, lay, K, po, uo, threads);
    case 5: return unlift_backward_impl<T, 5>(s, d, gx, gs, gd, pgrad, lay, K, po, uo, threads);
    default: return unlift_backward_impl<T, 0>(s, d, gx, gs, gd, pgrad, lay, K, po, uo, threads);
  }
}

// The pooled output y = sum_b coef[b, c] * band_b (SPEC 2's output modes as coefficients) and the
// bands' gradient, one pass each. Bands are (nb, N, C, S); details gradients (N, nb - 1, C, S).
template <typename T>
void combine_impl(const T* bands, const T* coef, T* y, int64_t nb, int64_t N, int64_t C, int64_t S, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t nc = 0; nc < N * C; ++nc) {
    const int64_t c = nc % C;
    T* out = y + nc * S;
    const T c0 = coef[c];
    const T* b0 = bands + nc * S;
#pragma omp simd
    for (int64_t i = 0; i < S; ++i) out[i] = c0 * b0[i];
    for (int64_t b = 1; b < nb; ++b) {
      const T cb = coef[b * C + c];
      const T* band = bands + (b * N * C + nc) * S;
#pragma omp simd
      for (int64_t i = 0; i < S; ++i) out[i] += cb * band[i];
    }
  }
}

// gbands = coef * gy (+ gdet): the bands' gradient from the pooled output's (and the details').
template <typename T>
void combine_backward_impl(const T* coef, const T* gy, const T* gdet, T* gbands, int64_t nb, int64_t N, int64_t C,
                           int64_t S, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    for (int64_t b = 0; b < nb; ++b) {
      const T cb = coef[b * C + c];
      for (int64_t n = 0; n < N; ++n) {
        const T* g = gy + (n * C + c) * S;
        T* out = gbands + ((b * N + n) * C + c) * S;
        const T* det = gdet && b > 0 ? gdet + ((n * (nb - 1) + b - 1) * C + c) * S : nullptr;
        if (det) {
#pragma omp simd
          for (int64_t i = 0; i < S; ++i) out[i] = cb * g[i] + det[i];
        } else {
#pragma omp simd
          for (int64_t i = 0; i < S; ++i) out[i] = cb * g[i];
        }
      }
    }
  }
}

}  // namespace

extern "C" {

int liftswap_abi_version() { return 11; }

// The best instruction-set level this CPU runs (1: baseline, 3: x86-64-v3 / AVX2, 4: x86-64-v4 /
// AVX-512), from the baseline build, so that Python loads the matching build of this file.
int liftswap_cpu_level() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi") &&
                  __builtin_cpu_supports("bmi2") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("popcnt");
  const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512cd");
  return v4 ? 4 : v3 ? 3 : 1;
#else
  return 1;
#endif
}

#define LIFTSWAP_EXPORT(T, SUFFIX)                                                                              \
  void liftswap_lift_forward_##SUFFIX(const T* x, T* s, T* d, const LiftLayout* lay, int K, const T* pw_,       \
                                      const T* pb_, const T* ppw, const T* ppb, T pbase, const T* uw, const T* ub, \
                                      const T* upw, const T* upb, T ubase, double* costs, int threads) {           \
    forward_dispatch<T>(x, s, d, *lay, K, Op<T>{pw_, pb_, ppw, ppb, pbase}, Op<T>{uw, ub, upw, upb, ubase}, costs, \
                        threads);                                                                                 \
  }                                                                                                              \
  void liftswap_lift_backward_##SUFFIX(const T* x, const T* gs, const T* gd, T* gx, const T* gy, const T* coef,  \
                                       double* gcoef, double* pgrad,                                             \
                                       const LiftLayout* lay, int K, const T* pw_, const T* pb_, const T* ppw,   \
                                       const T* ppb, T pbase, const T* uw, const T* ub, const T* upw,            \
                                       const T* upb, T ubase, double kcu, double kcp, int threads) {             \
    backward_dispatch<T>(x, gs, gd, gx, gy, coef, gcoef, pgrad, *lay, K, Op<T>{pw_, pb_, ppw, ppb, pbase},            \
                         Op<T>{uw, ub, upw, upb, ubase}, kcu, kcp, threads);                                     \
  }                                                                                                              \
  int liftswap_lift_forward2_##SUFFIX(const T* x, T* s, T* d, T* z, const LiftLayout* la, const LiftLayout* lb,  \
                                       int K, const T* pw_, const T* pb_, const T* ppw, const T* ppb, T pbase,     \
                                       const T* uw, const T* ub, const T* upw, const T* upb, T ubase,              \
                                       double* costs_a, double* costs_b, int threads) {                            \
    return forward2_dispatch<T>(x, s, d, z, *la, *lb, K, Op<T>{pw_, pb_, ppw, ppb, pbase},                       \
                                Op<T>{uw, ub, upw, upb, ubase}, costs_a, costs_b, threads);                     \
  }                                                                                                              \
  int liftswap_lift_backward2_##SUFFIX(const T* x, T* gx, const T* g_out, const T* gy, const T* coef, \
                                        double* gcoef, double* pgrad_a, double* pgrad_b, const LiftLayout* la,     \
                                        const LiftLayout* lb, int K, const T* pw_, const T* pb_, const T* ppw,     \
                                        const T* ppb, T pbase, const T* uw, const T* ub, const T* upw,             \
                                        const T* upb, T ubase, double kcu_a, double kcp_a, double kcu_b,           \
                                        double kcp_b, int threads) {                                               \
    return backward2_dispatch<T>(x, gx, g_out, gy, coef, gcoef, pgrad_a, pgrad_b, *la, *lb, K,                    \
                          Op<T>{pw_, pb_, ppw, ppb, pbase}, Op<T>{uw, ub, upw, upb, ubase}, kcu_a, kcp_a, kcu_b,  \
                          kcp_b, threads);                                                                         \
  }

#define LIFTSWAP_EXPORT_COMBINE(T, SUFFIX)                                                                            \
  void liftswap_polyphase_##SUFFIX(T* bands, T* z, int64_t planes, int64_t h, int64_t w, int to_bands,              \
                                   int threads) {                                                                      \
    polyphase_impl<T>(bands, z, planes, h, w, to_bands != 0, threads);                                                 \
  }                                                                                                                    \
  void liftswap_combine_##SUFFIX(const T* bands, const T* coef, T* y, int64_t nb, int64_t N, int64_t C, int64_t S,    \
                                 int threads) {                                                                        \
    combine_impl<T>(bands, coef, y, nb, N, C, S, threads);                                                             \
  }                                                                                                                    \
  void liftswap_combine_backward_##SUFFIX(const T* coef, const T* gy, const T* gdet, T* gbands, int64_t nb,        \
                                          int64_t N, int64_t C, int64_t S, int threads) {                              \
    combine_backward_impl<T>(coef, gy, gdet, gbands, nb, N, C, S, threads);                                            \
  }

#define LIFTSWAP_EXPORT_UNLIFT(T, SUFFIX)                                                                       \
  void liftswap_unlift_forward_##SUFFIX(const T* s, const T* d, T* x, const LiftLayout* lay, int K, const T* pw_, \
                                        const T* pb_, const T* ppw, const T* ppb, T pbase, const T* uw,            \
                                        const T* ub, const T* upw, const T* upb, T ubase, int threads) {           \
    unlift_forward_dispatch<T>(s, d, x, *lay, K, Op<T>{pw_, pb_, ppw, ppb, pbase}, Op<T>{uw, ub, upw, upb, ubase}, \
                               threads);                                                                         \
  }                                                                                                              \
  void liftswap_unlift_backward_##SUFFIX(const T* s, const T* d, const T* gx, T* gs, T* gd, double* pgrad,       \
                                         const LiftLayout* lay, int K, const T* pw_, const T* pb_, const T* ppw, \
                                         const T* ppb, T pbase, const T* uw, const T* ub, const T* upw,          \
                                         const T* upb, T ubase, int threads) {                                   \
    unlift_backward_dispatch<T>(s, d, gx, gs, gd, pgrad, *lay, K, Op<T>{pw_, pb_, ppw, ppb, pbase},               \
                                Op<T>{uw, ub, upw, upb, ubase}, threads);                                        \
  }

#define LIFTSWAP_EXPORT_UNLIFT2(T, SUFFIX)                                                                      \
  int liftswap_unlift_forward2_##SUFFIX(const T* s, const T* d, T* x, const LiftLayout* la, const LiftLayout* lb,  \
                                        int K, const T* pw_, const T* pb_, const T* ppw, const T* ppb, T pbase,    \
                                        const T* uw, const T* ub, const T* upw, const T* upb, T ubase,             \
                                        int threads) {                                                            \
    return unlift_forward2_dispatch<T>(s, d, x, *la, *lb, K, Op<T>{pw_, pb_, ppw, ppb, pbase},                   \
                                       Op<T>{uw, ub, upw, upb, ubase}, threads);                                 \
  }                                                                                                              \
  int liftswap_unlift_backward2_##SUFFIX(const T* s, const T* d, const T* gx, T* gs, T* gd, double* pgrad_a,     \
                                         double* pgrad_b, const LiftLayout* la, const LiftLayout* lb, int K,     \
                                         const T* pw_, const T* pb_, const T* ppw, const T* ppb, T pbase,        \
                                         const T* uw, const T* ub, const T* upw, const T* upb, T ubase,          \
                                         int threads) {                                                          \
    return unlift_backward2_dispatch<T>(s, d, gx, gs, gd, pgrad_a, pgrad_b, *la, *lb, K,                         \
                                        Op<T>{pw_, pb_, ppw, ppb, pbase}, Op<T>{uw, ub, upw, upb, ubase},        \
                                        threads);                                                                \
  }

#define LIFTSWAP_EXPORT_MAXPOOL(T, SUFFIX)                                                                      \
  void liftswap_maxpool_s1_forward_##SUFFIX(const T* x, T* out, uint8_t* code, int64_t planes, int64_t H,       \
                                            int64_t W, int kh, int kw, int dh, int dw, int ph, int pw,          \
                                            int threads) {                                                       \
    if (code)                                                                                                    \
      maxpool_s1_forward_impl<T>(x, out, code, planes, H, W, kh, kw, dh, dw, ph, pw, threads);              \
    else                                                                                                         \
      maxpool_s1_values_impl<T>(x, out, planes, H, W, kh, kw, dh, dw, ph, pw, threads);                           \
  }                                                                                                              \
  void liftswap_maxpool_s1_backward_##SUFFIX(const T* g, const uint8_t* code, T* gx, int64_t planes, int64_t H,  \
                                             int64_t W, int kh, int kw, int dh, int dw, int ph, int pw,         \
                                             int threads) {                                                      \
    maxpool_s1_backward_impl<T>(g, code, gx, planes, H, W, kh, kw, dh, dw, ph, pw, threads);                      \
  }

LIFTSWAP_EXPORT_MAXPOOL(float, f32)
LIFTSWAP_EXPORT_MAXPOOL(double, f64)
LIFTSWAP_EXPORT_UNLIFT2(float, f32)
LIFTSWAP_EXPORT_UNLIFT2(double, f64)
LIFTSWAP_EXPORT_UNLIFT(float, f32)
LIFTSWAP_EXPORT_UNLIFT(double, f64)
LIFTSWAP_EXPORT_COMBINE(float, f32)
LIFTSWAP_EXPORT_COMBINE(double, f64)
LIFTSWAP_EXPORT(float, f32)
LIFTSWAP_EXPORT(double, f64)

}  // extern "C"
