"""A shard_mapper server over the subject protocol that misbehaves on its first `scale_up`.

    python tests/protocol_servers/faulty.py MODE

MODE: crash (exit 3), hang (never answers), garbage (a line that is not JSON), wrongtype
(a string where list[int] is due), twolines (answers twice), badhello (protocol 99),
silent (exits before the handshake), noabstract (does not serve `abstract`), nochain
(does not announce the "chain" capability: an older server), none (behaves); batchcrash, batchshort (one answer too few), batchwrongtype: the same faults on
the first `batch` line that carries a `scale_up` (the harness batches an update with the
queries that followed it last time, so from the second `scale_up` on). `--impl
module:Class` serves another class. Everything else is the reference
server (meshspec.serve), so the run is the in-process one up to the fault.
"""
from __future__ import annotations

import json
import os
import sys

from meshspec import registry
from meshspec.lockstep import load_impl
from meshspec.serve import Server

MODE = sys.argv[1]
IMPL = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--impl" else None


class Faulty(Server):
    def answer(self, line: bytes) -> dict | None:
        msg = json.loads(line)
        if msg["op"] == "handshake" and MODE == "badhello":
            return {"ok": {"protocol": 99, "component": "shard_mapper", "operations": {}}, "seq": msg["seq"]}
        if msg["op"] == "handshake" and MODE == "noabstract":
            reply = super().answer(line)
            reply["ok"]["operations"]["ShardMapper"].remove("abstract")
            return reply
        if msg["op"] == "handshake" and MODE == "nochain":
            reply = super().answer(line)
            del reply["ok"]["chain"]
            return reply
        if MODE == "nochain" and b'"$result"' in line:
            print("faulty server: a chained request to a server without \"chain\"", file=sys.stderr)
            os._exit(5)
        if msg["op"] == "batch" and MODE.startswith("batch") \
                and any(r.get("op") == "scale_up" for r in msg.get("requests", [])):
            if MODE == "batchcrash":
                os._exit(3)
            reply = super().answer(line)
            if MODE == "batchshort":
                reply["ok"] = reply["ok"][:-1]
            elif MODE == "batchwrongtype":
                reply["ok"][0] = {"ok": "three", "seq": reply["ok"][0]["seq"]}
            return reply
        if msg["op"] != "scale_up" or MODE.startswith("batch"):
            return super().answer(line)
        if MODE == "crash":
            print("faulty server: crashing on purpose", file=sys.stderr)
            os._exit(3)
        if MODE == "hang":
            sys.stdin.buffer.read()  # blocks until the harness gives up and closes the pipe
            os._exit(0)
        if MODE == "garbage":
            self.stdout.write(b"this is not json\n")
            return None
        if MODE == "wrongtype":
            return {"ok": "three", "seq": msg["seq"]}
        reply = super().answer(line)
        if MODE == "twolines":
            self.write(reply)
        return reply

    def write(self, msg: dict | None) -> None:
        if msg is not None:
            super().write(msg)


if __name__ == "__main__":
    if MODE == "silent":
        sys.exit(4)
    comp = registry.get_component("shard_mapper")
    impl_cls = load_impl(IMPL) if IMPL else comp.impl_cls
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.exit(Faulty(comp, impl_cls, sys.stdin.buffer, out).run())
