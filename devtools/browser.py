"""Debian's Chromium, headless, driven by Selenium through Debian's chromedriver (the console's browser
tests and benchmark). It may resolve and reach 127.0.0.1 only, and makes no background calls of its own."""
from __future__ import annotations

import shutil
from typing import Any

ARGUMENTS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800",
             "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--disable-client-side-phishing-detection",
             "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")
MISSING = ("Debian's chromium and chromium-driver are needed (apt-get install chromium chromium-driver; "
           "scripts/test.sh does it when run as root)")


def headless_chromium(*extra: str) -> Any:
    """A Selenium session of Debian's Chromium with ``extra`` command-line arguments; RuntimeError(MISSING)
    when the browser or its driver is not installed (Selenium is never let to download one)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        raise RuntimeError(MISSING)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (*ARGUMENTS, *extra):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)
