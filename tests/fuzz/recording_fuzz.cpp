// libFuzzer target: arbitrary bytes through everything that reads a
// recording, down to the rendered report.  The first byte picks the layer:
//   even: the bytes are a whole file (header, chunk framing, CRCs, zstd);
//   odd:  the bytes are one decompressed chunk payload (the record and
//         column decoders behind the CRC, which mutations rarely get past).
// Either way the events go through the aggregator and the renderers, so a
// hostile file also exercises the reconstruction (seq reordering, windows).
// Built and run by tests/fuzz/CMakeLists.txt; see tests/fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cli/replay.hpp"
#include "common/error.hpp"
#include "proto/recording.hpp"
#include "proto/recording_summary.hpp"
#include "render_all.hpp"
#include "report/aggregator.hpp"

using namespace gilstat;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  // A small reorder window keeps the buffering paths busy on small inputs.
  report::Aggregator agg(64, report::TimeWindow{});
  agg.set_max_threads(256);
  cli::AggregatorFeed feed(agg);
  proto::RecordingSummary summary(&feed);
  proto::ReadResult result;
  try {
    if (data[0] % 2 == 0) {
      result = proto::read_recording_bytes(bytes, summary);
    } else {
      proto::parse_chunk_payload(bytes, summary, result);
    }
  } catch (const Error&) {
    return 0;  // not a recording / newer format: refused, as documented
  }
  report::RecordingInfo info;
  const proto::RecEnd end = summary.effective_end();
  info.window_start = summary.meta().window_start;
  info.window_end = end.window_end;
  info.ns_per_tick = end.ns_per_tick;
  std::vector<report::GilInfo> gils;
  for (const proto::RecGil& g : summary.gils())
    gils.push_back({g.index, g.address, g.initial_switch_number, g.final_switch_number,
                    g.initial_holder, g.interp_ids});
  report::Report r = agg.finish(info, gils);
  r.gil_profile = feed.gil_profile(r);
  fuzz::render_all(r);
  return 0;
}
