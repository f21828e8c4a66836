"""The README's picture of a run report: the flights job run with `--report`, opened in the system's
headless Chromium (Debian's `chromium`), saved as a PNG. Run after `python3 scripts/dev.py flights`:

    .venv/bin/python scripts/report_screenshot.py docs/report-flights.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(target: str) -> int:
    browser = shutil.which("chromium")
    if browser is None:
        print("needs Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="report-") as folder:
        page_path = Path(folder) / "flights.html"
        command = [str(Path(sys.executable).parent / "pipeline"), "run", "configs/flights.toml", "--quiet",
                   "--workers", "2", "--report", str(page_path), "--set", f'sink.path="{folder}/out.parquet"']
        subprocess.run(command, cwd=ROOT, check=True)
        with sync_playwright() as driver:
            chromium = driver.chromium.launch(executable_path=browser, headless=True)
            page = chromium.new_page(viewport={"width": 1280, "height": 900})
            page.goto(page_path.as_uri())
            page.wait_for_selector("[data-bars]")
            page.screenshot(path=target, full_page=True)
            chromium.close()
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/report-flights.png"))
