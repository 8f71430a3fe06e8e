// Elementwise passes of fastnst's int8 network (fastnst/infer/backends/int8.py), one memory pass each.
//
// Built once per machine and ISA level by fastnst/infer/backends/native.py (g++ -O3 with -mavx2 -mfma, the AVX-512
// flags too where the CPU has them, or no ISA flags on ARM / other CPUs; -fopenmp) and called through
// ctypes with raw pointers and strides, in elements. Every image tensor is channels-last: the C
// channels of a pixel are contiguous, rows and columns have strides sH, sW. Threads come from the
// OpenMP runtime PyTorch already loaded (libgomp), so torch.set_num_threads applies here too.
//
// Padding, depth-to-space and phase selection are all expressed by two index maps: for each output
// row (column) the source row (column) times 2 plus its phase bit. One loop then writes a whole
// reflect- or replicate-padded buffer, border included, in a single pass.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

// The intrinsics of each level are compiled only where the compiler targets it (the build flags of
// the CPU's level, fastnst.infer.backends.native.build_flags); every loop has a plain C++ version too (ARM,
// older x86), which the compiler vectorises where it can.
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define FASTNST_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define FASTNST_AVX2 1
#endif

namespace {

using i64 = std::int64_t;

inline float load(const float* p) { return *p; }
inline float load(const std::uint16_t* p) {  // bfloat16: the high half of a float32
  std::uint32_t u = std::uint32_t(*p) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline std::uint16_t to_bf16(float f) {  // round to nearest even (values are finite)
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return std::uint16_t(u >> 16);
}

#ifdef FASTNST_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const std::uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
#endif

#ifdef FASTNST_AVX512
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const std::uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
#endif

// One pixel's C channels: u8 = round(clamp(m*x + z, 0, 255)) (half to even, as torch.round), or
// bf16 = max(m*x + z, 0).
template <int CC, typename In>
inline void pixel(const In* __restrict s, const float* __restrict m, const float* __restrict z,
                  std::uint8_t* __restrict o, int C) {
#ifdef FASTNST_AVX512
  if constexpr (CC > 0 && CC % 16 == 0) {
    // gcc's own vectorisation of the loop below packs the bytes with permutes: ~3x slower.
    const __m512 lo = _mm512_setzero_ps(), hi = _mm512_set1_ps(255.0f);
    for (int c = 0; c < CC; c += 16) {
      __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(m + c), load16(s + c), _mm512_loadu_ps(z + c));
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      const __m512i q = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + c), _mm512_cvtepi32_epi8(q));
    }
    return;
  }
#elif defined(FASTNST_AVX2)
  if constexpr (CC > 0 && CC % 16 == 0) {
    // As the AVX-512 path, 16 channels a step: cvtps rounds half to even (the default MXCSR mode, as
    // nearbyint below); the two packs interleave 128-bit lanes, which the permute undoes.
    const __m256 lo = _mm256_setzero_ps(), hi = _mm256_set1_ps(255.0f);
    for (int c = 0; c < CC; c += 16) {
      __m256 v0 = _mm256_fmadd_ps(_mm256_loadu_ps(m + c), load8(s + c), _mm256_loadu_ps(z + c));
      __m256 v1 = _mm256_fmadd_ps(_mm256_loadu_ps(m + c + 8), load8(s + c + 8), _mm256_loadu_ps(z + c + 8));
      v0 = _mm256_min_ps(_mm256_max_ps(v0, lo), hi);
      v1 = _mm256_min_ps(_mm256_max_ps(v1, lo), hi);
      const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(_mm256_cvtps_epi32(v0), _mm256_cvtps_epi32(v1)), 0xD8);
      const __m128i b8 = _mm_packus_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o + c), b8);
    }
    return;
  }
#endif
  const int n = CC ? CC : C;
  for (int c = 0; c < n; ++c) {
    float v = std::min(std::max(m[c] * load(s + c) + z[c], 0.0f), 255.0f);
    o[c] = std::uint8_t(int(std::nearbyint(v)));
  }
}

