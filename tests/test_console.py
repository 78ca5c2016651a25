"""The operator console (shared/console.py, shared/console_assets): its headers and assets over the
local host, and the page itself in a real browser — Debian's Chromium, headless, driven by Selenium
through Debian's chromedriver — against the local host with the Calendly sandbox and a recording
target. Screenshots go to build/screenshots/. Chromium may resolve and reach 127.0.0.1 only.

No browser is a failure, never a skip: scripts/test.sh installs Debian's chromium and chromium-driver
when it runs as root (CI does), and says how otherwise."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, simulate
from tests.helpers import subscribe

SHOTS = ROOT / "build" / "screenshots"
KEY = "console-test-management-key-0123456789abcdef"
XSS_NAME = '<img src=x onerror="window.__xss=1">\u202eevil</script><script>window.__xss=2</script>'


# Served as it should be (no browser) -----------------------------------------------------------
def test_the_page_and_its_assets_are_served_with_a_strict_policy_and_nothing_else_is(bridge):
    page = requests.get(f"{bridge.url}/api/console", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "base-uri 'none'", "connect-src 'self'"):
        assert directive in policy
    assert "unsafe" not in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["Cache-Control"] == "no-store"
    html = page.text
    # No inline script, style or event handler: the policy would block them anyway.
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "<style" not in html and not re.search(r"\son[a-z]+=", html)
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        asset = requests.get(f"{bridge.url}/api/console/assets/{name}", timeout=10)
        assert asset.status_code == 200 and asset.headers["Content-Type"].startswith(kind)
        assert asset.headers["X-Content-Type-Options"] == "nosniff"
    script = requests.get(f"{bridge.url}/api/console/assets/console.js", timeout=10).text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "eval(" not in script
    # The page itself never touches storage or cookies (MSAL, configured for sessionStorage, keeps its own tokens).
    assert not re.search(r"(localStorage|sessionStorage)\s*[.\[]", script) and "document.cookie" not in script
    for bad in ("index.html", "..%2F..%2Ffunction_app.py", "console.js%00", "CONSOLE.JS"):
        missing = requests.get(f"{bridge.url}/api/console/assets/{bad}", timeout=10)
        assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("application/json"), bad
    assert requests.get(f"{bridge.url}/api/console/config", timeout=10).json() == {"management_auth": "function_key", "entra": None}


def test_the_hook_route_says_what_calendly_holds_without_the_callback_url(bridge, sandbox, target):
    sub = subscribe(bridge, target).json()
    hook = bridge.api("GET", f"/subscriptions/{sub['id']}/hook")
    assert hook.status_code == 200 and hook.json()["state"] == "active" and hook.json()["uri"] == sub["calendly_webhook"]
    [held] = sandbox.app.hooks()
    assert held["callback_url"] not in hook.text and held["callback_url"].rsplit("/", 1)[1] not in hook.text
    sandbox.app.set_state(held["uri"].rsplit("/", 1)[1], "disabled")
    assert bridge.api("GET", f"/subscriptions/{sub['id']}/hook").json()["state"] == "disabled"
    sandbox.app.remove(held["uri"].rsplit("/", 1)[1])
    assert bridge.api("GET", f"/subscriptions/{sub['id']}/hook").json()["state"] == "missing"
    assert bridge.api("GET", f"/subscriptions/{'0' * 32}/hook").status_code == 404


def test_management_answers_are_never_cached_and_me_says_who_the_caller_is(bridge, target):
    sub = subscribe(bridge, target).json()
    listed = bridge.api("GET", f"/subscriptions/{sub['id']}/deliveries", params={"include": "payload"})
    assert listed.status_code == 200 and listed.headers["Cache-Control"] == "no-store"
    me = bridge.api("GET", "/me")
    assert me.json() == {"kind": "function_key", "admin": True, "organization_scope": True, "name": None, "object_id": None,
                         "tenant_id": None}


# In a real browser ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    from devtools.browser import headless_chromium

    try:
        # the loopback sign-in server's self-signed certificate (tests/entra_issuer.py)
        session = headless_chromium("--ignore-certificate-errors")
    except RuntimeError as exc:
        pytest.fail(f"the console's browser tests: {exc}")
    session.set_page_load_timeout(30)
    yield session
    session.quit()


def wait(browser, condition, timeout=15):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # A redirect (sign-in) replaces the page under a condition: look again.
    return WebDriverWait(browser, timeout, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(condition)


def text_in(element_id: str, text: str):
    from selenium.webdriver.common.by import By

    return lambda b: text in b.find_element(By.ID, element_id).text


def shot(browser, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    browser.save_screenshot(str(path))
    return path


def test_an_operator_finds_a_dead_delivery_replays_it_and_sees_it_delivered(make_host, sandbox, target, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    bridge = make_host(DELIVERY_MAX_ATTEMPTS="1")
    ok = subscribe(bridge, target, path="/healthy-flow").json()
    failing = subscribe(bridge, target, path="/failing-flow", events=("invitee.canceled",)).json()
    target.respond(500, 500, 500, 500, default=200)  # the failing flow's one attempt (and its in-call retries) fail
    simulate(sandbox, "invitee.canceled")
    [dead] = bridge.api("GET", f"/subscriptions/{failing['id']}/deliveries").json()["value"]
    assert dead["status"] == "dead"
    target.respond(default=200)  # the flow is fixed
    assert bridge.run("reconcile").returncode == 0

    browser.get(f"{bridge.url}/api/console")
    wait(browser, text_in("subs-table", failing["id"]))
    assert ok["id"] in browser.find_element(By.ID, "subs-table").text
    assert "function key · admin" in browser.find_element(By.ID, "who").text  # the local host, like func start, takes no key
    wait(browser, text_in("health-checks", "ok"))
    wait(browser, text_in("bridge-status", "2 checked, 2 healthy"))
    browser.find_element(By.XPATH, "//button[text()='Check the token of default']").click()
    wait(browser, text_in("preflight", "result\nok"))
    assert "dead (kept for replay)\n1" in browser.find_element(By.ID, "bridge-status").text
    # Keyboard only: focus the failing subscription's row and press Enter.
    row = browser.find_element(By.CSS_SELECTOR, f"#subs-table tr[data-id='{failing['id']}']")
    row.send_keys(Keys.ENTER)
    wait(browser, text_in("deliveries-table", "dead"))
    assert "500" in browser.find_element(By.ID, "deliveries-table").text and "dead: 1" in browser.find_element(By.ID, "counts").text
    assert "last event 20" in browser.find_element(By.ID, "counts").text
    browser.find_element(By.ID, "check-hook").click()
    wait(browser, text_in("status", "Calendly hook: active"))
    shot(browser, "console-dead-delivery")
    browser.find_element(By.CSS_SELECTOR, f"#deliveries-table tr[data-id='{dead['id']}'] button[aria-label^='Replay']").click()
    wait(browser, text_in("deliveries-table", "delivered"))
    wait(browser, text_in("status", "Replayed: delivered"))
    assert [r["path"] for r in target.delivered()] == ["/failing-flow"]
    shot(browser, "console-replayed")


def test_hostile_payload_text_renders_inert(make_host, sandbox, target, browser):
    from selenium.webdriver.common.by import By

    bridge = make_host()
    sub = subscribe(bridge, target).json()
    simulate(sandbox, "invitee.created", payload={"name": XSS_NAME, "text_reminder_number": "x" * 20000})
    browser.get(f"{bridge.url}/api/console")
    wait(browser, text_in("subs-table", sub["id"]))
    browser.find_element(By.CSS_SELECTOR, f"#subs-table tr[data-id='{sub['id']}']").click()
    wait(browser, text_in("deliveries-table", "delivered"))
    browser.find_element(By.CSS_SELECTOR, "#deliveries-table button[aria-label^='Show the payload']").click()
    wait(browser, text_in("payload-text", "onerror"))
    shown = browser.find_element(By.ID, "payload-text").text
    assert "<img src=x onerror=" in shown and "<script>window.__xss=2</script>" in shown  # as text
    assert browser.execute_script("return window.__xss === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "#payload img, #payload script, main img")
    width = browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert width, "a 20,000-character field must not widen the page"
    shot(browser, "console-hostile-payload")


def test_with_a_key_the_console_asks_for_it_keeps_it_in_memory_only_and_refuses_a_wrong_one(make_host, target, browser):
    from selenium.webdriver.common.by import By

    from tests.entra_issuer import LocalIssuer

    with LocalIssuer() as issuer:
        bridge = make_host(**issuer.settings(MANAGEMENT_AUTH="both", MANAGEMENT_KEY=KEY))
        sub = bridge.api("POST", "/subscriptions", headers={"x-functions-key": KEY},
                         json={"url": f"{target.url}/flow", "events": ["invitee.created"]}).json()
        browser.get(f"{bridge.url}/api/console")
        wait(browser, text_in("sign-in-why", "management key"))
        assert browser.find_element(By.ID, "subscriptions").get_attribute("hidden") is not None
        field = browser.find_element(By.ID, "key")
        field.send_keys("not-the-key")
        field.submit()
        wait(browser, text_in("status", "not accepted"))
        field = browser.find_element(By.ID, "key")
        field.send_keys(KEY)
        field.submit()
        wait(browser, text_in("subs-table", sub["id"]))
        assert "management key · admin" in browser.find_element(By.ID, "who").text
        kept = browser.execute_script(
            "return JSON.stringify([Object.assign({}, localStorage), Object.assign({}, sessionStorage), document.cookie, location.href])")
        assert KEY not in kept and browser.find_element(By.ID, "key").get_attribute("value") == ""
        browser.find_element(By.ID, "sign-out").click()
        wait(browser, text_in("sign-in-why", "management key"))
        assert sub["id"] not in browser.find_element(By.ID, "subs-table").text


def test_a_narrow_window_keeps_the_page_readable(make_host, target, browser):
    bridge = make_host()
    for n in range(3):
        subscribe(bridge, target, path=f"/flow-{n}")
    browser.set_window_size(420, 800)
    try:
        browser.get(f"{bridge.url}/api/console")
        wait(browser, text_in("subs-table", "invitee.created"))
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        shot(browser, "console-narrow")
    finally:
        browser.set_window_size(1280, 800)


def test_the_page_lists_a_thousand_subscriptions_in_pages(make_host, target, browser):
    """1,000 subscriptions: the first page (50) renders, "Load more" fetches the next (the load time is
    benchmarks/console.py's, never asserted here)."""
    from selenium.webdriver.common.by import By

    from shared.models import HttpEndpoint, Subscription, SubscriptionState
    from shared.store.sqlite import SqliteStore

    bridge = make_host()
    store = SqliteStore(bridge.env["BRIDGE_SQLITE_PATH"])
    for n in range(1000):
        store.create_subscription(Subscription(
            id=f"{n:032x}", target=HttpEndpoint(f"https://prod-00.westeurope.logic.azure.com/workflows/{n}"), events=["invitee.created"],
            scope="organization", organization="https://api.calendly.com/organizations/O", user=None, group=None, signing_key="k",
            generation="g", state=SubscriptionState.ACTIVE, callback_token=f"{n:043d}"))
    browser.get(f"{bridge.url}/api/console")
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#subs-table tbody tr")) == 50)
    browser.find_element(By.ID, "more-subs").click()
    wait(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#subs-table tbody tr")) == 100)
    shot(browser, "console-list")


ALICE = "aaaaaaaa-1111-4111-8111-111111111111"
BOB = "bbbbbbbb-2222-4222-8222-222222222222"
ADMIN = "cccccccc-3333-4333-8333-333333333333"


def test_makers_sign_in_with_entra_id_and_see_only_their_own_while_an_admin_sees_everyones(make_host, sandbox, target, browser,
                                                                                          tmp_path):
    """MSAL (vendored) in the page: authorization code + PKCE against a loopback Entra-shaped sign-in server,
    tokens signed by the local issuer, checked by the bridge as any token is."""
    from selenium.webdriver.common.by import By

    from tests.entra_issuer import LocalIssuer, SignInServer

    with LocalIssuer() as issuer:
        signin = SignInServer(issuer, tmp_path).start()
        try:
            bridge = make_host(**signin.settings())
            for who in ("alice", "bob"):
                sandbox.app.add_member(f"{who}@contoso.com", who.title())

            def subscribe_as(oid: str, upn: str, path: str) -> dict:
                made = bridge.api("POST", "/subscriptions", headers={"Authorization": f"Bearer {issuer.token(oid=oid, upn=upn)}"},
                                  json={"url": f"{target.url}{path}", "events": ["invitee.created"], "scope": "user"})
                assert made.status_code == 201, made.text
                return made.json()

            alices, bobs = subscribe_as(ALICE, "alice@contoso.com", "/alice"), subscribe_as(BOB, "bob@contoso.com", "/bob")
            config = requests.get(f"{bridge.url}/api/console/config", timeout=10).json()
            assert config["entra"]["authority"] == f"{signin.url}/{'6f1f7a9e-2c3b-4d5e-8f90-a1b2c3d4e5f6'}"
            page = requests.get(f"{bridge.url}/api/console", timeout=10)
            assert f"connect-src 'self' {signin.url};" in page.headers["Content-Security-Policy"]

            signin.user = {"oid": ALICE, "upn": "alice@contoso.com", "name": "Alice Maker"}
            browser.get(f"{bridge.url}/api/console")
            wait(browser, lambda b: b.find_element(By.ID, "entra-sign-in").is_displayed())
            browser.find_element(By.ID, "entra-sign-in").click()
            wait(browser, text_in("subs-table", alices["id"]), timeout=30)
            assert bobs["id"] not in browser.find_element(By.ID, "subs-table").text
            assert browser.find_element(By.ID, "who").text == "alice@contoso.com"
            assert not browser.find_element(By.ID, "health").is_displayed()
            assert not browser.find_element(By.ID, "owner-form").is_displayed()
            assert "code=" not in browser.current_url  # MSAL took the code out of the address
            assert any(r.endswith("/oauth2/v2.0/token") for r in signin.requests)
            shot(browser, "console-maker")

            browser.get(f"{bridge.url}/api/console")  # reloaded in the same tab: still signed in (MSAL's session cache)
            wait(browser, text_in("subs-table", alices["id"]))
            browser.find_element(By.ID, "sign-out").click()
            wait(browser, lambda b: b.find_element(By.ID, "entra-sign-in").is_displayed())
            assert browser.execute_script("return sessionStorage.length") == 0 or not any(
                ALICE in browser.execute_script("return sessionStorage.getItem(arguments[0]) || ''", k)
                for k in browser.execute_script("return Object.keys(sessionStorage)"))
            signin.user = {"oid": ADMIN, "upn": "admin@contoso.com", "name": "Ada Admin", "roles": ["Bridge.Admin"]}
            browser.find_element(By.ID, "entra-sign-in").click()
            wait(browser, text_in("subs-table", bobs["id"]), timeout=30)
            assert alices["id"] in browser.find_element(By.ID, "subs-table").text
            assert browser.find_element(By.ID, "who").text == "admin@contoso.com · admin"
            wait(browser, lambda b: b.find_element(By.ID, "health").is_displayed())
            owner = browser.find_element(By.ID, "owner")
            owner.send_keys(BOB)
            owner.submit()
            wait(browser, lambda b: alices["id"] not in b.find_element(By.ID, "subs-table").text)
            assert bobs["id"] in browser.find_element(By.ID, "subs-table").text
            shot(browser, "console-admin")
        finally:
            signin.stop()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("tables", marks=pytest.mark.azurite)])
