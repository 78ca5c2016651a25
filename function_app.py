"""Calendly trigger bridge: the Azure Functions app (Python v2 programming model).

Each function parses the request, calls shared/, and shapes the response; the whole
product surface is this file. ``build_app(bridge)`` declares the functions over one composed
bridge: the host indexes ``app``, whose bridge composes the services from the app settings on
first use, once per worker; the local host and tests build their own app over the bridge they
composed (nothing is swapped after the fact).
"""
from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from shared import api, retry_queue
from shared.composition import Bridge, BridgeProvider
from shared.hostauth import management_host_auth_level
from shared.http import Request, Response

# FUNCTION: the host checks function keys (MANAGEMENT_AUTH=function_key, the default). ANONYMOUS when
# MANAGEMENT_AUTH=entra|both: the app checks Entra ID tokens itself (shared/auth.py), as the host would refuse
# a caller holding only a token. Auth levels cannot be binding expressions: this is read when the worker indexes.
MANAGEMENT = func.AuthLevel[management_host_auth_level()]
PUBLIC = func.AuthLevel.ANONYMOUS


def _call(bridge: Callable[[], Bridge], handler, req: func.HttpRequest) -> func.HttpResponse:
    request = Request(method=req.method, url=req.url, headers=dict(req.headers), params=dict(req.params),
                      route_params=dict(req.route_params), body=req.get_body() or b"")
    response: Response = handler(bridge, request)
    return func.HttpResponse(body=response.body, status_code=response.status, headers=response.headers)


def build_app(bridge: Callable[[], Bridge]) -> func.FunctionApp:
    """Every function of the bridge, each calling ``bridge()`` (a ``BridgeProvider``) for the services."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="subscriptions", methods=["POST"], auth_level=MANAGEMENT)
    def subscribe(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.subscribe, req)

    @app.route(route="triggers/{trigger}", methods=["POST"], auth_level=MANAGEMENT)
    def subscribe_trigger(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.subscribe_trigger, req)

    @app.route(route="event-types", methods=["GET"], auth_level=MANAGEMENT)
    def list_event_types(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.list_event_types, req)

    @app.route(route="hosts", methods=["GET"], auth_level=MANAGEMENT)
    def list_hosts(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.list_hosts, req)

    @app.route(route="accounts", methods=["GET"], auth_level=MANAGEMENT)
    def list_accounts(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.list_accounts, req)

    @app.route(route="accounts", methods=["POST"], auth_level=MANAGEMENT)
    def declare_account(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.declare_account, req)

    @app.route(route="accounts/{name}", methods=["GET"], auth_level=MANAGEMENT)
    def get_account(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.get_account, req)

    @app.route(route="accounts/{name}", methods=["DELETE"], auth_level=MANAGEMENT)
    def retire_account(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.retire_account, req)

    @app.route(route="accounts/{name}/preflight", methods=["POST"], auth_level=MANAGEMENT)
    def account_preflight(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.account_preflight, req)

    @app.route(route="subscriptions", methods=["GET"], auth_level=MANAGEMENT)
    def list_subscriptions(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.list_subscriptions, req)

    @app.route(route="subscriptions", methods=["DELETE"], auth_level=MANAGEMENT)
    def unsubscribe_by_callback(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.unsubscribe_by_callback, req)

    @app.route(route="subscriptions/{id}", methods=["GET"], auth_level=MANAGEMENT)
    def get_subscription(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.get_subscription, req)

    @app.route(route="subscriptions/{id}", methods=["DELETE"], auth_level=MANAGEMENT)
    def unsubscribe(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.unsubscribe, req)

    @app.route(route="subscriptions/{id}/deliveries", methods=["GET"], auth_level=MANAGEMENT)
    def list_deliveries(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.list_deliveries, req)

    @app.route(route="subscriptions/{id}/hook", methods=["GET"], auth_level=MANAGEMENT)
    def subscription_hook(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.subscription_hook, req)

    @app.route(route="subscriptions/{id}/test", methods=["POST"], auth_level=MANAGEMENT)
    def send_test_event(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.send_test_event, req)

    @app.route(route="deliveries/{delivery_id}/replay", methods=["POST"], auth_level=MANAGEMENT)
    def replay_delivery(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.replay_delivery, req)

    @app.route(route="calendly/events/{id}", methods=["POST"], auth_level=PUBLIC)
    def calendly_event(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.calendly_event, req)

    @app.route(route="console", methods=["GET"], auth_level=PUBLIC)
    def console(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.console_page, req)

    @app.route(route="console/assets/{file}", methods=["GET"], auth_level=PUBLIC)
    def console_asset(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.console_asset, req)

    @app.route(route="console/config", methods=["GET"], auth_level=PUBLIC)
    def console_config(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.console_config, req)

    @app.route(route="status", methods=["GET"], auth_level=MANAGEMENT)
    def bridge_status(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.bridge_status, req)

    @app.route(route="me", methods=["GET"], auth_level=MANAGEMENT)
    def whoami(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.whoami, req)

    @app.route(route="health", methods=["GET"], auth_level=PUBLIC)
    def health(req: func.HttpRequest) -> func.HttpResponse:
        return _call(bridge, api.health, req)

    # The host resolves %SETTING% from app settings at startup (defaults: local.settings.sample.json, Bicep).
    @app.timer_trigger(schedule="%RECONCILE_SCHEDULE%", arg_name="timer", run_on_startup=False)
    def reconcile(timer: func.TimerRequest) -> None:
        bridge().retention.purge()  # expired deliveries first: bounded, and independent of Calendly
        bridge().callbacks.counter.flush()  # this instance's filter counts (shared.counters)
        bridge().reconciler.run_timer()

    @app.queue_trigger(arg_name="message", queue_name="%DELIVERY_QUEUE%", connection="AzureWebJobsStorage")
    def retry_delivery(message: func.QueueMessage) -> None:
        retry_queue.handle_message(bridge().deliveries, message.get_body().decode("utf-8", "replace"))

    return app


app = build_app(BridgeProvider())
