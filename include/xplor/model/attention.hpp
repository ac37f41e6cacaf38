// Causal softmax attention of one (sequence, head) on the CPU, forward and backward, shared by
// the reference transformer and Thoughtbubbles' attention over streams (bubble/attention.hpp), so
// that both compute the same bits from the same q, k and v. Templated on the scalar so that the
// bubble tests can check gradients in double.
//
// Every product is evaluated into Eigen's own (aligned) storage and then copied out: Eigen may
// pick its kernel by the destination's alignment (seen in double at small sizes), so writing
// straight into a slice of a buffer could make a head's bits depend on where the slice started.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace xplor::model::attention {

template <class T>
using row_matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using strided = Eigen::Map<row_matrix<T>, 0, Eigen::OuterStride<>>;
template <class T>
using const_strided = Eigen::Map<const row_matrix<T>, 0, Eigen::OuterStride<>>;

/// P [n, n] = softmax(q k^T / sqrt(D)) over j <= i (0 above the diagonal) and y = P v, for q, k,
/// v [n, D] with row stride ld and y [n, D] with row stride ldy.
template <class T>
void head_forward(const T* q, const T* k, const T* v, std::int64_t ld, std::int64_t n, std::int64_t D, T* P,
                  T* y, std::int64_t ldy) {
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
  const Eigen::OuterStride<> s(ld);
  const const_strided<T> qm(q, n, D, s), km(k, n, D, s), vm(v, n, D, s);
  Eigen::Map<row_matrix<T>> Pm(P, n, n);
  Pm = row_matrix<T>((qm * km.transpose()) * scale);
  for (std::int64_t i = 0; i < n; ++i) {
    T* row = P + i * n;
    T m = -std::numeric_limits<T>::infinity();
    for (std::int64_t j = 0; j <= i; ++j) m = std::max(m, row[j]);
    T sum = T(0);
    for (std::int64_t j = 0; j <= i; ++j) {
      row[j] = std::exp(row[j] - m);
      sum += row[j];
    }
    const T inv = T(1) / sum;
    for (std::int64_t j = 0; j <= i; ++j) row[j] *= inv;
    for (std::int64_t j = i + 1; j < n; ++j) row[j] = T(0);
  }
  strided<T> ym(y, n, D, Eigen::OuterStride<>(ldy));
  ym = row_matrix<T>(Pm * vm);
}

/// Backward of head_forward: dP = dy v^T, dv = P^T dy, dS = P (dP - rowsum(P dP)) / sqrt(D),
/// dq = dS k, dk = dS^T q. Writes (not adds) dq, dk, dv [n, D] with row stride ldd; dP [n, n] is
/// scratch.
template <class T>
void head_backward(const T* q, const T* k, const T* v, std::int64_t ld, const T* P, const T* dy,
                   std::int64_t ldy, std::int64_t n, std::int64_t D, T* dP, T* dq, T* dk, T* dv,
                   std::int64_t ldd) {
  const T scale = T(1) / std::sqrt(static_cast<T>(D));
  const Eigen::OuterStride<> s(ld), sd(ldd);
  const const_strided<T> qm(q, n, D, s), km(k, n, D, s), vm(v, n, D, s);
  strided<T> dqm(dq, n, D, sd), dkm(dk, n, D, sd), dvm(dv, n, D, sd);
  const const_strided<T> dym(dy, n, D, Eigen::OuterStride<>(ldy));
  const Eigen::Map<const row_matrix<T>> Pm(P, n, n);
  Eigen::Map<row_matrix<T>> dPm(dP, n, n);
  dPm = row_matrix<T>(dym * vm.transpose());
  dvm = row_matrix<T>(Pm.transpose() * dym);
  for (std::int64_t i = 0; i < n; ++i) {
    const T* pr = P + i * n;
    T* dr = dP + i * n;
    T dot = T(0);
    for (std::int64_t j = 0; j <= i; ++j) dot += pr[j] * dr[j];
    for (std::int64_t j = 0; j < n; ++j) dr[j] = j <= i ? pr[j] * (dr[j] - dot) * scale : T(0);
  }
  dqm = row_matrix<T>(dPm * km);
  dkm = row_matrix<T>(dPm.transpose() * qm);
}

}  // namespace xplor::model::attention
