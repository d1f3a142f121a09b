#include "attach/target_write.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/error.hpp"
#include "common/procfs.hpp"

namespace gilstat::attach {
namespace {

// Writes all of `bytes` to fd, at `offset` (pwrite) or, with -1, at the file
// position.  0 when done, the errno otherwise, -1 when the kernel wrote
// nothing without an error (past the end of a mapping).
int write_all(int fd, std::span<const std::byte> bytes, off_t offset) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = offset < 0 ? ::write(fd, bytes.data() + done, bytes.size() - done)
                                 : pwrite(fd, bytes.data() + done, bytes.size() - done,
                                          offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return -1;
    done += static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace

TargetMemoryWriter::~TargetMemoryWriter() {
  if (fd_ >= 0) close(fd_);
}

void TargetMemoryWriter::write(RemoteAddr addr, std::span<const std::byte> bytes) {
  if (fd_ < 0) {
    fd_ = procfs::open_mem(pid_, O_RDWR);
    if (fd_ < 0) {
      throw Error(
          fmt::format("cannot open {}: {}", procfs::path(pid_, "mem"), std::strerror(errno)));
    }
  }
  if (const int e = write_all(fd_, bytes, static_cast<off_t>(addr.value())))
    throw Error(fmt::format("cannot write {} bytes at {} in process {}: {}", bytes.size(),
                            to_string(addr), pid_, e < 0 ? "short write" : std::strerror(e)));
}

bool write_running_target(pid_t pid, RemoteAddr addr, std::span<const std::byte> bytes) {
  iovec local{const_cast<std::byte*>(bytes.data()), bytes.size()};
  iovec remote{reinterpret_cast<void*>(addr.value()), bytes.size()};
  const ssize_t n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
  if (n == static_cast<ssize_t>(bytes.size())) return true;
  if (n >= 0 || errno == EFAULT || errno == ESRCH) return false;
  // EPERM/ENOSYS (seccomp, old kernels): /proc/PID/mem writes through the
  // same ptrace-access check.
  const int fd = procfs::open_mem(pid, O_WRONLY);
  if (fd < 0) return false;
  const ssize_t w = pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(addr.value()));
  close(fd);
  return w == static_cast<ssize_t>(bytes.size());
}

void write_target_fd(pid_t pid, int fd, std::span<const std::byte> bytes) {
  const std::string ours = procfs::path(pid, fmt::format("fd/{}", fd));
  int local = open(ours.c_str(), O_WRONLY | O_CLOEXEC);
  if (local < 0) throw Error(fmt::format("cannot open {}: {}", ours, std::strerror(errno)));
  const int e = write_all(local, bytes, -1);
  close(local);
  if (e)
    throw Error(fmt::format("cannot write {}: {}", ours, e < 0 ? "short write" : std::strerror(e)));
}

}  // namespace gilstat::attach
