"""HTTP handlers of the bridge, framework-free: Request in, Response out.

function_app.py (Azure Functions) and the local host both call these, so every route
behaves the same everywhere. Each handler is written as ``handler(bridge, request)`` and called
as ``handler(provider, request)``: the provider hands over the composed bridge, and building it
(or anything after) failing becomes a JSON error, ``{"error": {"code", "message"}}``.
"""
from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from . import jsonbody
from .errors import BridgeError, SettingsError, StoreUnavailable
from .http import Request, Response
from .models import CALLBACK_TOKEN, DeliveryStatus
from .redaction import logvalue

if TYPE_CHECKING:
    from .auth import Caller
    from .composition import Bridge
    from .models import Subscription

log = logging.getLogger("shared.api")

SUBSCRIPTION_ID = re.compile(r"^[0-9a-f]{32}$")
DELIVERY_ID = re.compile(r"^[0-9a-f]{32}-[0-9a-f]{24}$")
OWNER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_MANAGEMENT_BODY = 64 * 1024


Provider = Callable[[], "Bridge"]


def handler(fn: Callable[[Bridge, Request], Response]) -> Callable[[Provider, Request], Response]:
    """Turn every failure into a JSON error; never a stack trace."""

    @functools.wraps(fn)
    def wrapped(bridge: Provider, req: Request) -> Response:
        try:
            return fn(bridge(), req)
        except BridgeError as exc:
            return Response.json(exc.status, exc.body(), exc.headers)
        except SettingsError as exc:
            log.error("configuration error: %s", exc)
            return Response.json(503, {"error": {"code": "configuration_error", "message": str(exc)}})
        except Exception:  # noqa: BLE001 - the last line of defence: log it, answer JSON
            log.exception("unexpected error in %s", fn.__name__)
            return Response.json(500, {"error": {"code": "internal_error", "message": "the bridge failed unexpectedly; see its logs"}})

    return wrapped


_OUTCOMES = {401: "unauthenticated", 403: "forbidden", 404: "not_found"}


class AuditRecord:
    """One management call: who made it (once authenticated) and which subscriptions it touched."""

    def __init__(self, action: str):
        self.action = action
        self.caller: Caller | None = None
        self.subjects: list[str] = []
        self.refused: list[str] = []  # another owner's: the caller was answered as if they did not exist

    @property
    def who(self) -> Caller:
        """The authenticated caller: handlers run only once ``management`` has authenticated them."""
        if self.caller is None:
            raise RuntimeError("a management handler ran before its caller was authenticated")
        return self.caller

    def touch(self, *subscription_ids: str) -> None:
        self.subjects.extend(subscription_ids)

    def refuse(self, subscription_id: str) -> None:
        self.refused.append(subscription_id)

    def audit(self, status: int) -> None:
        """Who (kind and object id, never a token or key) did what to which subscription, and the answer."""
        caller = self.caller
        outcome = "ok" if status < 400 else _OUTCOMES.get(status, "rejected" if status < 500 else "failed")
        log.info("audit outcome=%s action=%s caller=%s tenant=%s subscription=%s status=%s%s", outcome, self.action,
                 logvalue(caller.describe() if caller else "unauthenticated"),
                 logvalue((caller.tenant_id if caller else None) or "-"),
                 ",".join(self.subjects) or "-", status, f" refused={','.join(self.refused)}" if self.refused else "")


def management(action: str, spends_calendly: bool = False):
    """Authenticate the caller (MANAGEMENT_AUTH), run ``fn(bridge, request, call)``, audit the call.
    ``spends_calendly``: the route calls Calendly with the shared PAT, so a signed-in maker's call
    counts against their per-minute limit (429 past it). Admins and key holders are the operators
    (in function_key mode every caller shares the key, so there is no one to limit separately)."""

    def wrap(fn: Callable[[Bridge, Request, AuditRecord], Response]) -> Callable[[Bridge, Request], Response]:
        @functools.wraps(fn)
        def wrapped(bridge: Bridge, req: Request) -> Response:
            call = AuditRecord(action)
            try:
                caller = call.caller = bridge.auth.authenticate(req)
                if spends_calendly and caller.kind == "entra" and not caller.admin:
                    bridge.limits.spend(f"{caller.tenant_id or '-'}/{caller.describe()}")
                response = fn(bridge, req, call)
            except BridgeError as exc:
                call.audit(exc.status)
                raise
            except Exception:
                call.audit(500)
                raise
            call.audit(response.status)
            # Management answers name people and may carry payloads: never kept by a browser or proxy.
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return wrapped

    return wrap