template <int CC, typename In>
inline void pixel(const In* __restrict s, const float* __restrict m, const float* __restrict z,
                  std::uint16_t* __restrict o, int C) {
#ifdef FASTNST_AVX512
  if constexpr (CC > 0 && CC % 16 == 0) {
    for (int c = 0; c < CC; c += 16) {
      const __m512 v = _mm512_max_ps(_mm512_fmadd_ps(_mm512_loadu_ps(m + c), load16(s + c), _mm512_loadu_ps(z + c)),
                                     _mm512_setzero_ps());
      __m512i u = _mm512_castps_si512(v);  // round to nearest even, as to_bf16
      u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + c), _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16)));
    }
    return;
  }
#endif
  const int n = CC ? CC : C;
  for (int c = 0; c < n; ++c) o[c] = to_bf16(std::max(m[c] * load(s + c) + z[c], 0.0f));
}

// float32 = max(m*x + z, 0): the int8 network's float layer input on CPUs without bf16 units (plain
// C++, vectorised by the compiler at every ISA level).
template <int CC, typename In>
inline void pixel(const In* __restrict s, const float* __restrict m, const float* __restrict z,
                  float* __restrict o, int C) {
  const int n = CC ? CC : C;
#pragma omp simd
  for (int c = 0; c < n; ++c) {
    const float v = m[c] * load(s + c) + z[c];
    o[c] = v > 0.0f ? v : 0.0f;
  }
}

template <int CC, typename In, typename Out>
void remap_impl(const In* src, i64 sH, i64 sW, int C, int phased, const std::int32_t* rows, i64 Ho,
                const std::int32_t* cols, i64 Wo, int block, const float* m, const float* z, Out* out,
                i64 oH, i64 oW) {
  // Each output column's source offset, decoded once (the column map is the same for every row).
  std::vector<i64> col_off(Wo * block);
  for (i64 k = 0; k < Wo * block; ++k) col_off[k] = i64(cols[k] >> 1) * sW + (phased ? (cols[k] & 1) * C : 0);
  const i64* __restrict off = col_off.data();
  // Output sub-rows (row I, sub-row ap of a block) are written in pairs that read the same source row
  // (the two phases of a phase conv's output row sit side by side in memory): one read of it.
  const i64 n_sub = Ho * block;
  const i64 first = n_sub > 1 && (rows[0] >> 1) != (rows[1] >> 1) ? 1 : 0;  // sub-rows [0, first) alone
  const i64 n_pairs = (n_sub - first + 1) / 2;
#pragma omp parallel for schedule(static)
  for (i64 t = -first; t < n_pairs; ++t) {
    const i64 k0 = t < 0 ? 0 : first + 2 * t, k1 = t < 0 ? 1 : std::min(k0 + 2, n_sub);
    const In* srow[2];
    Out* orow[2];
    for (i64 k = k0; k < k1; ++k) {
      const std::int32_t rv = rows[k];
      srow[k - k0] = src + i64(rv >> 1) * sH + (phased ? 2 * (rv & 1) * C : 0);
      orow[k - k0] = out + (k / block) * oH + (k % block) * block * C;
    }
    for (i64 J = 0; J < Wo; ++J) {
      for (i64 k = 0; k < k1 - k0; ++k) {
        if (block == 1) {
          pixel<CC>(srow[k] + off[J], m, z, orow[k] + J * oW, C);
        } else {
          pixel<CC>(srow[k] + off[2 * J], m, z, orow[k] + J * oW, C);
          pixel<CC>(srow[k] + off[2 * J + 1], m, z, orow[k] + J * oW + C, C);
        }
      }
    }
  }
}