def test_status_counts_the_backlog_and_dead_and_shows_the_last_reconcile_to_admins_only(kind, request, tmp_path, sandbox, target):
    from shared import api
    from tests.entra_issuer import LocalIssuer
    from tests.inprocess import Caller, compose_on

    with LocalIssuer() as issuer:
        bridge = compose_on(kind, request, tmp_path, sandbox,
                            env={"DELIVERY_MAX_ATTEMPTS": "1", **issuer.settings(MANAGEMENT_AUTH="both", MANAGEMENT_KEY=KEY)})
        try:
            caller = Caller(bridge, sandbox)
            admin, maker = {"x-functions-key": KEY}, {"Authorization": f"Bearer {issuer.token(oid=ALICE, upn='alice@contoso.com')}"}
            status = json.loads(caller.call(api.bridge_status, "GET", "/status", headers=admin).body)
            assert status == {"deliveries": {"pending": 0, "dead": 0}, "last_reconcile": None, "accounts": ["default"]}
            made = caller.call(api.subscribe, "POST", "/subscriptions", {"url": f"{target.url}/flow", "events": ["invitee.created"]},
                               headers=admin)
            sub = json.loads(made.body)
            [hook] = [h for h in sandbox.app.hooks() if h["uri"] == sub["calendly_webhook"]]
            target.respond(500, 500, 500, 500, 500, 500, 500, 500, default=200)
            for n in range(2):
                body = json.dumps({"event": "invitee.created", "payload": {"uri": f"https://api.calendly.com/scheduled_events/E/invitees/{n}"}})
                assert caller.post_event(hook["callback_url"], body.encode()).status == 202
            report = bridge.reconciler.reconcile()
            status = json.loads(caller.call(api.bridge_status, "GET", "/status", headers=admin).body)
            assert status["deliveries"] == {"pending": 0, "dead": 2}
            assert status["last_reconcile"]["checked"] == report.checked == 1 and status["last_reconcile"]["finished_at"]
            refused = caller.call(api.bridge_status, "GET", "/status", headers=maker)
            assert refused.status == 403 and json.loads(refused.body)["error"]["code"] == "forbidden"
            checked = caller.call(api.account_preflight, "POST", "/accounts/default/preflight", headers=admin, name="default")
            assert checked.status == 200 and json.loads(checked.body)["ok"] is True, checked.body
            assert sandbox.app.hooks() == [h for h in sandbox.app.hooks() if h["uri"] == sub["calendly_webhook"]]  # nothing left
            refused = caller.call(api.account_preflight, "POST", "/accounts/default/preflight", headers=maker, name="default")
            assert refused.status == 403
        finally:
            bridge.close()


