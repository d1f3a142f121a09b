// Loaded into test targets by load_library_and_call.  No threads, no stdio.
//
// gilstat_test_entry(arg): arg is "<path>[;sleep=<ms>][;crash]".  Writes the
// whole arg into <path>, clobbers the FP/vector registers and the x87/SSE
// control words (so a restore that misses them is caught), returns 42.
// sleep=<ms> makes the call last that long (signal and timeout tests); crash
// faults on purpose (fault handling test).
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

void clobber_fp_state() {
  const uint32_t round_toward_zero = 0x7f80;  // MXCSR: masked, RZ
  const uint16_t x87_round_up = 0x0b7f;
  asm volatile(
      "pcmpeqd %%xmm0, %%xmm0\n\t"
      "pcmpeqd %%xmm8, %%xmm8\n\t"
      "pcmpeqd %%xmm15, %%xmm15\n\t"
      "ldmxcsr %0\n\t"
      "fldcw %1\n\t" ::"m"(round_toward_zero),
      "m"(x87_round_up)
      : "xmm0", "xmm8", "xmm15");
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int64_t gilstat_test_entry(const char* arg) {
  const char* end = std::strchr(arg, ';');
  const size_t path_length = end ? static_cast<size_t>(end - arg) : std::strlen(arg);
  char path[4096];
  if (path_length == 0 || path_length >= sizeof(path)) return -1;
  std::memcpy(path, arg, path_length);
  path[path_length] = '\0';

  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -2;
  const size_t length = std::strlen(arg);
  if (write(fd, arg, length) != static_cast<ssize_t>(length)) {
    close(fd);
    return -3;
  }
  close(fd);

  if (const char* sleep = std::strstr(arg, ";sleep=")) {
    const long ms = std::strtol(sleep + 7, nullptr, 10);
    timespec ts{ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
  if (std::strstr(arg, ";crash")) {
    *static_cast<volatile int*>(nullptr) = 1;
  }
  clobber_fp_state();
  return 42;
}
