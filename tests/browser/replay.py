"""A replay from the console, previewed then confirmed, in a real headless Chromium.

Driven by tests/system/console.rs. Prints `done {json}`; on any failure saves a screenshot in
$SCREENSHOTS and exits 1.
"""

import os

from console_browser import run_script, sign_in

OPERATOR = os.environ["OPERATOR_TOKEN"]


def run(page, found):
    sign_in(page, OPERATOR)
    page.get_by_role("link", name="account_balances", exact=True).click()
    page.get_by_role("link", name="Replay…").click()
    # A start the projection cannot take is named on the page, and nothing is done.
    page.get_by_label("Offsets, as partition:offset separated by commas").fill("0:3")
    page.get_by_role("radio", name="offsets, as partition:offset").check()
    page.get_by_role("button", name="Preview").click()
    found["refused"] = page.locator("[data-outcome=refused]").inner_text()
    page.get_by_role("radio", name="the earliest record").check()
    page.get_by_role("button", name="Preview").click()
    found["preview"] = page.locator("[data-preview]").inner_text()
    found["preview_url"] = page.url
    page.get_by_label("Type account_balances to confirm").fill("account_balances")
    page.get_by_role("button", name="Replay", exact=True).click()
    found["outcome"] = page.locator("[data-outcome]").inner_text()


if __name__ == "__main__":
    run_script("replay", run)
