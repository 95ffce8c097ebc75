"""The KV interface of model/etcd.py over a real etcd v3 server, through etcd3gw.

`EtcdGateway` speaks to etcd's JSON gateway (`/v3/`) with etcd3gw's HTTP client and
returns the same frozen response values as `model.etcd.EtcdModel`, raising the same
`EtcdError` subclasses (mapped from the server's error message). It only connects to
127.0.0.1: it is a test backend, not a production client.

etcd3gw pitfalls handled here (reference/tooling-notes.md): keys and values are passed
as bytes and base64-encoded by us; prefix range ends are built by
`model.etcd.prefix_range_end` (etcd3gw's is wrong for 0xff and non-ASCII bytes); every
request has a timeout; int64 fields arrive as strings and are converted; zero-valued
fields (`kvs`, `count`, `deleted`, `lease`, `value`, `succeeded`, a missing lease's
`TTL`) are absent from the JSON and read as their zero value; `api_path="/v3/"` skips
etcd3gw's version discovery. We post raw request bodies through the client's `post`
rather than its convenience methods, which drop the header revision and metadata.

Time: lease TTLs run on the server's wall clock; the model's lease clock is logical.
Everything else (revisions, versions, txn outcomes, lease ids and granted TTLs, keys
attached to a lease) is deterministic and compared with the model by the tests.
"""
from __future__ import annotations

import base64
import json
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception

from model.etcd import (
    Compare,
    CompareTarget,
    DeleteOp,
    DeleteResponse,
    DuplicateKey,
    EtcdError,
    EtcdUnavailable,
    KeyNotProvided,
    KeyValue,
    KVConveniences,
    LeaseExists,
    LeaseGrantResponse,
    LeaseKeepAliveResponse,
    LeaseLeasesResponse,
    LeaseNotFound,
    LeaseRevokeResponse,
    LeaseTimeToLiveResponse,
    LeaseTTLTooLarge,
    Op,
    OpResponse,
    PutOp,
    PutResponse,
    RangeOp,
    RangeResponse,
    TooManyOps,
    TxnResponse,
)

DEFAULT_TIMEOUT_S = 5.0
_ERRORS: tuple[type[EtcdError], ...] = (
    KeyNotProvided, DuplicateKey, TooManyOps, LeaseNotFound, LeaseExists, LeaseTTLTooLarge,
)
_COMPARE_FIELD = {
    CompareTarget.VERSION: "version",
    CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision",
    CompareTarget.LEASE: "lease",
}

Json = dict[str, Any]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


def _int(obj: Mapping[str, Any], field: str) -> int:
    return int(obj.get(field, 0))


