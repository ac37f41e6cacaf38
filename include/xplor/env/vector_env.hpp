// M environments stepped together (GEM make_vec): sub-environment i is reset with seed s + i;
// finished episodes reset automatically (same-step by default, as GEM's code; next-step as an
// option); steps run serially or on a pool of worker threads, with results identical for a fixed
// seed whatever the thread count (each environment is stepped by one thread, results by index).
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/env/env.hpp"

namespace xplor::env {

/// GEM AutoresetMode. same_step: a finished environment is reset inside the same step; the step
/// returns the new episode's first observation, and info["final_observation"] holds the last
/// one. next_step: the step returns the final observation; the next step resets the environment
/// (its action is ignored) and returns the first observation with reward 0.
enum class autoreset_mode { same_step, next_step };

struct vector_options {
  autoreset_mode autoreset = autoreset_mode::same_step;
  int threads = 1;  // worker threads for step/reset (1: serial in the caller's thread)
};

struct vector_reset_result {
  std::vector<std::string> observations = {};
  std::vector<info_map> infos = {};
};

struct vector_step_result {
  std::vector<std::string> observations = {};
  std::vector<float> rewards = {};
  std::vector<std::uint8_t> terminated, truncated;
  std::vector<info_map> infos = {};
};

namespace detail {
/// A fixed pool of worker threads running parallel_for over indices; the calling thread waits.
class thread_pool {
 public:
  explicit thread_pool(int threads) {
    for (int t = 1; t < threads; ++t) workers_.emplace_back([this] { work(); });
  }
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// Runs f(i) for i in [0, n) on the pool and the calling thread; rethrows the first exception.
  /// Threads take chunks of consecutive indices from an atomic counter (about 8 chunks per
  /// thread), so that cheap items do not serialise on the mutex.
  void parallel_for(std::int64_t n, const std::function<void(std::int64_t)>& f) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &f;
      next_.store(0, std::memory_order_relaxed);
      failed_.store(false, std::memory_order_relaxed);
      total_ = n;
      chunk_ = std::max<std::int64_t>(1, n / (8 * static_cast<std::int64_t>(workers_.size() + 1)));
      pending_ = static_cast<int>(workers_.size());
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    run_items();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Reads job_, total_ and chunk_ without the lock: they were written under it before this
  // generation started, and do not change until every thread has finished it.
  void run_items() {
    const std::function<void(std::int64_t)>& job = *job_;
    for (;;) {
      if (failed_.load(std::memory_order_relaxed)) return;
      const std::int64_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
      if (begin >= total_) return;
      const std::int64_t end = std::min(begin + chunk_, total_);
      try {
        for (std::int64_t i = begin; i < end; ++i) job(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
        failed_.store(true, std::memory_order_relaxed);
      }
    }
  }
  void work() {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      run_items();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --pending_;
      }
      done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(std::int64_t)>* job_ = nullptr;
  std::atomic<std::int64_t> next_{0};
  std::atomic<bool> failed_{false};
  std::int64_t total_ = 0, chunk_ = 1;
  int pending_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};
}  // namespace detail

class vector_env {
 public:
  vector_env(std::vector<std::unique_ptr<environment>> envs, const vector_options& options = {})
      : envs_(std::move(envs)), options_(options), episode_(envs_.size(), 0), needs_reset_(envs_.size(), 0) {
    constexpr const char* fn = "xplor::env::vector_env";
    xplor::detail::require(!envs_.empty(), fn, "no environments");
    for (std::size_t i = 0; i < envs_.size(); ++i)
      xplor::detail::require(envs_[i] != nullptr, fn, "environment ", i, " is null");
    xplor::detail::require(options.threads >= 1, fn, "threads = ", options.threads, " must be >= 1");
    if (options.threads > 1) pool_ = std::make_unique<detail::thread_pool>(options.threads);
  }

  /// `copies` clones of `prototype`.
  static vector_env of(const environment& prototype, int copies, const vector_options& options = {}) {
    xplor::detail::require(copies > 0, "xplor::env::vector_env::of", "copies = ", copies,
                           " must be positive");
    std::vector<std::unique_ptr<environment>> envs;
    for (int i = 0; i < copies; ++i) envs.push_back(prototype.clone());
    return vector_env(std::move(envs), options);
  }

  std::size_t size() const { return envs_.size(); }
  environment& at(std::size_t i) { return *envs_.at(i); }

  /// Resets every environment: sub-environment i gets seed + i.
  vector_reset_result reset(std::uint64_t seed) {
    seed_ = seed;
    vector_reset_result out;
    out.observations.resize(size());
    out.infos.resize(size());
    run(static_cast<std::int64_t>(size()), [&](std::int64_t i) {
      episode_[i] = 0;
      needs_reset_[i] = 0;
      auto r = envs_[i]->reset(episode_seed(seed_, static_cast<std::uint64_t>(i), 0));
      out.observations[i] = std::move(r.observation);
      out.infos[i] = std::move(r.info);
    });
    started_ = true;
    return out;
  }

  /// Steps environment i with actions[i]; finished episodes reset as options().autoreset says.
  vector_step_result step(std::span<const std::string> actions) {
    constexpr const char* fn = "xplor::env::vector_env::step";
    xplor::detail::require(started_, fn, "step() before reset()");
    xplor::detail::require(actions.size() == size(), fn, "actions has ", actions.size(), " elements for ",
                           size(), " environments");
    vector_step_result out;
    out.observations.resize(size());
    out.rewards.assign(size(), 0.0f);
    out.terminated.assign(size(), 0);
    out.truncated.assign(size(), 0);
    out.infos.resize(size());
    run(static_cast<std::int64_t>(size()), [&](std::int64_t i) {
      if (needs_reset_[i]) {  // next_step autoreset: this step only resets
        needs_reset_[i] = 0;
        auto r = envs_[i]->reset(episode_seed(seed_, static_cast<std::uint64_t>(i), ++episode_[i]));
        out.observations[i] = std::move(r.observation);
        out.infos[i] = std::move(r.info);
        return;
      }
      step_result r = envs_[i]->step(actions[i]);
      out.rewards[i] = r.reward;
      out.terminated[i] = r.terminated;
      out.truncated[i] = r.truncated;
      if ((r.terminated || r.truncated) && options_.autoreset == autoreset_mode::same_step) {
        r.info["final_observation"] = std::move(r.observation);
        auto fresh = envs_[i]->reset(episode_seed(seed_, static_cast<std::uint64_t>(i), ++episode_[i]));
        out.observations[i] = std::move(fresh.observation);
        for (auto& [k, v] : fresh.info) r.info.insert_or_assign("reset." + k, std::move(v));
      } else {
        out.observations[i] = std::move(r.observation);
        needs_reset_[i] = r.terminated || r.truncated;
      }
      out.infos[i] = std::move(r.info);
    });
    return out;
  }

  const vector_options& options() const { return options_; }

 private:
  void run(std::int64_t n, const std::function<void(std::int64_t)>& f) {
    if (pool_)
      pool_->parallel_for(n, f);
    else
      for (std::int64_t i = 0; i < n; ++i) f(i);
  }

  std::vector<std::unique_ptr<environment>> envs_;
  vector_options options_;
  std::vector<std::uint64_t> episode_;
  std::vector<std::uint8_t> needs_reset_;
  std::unique_ptr<detail::thread_pool> pool_;
  std::uint64_t seed_ = 0;
  bool started_ = false;
};

}  // namespace xplor::env
