#!/usr/bin/env python3
"""Writes the seed corpus of the recording fuzzer (tests/fuzz/corpus/).

usage: make_corpus.py GEN_RECORDING GOLDEN_GST OUT_DIR

Seeds start with a mode byte (recording_fuzz.cpp): 0 + a whole file (small
synthetic recordings of a few chunks, one cut off, one with its header only,
the golden real recording), 1 + one decompressed chunk payload.  Needs the
`zstd` command to decompress the payloads.  Run once; the output is
committed (a few tens of KiB).
"""
import os
import struct
import subprocess
import sys
import tempfile

gen, golden, out = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)


def write(name, mode, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([mode]) + data)


def chunks(data):
    (hlen,) = struct.unpack_from("<I", data, 12)
    pos = 16 + hlen + 4
    while pos + 24 <= len(data):
        stored, raw, _crc, codec = struct.unpack_from("<IIIB", data, pos + 4)
        yield data[pos + 24:pos + 24 + stored], codec
        pos += 24 + stored


with tempfile.TemporaryDirectory() as tmp:
    for name, events, extra in (("small", 300, []), ("small-tsc", 200, ["--tsc"]),
                                ("threads", 400, ["9", "3"])):
        path = os.path.join(tmp, name + ".gst")
        env = dict(os.environ, GEN_CHUNK_EVENTS="64")
        args = [gen, path, str(events)] + (extra if extra[:1] != ["--tsc"] else ["4", "1"] + extra)
        subprocess.run(args, check=True, env=env, capture_output=True)
        data = open(path, "rb").read()
        write("file-" + name, 0, data)
        if name == "small":
            write("file-small-cut", 0, data[:len(data) * 2 // 3])
            (hlen,) = struct.unpack_from("<I", data, 12)
            write("file-header-only", 0, data[:16 + hlen + 4])
            for i, (payload, codec) in enumerate(chunks(data)):
                raw = payload if codec == 0 else subprocess.run(
                    ["zstd", "-d", "-c"], input=payload, check=True, capture_output=True).stdout
                write("payload-small-%d" % i, 1, raw)
    write("file-golden-spin", 0, open(golden, "rb").read())
