"""A rebuild cut over and rolled back from the console, in a real headless Chromium.

Driven by tests/system/console.rs, which has built generation 2 of account_balances beside the
live one and keeps querying the projection meanwhile. Prints `done {json}`; on any failure saves
a screenshot in $SCREENSHOTS and exits 1.
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
    expect(page.locator(".rebuild h2")).to_have_text("Rebuild: generation 2")
    page.get_by_role("link", name="Compare generation 2 with the live one").click()
    found["same_data"] = page.locator("td[data-equal]").evaluate_all("cells => cells.map(c => c.dataset.equal)")
    page.get_by_role("link", name="Back to account_balances").click()
    cutover = page.locator("form[action$='/cutover']")
    cutover.get_by_label("Type account_balances to confirm").fill("account_balances")
    cutover.get_by_role("button", name="Cut over").click()
    found["cutover"] = page.locator("[data-outcome]").inner_text()
    page.get_by_role("link", name="Back to account_balances").click()
    expect(page.locator("#live dd").first).to_have_text("2")
    rollback = page.locator("form[action$='/rollback']")
    rollback.get_by_label("Type account_balances to confirm").fill("account_balances")
    rollback.get_by_role("button", name="Roll back").click()
    found["rollback"] = page.locator("[data-outcome]").inner_text()


def main():
    os.makedirs(SCREENSHOTS, exist_ok=True)
    found = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        page = browser.new_page()
        try:
            run(page, found)
        except Exception:
            page.screenshot(path=os.path.join(SCREENSHOTS, "rebuild-failure.png"), full_page=True)
            print("found so far", json.dumps(found), flush=True)
            raise
        finally:
            browser.close()
    print("done", json.dumps(found), flush=True)


if __name__ == "__main__":
    main()
