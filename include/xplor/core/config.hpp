// xplor configuration: version, the host/device function marker and feature switches.
// Every xplor header includes this first. CMake reads the version numbers from this file, so
// they are the one source of the package version.
#pragma once

#define XPLOR_VERSION_MAJOR 0
#define XPLOR_VERSION_MINOR 1
#define XPLOR_VERSION_PATCH 0
#define XPLOR_VERSION_STRING "0.1.0"
// One number for comparisons: 10000 * major + 100 * minor + patch.
#define XPLOR_VERSION (XPLOR_VERSION_MAJOR * 10000 + XPLOR_VERSION_MINOR * 100 + XPLOR_VERSION_PATCH)

// XPLOR_HD marks the math that both backends share: callable from host code and, under nvcc,
// from device code. It expands to nothing for a plain C++ compiler.
#if defined(__CUDACC__) || defined(__HIPCC__)
#define XPLOR_HD __host__ __device__
#else
#define XPLOR_HD
#endif

// True when the CPU backend may run its loops on OpenMP threads.
#if defined(_OPENMP)
#define XPLOR_HAS_OPENMP 1
#else
#define XPLOR_HAS_OPENMP 0
#endif
