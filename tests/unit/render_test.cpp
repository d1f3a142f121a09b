// Renderers: the JSON must be valid and complete whatever the strings from
// the target contain; the text must carry the warnings a reader needs.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "event_sim.hpp"
#include "report/aggregator.hpp"
#include "report/render_json.hpp"
#include "report/render_text.hpp"

namespace gilstat::report {
namespace {

// Control characters, an escape sequence, quotes, a backslash, a cut UTF-8
// character (as a 48-byte name slot may produce) and a 4-byte emoji.
const std::string kNastyName = "wo\"rk\\er\n\t\x1b[31mred\x01 \xc3 caf\xc3\xa9 \xf0\x9f\x90\x8d";

Report sample_report(uint64_t drops_no_ring = 0) {
  testing::EventScript s;
  const testing::SimTruth truth = testing::simulate_gil(s, 11, 3, 500);
  Aggregator agg;
  s.deliver_interleaved(agg, 2);
  agg.set_thread_name(100, kNastyName);
  agg.set_thread_name(101, "MainThread");
  RecordingInfo info;
  info.pid = 31337;
  info.gilstat_version = "0.1.0";
  info.command = "python3 -c \"print('hi')\"";
  info.python_version = "3.11.7";
  info.libpython_shared = false;
  info.window_start = 1000;
  info.window_end = truth.window_end;
  info.drops_no_ring = drops_no_ring;
  GilInfo gil{0, 0x7f12'3456'7000, 100, 100 + truth.switch_number_delta, truth.initial_holder, {0}};
  return agg.finish(info, {gil});
}

std::string json_of(const Report& r) {
  std::ostringstream out;
  render_json(r, out);
  return out.str();
}

std::string text_of(const Report& r) {
  std::ostringstream out;
  render_text(r, out);
  return out.str();
}

// A structural check that needs no JSON library: brackets balance outside
// strings, strings close, no raw control characters, no trailing commas.
void expect_structurally_valid_json(const std::string& json) {
  std::string stack;
  bool in_string = false;
  char last_significant = 0;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      ASSERT_GE(static_cast<unsigned char>(c), 0x20u) << "raw control char at " << i;
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
        last_significant = '"';
      }
      continue;
    }
    if (c == ' ' || c == '\n') continue;
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      stack.push_back(c);
    } else if (c == '}' || c == ']') {
      ASSERT_FALSE(stack.empty()) << "unbalanced at " << i;
      ASSERT_EQ(stack.back(), c == '}' ? '{' : '[') << "mismatched at " << i;
      ASSERT_NE(last_significant, ',') << "trailing comma at " << i;
      stack.pop_back();
    }
    last_significant = c;
  }
  EXPECT_FALSE(in_string);
  EXPECT_TRUE(stack.empty());
  EXPECT_EQ(last_significant, '}');
}

TEST(RenderJson, StructurallyValidWithNastyStrings) {
  const std::string json = json_of(sample_report());
  expect_structurally_valid_json(json);
  for (const char* key : {"\"gilstat_version\"",
                          "\"pid\": 31337",
                          "\"command\"",
                          "\"duration_s\"",
                          "\"clock\"",
                          "\"python\"",
                          "\"libpython\": \"static\"",
                          "\"drops\": 0",
                          "\"gils\"",
                          "\"interpreters\"",
                          "\"utilization\"",
                          "\"acquisitions\"",
                          "\"switches\"",
                          "\"switch_number_delta\"",
                          "\"forced_switch_requests\"",
                          "\"forced_handoffs\"",
                          "\"seq_gaps\"",
                          "\"wait_ns\"",
                          "\"hold_ns\"",
                          "\"handoff_ns\"",
                          "\"p50\"",
                          "\"p90\"",
                          "\"p99\"",
                          "\"max\"",
                          "\"total\"",
                          "\"count\"",
                          "\"threads\"",
                          "\"tid\"",
                          "\"name\"",
                          "\"own\"",
                          "\"lifetime_s\"",
                          "\"held_s\"",
                          "\"wait_s\"",
                          "\"released_s\"",
                          "\"anomalies\""})
    EXPECT_NE(json.find(key), std::string::npos) << key;
  EXPECT_EQ(json.find('\x1b'), std::string::npos);
}

