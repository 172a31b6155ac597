"""The console's dead letters in a real headless Chromium (Debian's, driven by Playwright).

Driven by tests/system/console.rs, which starts eventline with poisoned events dead-lettered and
their cause fixed: an operator retries every key from the page (a preview first, the projection's
name typed to confirm), then a read-only viewer finds every action disabled. Prints `done {json}`;
on any failure saves a screenshot in $SCREENSHOTS and exits 1.
"""

import os

from console_browser import URL, run_script, sign_in
from playwright.sync_api import expect

OPERATOR = os.environ["OPERATOR_TOKEN"]
VIEWER = os.environ["VIEWER_TOKEN"]


def run(page, found):
    sign_in(page, OPERATOR)
    page.get_by_role("link", name="Dead letters").click()
    page.select_option("select[name=projection]", "account_balances")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(URL + "/dead-letters?projection=account_balances&key=&kind=&since=")
    found["listed"] = page.locator("tr[data-letter]").count()
    page.get_by_role("link", name="Retry every key shown…").click()
    found["preview"] = page.locator("[data-preview]").inner_text()
    page.get_by_label("Type account_balances to confirm").fill("account_balances")
    page.get_by_role("button", name="Retry them all").click()
    found["outcome"] = page.locator("[data-outcome]").inner_text()
    page.get_by_role("link", name="Back to the list").click()
    found["left"] = page.locator("tr[data-letter]").count()

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, VIEWER)
    page.goto(URL + "/dead-letters?projection=account_balances")
    expect(page.get_by_text("You can look but not act")).to_be_visible()
    found["viewer_buttons_disabled"] = all(
        button.is_disabled() for button in page.locator("tr[data-letter] button").all()
    )
    page.locator("tr[data-letter] a").first.click()
    found["viewer_record_buttons_disabled"] = all(
        button.is_disabled() for button in page.locator(".actions button").all()
    )


if __name__ == "__main__":
    run_script("dead-letters", run)
