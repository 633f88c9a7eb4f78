#!/usr/bin/env python3
"""Runs tools/plot_compare.py on a committed results.json and checks every plot is a PNG.
Exit 77 (skipped) when no python3 with matplotlib is found."""
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "compare", "results.json")
SCRIPT = os.path.join(ROOT, "tools", "plot_compare.py")
EXPECTED = ["accuracy_vs_kv.png", "perplexity_vs_kv.png", "fidelity_vs_kv.png",
            "niah_heatmaps.png", "passkey_heatmaps.png", "kv_bytes_vs_length.png",
            "decode_tps.png"]


def python_with_matplotlib():
    for exe in (os.environ.get("KVSIEVE_PYTHON"), sys.executable, "/usr/bin/python3"):
        if exe and subprocess.run([exe, "-c", "import matplotlib"],
                                  capture_output=True).returncode == 0:
            return exe
    return None


def main():
    exe = python_with_matplotlib()
    if exe is None:
        print("skipped: no python3 with matplotlib (apt-get install python3-matplotlib)")
        return 77
    with tempfile.TemporaryDirectory() as out:
        p = subprocess.run([exe, SCRIPT, FIXTURE, out], capture_output=True, text=True)
        if p.returncode != 0:
            print(p.stderr)
            return 1
        for name in EXPECTED:
            path = os.path.join(out, name)
            if not os.path.exists(path):
                print("missing plot: " + name)
                return 1
            with open(path, "rb") as f:
                data = f.read()
            if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 5000:
                print("not a PNG with content: " + name)
                return 1
        # A results file without rows is not an error: nothing is drawn.
        empty = os.path.join(out, "empty.json")
        with open(empty, "w") as f:
            f.write('{"rows": [], "model": {}}')
        if subprocess.run([exe, SCRIPT, empty, out], capture_output=True).returncode != 0:
            print("empty results failed")
            return 1
        # A broken file is a clear error, exit 1.
        with open(empty, "w") as f:
            f.write("{not json")
        p = subprocess.run([exe, SCRIPT, empty, out], capture_output=True, text=True)
        if p.returncode != 1 or "empty.json" not in p.stderr:
            print("broken results: rc {} stderr {}".format(p.returncode, p.stderr))
            return 1
    print("ok: " + ", ".join(EXPECTED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