def test_a_test_event_and_an_unsubscribe_after_its_confirmation(make_host, sandbox, target, browser):
    from selenium.webdriver.common.by import By

    bridge = make_host()
    sub = subscribe(bridge, target).json()
    browser.get(f"{bridge.url}/api/console")
    wait(browser, text_in("subs-table", sub["id"]))
    browser.find_element(By.CSS_SELECTOR, f"#subs-table tr[data-id='{sub['id']}']").click()
    wait(browser, text_in("detail-fields", sub["calendly_webhook"]))
    browser.find_element(By.ID, "test-event").click()
    wait(browser, text_in("deliveries-table", "delivered"))
    assert len(target.wait_for(1)) == 1
    browser.find_element(By.ID, "unsubscribe").click()
    wait(browser, lambda b: b.switch_to.alert)
    browser.switch_to.alert.dismiss()  # "Cancel": nothing happens
    assert bridge.api("GET", f"/subscriptions/{sub['id']}").status_code == 200 and len(sandbox.app.hooks()) == 1
    browser.find_element(By.ID, "unsubscribe").click()
    wait(browser, lambda b: b.switch_to.alert)
    browser.switch_to.alert.accept()
    wait(browser, text_in("status", f"Unsubscribed {sub['id']}"))
    assert bridge.api("GET", f"/subscriptions/{sub['id']}").status_code == 404 and sandbox.app.hooks() == []
    assert sub["id"] not in browser.find_element(By.ID, "subs-table").text