class EtcdGateway(KVConveniences):
    """A real etcd behind the EtcdKV interface. `url` must be http://127.0.0.1:PORT."""

    def __init__(self, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        parsed = urlparse(url)
        if parsed.hostname != "127.0.0.1" or parsed.port is None:
            raise ValueError(f"EtcdGateway only connects to 127.0.0.1:PORT, got {url!r}")
        self._client = Etcd3Client(host="127.0.0.1", port=parsed.port, timeout=timeout_s,
                                   api_path="/v3/")

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.session.close()

    # -- transport --------------------------------------------------------------------

    def _post(self, path: str, payload: Json) -> Json:
        try:
            return dict(self._client.post(self._client.get_url(path), json=payload))
        except (ConnectionFailedError, ConnectionTimeoutError) as exc:
            raise EtcdUnavailable(f"etcd unavailable: {exc.detail_text or exc}") from exc
        except Etcd3Exception as exc:
            raise _map_error(exc.detail_text) from exc

    # -- KV ---------------------------------------------------------------------------

    def range(self, key: bytes, range_end: bytes = b"", *, keys_only: bool = False,
              count_only: bool = False) -> RangeResponse:
        """Read a key or a range."""
        body = self._post("kv/range", _range_body(RangeOp(key, range_end, keys_only, count_only)))
        return _range_response(body)

    def put(self, key: bytes, value: bytes, lease: int = 0) -> PutResponse:
        """Write one key."""
        return PutResponse(_revision(self._post("kv/put", _put_body(PutOp(key, value, lease)))))

    def delete(self, key: bytes, range_end: bytes = b"") -> DeleteResponse:
        """Delete a key or a range."""
        return _delete_response(self._post("kv/deleterange", _delete_body(DeleteOp(key, range_end))))

    def txn(self, compares: Sequence[Compare], success: Sequence[Op] = (),
            failure: Sequence[Op] = ()) -> TxnResponse:
        """One atomic txn."""
        payload = {"compare": [_compare_body(c) for c in compares],
                   "success": [_op_body(op) for op in success],
                   "failure": [_op_body(op) for op in failure]}
        body = self._post("kv/txn", payload)
        responses = tuple(_op_response(r) for r in body.get("responses", []))
        return TxnResponse(_revision(body), bool(body.get("succeeded", False)), responses)

    # -- leases -----------------------------------------------------------------------

    def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrantResponse:
        """Create a lease (server-chosen id when lease_id is 0)."""
        body = self._post("lease/grant", {"TTL": ttl, "ID": lease_id})
        return LeaseGrantResponse(_revision(body), _int(body, "ID"), _int(body, "TTL"))

    def lease_revoke(self, lease_id: int) -> LeaseRevokeResponse:
        """Revoke a lease, deleting its keys."""
        return LeaseRevokeResponse(_revision(self._post("kv/lease/revoke", {"ID": lease_id})))

    def lease_keep_alive(self, lease_id: int) -> LeaseKeepAliveResponse:
        """One keep-alive; ttl 0 when the lease is unknown."""
        body = self._post("lease/keepalive", {"ID": lease_id}).get("result", {})
        return LeaseKeepAliveResponse(_revision(body), lease_id, _int(body, "TTL"))

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> LeaseTimeToLiveResponse:
        """Remaining TTL (server wall clock), granted TTL, attached keys."""
        body = self._post("kv/lease/timetolive", {"ID": lease_id, "keys": keys})
        attached = tuple(sorted(_unb64(k) for k in body.get("keys", [])))
        return LeaseTimeToLiveResponse(_revision(body), lease_id, _int(body, "TTL"),
                                       _int(body, "grantedTTL"), attached)

    def lease_leases(self) -> LeaseLeasesResponse:
        """Every live lease id, sorted."""
        body = self._post("lease/leases", {})
        ids = tuple(sorted(int(item["ID"]) for item in body.get("leases", [])))
        return LeaseLeasesResponse(_revision(body), ids)


# --------------------------------------------------------------------------- encoding


def _range_body(op: RangeOp) -> Json:
    body: Json = {"key": _b64(op.key)}
    if op.range_end:
        body["range_end"] = _b64(op.range_end)
    if op.keys_only:
        body["keys_only"] = True
    if op.count_only:
        body["count_only"] = True
    return body


def _put_body(op: PutOp) -> Json:
    body: Json = {"key": _b64(op.key), "value": _b64(op.value)}
    if op.lease:
        body["lease"] = op.lease
    return body


def _delete_body(op: DeleteOp) -> Json:
    body: Json = {"key": _b64(op.key)}
    if op.range_end:
        body["range_end"] = _b64(op.range_end)
    return body


def _op_body(op: Op) -> Json:
    if isinstance(op, RangeOp):
        return {"request_range": _range_body(op)}
    if isinstance(op, PutOp):
        return {"request_put": _put_body(op)}
    return {"request_delete_range": _delete_body(op)}


def _compare_body(cmp: Compare) -> Json:
    body: Json = {"key": _b64(cmp.key), "target": cmp.target.value, "result": cmp.result.value}
    if cmp.target is CompareTarget.VALUE:
        assert isinstance(cmp.operand, bytes)
        body["value"] = _b64(cmp.operand)
    else:
        body[_COMPARE_FIELD[cmp.target]] = int(cmp.operand)
    return body


# --------------------------------------------------------------------------- decoding


def _revision(body: Mapping[str, Any]) -> int:
    return _int(body.get("header", {}), "revision")


def _kv(item: Mapping[str, Any]) -> KeyValue:
    return KeyValue(_unb64(item.get("key")), _unb64(item.get("value")),
                    _int(item, "create_revision"), _int(item, "mod_revision"),
                    _int(item, "version"), _int(item, "lease"))


def _range_response(body: Mapping[str, Any]) -> RangeResponse:
    kvs = tuple(_kv(item) for item in body.get("kvs", []))
    return RangeResponse(_revision(body), kvs, _int(body, "count"))


def _delete_response(body: Mapping[str, Any]) -> DeleteResponse:
    return DeleteResponse(_revision(body), _int(body, "deleted"))


def _op_response(item: Mapping[str, Any]) -> OpResponse:
    if "response_range" in item:
        return _range_response(item["response_range"])
    if "response_put" in item:
        return PutResponse(_revision(item["response_put"]))
    return _delete_response(item["response_delete_range"])


def _map_error(detail: str | None) -> EtcdError:
    message = detail or ""
    try:
        message = str(json.loads(message).get("error", message))
    except (ValueError, AttributeError):
        pass
    for cls in _ERRORS:
        if message == cls.MESSAGE:
            return cls()
    return EtcdError(message or "etcd request failed")
