// Line numbers from a code object's line table, for the three formats
// CPython 3.8-3.15 use.  Pure functions over bytes copied out of a target:
// the table is untrusted, so every step is bounded by its size and a
// malformed table gives nullopt, never a read past its end.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace gilstat::pyruntime {

// 3.8 and 3.9 co_lnotab: (byte increment, signed line increment) pairs.
// `byte_offset` is f_lasti (bytes).
std::optional<int> lnotab_line(std::span<const std::byte> table, int first_line,
                               uint64_t byte_offset);

// 3.10 co_linetable: (byte delta, signed line delta) pairs, -128 = no line.
// `byte_offset` is f_lasti * 2 (f_lasti counts code units on 3.10).
std::optional<int> linetable310_line(std::span<const std::byte> table, int first_line,
                                     uint64_t byte_offset);

// 3.11+ location table (Objects/locations.md): entries of code units, each
// starting with a byte whose top bit is set.  `unit` is the index of the
// instruction in code units.  nullopt for "no location" or a bad table.
std::optional<int> location_table_line(std::span<const std::byte> table, int first_line,
                                       uint64_t unit);

}  // namespace gilstat::pyruntime
