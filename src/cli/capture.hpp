// The live pipeline lives beside the ring reader (proto/capture.hpp); the
// commands name it from here.
#pragma once

#include "proto/capture.hpp"

namespace gilstat::cli {

using proto::build_report;
using proto::Capture;

}  // namespace gilstat::cli
