"""A rebuild started, cut over and rolled back from the console, in a real headless Chromium.

Driven by tests/system/console.rs, which keeps querying account_balances meanwhile. Prints `done {json}`; on any failure saves
a screenshot in $SCREENSHOTS and exits 1.
"""

import os
import time

from console_browser import run_script, sign_in
from playwright.sync_api import expect

OPERATOR = os.environ["OPERATOR_TOKEN"]


def run(page, found):
    sign_in(page, OPERATOR)
    page.get_by_role("link", name="account_balances", exact=True).click()
    page.get_by_role("radio", name="the earliest record").check()
    page.get_by_role("button", name="Start the rebuild").click()
    found["started"] = page.locator("[data-outcome]").inner_text()
    page.get_by_role("link", name="Back to account_balances").click()
    # The console builds it in the background; the page says when it has caught up.
    deadline = time.monotonic() + 60
    while page.locator("[data-started=caught-up]").count() == 0:
        if time.monotonic() > deadline:
            raise AssertionError("the rebuild started from the page did not catch up within 60 s")
        time.sleep(0.5)
        page.reload()
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


if __name__ == "__main__":
    run_script("rebuild", run)
