"""Broadcast image memory: the console's peak resident set while it prepares the worst
images it accepts (``nazaha/awareness/broadcast_image.py``).

    .venv/bin/python bench/image_memory.py [--code DIR] [--dir DIR] [--json]

Each image is made first (all small files: flat colours compress to a few hundred KB, which
is exactly the attack: a small file, a large bitmap), then prepared in a fresh child process
of its own: the child imports Pillow and the module, reads the file, notes its high-water resident set
(``VmHWM``), calls ``prepare_image`` once and notes it again. The figure is the growth (the decode,
the copies, the encoder), and the child's peak in all.

``--code DIR`` measures the ``prepare_image`` of another checkout (e.g. the code before
this change) with the same images; an image it refuses shows as refused.

It is a benchmark, not a test: it exits 0 whatever the figures (1 if it could not run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# name, Pillow mode, size, format, save options: 25 megapixels, at most 10,000 on a side.
CASES = (
    ("PNG RGBA 5000x5000", "RGBA", (5000, 5000), "PNG", {}),
    ("PNG RGBA 10000x2500", "RGBA", (10000, 2500), "PNG", {}),
    ("PNG palette + transparency 5000x5000", "P", (5000, 5000), "PNG", {"transparency": 0}),
    ("WebP RGBA 5000x5000 (lossless)", "RGBA", (5000, 5000), "WEBP", {"lossless": True}),
    ("JPEG CMYK 5000x5000", "CMYK", (5000, 5000), "JPEG", {"quality": 90}),
    ("JPEG RGB 5000x5000", "RGB", (5000, 5000), "JPEG", {"quality": 90}),
    ("JPEG RGB 9000x2500 (decoded at 1/2)", "RGB", (9000, 2500), "JPEG", {"quality": 90}),
)

# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent (here the
# process that just made a 25-megapixel image), VmHWM belongs to the child's own memory.
_CHILD = r"""
import json, re, sys
def high_water_kib():
    return int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
from nazaha.awareness.broadcast_image import prepare_image
data = open(sys.argv[1], "rb").read()
before = high_water_kib()
try:
    out = prepare_image(data)
    result = {"output_bytes": len(out)}
except ValueError as exc:
    result = {"refused": str(exc)}
result.update(before_kib=before, peak_kib=high_water_kib())
print(json.dumps(result))
"""


def make_image(path: Path, mode: str, size: tuple[int, int], fmt: str, options: dict) -> int:
    from PIL import Image

    colour = {"RGBA": (30, 90, 160, 128), "RGB": (30, 90, 160), "CMYK": (10, 60, 0, 20), "P": 1}[mode]
    image = Image.new(mode, size, colour)
    if mode == "P":
        image.putpalette([0, 0, 0, 30, 90, 160] + [0] * (256 * 3 - 6))
    image.save(path, fmt, **options)
    return path.stat().st_size


def measure(code: Path, image: Path) -> dict:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(code)}
    done = subprocess.run([sys.executable, "-c", _CHILD, str(image)], env=env, cwd=code, capture_output=True,
                          text=True, check=False, timeout=300)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose prepare_image is measured")
    parser.add_argument("--dir", type=Path, default=None, help="where the images are made (default: a temporary dir)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not Path("/proc/self/status").exists():
        print("this benchmark reads /proc/self/status (Linux)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        rows = []
        for index, (name, mode, size, fmt, options) in enumerate(CASES):
            path = Path(tmp) / f"case{index}.{fmt.lower()}"
            file_bytes = make_image(path, mode, size, fmt, options)
            result = measure(args.code.resolve(), path)
            rows.append({"image": name, "file_bytes": file_bytes, **result})
    print(f"# prepare_image of {args.code.resolve()} (Python {platform.python_version()}, {platform.machine()})")
    print(f"{'image':40} {'file':>9} {'growth':>9} {'peak':>9}  result")
    for row in rows:
        if "error" in row:
            print(f"{row['image']:40} {row['file_bytes'] / 1e3:>7.0f}KB  error: {row['error']}")
            continue
        growth = (row["peak_kib"] - row["before_kib"]) / 1024
        outcome = f"refused ({row['refused']})" if "refused" in row else f"JPEG {row['output_bytes'] / 1e3:.0f} KB"
        print(f"{row['image']:40} {row['file_bytes'] / 1e3:>7.0f}KB {growth:>7.0f}MB {row['peak_kib'] / 1024:>7.0f}MB  {outcome}")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
