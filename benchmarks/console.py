"""The console's load time on the local host: the page, its scripts (MSAL included) and the first page
of subscriptions, with N subscriptions stored, in Debian's headless Chromium (navigation start to the
first table row drawn), median and worst of R loads. Chromium resolves and reaches 127.0.0.1 only.

    .venv/bin/python -m benchmarks.console [--subscriptions 1000] [--loads 7]
"""
from __future__ import annotations

import argparse
import statistics

from benchmarks.harness import Host
from devtools.browser import headless_chromium
from shared.models import HttpEndpoint, Subscription, SubscriptionState
from shared.store.sqlite import SqliteStore

GOAL_SECONDS = 1.0


def measure(subscriptions: int = 1000, loads: int = 7) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    host = Host("http://127.0.0.1:9", "unused").start()  # the page's calls never reach Calendly
    browser = headless_chromium()
    try:
        store = SqliteStore(host.sqlite)
        for n in range(subscriptions):
            store.create_subscription(Subscription(
                id=f"{n:032x}", target=HttpEndpoint(f"https://prod-00.westeurope.logic.azure.com/workflows/{n}"),
                events=["invitee.created"], scope="organization", organization="https://api.calendly.com/organizations/O",
                user=None, group=None, signing_key="k", generation="g", state=SubscriptionState.ACTIVE,
                callback_token=f"{n:043d}"))
        seconds = []
        for _ in range(loads + 1):  # the first load warms the worker and the browser's cache: not counted
            browser.get("about:blank")
            browser.get(f"{host.url}/api/console")
            WebDriverWait(browser, 30, poll_frequency=0.01).until(
                lambda b: len(b.find_elements(By.CSS_SELECTOR, "#subs-table tbody tr")) == 50)
            seconds.append(browser.execute_script("return performance.now()") / 1000)
        seconds = seconds[1:]
        return {"subscriptions": subscriptions, "loads": loads, "median_s": round(statistics.median(seconds), 3),
                "max_s": round(max(seconds), 3), "goal_s": GOAL_SECONDS}
    finally:
        browser.quit()
        host.stop()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=7)
    args = parser.parse_args(argv)
    result = measure(args.subscriptions, args.loads)
    print(f"console: {result['subscriptions']} subscriptions stored, first page drawn in {result['median_s']} s median, "
          f"{result['max_s']} s worst of {result['loads']} loads (goal < {GOAL_SECONDS} s)")


if __name__ == "__main__":
    main()
