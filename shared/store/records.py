"""Rows from models and back, in one place for every store.

A record is a flat mapping of scalars (str, int) derived from the model's own fields: lists
and targets become JSON text, enums their value, and ``None`` is *absent* — the same in the
SQLite JSON column and in a Table Storage entity (which cannot hold a null). Reading also takes
the encodings older versions wrote (``""`` for a missing string, ``-1`` for a missing status).
The body of a delivery and the store's own keys and ETags are left to each store.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from ..filters import Filters
from ..models import Account, Delivery, DeliveryStatus, Subscription, SubscriptionState, endpoint_from_dict

_KEYS = {"id", "etag", "index_key"}
_SUB_FIELDS = tuple(f.name for f in dataclasses.fields(Subscription) if f.name not in _KEYS)
_ACCOUNT_FIELDS = tuple(f.name for f in dataclasses.fields(Account) if f.name not in _KEYS | {"name"})
_DELIVERY_FIELDS = tuple(f.name for f in dataclasses.fields(Delivery) if f.name not in _KEYS | {"body"})


def _scalars(obj: Any, names: tuple[str, ...], **encoded: Any) -> dict[str, Any]:
    """The named fields of ``obj`` with ``encoded`` ones replaced, ``None`` left out."""
    record = {name: getattr(obj, name) for name in names}
    record.update(encoded)
    return {name: value for name, value in record.items() if value is not None}


def _present(record: Mapping[str, Any], name: str) -> Any:
    value = record.get(name)
    return None if value in (None, "") else value


def subscription_record(sub: Subscription) -> dict[str, Any]:
    return _scalars(sub, _SUB_FIELDS, target=json.dumps(sub.target.as_dict(), ensure_ascii=False),
                    events=json.dumps(list(sub.events), ensure_ascii=False), state=sub.state.value,
                    filters=json.dumps(sub.filters.as_dict(), ensure_ascii=False) if sub.filters else None)


def subscription_from_record(record: Mapping[str, Any], sub_id: str, etag: str | None) -> Subscription:
    return Subscription(
        id=sub_id, etag=etag,
        target=endpoint_from_dict(json.loads(record["target"])), events=json.loads(record["events"]),
        scope=record["scope"], organization=record["organization"], user=_present(record, "user"),
        group=_present(record, "group"), signing_key=record["signing_key"], generation=record["generation"],
        state=SubscriptionState(record["state"]), calendly_webhook=_present(record, "calendly_webhook"),
        owner_tenant=_present(record, "owner_tenant"), owner_id=_present(record, "owner_id"),
        owner_name=_present(record, "owner_name"),
        created_at=record["created_at"], updated_at=record["updated_at"],
        callback_token=_present(record, "callback_token"), legacy_webhook=_present(record, "legacy_webhook"),
        exclude_rescheduled=bool(record.get("exclude_rescheduled") or False),
        filters=Filters.from_dict(json.loads(record["filters"])) if _present(record, "filters") else Filters(),
        payload_format=_present(record, "payload_format") or "calendly",
        account=_present(record, "account") or "default")


def account_record(account: Account) -> dict[str, Any]:
    return _scalars(account, _ACCOUNT_FIELDS)


def account_from_record(record: Mapping[str, Any], name: str, etag: str | None) -> Account:
    return Account(name=name, etag=etag, **{f: record[f] for f in _ACCOUNT_FIELDS if f in record})


def delivery_record(delivery: Delivery) -> dict[str, Any]:
    return _scalars(delivery, _DELIVERY_FIELDS, status=delivery.status.value)


def delivery_from_record(record: Mapping[str, Any], delivery_id: str, body: bytes, etag: str | None) -> Delivery:
    last_status = _present(record, "last_status")
    return Delivery(
        id=delivery_id, etag=etag, body=body, subscription_id=record["subscription_id"], event=record["event"],
        event_key=record["event_key"], status=DeliveryStatus(record["status"]), attempts=int(record["attempts"]),
        last_status=None if last_status is None or int(last_status) < 0 else int(last_status),
        last_error=_present(record, "last_error"), next_attempt_at=record["next_attempt_at"],
        created_at=record["created_at"], updated_at=record["updated_at"], delivered_at=_present(record, "delivered_at"))
