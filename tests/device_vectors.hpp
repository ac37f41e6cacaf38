// Copies between std::vector and thrust::device_vector for the device tests (the OMP device
// system here, the GPU when cuda/ compiles the same tests with nvcc).
#pragma once

#include <thrust/device_vector.h>
#include <thrust/host_vector.h>

#include <vector>

namespace xplor::test {

template <class T>
std::vector<T> host(const thrust::device_vector<T>& d) {
  thrust::host_vector<T> h = d;
  return std::vector<T>(h.begin(), h.end());
}

template <class T>
thrust::device_vector<T> dev(const std::vector<T>& h) {
  return thrust::device_vector<T>(h.begin(), h.end());
}

}  // namespace xplor::test
