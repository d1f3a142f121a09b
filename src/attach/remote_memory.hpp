// Memory of another process, behind an interface: a live implementation
// (process_vm_readv, falling back to /proc/PID/mem) and a fake one for unit
// tests of code that walks remote structures.  Addresses inside the target are
// RemoteAddr values, never pointers.  Depends only on the standard library.
#pragma once

#include <sys/types.h>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace gilstat::attach {

// An address in another process's address space.
class RemoteAddr {
 public:
  constexpr RemoteAddr() = default;
  constexpr explicit RemoteAddr(uint64_t value) : value_(value) {}
  constexpr uint64_t value() const { return value_; }
  constexpr bool is_null() const { return value_ == 0; }
  // Modular, as the target's own pointer arithmetic is (a load bias plus a
  // symbol value wraps exactly as the loader's does).
  constexpr RemoteAddr operator+(uint64_t offset) const { return RemoteAddr(value_ + offset); }
  constexpr RemoteAddr operator-(uint64_t offset) const { return RemoteAddr(value_ - offset); }
  constexpr uint64_t operator-(RemoteAddr other) const { return value_ - other.value_; }
  friend constexpr auto operator<=>(RemoteAddr, RemoteAddr) = default;

 private:
  uint64_t value_ = 0;
};

std::string to_string(RemoteAddr addr);  // "0x7f12..."

class RemoteMemory {
 public:
  virtual ~RemoteMemory() = default;
  // Fills `out` with the bytes at [addr, addr + out.size()).  All or nothing:
  // false (errno set) when any byte is unreadable.
  [[nodiscard]] virtual bool read(RemoteAddr addr, std::span<std::byte> out) const = 0;

  template <class T>
  std::optional<T> read_value(RemoteAddr addr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    if (!read(addr, std::as_writable_bytes(std::span(&value, 1)))) return std::nullopt;
    return value;
  }
  // The NUL-terminated string at addr, at most max_length bytes long; nullopt
  // when unreadable or unterminated within max_length.
  std::optional<std::string> read_cstring(RemoteAddr addr, size_t max_length) const;
};

// Reads a live process.  process_vm_readv first (one syscall, no file
// descriptor); /proc/PID/mem when that is refused (e.g. seccomp filters that
// allow ptrace but not process_vm_readv) or for `force_proc_mem`.
class LiveRemoteMemory : public RemoteMemory {
 public:
  explicit LiveRemoteMemory(pid_t pid, bool force_proc_mem = false);
  ~LiveRemoteMemory() override;
  LiveRemoteMemory(const LiveRemoteMemory&) = delete;
  LiveRemoteMemory& operator=(const LiveRemoteMemory&) = delete;

  bool read(RemoteAddr addr, std::span<std::byte> out) const override;
  pid_t pid() const { return pid_; }

 private:
  bool read_proc_mem(RemoteAddr addr, std::span<std::byte> out) const;

  pid_t pid_;
  bool force_proc_mem_;
  mutable int mem_fd_ = -1;
};

// A process image made of byte regions, for unit tests.
class FakeRemoteMemory : public RemoteMemory {
 public:
  void add_region(RemoteAddr start, std::vector<std::byte> bytes);
  bool read(RemoteAddr addr, std::span<std::byte> out) const override;

 private:
  std::map<uint64_t, std::vector<std::byte>> regions_;
};

}  // namespace gilstat::attach
