"""A replay from the console, previewed then confirmed, in a real headless Chromium.

Driven by tests/system/console.rs. Prints `done {json}`; on any failure saves a screenshot in
$SCREENSHOTS and exits 1.
"""

import json
import os

from playwright.sync_api import expect, sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
URL = os.environ["CONSOLE_URL"]
OPERATOR = os.environ["OPERATOR_TOKEN"]
SCREENSHOTS = os.environ["SCREENSHOTS"]


def run(page, found):
    page.goto(URL + "/login")
    page.fill("#token", OPERATOR)
    page.press("#token", "Enter")
    expect(page).to_have_url(URL)
    page.get_by_role("link", name="account_balances", exact=True).click()
    page.get_by_role("link", name="Replay…").click()
    # A start the projection cannot take is named on the page, and nothing is done.
    page.get_by_label("Offset", exact=True).fill("3")
    page.get_by_label("Partition", exact=True).fill("0")
    page.get_by_role("radio", name="an offset").check()
    page.get_by_role("button", name="Preview").click()
    found["refused"] = page.locator("[data-outcome=refused]").inner_text()
    page.get_by_role("radio", name="the earliest record").check()
    page.get_by_role("button", name="Preview").click()
    found["preview"] = page.locator("[data-preview]").inner_text()
    found["preview_url"] = page.url
    page.get_by_label("Type account_balances to confirm").fill("account_balances")
    page.get_by_role("button", name="Replay", exact=True).click()
    found["outcome"] = page.locator("[data-outcome]").inner_text()


def main():
    os.makedirs(SCREENSHOTS, exist_ok=True)
    found = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page()
        try:
            run(page, found)
        except Exception:
            page.screenshot(path=os.path.join(SCREENSHOTS, "replay-failure.png"), full_page=True)
            print("found so far", json.dumps(found), flush=True)
            raise
        finally:
            browser.close()
    print("done", json.dumps(found), flush=True)


if __name__ == "__main__":
    main()
