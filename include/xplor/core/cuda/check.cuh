// CUDA glue shared by xplor's GPU kernels (nvcc only): every CUDA runtime and cuBLAS call is
// checked and turned into xplor::error naming the call and the library's own error string, and
// device memory is owned by a small RAII buffer. Nothing here runs unless a kernel header uses it.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "xplor/core/error.hpp"

namespace xplor::gpu {

/// Throws xplor::error("<what>: <CUDA error name>: <message>") unless `status` is cudaSuccess.
inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    xplor::detail::fail(what, cudaGetErrorName(status), ": ", cudaGetErrorString(status));
}
/// The same for cuBLAS status codes.
inline void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    xplor::detail::fail(what, "cuBLAS status ", static_cast<int>(status), " (", cublasGetStatusString(status),
                        ")");
}
/// After a kernel launch: the launch error (bad configuration) at once.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

/// Device memory for n elements of T (uninitialised), freed on destruction; move-only.
template <class T>
class buffer {
 public:
  buffer() = default;
  explicit buffer(std::size_t n) { resize(n); }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  buffer(buffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  buffer& operator=(buffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~buffer() { release(); }

  /// Reallocates (contents lost) when n differs from the current size.
  void resize(std::size_t n) {
    if (n == n_) return;
    release();
    if (n > 0) check_cuda(cudaMalloc(reinterpret_cast<void**>(&p_), n * sizeof(T)), "cudaMalloc");
    n_ = n;
  }
  void zero(cudaStream_t s = nullptr) {
    if (n_ > 0) check_cuda(cudaMemsetAsync(p_, 0, n_ * sizeof(T), s), "cudaMemsetAsync");
  }
  void upload(const T* host, std::size_t n) {
    resize(n);
    if (n > 0)
      check_cuda(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy(host to device)");
  }
  void download(T* host, std::size_t n) const {
    xplor::detail::require(n <= n_, "xplor::gpu::buffer::download", "asked for ", n, " elements of ", n_);
    if (n > 0)
      check_cuda(cudaMemcpy(host, p_, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy(device to host)");
  }
  T* data() const { return p_; }
  std::size_t size() const { return n_; }

 private:
  void release() noexcept {
    if (p_ != nullptr) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

/// Blocks of `threads` covering n items, capped (grid-stride loops do the rest).
inline unsigned grid_for(std::int64_t n, int threads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

}  // namespace xplor::gpu
