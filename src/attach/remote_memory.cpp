#include "attach/remote_memory.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/procfs.hpp"

namespace gilstat::attach {

std::string to_string(RemoteAddr addr) { return fmt::format("{:#x}", addr.value()); }

std::optional<std::string> RemoteMemory::read_cstring(RemoteAddr addr, size_t max_length) const {
  // Chunks never cross a page boundary, so a string ending just before an
  // unmapped page is still readable.
  constexpr uint64_t kPage = 4096;
  std::string result;
  while (result.size() < max_length) {
    const uint64_t here = addr.value() + result.size();
    size_t chunk = std::min<uint64_t>(kPage - here % kPage, max_length - result.size());
    char buffer[kPage];
    if (!read(RemoteAddr(here), std::as_writable_bytes(std::span(buffer, chunk)))) {
      // Memory that is readable at a finer grain than pages (a fake, a
      // region boundary): go byte by byte for this chunk.
      if (chunk == 1 || !read(RemoteAddr(here), std::as_writable_bytes(std::span(buffer, 1)))) {
        return std::nullopt;
      }
      chunk = 1;
    }
    const void* nul = std::memchr(buffer, 0, chunk);
    if (nul) {
      result.append(buffer, static_cast<const char*>(nul) - buffer);
      return result;
    }
    result.append(buffer, chunk);
  }
  return std::nullopt;
}

LiveRemoteMemory::LiveRemoteMemory(pid_t pid, bool force_proc_mem)
    : pid_(pid), force_proc_mem_(force_proc_mem) {}

LiveRemoteMemory::~LiveRemoteMemory() {
  if (mem_fd_ >= 0) close(mem_fd_);
}

bool LiveRemoteMemory::read(RemoteAddr addr, std::span<std::byte> out) const {
  if (out.empty()) return true;
  if (!force_proc_mem_) {
    iovec local{out.data(), out.size()};
    iovec remote{reinterpret_cast<void*>(addr.value()), out.size()};
    ssize_t n = process_vm_readv(pid_, &local, 1, &remote, 1, 0);
    if (n == static_cast<ssize_t>(out.size())) return true;
    if (n >= 0) {
      errno = EFAULT;  // partial read: the tail is unmapped
      return false;
    }
    if (errno == EFAULT || errno == ESRCH) return false;
    // EPERM/ENOSYS (seccomp, old kernels): try /proc/PID/mem.
  }
  return read_proc_mem(addr, out);
}

bool LiveRemoteMemory::read_proc_mem(RemoteAddr addr, std::span<std::byte> out) const {
  if (mem_fd_ < 0) {
    mem_fd_ = procfs::open_mem(pid_, O_RDONLY);
    if (mem_fd_ < 0) return false;
  }
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = pread(mem_fd_, out.data() + done, out.size() - done,
                      static_cast<off_t>(addr.value() + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EFAULT;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

void FakeRemoteMemory::add_region(RemoteAddr start, std::vector<std::byte> bytes) {
  regions_[start.value()] = std::move(bytes);
}

bool FakeRemoteMemory::read(RemoteAddr addr, std::span<std::byte> out) const {
  uint64_t at = addr.value();
  size_t done = 0;
  while (done < out.size()) {
    auto it = regions_.upper_bound(at);
    if (it == regions_.begin()) break;
    --it;
    const uint64_t offset = at - it->first;
    if (offset >= it->second.size()) break;
    const size_t n = std::min<size_t>(it->second.size() - offset, out.size() - done);
    std::memcpy(out.data() + done, it->second.data() + offset, n);
    done += n;
    at += n;
  }
  if (done == out.size()) return true;
  errno = EFAULT;
  return false;
}

}  // namespace gilstat::attach