template <typename In, typename Out>
void remap(const In* src, i64 sH, i64 sW, int C, int phased, const std::int32_t* rows, i64 Ho,
           const std::int32_t* cols, i64 Wo, int block, const float* m, const float* z, Out* out, i64 oH,
           i64 oW) {
  // Channel counts known at compile time unroll the pixel loop into whole vectors.
  switch (C) {
    case 16: return remap_impl<16>(src, sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
    case 32: return remap_impl<32>(src, sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
    case 64: return remap_impl<64>(src, sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
    case 128: return remap_impl<128>(src, sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
    default: return remap_impl<0>(src, sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
  }
}

// Sums of one row's pixels j0 <= j < j1 around a value per channel (sh): s += d, q += d*d, and the
// maximum, over n channels.
template <typename In>
inline void accumulate_row(const In* __restrict row, i64 j0, i64 j1, i64 sW, const float* __restrict sh,
                           float* __restrict s, float* __restrict q, float* __restrict mx, int n) {
  for (i64 j = j0; j < j1; ++j) {
    const In* __restrict p = row + j * sW;
#pragma omp simd
    for (int c = 0; c < n; ++c) {
      const float x = load(p + c), d = x - sh[c];
      s[c] += d;
      q[c] += d * d;
      mx[c] = mx[c] < x ? x : mx[c];
    }
  }
}

// accumulate_row; a channel count known at compile time (CC) keeps the accumulators in registers.
template <int CC, typename In>
inline void row_moments(const In* __restrict row, i64 j0, i64 j1, i64 sW, const float* __restrict sh,
                        float* __restrict s, float* __restrict q, float* __restrict mx, int C) {
  if constexpr (CC > 0) {
    float ls[CC], lq[CC], lm[CC], lsh[CC];
    for (int c = 0; c < CC; ++c) ls[c] = s[c], lq[c] = q[c], lm[c] = mx[c], lsh[c] = sh[c];
    accumulate_row(row, j0, j1, sW, lsh, ls, lq, lm, CC);
    for (int c = 0; c < CC; ++c) s[c] = ls[c], q[c] = lq[c], mx[c] = lm[c];
  } else {
    accumulate_row(row, j0, j1, sW, sh, s, q, mx, C);
  }
}

template <int CC, typename In>
inline void row_max(const In* __restrict row, i64 W, i64 sW, float* __restrict mx, int C) {
  const int n = CC ? CC : C;
  for (i64 j = 0; j < W; ++j) {
    const In* __restrict p = row + j * sW;
#pragma omp simd
    for (int c = 0; c < n; ++c) {
      const float x = load(p + c);
      mx[c] = mx[c] < x ? x : mx[c];
    }
  }
}

// Per-channel mean, biased variance and maximum. Each row is summed in float32 around a value of
// its own (its middle pixel), so E[d^2] - E[d]^2 does not cancel; the rows are merged in double, in
// order (the result does not depend on the thread count).
//
// phase_channels > 0: y is a 2x2 phase conv's (h+1, w+1, 4*pc) output, phase (a, b) the channels
// [(2a+b)*pc, ...) over rows a..a+h-1 and columns b..b+w-1; mean and var pool the 4 phases (pc
// values each), the maximum is over every element of every channel (4*pc values).
template <int CC, typename In>
void stats_impl(const In* y, i64 H, i64 W, int C, i64 sH, i64 sW, int pc, int moments, float* mean_out,
                float* var_out, float* max_out) {
  std::vector<float> rmean(moments ? H * C : 0), rm2(moments ? H * C : 0), rmax(H * C);
  std::vector<float> first(C, 1.0f), last(C, 1.0f);  // weight of the first and last column per channel
  if (pc > 0) {
    for (int k = 0; k < C; ++k) {
      const int b = (k / pc) & 1;
      first[k] = b == 0 ? 1.0f : 0.0f;
      last[k] = b == 1 ? 1.0f : 0.0f;
    }
  }
  const i64 j0 = pc > 0 ? 1 : 0, j1 = pc > 0 ? W - 1 : W;  // columns every channel uses
  const float n_row = float(pc > 0 ? W - 1 : W);
#pragma omp parallel
  {
    std::vector<float> shift(C), s(C), q(C), mx(C);
#pragma omp for schedule(static)
    for (i64 i = 0; i < H; ++i) {
      const In* row = y + i * sH;
      for (int c = 0; c < C; ++c) {
        shift[c] = load(row + (W / 2) * sW + c);
        s[c] = q[c] = 0.0f;
        mx[c] = -INFINITY;
      }
      if (moments) {
        row_moments<CC>(row, j0, j1, sW, shift.data(), s.data(), q.data(), mx.data(), C);
        if (pc > 0) {  // the edge columns, each used by half the phases (but all in the maximum)
          for (int e = 0; e < 2; ++e) {
            const In* p = row + (e ? W - 1 : 0) * sW;
            const float* wgt = e ? last.data() : first.data();
            for (int c = 0; c < C; ++c) {
              const float x = load(p + c), d = (x - shift[c]) * wgt[c];
              s[c] += d;
              q[c] += d * d;
              mx[c] = std::max(mx[c], x);
            }
          }
        }
        for (int c = 0; c < C; ++c) {
          rmean[i * C + c] = shift[c] + s[c] / n_row;
          rm2[i * C + c] = std::max(q[c] - s[c] * s[c] / n_row, 0.0f);
        }
      } else {
        row_max<CC>(row, W, sW, mx.data(), C);
      }
      std::memcpy(&rmax[i * C], mx.data(), C * sizeof(float));
    }
  }
  for (int c = 0; c < C; ++c) {
    float m = -INFINITY;
    for (i64 i = 0; i < H; ++i) m = std::max(m, rmax[i * C + c]);
    max_out[c] = m;
  }
  if (!moments) return;
  const int groups = pc > 0 ? 4 : 1, out_c = pc > 0 ? pc : C;
  for (int c = 0; c < out_c; ++c) {
    double sum = 0.0, n = 0.0;
    for (int g = 0; g < groups; ++g) {
      const int k = g * out_c + c;
      const i64 r0 = pc > 0 ? (g >> 1) : 0, r1 = pc > 0 ? r0 + H - 1 : H;
      for (i64 i = r0; i < r1; ++i) sum += rmean[i * C + k];
      n += double(r1 - r0);
    }
    const double mean = sum / n;
    double m2 = 0.0;
    for (int g = 0; g < groups; ++g) {
      const int k = g * out_c + c;
      const i64 r0 = pc > 0 ? (g >> 1) : 0, r1 = pc > 0 ? r0 + H - 1 : H;
      for (i64 i = r0; i < r1; ++i) {
        const double d = rmean[i * C + k] - mean;
        m2 += rm2[i * C + k] + n_row * d * d;
      }
    }
    mean_out[c] = float(mean);
    var_out[c] = float(m2 / (n * n_row));
  }
}

template <typename In>
void stats(const In* y, i64 H, i64 W, int C, i64 sH, i64 sW, int pc, int moments, float* mean, float* var,
           float* max) {
  switch (C) {
    case 16: return stats_impl<16>(y, H, W, C, sH, sW, pc, moments, mean, var, max);
    case 32: return stats_impl<32>(y, H, W, C, sH, sW, pc, moments, mean, var, max);
    case 64: return stats_impl<64>(y, H, W, C, sH, sW, pc, moments, mean, var, max);
    case 128: return stats_impl<128>(y, H, W, C, sH, sW, pc, moments, mean, var, max);
    default: return stats_impl<0>(y, H, W, C, sH, sW, pc, moments, mean, var, max);
  }
}

// The residual stream: out = max(a*y + b, 0) (its first value) or out = r + a*y + b (a block's
// output; out may be r), with each channel's min and max over the written values.
template <int CC, bool Residual, typename In>
void stream_impl(const float* r, i64 rH, i64 rW, const In* y, i64 H, i64 W, int C, i64 sH, i64 sW,
                 const float* a, const float* b, float* out, i64 oH, i64 oW, float* lo, float* hi) {
  std::vector<float> rlo(H * C), rhi(H * C);
#pragma omp parallel for schedule(static)
  for (i64 i = 0; i < H; ++i) {
    float* __restrict pl = &rlo[i * C];
    float* __restrict ph = &rhi[i * C];
    const int n = CC ? CC : C;
    for (int c = 0; c < n; ++c) pl[c] = INFINITY, ph[c] = -INFINITY;
    for (i64 j = 0; j < W; ++j) {
      const In* __restrict p = y + i * sH + j * sW;
      float* __restrict o = out + i * oH + j * oW;
      const float* __restrict rr = r + i * rH + j * rW;
#pragma omp simd
      for (int c = 0; c < n; ++c) {
        float v = a[c] * load(p + c) + b[c];
        if constexpr (Residual) v += rr[c];
        else v = std::max(v, 0.0f);
        o[c] = v;
        pl[c] = v < pl[c] ? v : pl[c];
        ph[c] = ph[c] < v ? v : ph[c];
      }
    }
  }
  for (int c = 0; c < C; ++c) {
    float l = INFINITY, h = -INFINITY;
    for (i64 i = 0; i < H; ++i) l = std::min(l, rlo[i * C + c]), h = std::max(h, rhi[i * C + c]);
    lo[c] = l;
    hi[c] = h;
  }
}

template <bool Residual, typename In>
void stream(const float* r, i64 rH, i64 rW, const In* y, i64 H, i64 W, int C, i64 sH, i64 sW, const float* a,
            const float* b, float* out, i64 oH, i64 oW, float* lo, float* hi) {
  switch (C) {
    case 32: return stream_impl<32, Residual>(r, rH, rW, y, H, W, C, sH, sW, a, b, out, oH, oW, lo, hi);
    case 64: return stream_impl<64, Residual>(r, rH, rW, y, H, W, C, sH, sW, a, b, out, oH, oW, lo, hi);
    case 128: return stream_impl<128, Residual>(r, rH, rW, y, H, W, C, sH, sW, a, b, out, oH, oW, lo, hi);
    default: return stream_impl<0, Residual>(r, rH, rW, y, H, W, C, sH, sW, a, b, out, oH, oW, lo, hi);
  }
}

// The output image: o is the last conv's (H/2, W/2, 12) space-to-depth output (phase-major: channel
// (2a + b)*3 + rgb), out the (H, W, 3) u8 image, round(clamp(255*x, 0, 255)). The two pixels of one
// output row in one block are 6 consecutive floats of o.
void rgb_u8_impl(const float* o, i64 sH, i64 sW, i64 H, i64 W, std::uint8_t* out) {
#pragma omp parallel for schedule(static)
  for (i64 P = 0; P < H; ++P) {
    const float* srow = o + (P >> 1) * sH + 6 * (P & 1);
    std::uint8_t* orow = out + P * W * 3;
    i64 J = 0;
#ifdef FASTNST_AVX512
    const __m512 scale = _mm512_set1_ps(255.0f), lo = _mm512_setzero_ps();
    for (; 2 * J + 1 < W; ++J) {
      __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(0x3F, srow + J * sW), scale);
      v = _mm512_min_ps(_mm512_max_ps(v, lo), scale);
      const __m512i q = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm512_mask_cvtepi32_storeu_epi8(orow + 6 * J, 0x3F, q);
    }
#endif
    for (i64 k = 6 * J; k < 3 * W; ++k) {  // what is left (all of it without AVX-512)
      const float v = std::min(std::max(255.0f * srow[(k / 6) * sW + k % 6], 0.0f), 255.0f);
      orow[k] = std::uint8_t(int(std::nearbyint(v)));
    }
  }
}

// A float image (planes: channel stride sC, rows sH, columns 1) as u8 pixels (out: rows oH, 3 channels
// per pixel), round(clamp(scale*x, 0, 255)): the first conv's input from a float tensor.
void image_u8_impl(const float* x, i64 sC, i64 sH, i64 H, i64 W, float scale, std::uint8_t* out, i64 oH) {
#pragma omp parallel for schedule(static)
  for (i64 i = 0; i < H; ++i) {
    const float* r = x + i * sH;
    const float* g = r + sC;
    const float* b = g + sC;
    std::uint8_t* o = out + i * oH;
    for (i64 j = 0; j < W; ++j) {
      const float v[3] = {r[j], g[j], b[j]};
      for (int c = 0; c < 3; ++c) o[3 * j + c] = std::uint8_t(int(std::nearbyint(std::min(std::max(scale * v[c], 0.0f), 255.0f))));
    }
  }
}

// The last conv's (H/2, W/2, 12) space-to-depth output (see rgb_u8_impl) as a float (3, H, W) image,
// unclamped: the float32 path's output.
void rgb_f32_impl(const float* o, i64 sH, i64 sW, i64 H, i64 W, float* out) {
#pragma omp parallel for schedule(static)
  for (i64 P = 0; P < H; ++P) {
    const float* srow = o + (P >> 1) * sH + 6 * (P & 1);
    float* __restrict r = out + P * W;
    float* __restrict g = r + H * W;
    float* __restrict b = g + H * W;
    for (i64 Q = 0; Q < W; ++Q) {
      const float* p = srow + (Q >> 1) * sW + 3 * (Q & 1);
      r[Q] = p[0];
      g[Q] = p[1];
      b[Q] = p[2];
    }
  }
}

// A conv weight (O, I, T taps) times a per-input-channel scale, quantized to symmetric int8 with one
// scale per output channel (max |w| / 127, rounded half to even as torch.round), and the bias shift
// of a per-input-channel zero point z: scale[o] * sum over c, taps of q[o, c, t] * z[c].
// pairs: the scale is max(|w[2k, t]| + |w[2k+1, t]|) / 127 instead, so that no rounded pair of input
// channels exceeds 128 in |q|: a u8 x s8 pair summed in 16 bits (no VNNI) cannot saturate.
void quantize_weight_impl(const float* w, i64 O, i64 I, i64 T, const float* in_scale, const float* in_zero,
                          std::int8_t* q, float* scale, float* shift, bool pairs = false) {
  const i64 n = I * T;  // one output channel's weights, flat: vectorises better than loops of T taps
  std::vector<float> sx(n), v(n);
  for (i64 k = 0; k < n; ++k) sx[k] = in_scale ? in_scale[k / T] : 1.0f;
  for (i64 o = 0; o < O; ++o) {
    const float* __restrict wo = w + o * n;
    float top = 0.0f;
    for (i64 k = 0; k < n; ++k) {
      v[k] = wo[k] * sx[k];
      top = std::max(top, std::fabs(v[k]));
    }
    if (pairs) {
      for (i64 c = 0; c < I; c += 2) {
        for (i64 t = 0; t < T; ++t) {
          const float second = c + 1 < I ? std::fabs(v[(c + 1) * T + t]) : 0.0f;
          top = std::max(top, std::fabs(v[c * T + t]) + second);
        }
      }
    }
    const float sc = std::max(top / 127.0f, 1e-12f);
    std::int8_t* __restrict qo = q + o * n;
    for (i64 k = 0; k < n; ++k) {
      const float r = std::min(std::max(std::nearbyint(v[k] / sc), -127.0f), 127.0f);
      qo[k] = std::int8_t(r);
      v[k] = r;
    }
    if (in_zero) {
      float zsum = 0.0f;
      for (i64 c = 0; c < I; ++c) {
        float qsum = 0.0f;  // exact: |sum| <= 127 * T
        for (i64 t = 0; t < T; ++t) qsum += v[c * T + t];
        zsum += qsum * in_zero[c];
      }
      shift[o] = zsum * sc;
    }
    scale[o] = sc;
  }
}

}  // namespace

extern "C" {

// dtype codes: 0 = float32, 1 = bfloat16
int fastnst_abi_version() { return 2; }

// The code this build took: 2 = the AVX-512 intrinsics, 1 = AVX2 (+FMA) code from the compiler's own
// vectorisation, 0 = the baseline of the target (SSE2 on x86-64, NEON on aarch64).
int fastnst_isa_level() {
#if defined(FASTNST_AVX512)
  return 2;
#elif defined(__AVX2__) && defined(__FMA__)
  return 1;
#else
  return 0;
#endif
}

void fastnst_remap_u8(const void* src, int dtype, i64 sH, i64 sW, int C, int phased, const std::int32_t* rows,
                      i64 Ho, const std::int32_t* cols, i64 Wo, int block, const float* m, const float* z,
                      std::uint8_t* out, i64 oH, i64 oW) {
  if (dtype == 0)
    remap(static_cast<const float*>(src), sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
  else
    remap(static_cast<const std::uint16_t*>(src), sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
}

void fastnst_remap_bf16_relu(const void* src, int dtype, i64 sH, i64 sW, int C, int phased,
                             const std::int32_t* rows, i64 Ho, const std::int32_t* cols, i64 Wo, int block,
                             const float* m, const float* z, std::uint16_t* out, i64 oH, i64 oW) {
  if (dtype == 0)
    remap(static_cast<const float*>(src), sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
  else
    remap(static_cast<const std::uint16_t*>(src), sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
}

void fastnst_remap_f32_relu(const void* src, int dtype, i64 sH, i64 sW, int C, int phased,
                            const std::int32_t* rows, i64 Ho, const std::int32_t* cols, i64 Wo, int block,
                            const float* m, const float* z, float* out, i64 oH, i64 oW) {
  if (dtype == 0)
    remap(static_cast<const float*>(src), sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
  else
    remap(static_cast<const std::uint16_t*>(src), sH, sW, C, phased, rows, Ho, cols, Wo, block, m, z, out, oH, oW);
}

void fastnst_stats(const void* y, int dtype, i64 H, i64 W, int C, i64 sH, i64 sW, int phase_channels,
                   int moments, float* mean, float* var, float* max) {
  if (dtype == 0)
    stats(static_cast<const float*>(y), H, W, C, sH, sW, phase_channels, moments, mean, var, max);
  else
    stats(static_cast<const std::uint16_t*>(y), H, W, C, sH, sW, phase_channels, moments, mean, var, max);
}

void fastnst_stream(int residual, const float* r, i64 rH, i64 rW, const void* y, int dtype, i64 H, i64 W, int C,
                    i64 sH, i64 sW, const float* a, const float* b, float* out, i64 oH, i64 oW, float* lo,
                    float* hi) {
  if (dtype == 0) {
    auto p = static_cast<const float*>(y);
    if (residual) stream<true>(r, rH, rW, p, H, W, C, sH, sW, a, b, out, oH, oW, lo, hi);
    else stream<false>(r, rH, rW, p, H, W, C, sH, sW, a, b, out, oH, oW, lo, hi);
  } else {
    auto p = static_cast<const std::uint16_t*>(y);
    if (residual) stream<true>(r, rH, rW, p, H, W, C, sH, sW, a, b, out, oH, oW, lo, hi);
    else stream<false>(r, rH, rW, p, H, W, C, sH, sW, a, b, out, oH, oW, lo, hi);
  }
}

void fastnst_rgb_u8(const float* o, i64 sH, i64 sW, i64 H, i64 W, std::uint8_t* out) {
  rgb_u8_impl(o, sH, sW, H, W, out);
}

void fastnst_quantize_weight(const float* w, i64 O, i64 I, i64 T, const float* in_scale, const float* in_zero,
                             std::int8_t* q, float* scale, float* shift) {
  quantize_weight_impl(w, O, I, T, in_scale, in_zero, q, scale, shift);
}

void fastnst_quantize_weight_pairs(const float* w, i64 O, i64 I, i64 T, const float* in_scale, const float* in_zero,
                                   std::int8_t* q, float* scale, float* shift) {
  quantize_weight_impl(w, O, I, T, in_scale, in_zero, q, scale, shift, true);
}

void fastnst_image_u8(const float* x, i64 sC, i64 sH, i64 H, i64 W, float scale, std::uint8_t* out, i64 oH) {
  image_u8_impl(x, sC, sH, H, W, scale, out, oH);
}

void fastnst_rgb_f32(const float* o, i64 sH, i64 sW, i64 H, i64 W, float* out) { rgb_f32_impl(o, sH, sW, H, W, out); }

}  // extern "C"
