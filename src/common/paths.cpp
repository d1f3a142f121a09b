#include "common/paths.hpp"

#include <fmt/core.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/error.hpp"
#include "common/procfs.hpp"
#include "gilstat/install_paths.hpp"

namespace gilstat {

std::string executable_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink(procfs::self("exe").c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) throw Error("cannot find the gilstat executable (/proc/self/exe)");
  std::string path(buf, n);
  return path.substr(0, path.rfind('/'));
}

std::string installed_libdir() { return executable_dir() + "/" + kBinToLibDir; }

std::string installed_datadir() { return executable_dir() + "/" + kBinToDataDir; }

std::string probe_library_path() {
  const char* env = std::getenv("GILSTAT_PROBE");
  std::string path = env && *env ? env : installed_libdir() + "/libgilstat_probe.so";
  if (char* real = realpath(path.c_str(), nullptr)) {
    path = real;
    std::free(real);
  }
  const char* hint = "rebuild or reinstall gilstat, or point GILSTAT_PROBE at libgilstat_probe.so";
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f)
    throw Error(
        fmt::format("probe library {} is missing or unreadable ({})", path, std::strerror(errno)),
        hint);
  // The dynamic loader would only warn about a broken preload and run the
  // program unmeasured: refuse it here with a clear message instead.
  char magic[4] = {};
  const bool elf = std::fread(magic, 1, 4, f) == 4 && std::memcmp(magic, "\177ELF", 4) == 0;
  std::fclose(f);
  if (!elf) throw Error(fmt::format("probe library {} is not a shared object", path), hint);
  return path;
}

}  // namespace gilstat
