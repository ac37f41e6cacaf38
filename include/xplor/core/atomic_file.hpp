// Atomic file replacement: write everything to a temp file in the target's directory, flush,
// fsync, then rename over the target. A reader (or a crash) sees either the old file or the
// complete new one, never a half-written file. A process killed mid-write leaves its temp file
// behind; the next writer of the same target (or a loader) removes such debris of dead processes.
// Used by the safetensors writer (checkpoints) and the DeepSearch solution cache.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>

#include "xplor/core/error.hpp"

namespace xplor {

/// Removes the temp files "<target>.tmp.<pid>.<n>" that atomic_file_writer left for `target`
/// when a process was killed mid-write: those whose pid is not a running process (a live
/// writer's file is never touched). Best effort, never throws; returns how many it removed.
inline int remove_stale_temp_files(const std::filesystem::path& target) {
  std::error_code ec;
  const std::filesystem::path dir = target.parent_path().empty() ? "." : target.parent_path();
  const std::string prefix = target.filename().string() + ".tmp.";
  int removed = 0;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
    // "<pid>.<n>", digits only.
    const std::string_view rest = std::string_view(name).substr(prefix.size());
    const std::size_t dot = rest.find('.');
    long pid = 0;
    unsigned long long n = 0;
    if (dot == std::string_view::npos) continue;
    const auto p = std::from_chars(rest.data(), rest.data() + dot, pid);
    const auto q = std::from_chars(rest.data() + dot + 1, rest.data() + rest.size(), n);
    if (p.ec != std::errc() || p.ptr != rest.data() + dot || q.ec != std::errc() ||
        q.ptr != rest.data() + rest.size() || pid <= 0 || pid == ::getpid())
      continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to ask
    std::error_code remove_error;
    removed += std::filesystem::remove(it->path(), remove_error) ? 1 : 0;
  }
  return removed;
}

/// Writes a file atomically. Construct, write(), then commit(); destroying an uncommitted writer
/// removes the temp file and leaves the target untouched. Every I/O failure throws xplor::error
/// prefixed with `fn` (the calling function's name) and naming the file and the errno text.
class atomic_file_writer {
 public:
  atomic_file_writer(std::filesystem::path target, const char* fn) : target_(std::move(target)), fn_(fn) {
    remove_stale_temp_files(target_);
    static std::atomic<unsigned> counter{0};
    tmp_ = target_;
    tmp_ += ".tmp.";
    tmp_ += std::to_string(::getpid());
    tmp_ += ".";
    tmp_ += std::to_string(counter.fetch_add(1));
    file_.reset(std::fopen(tmp_.c_str(), "wb"));
    if (!file_) fail_errno("create", errno);
  }
  atomic_file_writer(const atomic_file_writer&) = delete;
  atomic_file_writer& operator=(const atomic_file_writer&) = delete;
  ~atomic_file_writer() {
    file_.reset();
    std::error_code ignored;
    if (!committed_) std::filesystem::remove(tmp_, ignored);
  }

  /// The temp file's handle, for writers that stream through stdio themselves; report their
  /// failures with check().
  std::FILE* handle() const { return file_.get(); }
  void write(const void* data, std::size_t bytes) {
    check(bytes == 0 || std::fwrite(data, 1, bytes, file_.get()) == bytes, "write");
  }
  void write(const std::string& s) { write(s.data(), s.size()); }
  /// Throws (reading errno first) when `ok` is false: "cannot <what> '<temp file>': <errno text>".
  void check(bool ok, const char* what) {
    if (!ok) fail_errno(what, errno);
  }
  /// Flushes, fsyncs and renames the temp file over the target, then makes the rename durable.
  void commit() {
    check(std::fflush(file_.get()) == 0, "write");
    check(::fsync(::fileno(file_.get())) == 0, "fsync");
    check(std::fclose(file_.release()) == 0, "close");
    std::error_code rename_error;
    std::filesystem::rename(tmp_, target_, rename_error);
    if (rename_error)
      detail::fail(fn_, "cannot rename '", tmp_.string(), "' to '", target_.string(),
                   "': ", rename_error.message());
    committed_ = true;
    sync_directory(target_.parent_path());
  }

 private:
  struct closer {
    void operator()(std::FILE* f) const {
      if (f != nullptr) std::fclose(f);
    }
  };
  [[noreturn]] void fail_errno(const char* what, int code) {
    file_.reset();
    detail::fail(fn_, "cannot ", what, " '", tmp_.string(), "': ", std::generic_category().message(code));
  }
  /// Best effort: makes a rename in `dir` durable.
  static void sync_directory(const std::filesystem::path& dir) {
    const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    (void)::fsync(fd);
    (void)::close(fd);
  }

  std::filesystem::path target_, tmp_;
  const char* fn_;
  std::unique_ptr<std::FILE, closer> file_;
  bool committed_ = false;
};

}  // namespace xplor
