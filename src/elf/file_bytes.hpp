// A whole file mapped read-only into a span, for the ELF reader.  Move-only;
// moving keeps the mapping (and every span/string_view into it) valid.
//
// Caveat: a file that shrinks while mapped raises SIGBUS on access.  The files
// gilstat maps are installed interpreters and libraries, not files a target
// rewrites; reading them into memory instead would cost ~10 ms per libpython.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace gilstat::elf {

class FileBytes {
 public:
  // Maps `path` (a regular file) read-only.  Returns nullopt with errno-style
  // code in *error_number (when given) on failure.
  static std::optional<FileBytes> open(const std::string& path, int* error_number = nullptr);

  FileBytes(FileBytes&& other) noexcept;
  FileBytes& operator=(FileBytes&& other) noexcept;
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;
  ~FileBytes();

  std::span<const std::byte> bytes() const { return {static_cast<const std::byte*>(data_), size_}; }
  dev_t device() const { return device_; }
  ino_t inode() const { return inode_; }

 private:
  FileBytes() = default;
  void release();

  void* data_ = nullptr;
  size_t size_ = 0;
  dev_t device_ = 0;
  ino_t inode_ = 0;
};

}  // namespace gilstat::elf