TEST(RenderJson, StringEscaping) {
  EXPECT_EQ(json_string("plain"), "\"plain\"");
  EXPECT_EQ(json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(json_string("\n\t\x01"), "\"\\n\\t\\u0001\"");
  EXPECT_EQ(json_string("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(json_string("cut \xc3"), "\"cut \xef\xbf\xbd\"");                          // U+FFFD
  EXPECT_EQ(json_string("\xed\xa0\x80"), "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");  // surrogate
  EXPECT_EQ(json_string("\xc0\xaf"), "\"\xef\xbf\xbd\xef\xbf\xbd\"");  // overlong '/'
}

// The real parser, when there is one, also checks the types and the sums.
TEST(RenderJson, ParsesWithPython) {
  const char* python = "/usr/bin/python3";
  if (access(python, X_OK) != 0) GTEST_SKIP() << python << " not found: cannot cross-check JSON";
  const Report r = sample_report(3);
  const auto path = std::filesystem::temp_directory_path() /
                    ("gilstat_render_test_" + std::to_string(getpid()) + ".json");
  {
    std::ofstream f(path);
    render_json(r, f);
  }
  const std::string script =
      "import json,sys\n"
      "r=json.load(open(sys.argv[1],encoding='utf-8'))\n"
      "assert r['pid']==31337 and r['drops']==3 and r['clock']=='monotonic'\n"
      "assert r['python']=={'version':'3.11.7','version_hex':0,'free_threaded':False,"
      "'libpython':'static'}\n"
      "g=r['gils'][0]\n"
      "assert g['disabled_s']==0.0 and g['enabled_changes']==[], g\n"
      "assert g['enabled_changes_lost']==0, g\n"
      "assert g['switches']==g['switch_number_delta'], g\n"
      "assert isinstance(g['utilization'],float) and 0<g['utilization']<=1\n"
      "names=[t['name'] for t in r['threads']]\n"
      "assert 'MainThread' in names and any(n.startswith('wo\"rk\\\\er\\n') for n in names), "
      "names\n"
      "held=sum(t['hold_ns']['total'] for t in r['threads'])\n"
      "assert held==g['hold_ns']['total'], (held, g)\n"
      "for t in r['threads']:\n"
      "  assert abs(t['held_s']+t['wait_s']+t['released_s']-t['lifetime_s'])<1e-9, t\n"
      "print('ok')\n";
  const std::string cmd = std::string(python) + " -c '" +
                          [&] {
                            std::string quoted;  // single-quote the script for the shell
                            for (char c : script)
                              quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
                            return quoted;
                          }() +
                          "' " + path.string() + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) output += buf;
  const int status = pclose(p);
  std::filesystem::remove(path);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "ok\n");
}

TEST(RenderText, HeaderGilBlockAndThreads) {
  const std::string text = text_of(sample_report());
  EXPECT_NE(text.find("pid 31337"), std::string::npos) << text;
  EXPECT_NE(text.find("Python 3.11.7 (static libpython)"), std::string::npos) << text;
  EXPECT_NE(text.find("clock monotonic"), std::string::npos) << text;
  EXPECT_NE(text.find("drops 0"), std::string::npos) << text;  // shown even when zero
  EXPECT_EQ(text.find("WARNING"), std::string::npos) << text;
  EXPECT_NE(text.find("switch_number Δ ✓"), std::string::npos) << text;
  EXPECT_NE(text.find("MainThread"), std::string::npos) << text;
  EXPECT_NE(text.find("hand-off"), std::string::npos) << text;
  // The thread name's escape sequence must not reach the terminal.
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  EXPECT_EQ(text.find('\x01'), std::string::npos);
}

TEST(RenderText, DropsAndMismatchAreLoud) {
  Report r = sample_report(5);
  r.gils[0].switch_number_delta += 2;
  r.gils[0].utilization = 1.25;
  const std::string text = text_of(r);
  EXPECT_NE(text.find("drops 5"), std::string::npos) << text;
  EXPECT_NE(text.find("WARNING: 5 events were lost"), std::string::npos) << text;
  EXPECT_NE(text.find("MISMATCH"), std::string::npos) << text;
  EXPECT_NE(text.find("100.0 % (raw 1.250"), std::string::npos) << text;
}

TEST(RenderText, FreeThreadedWithoutGilSaysSo) {
  Report r;
  r.free_threaded = true;
  r.python_version = "3.13.5";
  const std::string text = text_of(r);
  EXPECT_NE(text.find("GIL disabled"), std::string::npos) << text;
}

TEST(RenderText, GilEnabledMidwaySaysHowLongItWasOffAndWhenItCameOn) {
  Report r = sample_report();
  r.free_threaded = true;
  r.gils[0].enabled_changes = {{0, 0}, {2e6, 1}, {3e6, 0}, {512e6, 1}, {513e6, kEnabledForGood}};
  r.gils[0].disabled_ns = 511e6;
  std::string text = text_of(r);
  EXPECT_NE(text.find("GIL disabled for 511 ms of the window (free-threaded build); enabled at "
                      "0.512 s for good (after 1 brief spell)"),
            std::string::npos)
      << text;
  r.gils[0].enabled_changes_lost = 7;  // history past the limit: the figure is approximate
  text = text_of(r);
  EXPECT_NE(text.find("(after 1 brief spell) (7 later changes not kept: the disabled time is "
                      "approximate)\n"),
            std::string::npos)
      << text;
  r.gils[0].enabled_changes_lost = 0;
  r.gils[0].enabled_changes.resize(3);  // off again at the end
  text = text_of(r);
  EXPECT_NE(text.find("apart from 1 enabled spell\n"), std::string::npos) << text;
  r.gils[0].enabled_changes.clear();  // a GIL build: nothing said
  r.gils[0].disabled_ns = 0;
  EXPECT_EQ(text_of(r).find("GIL disabled"), std::string::npos);
}

TEST(RenderText, MaxThreadsTruncates) {
  const Report r = sample_report();
  std::ostringstream out;
  render_text(r, out, TextOptions{1});
  EXPECT_NE(out.str().find("2 more threads"), std::string::npos) << out.str();
}

TEST(RenderText, HumanDurations) {
  EXPECT_EQ(format_duration(0), "0 ns");
  EXPECT_EQ(format_duration(999), "999 ns");
  EXPECT_EQ(format_duration(1'000), "1.00 µs");
  EXPECT_EQ(format_duration(12'345), "12.3 µs");
  EXPECT_EQ(format_duration(999'600), "1.00 ms");  // not "1000 µs"
  EXPECT_EQ(format_duration(4'510'000), "4.51 ms");
  EXPECT_EQ(format_duration(2'000'000'000), "2.00 s");
  EXPECT_EQ(format_duration(7'200'000'000'000), "7200 s");
}

}  // namespace
}  // namespace gilstat::report
