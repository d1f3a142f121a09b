#include "attach/injector.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "common/error.hpp"

namespace gilstat::attach {

namespace {

constexpr size_t kPage = 4096;
// Cleanup after an error gets its own budget: the caller's deadline may be
// what ran out.
constexpr auto kCleanupBudget = std::chrono::seconds(1);

constexpr uint64_t kFlagTrap = 1 << 8;
constexpr uint64_t kFlagDirection = 1 << 10;
constexpr uint64_t kFlagAlignmentCheck = 1 << 18;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

bool is_error_return(int64_t value) { return value < 0 && value > -4096; }

}  // namespace

std::optional<RemoteAddr> find_syscall_instruction(const RemoteMemory& memory,
                                                   const ProcessMaps& maps,
                                                   const std::string& object_path) {
  constexpr size_t kChunk = 64 * 1024;
  std::vector<std::byte> buffer(kChunk + 1);
  for (const MapEntry* m : maps.mappings_of(object_path)) {
    if (!m->executable || !m->readable) continue;
    for (RemoteAddr at = m->start; at < m->end; at = at + kChunk) {
      // One byte of overlap so an instruction straddling chunks is found.
      const size_t n = std::min<uint64_t>(kChunk + 1, m->end - at);
      if (n < 2 || !memory.read(at, std::span(buffer.data(), n))) break;
      for (size_t i = 0; i + 1 < n; ++i) {
        if (buffer[i] == std::byte{0x0f} && buffer[i + 1] == std::byte{0x05}) return at + i;
      }
    }
  }
  return std::nullopt;
}

Injector::Injector(PtraceSession& session, RemoteAddr syscall_instruction, size_t data_size,
                   Clock::time_point deadline)
    : session_(session), syscall_insn_(syscall_instruction), deadline_(deadline) {
  const size_t data_bytes = round_up(std::max<size_t>(data_size, 1), kPage);
  const size_t size = kPage + kStackSize + data_bytes;
  const int64_t mapped = syscall(
      SYS_mmap, {0, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, uint64_t(-1), 0});
  if (is_error_return(mapped)) {
    throw Error(fmt::format("mmap in process {} failed: {}", session_.pid(),
                            std::strerror(static_cast<int>(-mapped))));
  }
  base_ = RemoteAddr(static_cast<uint64_t>(mapped));
  size_ = size;
  stack_top_ = base_ + kPage + kStackSize;
  data_next_ = stack_top_;
  data_end_ = base_ + size;

  try {
    std::array<std::byte, 16> code;
    code.fill(std::byte{0xcc});  // int3 padding
    code[0] = std::byte{0xff};   // call *%rax
    code[1] = std::byte{0xd0};
    code[2] = std::byte{0xcc};  // int3: the call returned
    session_.write_memory(base_, code);
    const int64_t r = syscall(SYS_mprotect, {base_.value(), kPage, PROT_READ | PROT_EXEC});
    if (r != 0) {
      throw Error(fmt::format("mprotect in process {} failed: {}", session_.pid(),
                              std::strerror(static_cast<int>(-r))));
    }
  } catch (...) {
    deadline_ = Clock::now() + kCleanupBudget;
    try {
      finish();
    } catch (...) {
    }
    throw;
  }
}

Injector::~Injector() {
  if (finished_) return;
  deadline_ = Clock::now() + kCleanupBudget;
  try {
    finish();
  } catch (...) {
    // Best effort: the session still restores the registers and detaches.
  }
}

int64_t Injector::syscall(long number, std::initializer_list<uint64_t> args) {
  if (args.size() > 6) throw Error("a syscall takes at most 6 arguments");
  user_regs_struct regs = session_.saved().gp;
  uint64_t* slots[] = {
      reinterpret_cast<uint64_t*>(&regs.rdi), reinterpret_cast<uint64_t*>(&regs.rsi),
      reinterpret_cast<uint64_t*>(&regs.rdx), reinterpret_cast<uint64_t*>(&regs.r10),
      reinterpret_cast<uint64_t*>(&regs.r8),  reinterpret_cast<uint64_t*>(&regs.r9)};
  size_t i = 0;
  for (uint64_t a : args) *slots[i++] = a;
  regs.rax = static_cast<uint64_t>(number);
  regs.orig_rax = static_cast<uint64_t>(-1);
  regs.rip = syscall_insn_.value();
  regs.eflags &= ~(kFlagTrap | kFlagDirection | kFlagAlignmentCheck);
  session_.set_registers(regs);
  const user_regs_struct out =
      session_.run_until(syscall_insn_ + 2, Resume::kSingleStep, deadline_);
  return static_cast<int64_t>(out.rax);
}

uint64_t Injector::call(RemoteAddr function, std::initializer_list<uint64_t> args) {
  if (args.size() > 6) throw Error("a remote call takes at most 6 arguments");
  user_regs_struct regs = session_.saved().gp;
  uint64_t* slots[] = {
      reinterpret_cast<uint64_t*>(&regs.rdi), reinterpret_cast<uint64_t*>(&regs.rsi),
      reinterpret_cast<uint64_t*>(&regs.rdx), reinterpret_cast<uint64_t*>(&regs.rcx),
      reinterpret_cast<uint64_t*>(&regs.r8),  reinterpret_cast<uint64_t*>(&regs.r9)};
  size_t i = 0;
  for (uint64_t a : args) *slots[i++] = a;
  regs.rax = function.value();
  regs.orig_rax = static_cast<uint64_t>(-1);
  regs.rip = base_.value();
  regs.rsp = stack_top_.value();
  regs.rbp = 0;  // ends frame-pointer unwinds (a profiler sampling us) here
  regs.eflags &= ~(kFlagTrap | kFlagDirection | kFlagAlignmentCheck);
  session_.set_registers(regs);
  session_.set_clean_fp_state();
  const user_regs_struct out = session_.run_until(base_ + 3, Resume::kContinue, deadline_);
  return out.rax;
}

RemoteAddr Injector::push_bytes(std::span<const std::byte> bytes) {
  if (bytes.size() > data_end_ - data_next_) {
    throw Error(fmt::format("injection data area full ({} more bytes)", bytes.size()));
  }
  const RemoteAddr at = data_next_;
  session_.write_memory(at, bytes);
  data_next_ = at + round_up(bytes.size(), 16);
  if (data_next_ > data_end_) data_next_ = data_end_;
  return at;
}

RemoteAddr Injector::push_string(std::string_view text) {
  std::vector<std::byte> bytes(text.size() + 1, std::byte{0});
  std::memcpy(bytes.data(), text.data(), text.size());
  return push_bytes(bytes);
}

void Injector::preserve_errno(RemoteAddr errno_location_function, const RemoteMemory& memory) {
  const RemoteAddr where(call(errno_location_function));
  auto value = memory.read_value<int>(where);
  if (!value) {
    throw Error(
        fmt::format("cannot read errno at {} in process {}", to_string(where), session_.pid()));
  }
  errno_address_ = where;
  saved_errno_ = *value;
}

void Injector::finish() {
  if (finished_) return;
  finished_ = true;
  // Each step runs even when an earlier one failed; the first failure is
  // reported.
  std::string failure;
  auto attempt = [&](auto&& step) {
    try {
      step();
    } catch (const Error& e) {
      if (failure.empty()) failure = e.what();
    }
  };
  for (int fd : remote_fds_) attempt([&] { syscall(SYS_close, {static_cast<uint64_t>(fd)}); });
  remote_fds_.clear();
  if (errno_address_) {
    attempt([&] {
      session_.write_memory(*errno_address_, std::as_bytes(std::span(&saved_errno_, 1)));
    });
  }
  if (size_) {
    attempt([&] {
      const int64_t r = syscall(SYS_munmap, {base_.value(), size_});
      if (r != 0) {
        throw Error(fmt::format("munmap in process {} failed: {}", session_.pid(),
                                std::strerror(static_cast<int>(-r))));
      }
    });
    size_ = 0;
  }
  if (!failure.empty()) throw Error(failure);
}

}  // namespace gilstat::attach
