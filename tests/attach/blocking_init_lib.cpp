// A library whose constructor blocks: it opens the FIFO named by
// $GILSTAT_TEST_BLOCK_FIFO and reads one byte from it.  A thread that dlopens
// it stays inside dlopen, holding the dynamic loader's lock, until the test
// writes that byte: the real case of a thread stopped in a syscall (the
// innermost frame: open or read in libc) with the loader further up its stack.
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>

namespace {

__attribute__((constructor)) void block_until_released() {
  const char* fifo = std::getenv("GILSTAT_TEST_BLOCK_FIFO");
  if (!fifo) return;
  const int fd = open(fifo, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char byte;
  while (read(fd, &byte, 1) < 0) {
  }
  close(fd);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int gilstat_blocking_init_loaded() { return 1; }
