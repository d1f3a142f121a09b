#include "cli/region_holder.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <set>
#include <string_view>
#include <utility>

#include "common/procfs.hpp"

namespace gilstat::cli {
namespace {

using FileId = std::pair<dev_t, ino_t>;

// Calls f(path of fd) for each of /proc/PID/fd; stops when it returns true.
template <typename F>
bool each_fd(pid_t pid, F f) {
  const std::string dir = procfs::path(pid, "fd");
  DIR* d = opendir(dir.c_str());
  if (!d) return false;
  bool found = false;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if ((found = f(dir + "/" + e->d_name))) break;
  }
  closedir(d);
  return found;
}

std::set<FileId> region_files(pid_t target) {
  std::set<FileId> files;
  each_fd(target, [&](const std::string& fd) {
    char link[256];
    const ssize_t n = readlink(fd.c_str(), link, sizeof(link) - 1);
    struct stat st {};
    if (n > 0 && std::string_view(link, static_cast<size_t>(n)).starts_with("/memfd:gilstat") &&
        stat(fd.c_str(), &st) == 0)
      files.insert({st.st_dev, st.st_ino});
    return false;
  });
  return files;
}

}  // namespace

RegionHolder find_region_holder(pid_t target) {
  RegionHolder holder;
  const std::set<FileId> files = region_files(target);
  if (files.empty()) return holder;
  DIR* proc = opendir("/proc");
  if (!proc) return holder;
  const pid_t self = getpid();
  while (const dirent* e = readdir(proc)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    const auto pid = static_cast<pid_t>(std::strtol(e->d_name, nullptr, 10));
    if (pid == self || pid == target) continue;
    const auto comm = procfs::read(pid, "comm");
    if (!comm || comm->rfind("gilstat", 0) != 0) continue;
    const bool holds = each_fd(pid, [&](const std::string& fd) {
      struct stat st {};
      return stat(fd.c_str(), &st) == 0 && files.count({st.st_dev, st.st_ino}) > 0;
    });
    if (!holds) continue;
    holder.pid = pid;
    const std::vector<std::string> argv = procfs::nul_list(pid, "cmdline");
    // Its own argv: printed only when it reads as a subcommand's name.
    if (argv.size() > 1 && argv[1].size() < 20 &&
        argv[1].find_first_not_of("abcdefghijklmnopqrstuvwxyz-") == std::string::npos)
      holder.subcommand = argv[1];
    break;
  }
  closedir(proc);
  return holder;
}

}  // namespace gilstat::cli
