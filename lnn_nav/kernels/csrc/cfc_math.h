// Element-wise CfC math shared by the CPU and CUDA kernels (host and device).
//
// Cell equations: Hasani et al., "Closed-form continuous-time neural networks",
// Nature Machine Intelligence 2022, eq. 10 (gated), and eq. 5 (pure), in the
// torch formulation of ncps (see lnn_nav/models/cfc.py, the reference).
#pragma once

#include <math.h>

#include "cfc_layout.h"

namespace lnn_nav {

// tanh in float32 on the CPU: Eigen's odd rational minimax fit of degree
// 13/6 (Eigen/src/Core/MathFunctionsImpl.h, generic_fast_tanh_float; the same
// fit is XLA's and onnxruntime's CPU tanh). Measured over every float: within
// 4.2e-7 absolute (7 ulp) of tanh, and branch-free, so the element loops of
// the CPU kernel vectorise: glibc's tanhf is a scalar call and took half of a
// 64-unit dense step. Odd in x, so small arguments keep their relative
// accuracy. GPUs keep tanhf.
inline float tanh_rational(float x) {
  // Beyond +-7.9053, tanh rounds to +-1 in float32. Ternaries (not fminf)
  // compile to min/max instructions and let NaN through, as tanhf does.
  const float c = 7.90531110763549805f;
  x = x > c ? c : x;
  x = x < -c ? -c : x;
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 - 8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

// Overloads that exist both in host C and in CUDA device code.
LNN_HD inline float m_tanh(float x) {
#if defined(__CUDA_ARCH__)
  return tanhf(x);
#else
  return tanh_rational(x);
#endif
}
LNN_HD inline double m_tanh(double x) { return tanh(x); }
LNN_HD inline float m_exp(float x) { return expf(x); }
LNN_HD inline double m_exp(double x) { return exp(x); }
LNN_HD inline float m_erf(float x) { return erff(x); }
LNN_HD inline double m_erf(double x) { return erf(x); }
LNN_HD inline float m_abs(float x) { return fabsf(x); }
LNN_HD inline double m_abs(double x) { return fabs(x); }

template <typename T>
LNN_HD inline T m_sigmoid(T x) {
  return T(1) / (T(1) + m_exp(-x));
}

// float32 on the CPU: sigmoid(x) = (1 + tanh(x / 2)) / 2 through the rational
// tanh, which vectorises (expf does not); within 2.2e-7 absolute.
LNN_HD inline float m_sigmoid(float x) {
#if defined(__CUDA_ARCH__)
  return 1.0f / (1.0f + expf(-x));
#else
  return 0.5f + 0.5f * tanh_rational(0.5f * x);
#endif
}

template <typename T>
LNN_HD inline T m_sign(T x) {
  return static_cast<T>((x > T(0)) - (x < T(0)));
}

// Backbone activation. 0.666 (not 2/3) matches ncps' LeCun tanh.
template <typename T>
LNN_HD inline T act_fwd(int act, T u) {
  switch (act) {
    case kLecunTanh: return T(1.7159) * m_tanh(T(0.666) * u);
    case kTanh: return m_tanh(u);
    case kRelu: return u > T(0) ? u : T(0);
    case kSilu: return u * m_sigmoid(u);
    default: return T(0.5) * u * (T(1) + m_erf(u * T(0.70710678118654752440)));  // exact GELU
  }
}

// d act / d u, given the pre-activation u and the activation z = act(u).
template <typename T>
LNN_HD inline T act_grad(int act, T u, T z) {
  switch (act) {
    case kLecunTanh: {
      const T t = m_tanh(T(0.666) * u);
      return T(1.7159) * T(0.666) * (T(1) - t * t);
    }
    case kTanh: return T(1) - z * z;
    case kRelu: return z > T(0) ? T(1) : T(0);
    case kSilu: {
      const T s = m_sigmoid(u);
      return s * (T(1) + u * (T(1) - s));
    }
    default: {
      const T cdf = T(0.5) * (T(1) + m_erf(u * T(0.70710678118654752440)));
      return cdf + u * m_exp(T(-0.5) * u * u) * T(0.39894228040143267794);
    }
  }
}

// New state of neuron k from the head pre-activations `pre` (H*n, heads side by side).
template <typename T>
LNN_HD inline T cell_fwd(int mode, const T* pre, int n, int k, T ts, T A, T w_tau) {
  if (mode == kPure) {
    const T f = pre[k];
    return -A * m_exp(-ts * (m_abs(w_tau) + m_abs(f))) * f + A;
  }
  const T ff1 = m_tanh(pre[k]);
  const T ff2 = m_tanh(pre[n + k]);
  const T ti = m_sigmoid(pre[2 * n + k] * ts + pre[3 * n + k]);
  if (mode == kNoGate) return ff1 + ti * ff2;
  return ff1 * (T(1) - ti) + ti * ff2;
}

// Backward of cell_fwd for neuron k: writes dpre for its heads; returns d/d ts.
// gA and gw (pure mode) receive this neuron's parameter gradients.
template <typename T>
LNN_HD inline T cell_bwd(int mode, const T* pre, int n, int k, T ts, T g, T A, T w_tau,
                         T* dpre, T* gA, T* gw) {
  if (mode == kPure) {
    const T f = pre[k];
    const T af = m_abs(f);
    const T aw = m_abs(w_tau);
    const T e = m_exp(-ts * (aw + af));
    // d/df [e f] = e (1 - ts |f|), since d|f|/df = sign(f) and f sign(f) = |f|.
    dpre[k] = -g * A * e * (T(1) - ts * af);
    *gA = g * (T(1) - e * f);
    *gw = g * A * f * e * ts * m_sign(w_tau);
    return g * A * f * e * (aw + af);
  }
  const T ff1 = m_tanh(pre[k]);
  const T ff2 = m_tanh(pre[n + k]);
  const T a = pre[2 * n + k];
  const T ti = m_sigmoid(a * ts + pre[3 * n + k]);
  T gff1, gti;
  if (mode == kNoGate) {
    gff1 = g;
    gti = g * ff2;
  } else {
    gff1 = g * (T(1) - ti);
    gti = g * (ff2 - ff1);
  }
  const T gff2 = g * ti;
  const T gsig = gti * ti * (T(1) - ti);
  dpre[k] = gff1 * (T(1) - ff1 * ff1);
  dpre[n + k] = gff2 * (T(1) - ff2 * ff2);
  dpre[2 * n + k] = gsig * ts;
  dpre[3 * n + k] = gsig;
  *gA = T(0);
  *gw = T(0);
  return gsig * a;
}

}  // namespace lnn_nav
