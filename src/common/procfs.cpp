#include "common/procfs.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>

namespace gilstat::procfs {

std::string path(pid_t pid, std::string_view entry) {
  return entry.empty() ? fmt::format("/proc/{}", pid) : fmt::format("/proc/{}/{}", pid, entry);
}

std::string self(std::string_view entry) { return fmt::format("/proc/self/{}", entry); }

std::optional<std::string> read(const std::string& file, int* error_number) {
  const int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (error_number) *error_number = errno;
    return std::nullopt;
  }
  std::string text;
  char buf[8192];
  while (text.size() < kMaxFileBytes) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, std::min(static_cast<size_t>(n), kMaxFileBytes - text.size()));
  }
  close(fd);
  return text;
}

std::optional<std::string> read(pid_t pid, std::string_view entry, int* error_number) {
  return read(path(pid, entry), error_number);
}

std::vector<std::string> nul_list(pid_t pid, std::string_view entry) {
  const std::string raw = read(pid, entry).value_or("");
  std::vector<std::string> out;
  for (size_t at = 0; at < raw.size();) {
    size_t end = raw.find('\0', at);
    if (end == std::string::npos) end = raw.size();
    out.push_back(raw.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

std::string cmdline(pid_t pid) {
  std::string s = read(pid, "cmdline").value_or("");
  while (!s.empty() && s.back() == '\0') s.pop_back();
  for (char& c : s)
    if (c == '\0') c = ' ';
  return s;
}

std::map<std::string, std::string> parse_status(const std::string& text) {
  std::map<std::string, std::string> fields;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    fields[line.substr(0, colon)] = value;
  }
  return fields;
}

int open_mem(pid_t pid, int flags) { return open(path(pid, "mem").c_str(), flags | O_CLOEXEC); }

std::vector<pid_t> task_ids(pid_t pid) {
  std::vector<pid_t> tids;
  DIR* dir = opendir(path(pid, "task").c_str());
  if (!dir) return tids;
  while (const dirent* e = readdir(dir)) {
    char* end = nullptr;
    const long tid = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0' && tid > 0) tids.push_back(static_cast<pid_t>(tid));
  }
  closedir(dir);
  return tids;
}

std::optional<char> task_state(pid_t pid, pid_t tid) {
  const auto stat = read(pid, "task/" + std::to_string(tid) + "/stat");
  if (!stat) return std::nullopt;
  // "tid (comm) S ...": comm may hold anything, even ") ", so the last ')'.
  const size_t paren = stat->rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat->size()) return std::nullopt;
  return (*stat)[paren + 2];
}

double loadavg_1min() {
  double load1 = -1;
  std::ifstream("/proc/loadavg") >> load1;
  return load1;
}

}  // namespace gilstat::procfs
