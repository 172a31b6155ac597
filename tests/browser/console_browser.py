"""What the console's browser scripts share: Debian's Chromium driven by Playwright (never a
downloaded browser), signing in, and a screenshot of the page when a script fails.

Each script is run by tests/system/console.rs with CONSOLE_URL (the console's base URL) and
SCREENSHOTS (where screenshots go) in its environment.
"""

import contextlib
import json
import os

from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
URL = os.environ["CONSOLE_URL"]
SCREENSHOTS = os.environ["SCREENSHOTS"]


def sign_in(page, token):
    page.goto(URL + "/login")
    page.fill("#token", token)
    page.press("#token", "Enter")
    expect(page).to_have_url(URL)


@contextlib.contextmanager
def browser_page(name, found):
    """A page of a fresh headless Chromium; on a failure inside, a screenshot `<name>-failure.png`
    and what was found so far are left before the error goes on."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            yield page
        except Exception:
            page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}-failure.png"), full_page=True)
            print("found so far", json.dumps(found), flush=True)
            raise
        finally:
            browser.close()


def run_script(name, run):
    """Runs `run(page, found)` in a fresh page, then prints `done {found}` for the test to read."""
    found = {}
    with browser_page(name, found) as page:
        run(page, found)
    print("done", json.dumps(found), flush=True)
