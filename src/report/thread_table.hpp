// The thread table of the text report: one row per folded group (groups.hpp)
// or thread, busiest first.  HELD% and WAIT% are of the window (wall time),
// so the rows of one GIL add up to its utilisation and, without gilstat's
// own row, to its mean number of waiters (x100); WAIT%LIFE is the share of
// the rows' own lifetimes spent waiting (what "starved" is judged on).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "report/groups.hpp"
#include "report/report.hpp"

namespace gilstat::report {

struct TableLayout {
  size_t rows = 0;       // rows shown; the others are summed up in one line
  bool members = false;  // each folded group followed by its members' rows
  size_t width = 0;      // terminal columns; 0: names are never cut
};

// The table's lines (no newlines): the column header, the rows (a folded
// group's row has a second line with its members' held times), and
// "… N more threads" when rows are left out.
std::vector<std::string> thread_table(const Report& report, const std::vector<TableRow>& rows,
                                      const TableLayout& layout);

// How many lines thread_table gives for the first `shown` rows.
size_t thread_table_lines(const std::vector<TableRow>& rows, size_t shown, bool members);

}  // namespace gilstat::report
