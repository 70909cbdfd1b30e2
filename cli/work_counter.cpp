#include "cli/work_counter.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "samoyeds/error.hpp"

namespace samoyeds::cli {
namespace {

[[noreturn]] void fail(const std::string& path, const char* what) {
  throw Error(ErrorCode::IoError, "work counter '" + path + "': " + what + ": " + std::strerror(errno));
}

// Closes the descriptor (and so drops its lock) however the call ends.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

void WorkCounter::create(const std::string& path) {
  Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644)};
  if (f.fd < 0) fail(path, "create");
  if (::write(f.fd, "0\n", 2) != 2) fail(path, "write");
}

int64_t WorkCounter::next() const {
  Fd f{::open(path_.c_str(), O_RDWR)};
  if (f.fd < 0) fail(path_, "open");
  while (::flock(f.fd, LOCK_EX) != 0)
    if (errno != EINTR) fail(path_, "lock");
  char buf[32] = {};
  const ssize_t n = ::pread(f.fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) fail(path_, "read");
  const int64_t value = std::strtoll(buf, nullptr, 10);
  const std::string text = std::to_string(value + 1) + "\n";
  if (::pwrite(f.fd, text.data(), text.size(), 0) != ssize_t(text.size())) fail(path_, "write");
  return value;  // the lock goes with the descriptor
}

}  // namespace samoyeds::cli
