// Names fitted to a column: the target and a group's count survive every cut
// down to min_name_width, and no cut is ever wider than asked.
#include "report/fit_name.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace gilstat::report {
namespace {

const std::string kRequest = "Thread-1904 (process_request_thread)";  // 36 columns
const std::string kGroup = "Thread-N (process_request_thread) ×4,812";

TEST(FitName, UnchangedWhenItFits) {
  EXPECT_EQ(fit_name(kRequest, 36), kRequest);
  EXPECT_EQ(fit_name(kRequest, 100), kRequest);
  EXPECT_EQ(fit_name("", 0), "");
  EXPECT_EQ(text_columns(kGroup), 40u);  // "×" is one column
}

TEST(FitName, CutsTheCounterNotTheTarget) {
  EXPECT_EQ(fit_name(kRequest, 35), "Thread-…04 (process_request_thread)");
  EXPECT_EQ(fit_name(kRequest, 33), "Thread-… (process_request_thread)");
  EXPECT_EQ(fit_name(kRequest, 30), "Th…04 (process_request_thread)");
  EXPECT_EQ(fit_name(kRequest, 27), "T… (process_request_thread)");
  EXPECT_EQ(fit_name(kGroup, 34), "T… (process_request_thread) ×4,812");
  EXPECT_EQ(fit_name(kGroup, 38), "Thr…-N (process_request_thread) ×4,812");
  EXPECT_EQ(fit_name("ThreadPoolExecutor-0_12", 22), "ThreadPoolExecutor-…12");
  EXPECT_EQ(fit_name("ThreadPoolExecutor-0_12", 20), "ThreadPoolExecutor-…");
  EXPECT_EQ(fit_name("native-4711", 9), "native-…1");
  EXPECT_EQ(fit_name("Thread-3 (f(x))", 12), "Th…-3 (f(x))");  // nested parentheses
}

TEST(FitName, MinimumKeepsWhatTellsTheGroupApart) {
  EXPECT_EQ(min_name_width(kRequest), 27u);  // "T… (process_request_thread)"
  EXPECT_EQ(min_name_width(kGroup), 34u);
  EXPECT_EQ(min_name_width("ThreadPoolExecutor-0_12"), 20u);     // "ThreadPoolExecutor-…"
  EXPECT_EQ(min_name_width("ThreadPoolExecutor-N_N ×40"), 26u);  // a group key is never cut
  EXPECT_EQ(min_name_width("native-4711"), 8u);
  EXPECT_EQ(min_name_width("MainThread"), 10u);
  EXPECT_EQ(min_name_width("spin-0"), 6u);
  EXPECT_EQ(min_name_width("(all target)"), 12u);
  EXPECT_EQ(min_name_width("worker (a) extra"), 16u);  // parentheses not at the end: no target
  EXPECT_EQ(min_name_width(""), 0u);
}

TEST(FitName, NeverWiderThanAskedAndTargetKeptDownToTheMinimum) {
  const std::vector<std::string> names = {kRequest,
                                          kGroup,
                                          "ThreadPoolExecutor-0_12",
                                          "native-4711",
                                          "MainThread",
                                          "(x)",
                                          "a (b)",
                                          "x ×3",
                                          "caf\xc3\xa9-12 (t\xc3\xa2"
                                          "che)",
                                          "12345678901234567890"};
  for (const std::string& name : names) {
    const size_t full = text_columns(name);
    const size_t min = min_name_width(name);
    EXPECT_LE(min, full) << name;
    for (size_t w = 0; w <= full + 2; ++w) {
      const std::string fitted = fit_name(name, w);
      EXPECT_LE(text_columns(fitted), w) << name << " in " << w;
      if (w >= full) {
        EXPECT_EQ(fitted, name);
      }
      if (w >= min && w < full) {
        EXPECT_EQ(text_columns(fitted), w) << name << " in " << w;  // uses the room it has
        if (name == kRequest || name == kGroup) {
          EXPECT_NE(fitted.find(" (process_request_thread)"), std::string::npos) << fitted;
        }
        if (name == kGroup) {
          EXPECT_NE(fitted.find(" ×4,812"), std::string::npos) << fitted;
        }
      }
    }
  }
  EXPECT_EQ(fit_name("caf\xc3\xa9-12 (t\xc3\xa2"
                     "che)",
                     10),
            "c… (t\xc3\xa2"
            "che)");
}

}  // namespace
}  // namespace gilstat::report
