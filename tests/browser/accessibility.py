"""Every console page checked with axe-core in a real headless Chromium, in the light and the
dark colour scheme.

Driven by tests/system/console.rs. Prints `done {json}`: for each page and scheme, the rules
violated by impact. Saves a screenshot of every page it checked in $SCREENSHOTS (the README shows
them), and exits 1 on a failure to load one.
"""

import json
import os

from axe_playwright_python.sync_playwright import Axe
from console_browser import SCREENSHOTS, URL, run_script, sign_in

OPERATOR = os.environ["OPERATOR_TOKEN"]
PAGES = json.loads(os.environ["PAGES"])
AXE = Axe()


def check(page, name, found):
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        results = AXE.run(page)
        violations = {}
        for violation in results.response["violations"]:
            violations.setdefault(violation["impact"], []).append(violation["id"])
        found[f"{name} ({scheme})"] = violations
        page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}-{scheme}.png"), full_page=True)


def run(page, found):
    page.goto(URL + "/login")
    check(page, "login", found)
    sign_in(page, OPERATOR)
    for name, path in PAGES.items():
        page.goto(URL + path)
        page.wait_for_timeout(300)  # the live region fills from its first event
        check(page, name, found)


if __name__ == "__main__":
    run_script("accessibility", run)
