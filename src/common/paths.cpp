#include "common/paths.hpp"

#include <fmt/core.h>
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/error.hpp"

namespace gilstat {

std::string executable_dir() {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) throw Error("cannot find the gilstat executable (/proc/self/exe)");
  std::string path(buf, n);
  return path.substr(0, path.rfind('/'));
}

std::string probe_library_path() {
  const char* env = std::getenv("GILSTAT_PROBE");
  std::string path = env && *env ? env : executable_dir() + "/../lib/gilstat/libgilstat_probe.so";
  if (char* real = realpath(path.c_str(), nullptr)) {
    path = real;
    std::free(real);
  }
  if (access(path.c_str(), R_OK) != 0)
    throw Error(fmt::format("probe library {} is missing or unreadable ({})", path,
                            std::strerror(errno)),
                "rebuild or reinstall gilstat, or point GILSTAT_PROBE at libgilstat_probe.so");
  return path;
}

}  // namespace gilstat
