"""Screenshots of a rendered report, to look at every page as a reader would (not only the PNG files).

    python scripts/screenshot_report.py --profile default            # -> build/screenshots/default/
    python scripts/screenshot_report.py --profile real --width 1100

Needs a headless Chromium (Debian: ``apt-get install chromium``). Each ``reports/<profile>/*.html`` is
shot in slices of ``--slice`` pixels (a long page does not fit one screenshot): slice k is taken from a
copy of the page shifted up by k slices, and slices after the end of the page (blank) are dropped.
Nothing is fetched from the network: the pages load MathJax from ``mathjax/`` beside them (copied with the
shifted pages), and Chromium is given a few seconds of virtual time to typeset the formulas.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"no headless browser found (tried {', '.join(BROWSERS)}); on Debian: apt-get install chromium")


def blank(image: Image.Image) -> bool:
    """True when the slice is one flat colour (past the end of the page)."""
    rgb = image.convert("RGB")
    return ImageChops.difference(rgb, Image.new("RGB", rgb.size, rgb.getpixel((0, 0)))).getbbox() is None


def shoot(browser: str, page: Path, out_dir: Path, width: int, slice_height: int, max_slices: int) -> list[Path]:
    html = page.read_text(encoding="utf-8")
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        if (page.parent / "mathjax").is_dir():  # the page's only local script
            shutil.copytree(page.parent / "mathjax", Path(tmp) / "mathjax")
        for k in range(max_slices):
            shifted = Path(tmp) / page.name  # the pages embed their images: a copy beside mathjax/ renders the same
            style = f"<style>html {{ margin-top: -{k * slice_height}px !important; }}</style>"
            shifted.write_text(html.replace("</head>", style + "</head>", 1), encoding="utf-8")
            target = out_dir / f"{page.stem}-{k:02d}.png"
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            "--hide-scrollbars", "--virtual-time-budget=10000", f"--window-size={width},{slice_height}", f"--screenshot={target}",
                            shifted.as_uri()], check=True, capture_output=True, timeout=120)
            with Image.open(target) as image:
                if k > 0 and blank(image):
                    target.unlink()
                    break
            written.append(target)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--slice", type=int, default=2400, help="height of one screenshot in pixels")
    parser.add_argument("--max-slices", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None, help="default: build/screenshots/<profile>/")
    args = parser.parse_args(argv)
    pages = sorted((ROOT / "reports" / args.profile).glob("*.html"))
    if not pages:
        raise SystemExit(f"no HTML pages in reports/{args.profile}/ (render them first: make report PROFILE={args.profile})")
    out_dir = args.out or ROOT / "build" / "screenshots" / args.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    browser = find_browser()
    for page in pages:
        shots = shoot(browser, page, out_dir, args.width, args.slice, args.max_slices)
        print(f"{page.name}: {len(shots)} screenshot(s) in {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
