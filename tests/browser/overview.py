"""The console's overview in a real headless Chromium (Debian's, driven by Playwright).

Driven by tests/system/console.rs, which starts eventline and publishes events: this script
signs in, prints `ready {json}`, waits for `published <events>` on its standard input, then
waits for the page to show that many events waiting (over Server-Sent Events, without a
reload) and prints `live {json}`. On any failure it saves a screenshot of the page in $SCREENSHOTS and exits 1.
"""

import json
import os
import sys

from console_browser import URL, browser_page
from playwright.sync_api import expect

TOKEN = os.environ["CONSOLE_TOKEN"]


def say(word, fields):
    print(word, json.dumps(fields), flush=True)


def lag_cell(page, projection):
    return page.locator(f'tr[data-projection="{projection}"] [data-cell="lag-events"]')


def run(page):
    page.goto(URL)
    # Not signed in: the form, its field focused, signed in with the keyboard alone.
    expect(page).to_have_url(URL + "/login")
    expect(page.locator("#token")).to_be_focused()
    page.keyboard.type(TOKEN)
    page.keyboard.press("Enter")
    expect(page).to_have_url(URL)
    rows = page.locator("tbody tr[data-projection]")
    expect(rows.first).to_be_visible()
    names = sorted(rows.evaluate_all("rows => rows.map(r => r.dataset.projection)"))
    # Wait for the live stream to deliver a snapshot, then mark this page: a reload would lose it.
    page.wait_for_function("document.querySelector('#live').dataset.updated !== undefined")
    page.evaluate("window.notReloaded = true")
    say("ready", {"projections": names, "account_balances_lag": lag_cell(page, "account_balances").inner_text()})

    said, _, published = sys.stdin.readline().strip().partition(" ")
    if said != "published":
        raise RuntimeError("expected `published <events>`")
    # A snapshot may catch the publish half done: wait for the whole of it.
    expect(lag_cell(page, "account_balances")).to_have_text(published, timeout=30_000)
    stuck = page.locator('tr[data-projection="account_balances"] [data-cell="stuck"]')
    expect(stuck).to_be_visible(timeout=30_000)
    say(
        "live",
        {
            "account_balances_lag": lag_cell(page, "account_balances").inner_text(),
            "reloaded": page.evaluate("window.notReloaded !== true"),
            "stuck": stuck.inner_text(),
            "first_row": rows.first.get_attribute("data-projection"),
        },
    )


def main():
    with browser_page("overview", {}) as page:
        run(page)


if __name__ == "__main__":
    main()
