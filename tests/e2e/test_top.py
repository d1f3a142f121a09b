"""`gilstat top --pid` when stdout is not a terminal (every interpreter), and in a real terminal (tmux) on a service in miniature
(workloads/request_threads.py: a thread per request, two busy threads, one that mostly
waits): the screen fits the terminal and its resizes, the header with the GIL's
utilisation stays on top, the busiest threads come first, the keys sort and fold.

Heavy tier. The checks poll the screen until it shows what they expect, for a few
seconds at most: what is on screen depends on the machine's timing (these are the
timing bounds that may take a few refreshes); the exact figures of top are checked by
test_attach.py's JSON tests and the unit tests of the view.
Short request threads may be shown as native-<tid> or by their names: nothing here
depends on which.
"""
import json
import os
import re
import shutil
import signal
import subprocess

import pytest

from attach_support import Background, Target, check_clear_error, wait_until

INTERVAL_S = 0.3
SCREEN_TIMEOUT_S = 10  # first frame: attach, then a few refreshes
# A couple of refreshes (top redraws at once on SIGWINCH; the check waits for the next
# refresh, to tell top's frame from tmux's crop of the old one).  The target runs at a
# raised priority (conftest.raise_priority) with two busy threads, gilstat at the
# test's: on 2 loaded cores a 0.3 s refresh was seen to take 0.75 s.
RESIZE_TIMEOUT_S = 3.0
QUIT_TIMEOUT_S = 5.0  # includes unhooking the probe from the busy target

GIL_LINE = re.compile(r"^GIL 0  util +(\d+\.\d) %  switches/s +\d+  waiters \d+\.\d\d  "
                      r"(held by .+ for |free|holder not seen yet)")
MORE_LINE = re.compile(r"^… ([\d,]+) more threads? \(held (\d+\.\d) %, wait (\d+\.\d) %\)$")
KEYS_LINE = "sort: "


