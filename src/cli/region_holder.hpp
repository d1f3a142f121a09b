// Who holds a process's probe region: the gilstat process (exporter, top,
// record, ...) that has the same memfd open as the target.  Only the refusal
// of a second reader asks (the probe answers -EBUSY without saying who).
#pragma once

#include <sys/types.h>

#include <string>

namespace gilstat::cli {

struct RegionHolder {
  pid_t pid = 0;           // 0: not found (not ours to see, or gone)
  std::string subcommand;  // "exporter", "top", "record", ...
};

RegionHolder find_region_holder(pid_t target);

}  // namespace gilstat::cli
