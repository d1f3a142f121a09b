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
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = pwrite(fd_, bytes.data() + done, bytes.size() - done,
                       static_cast<off_t>(addr.value() + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw Error(fmt::format("cannot write {} bytes at {} in process {}: {}", bytes.size(),
                              to_string(addr), pid_,
                              n == 0 ? "short write" : std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
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
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(local, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      close(local);
      throw Error(fmt::format("cannot write {}: {}", ours, std::strerror(e)));
    }
    done += static_cast<size_t>(n);
  }
  close(local);
}

}  // namespace gilstat::attach