def _manageable(bridge: Bridge, call: AuditRecord, sub_id: str) -> Subscription:
    """The subscription, if the caller may see it; another owner's answers 404 like a missing one."""
    sub = bridge.subscriptions.get(sub_id)
    call.touch(sub_id)
    if sub is not None and not call.who.may_manage(sub):
        call.refuse(sub_id)
    if sub is None or not call.who.may_manage(sub):
        raise BridgeError(404, "subscription_not_found", "no such subscription")
    return sub


def _owner_filter(req: Request, caller: Caller) -> str | None:
    """``?owner=<object id>``: admins list anyone's; everyone else lists only their own."""
    owner = (req.params.get("owner") or "").strip().lower() or None
    if owner is not None and not OWNER_ID.match(owner):
        raise BridgeError(400, "invalid_owner", "owner must be an Entra ID object id (a GUID)")
    if caller.admin:
        return owner
    if owner not in (None, caller.object_id):
        raise BridgeError(403, "forbidden", "only admins can list another owner's subscriptions")
    return caller.object_id


def _json_body(req: Request, required: bool = True) -> Any:
    if len(req.body) > MAX_MANAGEMENT_BODY:
        raise BridgeError(413, "payload_too_large", f"the body is larger than {MAX_MANAGEMENT_BODY} bytes")
    if not req.body.strip():
        if required:
            raise BridgeError(400, "invalid_body", "the body must be a JSON object")
        return None
    return jsonbody.loads(req.body, jsonbody.MANAGEMENT_MAX_DEPTH, "invalid_body", "the body")


def _subscription_id(req: Request) -> str:
    sub_id = req.route_params.get("id", "")
    if not SUBSCRIPTION_ID.match(sub_id):
        raise BridgeError(404, "subscription_not_found", "no such subscription")
    return sub_id


def _limit(req: Request, default: int = 50) -> int:
    raw = req.params.get("limit") or str(default)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 100:
        raise BridgeError(400, "invalid_limit", "limit must be a whole number from 1 to 100")
    return int(raw)


