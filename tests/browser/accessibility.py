"""Every console page checked with axe-core in a real headless Chromium, in the light and the
dark colour scheme.

Driven by tests/system/console.rs. Prints `done {json}`: for each page and scheme, the rules
violated by impact. Saves a screenshot of every page it checked in $SCREENSHOTS (the README shows
them), and exits 1 on a failure to load one.
"""

import json
import os

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
URL = os.environ["CONSOLE_URL"]
OPERATOR = os.environ["OPERATOR_TOKEN"]
SCREENSHOTS = os.environ["SCREENSHOTS"]
PAGES = json.loads(os.environ["PAGES"])


def check(page, axe, name, found):
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        results = axe.run(page)
        violations = {}
        for violation in results.response["violations"]:
            violations.setdefault(violation["impact"], []).append(violation["id"])
        found[f"{name} ({scheme})"] = violations
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}-{scheme}.png"), full_page=True)


def main():
    os.makedirs(SCREENSHOTS, exist_ok=True)
    found = {}
    axe = Axe()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        try:
            page.goto(URL + "/login")
            check(page, axe, "login", found)
            page.fill("#token", OPERATOR)
            page.press("#token", "Enter")
            expect(page).to_have_url(URL)
            for name, path in PAGES.items():
                page.goto(URL + path)
                page.wait_for_timeout(300)  # the live region fills from its first event
                check(page, axe, name, found)
        except Exception:
            page.screenshot(path=os.path.join(SCREENSHOTS, "accessibility-failure.png"), full_page=True)
            print("found so far", json.dumps(found), flush=True)
            raise
        finally:
            browser.close()
    print("done", json.dumps(found), flush=True)


if __name__ == "__main__":
    main()
