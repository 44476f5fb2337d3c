#!/usr/bin/env bash
# Runs the real app under Xvfb on a generated library and saves PNGs into screenshots/.
# Needs: xvfb xauth imagemagick xdotool (apt-get install -y xvfb xauth imagemagick xdotool
# mesa-vulkan-drivers libvulkan1 libgl1-mesa-dri libxkbcommon-x11-0).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/model-library-target}"
cargo build --quiet --bin model-library --example gen_library
BIN="$CARGO_TARGET_DIR/debug/model-library"
GEN="$CARGO_TARGET_DIR/debug/examples/gen_library"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
"$GEN" "$WORK/library" --models 2000 --files 3 >/dev/null
mkdir -p screenshots

# A slow local HTTP server, so a download is visibly in progress (127.0.0.1 only).
cat > "$WORK/slow_server.py" <<'PY'
import http.server, sys, time
class Slow(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        size = 400 * 1024 * 1024
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = b"\0" * 65536
        try:
            for _ in range(size // len(chunk)):
                self.wfile.write(chunk)
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Slow).serve_forever()
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 "$WORK/slow_server.py" "$PORT" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 - "$WORK/library/model_registry.json" "$PORT" <<'PY'
import json, sys
path, port = sys.argv[1], sys.argv[2]
doc = json.load(open(path))
doc["models"].insert(0, {
    "id": "aaa-demo-download", "name": "AAA Demo download (local server)",
    "provider": "huggingface", "capabilities": ["text-generation", "chat"], "format": "gguf",
    "description": "Served slowly by a local test server so the progress bar shows.",
    "files": [{"path": "demo.gguf", "url": f"http://127.0.0.1:{port}/demo.gguf", "size": 400 * 1024 * 1024}],
})
doc["models"].insert(1, {
    "id": "aaa-rotten-weights", "name": "AAA Rotten weights (fails verify)",
    "provider": "local", "capabilities": ["text-generation"], "format": "gguf",
    "description": "Its file no longer holds the bytes its sha256 names.",
    "files": [{"path": "weights.gguf", "size": 11,
               "sha256": "4e7d4b6b9e7b6a8e0c7c49d4ba9b9f5e8f1e3b6a1a2c0b7d9e8f7a6b5c4d3e2f"}],
})
json.dump(doc, open(path, "w"), indent=1)
PY
mkdir -p "$WORK/library/models/aaa-rotten-weights"
printf 'bit rotten!' > "$WORK/library/models/aaa-rotten-weights/weights.gguf"
# What `verify` finds shows in the window: the model in error, with the file and hashes.
"$BIN" --library "$WORK/library" verify >/dev/null || true

# Sourced by each Xvfb session: opens the app on $LIB with its settings in $CONFIG, waits
# (bounded) for its window, sets WIN and puts the window in the top left corner.
cat > "$WORK/open_app.sh" <<'OPEN'
export XDG_CONFIG_HOME=$CONFIG XDG_DATA_HOME=$(dirname "$LIB")/data
unset WAYLAND_DISPLAY
"$BIN" --library "$LIB" &
APP=$!
trap 'kill $APP 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  WIN=$(xdotool search --onlyvisible --name "Model Library" 2>/dev/null | head -1 || true)
  [ -n "$WIN" ] && break
  sleep 0.1
done
[ -n "$WIN" ] || { echo "window did not appear" >&2; exit 1; }
xdotool windowmove "$WIN" 0 0 || true
OPEN

# Everything below runs inside one Xvfb session.
cat > "$WORK/session.sh" <<'SESSION'
set -euo pipefail
BIN=$1; LIB=$2; OUT=$3; CONFIG=$(dirname "$LIB")/config
. "$(dirname "$0")/open_app.sh"
shot() { sleep "${2:-1.5}"; import -window root -crop 1360x820+0+0 +repage "$OUT/$1.png"; }
xdotool windowfocus "$WIN" 2>/dev/null || true
xdotool mousemove --window "$WIN" 600 808 click 1  # focus, on the status bar
shot main-view 3
# Filtered view: a provider filter through the search box and a status filter key path.
xdotool key --window "$WIN" ctrl+f
xdotool type --window "$WIN" --delay 40 "qwen"
shot filtered-view
# "Clear filters" empties the search box again.
xdotool mousemove --window "$WIN" 950 39 click 1
# Select the second row (the first is the demo model, not on disk yet) and ask to delete it.
sleep 1
xdotool mousemove --window "$WIN" 120 125 click 1
sleep 1
xdotool mousemove --window "$WIN" 700 500
xdotool key --window "$WIN" Delete
shot delete-confirmation
xdotool key --window "$WIN" Escape  # closes the dialog
sleep 0.3
xdotool key --window "$WIN" Escape  # clears the selection (closes the details panel)
# Start the demo download (first row by name, Actions column) and show it in progress.
xdotool key --window "$WIN" ctrl+f
xdotool type --window "$WIN" --delay 40 "demo download"
sleep 1
xdotool mousemove --window "$WIN" 1048 101 click 1
sleep 0.5
xdotool mousemove --window "$WIN" 120 101 click 1
shot download-in-progress 3
SESSION
xvfb-run -a -s "-screen 0 1360x820x24" bash "$WORK/session.sh" "$BIN" "$WORK/library" "$PWD/screenshots"

# A model that failed verify, selected: its row in error, the details saying why.
cat > "$WORK/verify.sh" <<'VERIFY'
set -euo pipefail
BIN=$1; LIB=$2; OUT=$3; CONFIG=$(dirname "$LIB")/config-verify
. "$(dirname "$0")/open_app.sh"
xdotool windowfocus "$WIN" 2>/dev/null || true
sleep 3
xdotool key --window "$WIN" ctrl+f
xdotool type --window "$WIN" --delay 40 "rotten"
sleep 1
xdotool mousemove --window "$WIN" 120 101 click 1
sleep 1.5
import -window root -crop 1360x820+0+0 +repage "$OUT/verify-mismatch.png"
VERIFY
xvfb-run -a -s "-screen 0 1360x820x24" bash "$WORK/verify.sh" "$BIN" "$WORK/library" "$PWD/screenshots"

# The Disk window: usage per store, largest and least recently changed, reclaimable space.
cat > "$WORK/disk.sh" <<'DISK'
set -euo pipefail
BIN=$1; LIB=$2; OUT=$3; CONFIG=$(dirname "$LIB")/config-disk
. "$(dirname "$0")/open_app.sh"
xdotool windowfocus "$WIN" 2>/dev/null || true
sleep 3
xdotool mousemove --window "$WIN" 836 16 click 1  # "Disk…" in the toolbar
sleep 3
import -window root -crop 1360x820+0+0 +repage "$OUT/disk-window.png"
DISK
xvfb-run -a -s "-screen 0 1360x820x24" bash "$WORK/disk.sh" "$BIN" "$WORK/library" "$PWD/screenshots"

# What fits: a Llama-3-8B-sized GGUF (a real header, sparse weights) in a library of its
# own, shown with "Fits this machine" on and its details scrolled to the memory it needs;
# then the Stores window (each store's default folder on this machine).
mkdir -p "$WORK/fit/models/llama-3-8b-q4"
python3 - "$WORK/fit/models/llama-3-8b-q4/model.gguf" <<'PY'
import struct, sys
def key(k, ty): return struct.pack('<Q', len(k)) + k.encode() + struct.pack('<I', ty)
kv = key("general.architecture", 8) + struct.pack('<Q', 5) + b"llama"
for k, v in [("llama.context_length", 131072), ("llama.block_count", 32),
             ("llama.embedding_length", 4096), ("llama.attention.head_count", 32),
             ("llama.attention.head_count_kv", 8)]:
    kv += key(k, 4) + struct.pack('<I', v)
with open(sys.argv[1], "wb") as f:
    f.write(b"GGUF" + struct.pack('<I', 3) + struct.pack('<Q', 0) + struct.pack('<Q', 6) + kv)
    f.truncate(4_920_000_000)
PY
cat > "$WORK/fit.sh" <<'FIT'
set -euo pipefail
BIN=$1; LIB=$2; OUT=$3; CONFIG=$(dirname "$LIB")/config-fit
. "$(dirname "$0")/open_app.sh"
xdotool windowfocus "$WIN" 2>/dev/null || true
sleep 3
xdotool mousemove --window "$WIN" 792 39 click 1  # "Fits this machine"
sleep 1
xdotool mousemove --window "$WIN" 120 101 click 1
sleep 1
xdotool mousemove --window "$WIN" 300 700 click 5 click 5
sleep 1.5
import -window root -crop 1360x820+0+0 +repage "$OUT/memory-to-run.png"
xdotool mousemove --window "$WIN" 1075 16 click 1  # "Stores…"
sleep 1.5
import -window root -crop 1360x820+0+0 +repage "$OUT/stores-window.png"
FIT
xvfb-run -a -s "-screen 0 1360x820x24" bash "$WORK/fit.sh" "$BIN" "$WORK/fit" "$PWD/screenshots"

# Small windows: 900x600 at scale 1, and 1000x650 at scale 1.5 (columns give way).
cat > "$WORK/small.sh" <<'SMALL'
set -euo pipefail
BIN=$1; LIB=$2; OUT=$3; W=$4; H=$5; NAME=$6; CONFIG=$(dirname "$LIB")/config-small
. "$(dirname "$0")/open_app.sh"
xdotool windowsize "$WIN" "$W" "$H" || true
sleep 3
import -window root -crop "${W}x${H}+0+0" +repage "$OUT/$NAME.png"
SMALL
xvfb-run -a -s "-screen 0 1360x820x24" bash "$WORK/small.sh" "$BIN" "$WORK/library" "$PWD/screenshots" 900 600 small-window
WINIT_X11_SCALE_FACTOR=1.5 xvfb-run -a -s "-screen 0 1360x820x24" bash "$WORK/small.sh" "$BIN" "$WORK/library" "$PWD/screenshots" 1000 650 scaled-1.5
ls -1 screenshots/*.png