# Subscriptions -----------------------------------------------------------------
@handler
@management("subscribe", spends_calendly=True)
def subscribe(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    from .schemas import parse_subscribe

    body = parse_subscribe(_json_body(req))
    sub, created = bridge.subscriptions.subscribe(body, call.who)
    call.touch(sub.id)
    location = bridge.subscriptions.location(sub.id)
    return Response.json(201 if created else 200, sub.public(), {"Location": location})


@handler
@management("subscribe_trigger", spends_calendly=True)
def subscribe_trigger(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """The custom connector's subscribe. Always 201 + Location, also when the subscription existed
    (same id, same Calendly hook): Power Automate reads Location from a 201 only."""
    from .events import TRIGGER_EVENTS
    from .schemas import parse_trigger

    trigger = req.route_params.get("trigger", "")
    if trigger not in TRIGGER_EVENTS:
        raise BridgeError(404, "unknown_trigger", f"no such trigger; the triggers are {', '.join(TRIGGER_EVENTS)}")
    sub, _created = bridge.subscriptions.subscribe(parse_trigger(trigger, _json_body(req)), call.who)
    call.touch(sub.id)
    return Response.json(201, sub.public(), {"Location": bridge.subscriptions.location(sub.id)})


@handler
@management("event_types", spends_calendly=True)
def list_event_types(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """GET /api/event-types?scope=&user=&group=: what an event type filter at that scope may name."""
    from .schemas import parse_scope_query

    items = bridge.subscriptions.event_types(parse_scope_query(req.params), call.who)
    return Response.json(200, {"value": items})


@handler
@management("hosts", spends_calendly=True)
def list_hosts(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """GET /api/hosts?scope=&user=&group=: who a host filter at that scope may name."""
    from .schemas import parse_scope_query

    return Response.json(200, {"value": bridge.subscriptions.hosts(parse_scope_query(req.params), call.who)})


@handler
@management("list")
def list_subscriptions(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    cursor = req.params.get("cursor") or None
    if cursor is not None and not SUBSCRIPTION_ID.match(cursor):
        raise BridgeError(400, "invalid_cursor", "cursor is not one this bridge returned")
    limit = _limit(req)
    owner = _owner_filter(req, call.who)
    subs, next_cursor = bridge.subscriptions.list(limit, cursor, owner)
    next_link = None
    if next_cursor:
        query = {"limit": limit, "cursor": next_cursor, **({"owner": req.params["owner"]} if req.params.get("owner") else {})}
        next_link = f"{bridge.settings.require_public_url()}/api/subscriptions?{urlencode(query)}"
    value = [s.public() for s in subs if call.who.may_manage(s)]
    return Response.json(200, {"value": value, "next_cursor": next_cursor, "nextLink": next_link})


@handler
@management("get")
def get_subscription(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    sub = _manageable(bridge, call, _subscription_id(req))
    view = sub.public()
    if sub.filters or sub.exclude_rescheduled:  # what the filters let through and left out (shared.counters)
        view["filter_counts"] = bridge.callbacks.counter.counts(sub.id)
    return Response.json(200, view)


@handler
@management("unsubscribe", spends_calendly=True)
def unsubscribe(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    sub_id = req.route_params.get("id", "")
    if SUBSCRIPTION_ID.match(sub_id):
        call.touch(sub_id)
        sub = bridge.subscriptions.get(sub_id)
        if sub is not None and call.who.may_manage(sub):
            bridge.subscriptions.unsubscribe(sub_id)
        elif sub is not None:
            call.refuse(sub_id)
    # An id that is gone (or never was, or is another owner's: no existence oracle) is deleted
    # already, as far as this caller can tell: platforms retry deletes.
    return Response.empty(204)


@handler
@management("unsubscribe_by_callback", spends_calendly=True)
def unsubscribe_by_callback(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    url = req.params.get("callbackUrl") or req.params.get("url")
    if not url:
        body = _json_body(req, required=False)
        if isinstance(body, dict):
            url = body.get("callbackUrl") or body.get("url") or body.get("notificationUrl")
    if not isinstance(url, str) or not url.strip():
        raise BridgeError(400, "missing_callback_url", "give the callback URL as ?callbackUrl=<url-encoded> or in a JSON body")
    call.touch(*bridge.subscriptions.unsubscribe_target(url, call.who))
    return Response.empty(204)


# Accounts (shared.accounts) -----------------------------------------------------------
def _admin(call: AuditRecord, what: str) -> None:
    if not call.who.admin:
        raise BridgeError(403, "forbidden", f"only admins of the bridge can {what}")


def _account_name(req: Request) -> str:
    from .accounts import NAME

    name = req.route_params.get("name", "")
    if not NAME.fullmatch(name):
        raise BridgeError(404, "account_not_found", "no such Calendly account")
    return name


@handler
@management("accounts")
def list_accounts(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """GET /api/accounts: the Calendly accounts the caller may subscribe with (admins: every one)."""
    return Response.json(200, {"value": bridge.accounts.visible(call.who)})


@handler
@management("declare_account", spends_calendly=True)
def declare_account(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """POST /api/accounts {"name", "secret_name"}: admins declare an account whose token is that Key Vault secret."""
    _admin(call, "declare Calendly accounts")
    body = _json_body(req)
    if not isinstance(body, dict):
        raise BridgeError(400, "invalid_body", "the body must be a JSON object: {\"name\": ..., \"secret_name\": ...}")
    if "token" in body or "pat" in body:
        raise BridgeError(400, "invalid_body", "the bridge never takes a token: put it in Key Vault and give its secret_name")
    account, created = bridge.accounts.declare(body.get("name"), body.get("secret_name"))
    location = f"{bridge.settings.require_public_url()}/api/accounts/{account.name}"
    return Response.json(201 if created else 200, account.public(True), {"Location": location})


@handler
@management("get_account")
def get_account(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    from .accounts import DEFAULT

    name = _account_name(req)
    listed = {a["name"]: a for a in bridge.accounts.visible(call.who)}
    if name in listed:
        return Response.json(200, listed[name])
    if name != DEFAULT and bridge.accounts.record(name) is not None:
        raise BridgeError(403, "account_forbidden", f"you may not use the Calendly account '{name}'")
    raise BridgeError(404, "account_not_found", "no such Calendly account")


@handler
@management("retire_account", spends_calendly=True)
def retire_account(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """DELETE /api/accounts/{name}: admins retire an account; its subscriptions stop (hooks deleted where its token still works)."""
    _admin(call, "retire Calendly accounts")
    return Response.json(200, bridge.accounts.retire(_account_name(req), bridge.subscriptions.stop_account))


@handler
@management("preflight", spends_calendly=True)
def account_preflight(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """POST /api/accounts/{name}/preflight (admins): ``python -m shared preflight --account`` over HTTP, for
    the console: whose token it is, its role, per event family whether a subscribe would pass (it makes and
    at once deletes one hook per family)."""
    from .preflight import preflight

    _admin(call, "check a Calendly account's token")
    client = bridge.accounts.client(_account_name(req))
    return Response.json(200, preflight(client, bridge.settings.public_url))


# Calendly's callback -----------------------------------------------------------
@handler
def calendly_event(bridge: Bridge, req: Request) -> Response:
    # The path carries the subscription's random callback token (or, until reconcile moves a
    # record made before tokens, its id); any other shape is unknown without a store read.
    path_token = req.route_params.get("id", "")
    if not (CALLBACK_TOKEN.fullmatch(path_token) or SUBSCRIPTION_ID.match(path_token)):
        raise BridgeError(404, "subscription_not_found", "no such subscription")
    return bridge.callbacks.receive(path_token, req.headers, req.body)


@handler
@management("hook", spends_calendly=True)
def subscription_hook(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """GET /api/subscriptions/{id}/hook: what Calendly says of the subscription's hook now (its state and
    times; never its callback URL, which carries the callback token). One Calendly call."""
    sub = _manageable(bridge, call, _subscription_id(req))
    hook = bridge.accounts.client(sub.account).get_webhook(sub.calendly_webhook) if sub.calendly_webhook else None
    if hook is None:
        return Response.json(200, {"uri": sub.calendly_webhook, "state": "missing"})
    view = {name: hook.get(name) for name in ("state", "created_at", "updated_at", "retry_started_at", "events", "scope")}
    return Response.json(200, {"uri": sub.calendly_webhook, **view})


@handler
@management("test", spends_calendly=True)
def send_test_event(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    sub = _manageable(bridge, call, _subscription_id(req))
    body = _json_body(req, required=False)
    if req.body.strip() and not isinstance(body, dict):  # a JSON null, number, list... is no body
        raise BridgeError(400, "invalid_body", "the body must be a JSON object (or empty)")
    event = body.get("event") if body else None
    if body and "event" in body and (not isinstance(event, str) or not event):
        raise BridgeError(400, "invalid_body", "'event' must be a Calendly event name")
    return bridge.callbacks.send_test_event(sub.id, event)


# Deliveries ------------------------------------------------------------------------
@handler
@management("deliveries")
def list_deliveries(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    sub_id = _manageable(bridge, call, _subscription_id(req)).id
    cursor = req.params.get("cursor") or None
    if cursor is not None and not DELIVERY_ID.match(cursor):
        raise BridgeError(400, "invalid_cursor", "cursor is not one this bridge returned")
    requested = req.params.get("include")
    if requested not in (None, "payload"):  # exactly the connector definition's enum
        raise BridgeError(400, "invalid_include", "include takes one value: payload")
    include = requested == "payload"
    items, next_cursor = bridge.store.list_deliveries(sub_id, _limit(req), cursor)
    return Response.json(200, {"value": [d.public(include) for d in items], "next_cursor": next_cursor})


@handler
@management("replay")
def replay_delivery(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    delivery_id = req.route_params.get("delivery_id", "")
    if not DELIVERY_ID.match(delivery_id):
        raise BridgeError(404, "delivery_not_found", "no such delivery")
    sub_id = delivery_id.split("-", 1)[0]  # a delivery id starts with its subscription's id
    call.touch(sub_id)
    if not call.who.admin:
        sub = bridge.subscriptions.get(sub_id)
        if sub is not None and not call.who.may_manage(sub):
            call.refuse(sub_id)
        if sub is None or not call.who.may_manage(sub):
            raise BridgeError(404, "delivery_not_found", "no such delivery")
    delivery = bridge.deliveries.replay(delivery_id)
    return Response.json(200 if delivery.status == DeliveryStatus.DELIVERED else 202, delivery.public())


# Console (shared.console) ----------------------------------------------------------
def console_page(provider: Provider, req: Request) -> Response:
    """GET /api/console: the operator console's page (anonymous: it holds no data; it signs in to call the API).
    Served even when the bridge cannot be composed (its calls then say why)."""
    from . import console

    try:
        settings = provider().settings
    except Exception:  # noqa: BLE001 - the page loads whatever is wrong; the API answers the errors
        settings = None
    return console.page(settings)


def console_asset(provider: Provider, req: Request) -> Response:
    from . import console

    found = console.asset(req.route_params.get("file", ""))
    return found or Response.json(404, {"error": {"code": "not_found", "message": "no such console asset"}})


@handler
def console_config(bridge: Bridge, req: Request) -> Response:
    """GET /api/console/config: how the console signs in (the MANAGEMENT_AUTH mode; nothing secret)."""
    from .console import HEADERS, sign_in

    return Response.json(200, {"management_auth": bridge.settings.management_auth, "entra": sign_in(bridge.settings)}, HEADERS)


@handler
@management("me")
def whoami(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """GET /api/me: who the caller is to the bridge (what the console shows and which views it offers)."""
    who = call.who
    return Response.json(200, {"kind": who.kind, "admin": who.admin, "organization_scope": who.organization_scope,
                               "name": who.name, "object_id": who.object_id, "tenant_id": who.tenant_id})


@handler
@management("status")
def bridge_status(bridge: Bridge, req: Request, call: AuditRecord) -> Response:
    """GET /api/status (admins): the retry backlog, dead deliveries, the last reconcile's summary, the accounts."""
    import json

    from .reconcile import LAST_RUN_NOTE

    _admin(call, "see the bridge's status")
    note = bridge.store.read_note(LAST_RUN_NOTE)
    return Response.json(200, {"deliveries": bridge.store.delivery_backlog(), "last_reconcile": json.loads(note) if note else None,
                               "accounts": bridge.accounts.names()})


# Health ------------------------------------------------------------------------
def health(provider: Provider, req: Request) -> Response:
    """Liveness and configuration, never a configuration value; a bad setting is named, not shown."""
    try:
        bridge = provider()
    except SettingsError as exc:
        return Response.json(503, {"status": "unhealthy", "checks": {"settings": f"invalid: {exc.setting}"}})
    except BridgeError as exc:  # e.g. the SQLite file cannot be created
        return Response.json(503, {"status": "unhealthy", "checks": {"settings": "ok", "store": exc.code}})
    except Exception:  # noqa: BLE001 - health answers, whatever failed
        log.exception("composing the bridge failed")
        return Response.json(503, {"status": "unhealthy", "checks": {"settings": "ok", "bridge": "failed; see its logs"}})
    checks = {"settings": "ok", "public_url": "configured" if bridge.settings.public_url else "missing",
              "calendly_pat": "configured" if bridge.pat.source != "none" else "missing", "store_backend": bridge.store.name}
    try:
        bridge.store.ping()
        checks["store"] = "ok"
        checks["calendly_accounts"] = str(len(bridge.store.list_accounts()))  # declared besides default: a count, never a name
    except StoreUnavailable:
        checks["store"] = "unavailable"
    healthy = checks["store"] == "ok"
    return Response.json(200 if healthy else 503, {"status": "ok" if healthy else "unhealthy", "checks": checks})
