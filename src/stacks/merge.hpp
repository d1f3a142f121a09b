// One stack from a thread's Python frames and its native frames, the way
// `py-spy --native` shows them: the native frames above the interpreter's
// eval loop (the C code the Python code called), then the Python frames.
#pragma once

#include <string>
#include <vector>

#include "stacks/stack_table.hpp"

namespace gilstat::stacks {

// `native` and `python` innermost first; native frames symbolised (function
// empty where no symbol covers the address).  The result: the native frames
// innermost first down to, not including, the first frame of the eval loop
// (found by name: _PyEval_EvalFrameDefault and its older names), then every
// Python frame; the native frames below (the interpreter's start-up) are
// left out.  A stripped interpreter has no such name: there the cut is at
// the first frame of the interpreter's own object (`interpreter`, a
// basename) below a frame of another object, keeping at least the
// innermost native frame.  Without Python frames the native stack stays
// whole; without native frames the Python stack is returned.
std::vector<Frame> merge_stacks(const std::vector<Frame>& native, const std::vector<Frame>& python,
                                const std::string& interpreter);

// True for the native frames of CPython's bytecode loop.
bool is_eval_loop(const Frame& f);

}  // namespace gilstat::stacks