class Tmux:
    """A private tmux server running `command` in a detached session of the given size."""

    def __init__(self, width, height, command):
        self.server = [shutil.which("tmux"), "-L", "gilstat-top-%d" % os.getpid(), "-f",
                       "/dev/null"]
        subprocess.run(self.server + ["new-session", "-d", "-s", "top", "-x", str(width),
                                      "-y", str(height), "sh", "-c", command],
                       check=True, timeout=10)
        self.last = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        subprocess.run(self.server + ["kill-server"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=10)

    def screen(self):
        out = subprocess.run(self.server + ["capture-pane", "-p", "-t", "top"],
                             stdout=subprocess.PIPE, timeout=10).stdout.decode("utf-8", "replace")
        lines = out.split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        self.last = lines
        return lines

    def keys(self, keys):
        subprocess.run(self.server + ["send-keys", "-t", "top", keys], check=True, timeout=10)

    def resize(self, width, height):
        subprocess.run(self.server + ["resize-window", "-t", "top", "-x", str(width), "-y",
                                      str(height)], check=True, timeout=10)

    def shown(self):
        return "screen:\n" + "\n".join(self.last)


class Frame:
    """One complete frame of top on screen, parsed; `problem` says why it is not one."""

    def __init__(self, lines, pid, width, height):
        self.lines, self.problem, self.rows, self.more = lines, None, [], None
        self.row_lines = []  # the thread rows and the "… more" line
        title = re.search(r" · (\d+\.\d) s since attach", lines[0]) if lines else None
        self.elapsed = float(title.group(1)) if title else None
        self.gil = next((GIL_LINE.match(l) for l in lines if GIL_LINE.match(l)), None)
        if len(lines) > height:
            self.problem = "%d lines on a %d-line screen" % (len(lines), height)
        elif not lines or not lines[0].startswith("gilstat top · pid %d · drops" % pid):
            self.problem = "the title is not the first line"
        elif self.gil is None:
            self.problem = "no GIL header line"
        elif not lines[-1].startswith(KEYS_LINE):
            self.problem = "the key help is not the last line"
        elif any(len(l) > width for l in lines):
            self.problem = "a line is wider than %d columns" % width
        if self.problem:
            return
        titles = next(i for i, l in enumerate(lines) if l.startswith("THREAD"))
        header = lines[titles]
        # Numbers are right-aligned under their titles: a cell is the word that ends
        # where its title ends (a name may hold spaces, a duration is two words).
        ends = {t: header.index(t) + len(t) for t in ("TID", "HELD%", "WAIT%", "ACQ/s")}
        for line in lines[titles + 1:-1]:
            if not line.strip():
                break  # the long holds, the interval's functions, the modules follow
            self.row_lines.append(line)
            more = MORE_LINE.match(line)
            if more:
                self.more = more
                continue
            row = {"name": line[:ends["TID"]].rsplit(None, 1)[0].strip(), "line": line}
            for key, title in (("held", "HELD%"), ("wait", "WAIT%"), ("acq", "ACQ/s")):
                try:
                    row[key] = float(line[:ends[title]].split()[-1])
                except (ValueError, IndexError):
                    self.problem = "no %s figure in row %r" % (title, line)
                    return
            self.rows.append(row)
        self.sort = lines[-1].split()[1]


def wait_frame(term, pid, width, height, check, timeout, after=None):
    """Polls the screen until a complete frame satisfies check(frame) (returns a
    problem or None) and, with `after`, is of a later refresh than that frame;
    returns the frame, or fails with the last problem seen."""
    last = ["no frame"]

    def ok():
        frame = Frame(term.screen(), pid, width, height)
        last[0] = frame.problem or check(frame)
        if last[0] is None and after is not None and frame.elapsed <= after.elapsed:
            # tmux crops the old frame at a resize: that is not top's doing.
            last[0] = "no refresh since the resize"
        if last[0] is None:
            ok.frame = frame
        return last[0] is None

    if wait_until(ok, timeout, step=0.1) is None:
        raise AssertionError("%s after %ss\n%s" % (last[0], timeout, term.shown()))
    return ok.frame


def ordered_by(key):
    def check(frame):
        values = [r[key] for r in frame.rows if not r["name"].startswith("exited ×")]
        if values != sorted(values, reverse=True):
            return "rows not in decreasing %s order: %s" % (key, values)
        return None
    return check


def test_top_fits_the_terminal_and_its_resizes(gilstat_bin, heavy, tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/install-deps installs it)")
    rc_file = tmp_path / "rc"
    with Target(heavy, "request_threads.py", "--rate", 40, "--ms", 3) as target:
        target.expect("ready")
        script = "%s top --pid %d --interval %s; echo $? > %s.tmp; mv %s.tmp %s; sleep 60" % (
            gilstat_bin, target.pid, INTERVAL_S, rc_file, rc_file, rc_file)
        with Tmux(120, 30, script) as term:
            pid = target.pid

            # 120x30: the header, the two busy threads first, rows that add up to the
            # utilisation, the request threads folded into one row.
            def busiest(frame):
                names = [r["name"] for r in frame.rows[:2]]
                if sorted(names) != ["busy-0", "busy-1"]:
                    return "the busiest rows are %s, not busy-0 and busy-1" % names
                if frame.sort != "held":
                    return "sorted by %s" % frame.sort
                if not any("×" in r["name"] for r in frame.rows):
                    return "no folded row (group or exited) for the request threads"
                held = sum(r["held"] for r in frame.rows)
                held += float(frame.more.group(2)) if frame.more else 0
                util = float(frame.gil.group(1))
                if abs(held - util) > 0.05 * (len(frame.rows) + 1) + 0.05:
                    return "rows sum to %.1f %% held, the GIL was %.1f %% utilised" % (held, util)
                return ordered_by("held")(frame)

            frame = wait_frame(term, pid, 120, 30, busiest, SCREEN_TIMEOUT_S)
            print("\n120x30:\n" + "\n".join(frame.lines))
            assert rc_file.exists() is False, term.shown()

            # Sort keys: by wait the napper (which mostly waits) comes before the busy
            # threads; by acquisitions the rows follow ACQ/s; back to held.
            term.keys("w")

            def by_wait(frame):
                if frame.sort != "wait":
                    return "sorted by %s" % frame.sort
                if frame.rows and frame.rows[0]["name"] in ("busy-0", "busy-1"):
                    return "by wait, a busy thread is still first"
                return ordered_by("wait")(frame)

            frame = wait_frame(term, pid, 120, 30, by_wait, SCREEN_TIMEOUT_S)
            print("sorted by wait:\n" + "\n".join(frame.lines))
            term.keys("a")
            wait_frame(term, pid, 120, 30,
                       lambda f: ("sorted by %s" % f.sort) if f.sort != "acq"
                       else ordered_by("acq")(f), SCREEN_TIMEOUT_S)
            term.keys("h")
            wait_frame(term, pid, 120, 30,
                       lambda f: ("sorted by %s" % f.sort) if f.sort != "held" else None,
                       SCREEN_TIMEOUT_S)

            # Groups off: the request threads, gone by the end of each interval, are
            # one "exited ×N" row.
            term.keys("g")

            def exited_row(frame):
                if "groups off" not in frame.lines[-1]:
                    return "groups still on"
                n = [int(r["name"].split("×")[1].replace(",", "")) for r in frame.rows
                     if r["name"].startswith("exited ×")]
                return None if n and n[0] >= 2 else "no 'exited ×N' row (N >= 2)"

            frame = wait_frame(term, pid, 120, 30, exited_row, SCREEN_TIMEOUT_S)
            print("groups off:\n" + "\n".join(frame.lines))
            term.keys("g")
            frame = wait_frame(term, pid, 120, 30,
                               lambda f: None if "groups on" in f.lines[-1] else "groups off",
                               SCREEN_TIMEOUT_S)

            # Resizes: each followed by a frame that fits, within a couple of refreshes;
            # at 9 lines the rows are cut, with "… N more threads" at the bottom.
            term.resize(100, 20)
            frame = wait_frame(term, pid, 100, 20, busiest, RESIZE_TIMEOUT_S, after=frame)
            print("100x20:\n" + "\n".join(frame.lines))
            term.resize(100, 9)

            def cut(frame):
                if frame.more is None:
                    return "no '… N more threads' line"
                if frame.row_lines[-1] != frame.more.group(0):
                    return "the '… more' line is not at the bottom of the rows"
                return busiest(frame)

            frame = wait_frame(term, pid, 100, 9, cut, RESIZE_TIMEOUT_S, after=frame)
            print("100x9:\n" + "\n".join(frame.lines))

            term.keys("q")
            quit_s = wait_until(rc_file.exists, 10, step=0.02)
            assert quit_s is not None, "gilstat top still running 10 s after `q`\n" + term.shown()
            assert quit_s <= QUIT_TIMEOUT_S, "gilstat top took %.2f s to quit" % quit_s
            assert rc_file.read_text().strip() == "0", rc_file.read_text()
        truth = target.finish()
    assert truth["requests"] > 0, truth


def test_top_plain_blocks_add_up(gilstat_bin, supported_python):
    """Not a terminal: one block per interval, not cut to a height, no escape sequences;
    each GIL's HELD% column adds up to its utilisation (up to the rounding of each row)."""
    with Target(supported_python, "attach_spin.py", "--threads", 3) as target:
        target.expect("ready")
        with Background(gilstat_bin, "top", "--pid", target.pid, "--interval", 0.3,
                        "--duration", 1.5, "--max-threads", "all") as top:
            code, out, err = top.wait()
            ctx = top.describe()
        truth = target.finish()
    text = out.decode("utf-8", "replace")
    ctx += "\nstdout:\n" + text[-6000:]
    assert code == 0, ctx
    assert "\033" not in text, ctx
    blocks = []
    for line in text.splitlines():
        if line.startswith("gilstat top · "):
            blocks.append([])
        if blocks and line.strip():
            blocks[-1].append(line)
    assert len(blocks) >= 3, ctx
    for lines in blocks:
        assert lines[0].startswith("gilstat top · pid %d · drops" % target.pid), ctx
        gil = next((GIL_LINE.match(l) for l in lines if GIL_LINE.match(l)), None)
        assert gil is not None, ctx
        assert not any(l.startswith(KEYS_LINE) or MORE_LINE.match(l) for l in lines), ctx
        header = next(l for l in lines if l.startswith("THREAD"))
        end = header.index("HELD%") + len("HELD%")
        rows = lines[lines.index(header) + 1:]
        # The thread rows end where the long holds or the interval's functions begin.
        for i, row in enumerate(rows):
            if row.startswith(("LONG HOLD ", "FUNCTION (held in the interval)")):
                rows = rows[:i]
                break
        assert rows, ctx
        held = sum(float(r[:end].split()[-1]) for r in rows)
        assert abs(held - float(gil.group(1))) <= 0.05 * len(rows) + 0.051, (lines, ctx)
    # The names are read by the probe's thread: the last block has them.
    names = {r.split()[0] for r in blocks[-1][blocks[-1].index(header) + 1:] if r[:1] != " "}
    assert {t["name"] for t in truth["threads"]} <= names, ctx


@pytest.mark.parametrize("value", ["0", "-3", "many", "5x"])
def test_top_bad_max_threads(gilstat, value):
    """Checked before attaching: pid 1 is never touched."""
    r = gilstat("top", "--pid", 1, "--max-threads", value)
    check_clear_error(r, 2, "--max-threads")


def test_top_json_lists_the_threads_of_the_interval(gilstat_bin, heavy):
    """A thread per request (workloads/thread_churn.py): each `top --json` line's
    `threads` are the interval's (alive, or gone in it with `exited`), not every thread
    the process ever ran; `since_attach` still counts them all."""
    churned = 120
    with Target(heavy, "thread_churn.py") as target:
        target.expect("ready")
        with Background(gilstat_bin, "top", "--pid", target.pid, "--interval", 0.25,
                        "--json") as top:
            out = top.out.fileno()  # shared with top: read with pread, never seek
            lines_now = lambda: os.pread(out, 1 << 26, 0).count(b"\n")
            assert wait_until(lambda: lines_now() >= 1, SCREEN_TIMEOUT_S) is not None, \
                top.describe()
            target.send("churn %d" % churned)
            target.expect("churned %d" % churned, timeout=60)
            before = lines_now()
            # The interval the churn ended in, then two without any exit.
            assert wait_until(lambda: lines_now() >= before + 3, SCREEN_TIMEOUT_S) is not None, \
                top.describe()
            top.proc.send_signal(signal.SIGINT)
            code, text, _ = top.wait()
            ctx = top.describe()
        target.send("exit")
    assert code == 0, ctx
    lines = [json.loads(l) for l in text.decode().splitlines() if l.strip()]
    assert len(lines) >= before + 3, ctx
    seen = {t["tid"] for t in lines[-1]["since_attach"]["threads"]}
    assert len(seen) >= churned, (len(seen), ctx)
    # Each request thread is listed as gone in the interval it ended in (once more at
    # most, when its last events reached gilstat after that interval's snapshot).
    gone = {}
    for line in lines:
        for t in line["threads"]:
            if t["exited"]:
                gone[t["tid"]] = gone.get(t["tid"], 0) + 1
    assert len(gone) >= churned * 0.9 and max(gone.values()) <= 2, (len(gone), gone)
    # After the churn: the threads that are still alive, none of the gone ones.
    for line in lines[before + 1:]:
        assert not [t for t in line["threads"] if t["exited"]], (line["threads"], ctx)
        assert len(line["threads"]) <= 4, (line["threads"], ctx)
