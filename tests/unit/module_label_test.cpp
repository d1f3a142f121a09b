// The module names of the "GIL by module" tables (report/modules.hpp).
#include <gtest/gtest.h>

#include "report/modules.hpp"

namespace gilstat::report {
namespace {

TEST(ModuleLabel, ExtensionsAreNamedAsImported) {
  EXPECT_EQ(module_label("_hashlib.cpython-311-x86_64-linux-gnu.so"), "_hashlib");
  EXPECT_EQ(module_label("_gilstat_demo.cpython-313t-x86_64-linux-gnu.so"), "_gilstat_demo");
  EXPECT_EQ(module_label("_gilstat_demo.abi3.so"), "_gilstat_demo");
}

TEST(ModuleLabel, OtherObjectsKeepTheirFileName) {
  EXPECT_EQ(module_label("libfoo.so.1"), "libfoo.so.1");
  EXPECT_EQ(module_label("libfoo.so"), "libfoo.so");
  EXPECT_EQ(module_label("foo.abi3.so.2"), "foo.abi3.so.2");
  EXPECT_EQ(module_label(".cpython-311.so"), ".cpython-311.so");
  EXPECT_EQ(module_label("numpy"), "numpy");
  EXPECT_EQ(module_label(""), "");
}

}  // namespace
}  // namespace gilstat::report
