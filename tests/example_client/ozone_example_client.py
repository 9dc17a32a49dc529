#!/usr/bin/env python3
"""A client of the OZONE STUDIO bus in another language, written from docs/ alone.

It joins the bus as a component identity (docs/messages/README.md: connect, publish a key,
seal, open), then pings SPARK, generates text while keeping the request alive, lets a second
generation go unattended to see the worker stop it, and embeds a sentence. It prints one JSON
object per result. What it implements:

- mTLS with the identity's chain, TLS first, server name `nats.local` (docs/nats.md, pki.md);
- its own X25519 key in the key directory: a MessagePack entry signed with the certificate's
  ECDSA key, put at `$KV.ozone-keys.component.<name>.<epoch mod 4>` (docs/envelope.md);
- SPARK's key read from the directory by direct get and verified (certificate chain, SAN,
  signature);
- full envelopes (version 6) sealed with HPKE mode Auth; full and compact (version 7)
  envelopes opened, a compact one's session taken from the full envelope that began it or
  read from `ozone-sessions`;
- the payloads of docs/messages/ (MessagePack maps with field names; keyed enums).

    ozone_example_client.py --home H --as forge --url tls://127.0.0.1:4222
    ozone_example_client.py --selftest security/tests/vectors/hpke-x25519-sha256-aes256gcm.json

The HPKE and directory primitives are the audit reader's (tests/audit_reader), the other
implementation written from the same pages; this client adds the sender's side.
"""

import argparse
import asyncio
import datetime
import hashlib
import json
import math
import os
import ssl
import struct
import sys
import time

import msgpack
import nats
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "audit_reader"))
from ozone_audit_reader import (  # noqa: E402
    DATA_KEY_EXPORT, HPKE_SUITE, KEM_SUITE, KEY_SLOTS, MODE_AUTH, Directory, Refused,
    export_auth, is_low_order, key_schedule, kid_of, labeled_expand, labeled_extract,
    open_auth, route_covers, wrap_info,
)

SCHEMA = 1  # every message type of docs/messages/ is at schema 1
ROTATION_MS = 24 * 3600 * 1000  # encryption.key_rotation_interval (default)
GRACE_MS = 3600 * 1000  # the grace window after an epoch
KEEPALIVE_S = 1.0  # docs/messages/spark.md: keepalive every 1000 ms
WORKER_SILENCE_S = 2.5


# --- HPKE, the sender's side (RFC 9180 §5.1.3, mode Auth) ------------------------------------


def auth_encap(pk_r: bytes, sk_s: X25519PrivateKey, sk_e: X25519PrivateKey = None):
    """Returns (shared_secret, enc)."""
    sk_e = sk_e or X25519PrivateKey.generate()
    enc = sk_e.public_key().public_bytes_raw()
    recipient = X25519PublicKey.from_public_bytes(pk_r)
    dh = sk_e.exchange(recipient) + sk_s.exchange(recipient)
    kem_context = enc + pk_r + sk_s.public_key().public_bytes_raw()
    eae_prk = labeled_extract(b"", b"eae_prk", dh, KEM_SUITE)
    return labeled_expand(eae_prk, b"shared_secret", kem_context, 32, KEM_SUITE), enc


def export_sender(shared_secret: bytes, info: bytes, context: bytes, length: int) -> bytes:
    _, _, exporter_secret = key_schedule(MODE_AUTH, shared_secret, info)
    return labeled_expand(exporter_secret, b"sec", context, length, HPKE_SUITE)


def selftest(path: str) -> int:
    """The sender's side against RFC 9180's mode-Auth vectors for our suite."""
    checked = 0
    for v in json.load(open(path)):
        if (v["mode"], v["kem_id"], v["kdf_id"], v["aead_id"]) != (MODE_AUTH, 0x20, 1, 2):
            continue
        h = bytes.fromhex
        sk_s = X25519PrivateKey.from_private_bytes(h(v["skSm"]))
        sk_e = X25519PrivateKey.from_private_bytes(h(v["skEm"]))
        shared, enc = auth_encap(h(v["pkRm"]), sk_s, sk_e)
        assert enc == h(v["enc"]) and shared == h(v["shared_secret"]), "encap"
        for e in v["exports"]:
            got = export_sender(shared, h(v["info"]), h(e["exporter_context"]), e["L"])
            assert got == h(e["exported_value"]), "export"
            checked += 1
    print(json.dumps({"selftest": "ok", "exports_checked": checked}))
    return 0 if checked else 1


# --- Envelopes (docs/envelope.md, Layout) ------------------------------------------------------


class Sealer:
    """One session per (route, recipient key); full envelopes only (always allowed)."""

    def __init__(self, me: str, my_key: X25519PrivateKey):
        self.me, self.key = me, my_key
        self.kid = kid_of(my_key.public_key().public_bytes_raw())
        self.sessions = {}

    def seal(self, subject: str, route: str, recipient: bytes, payload: bytes) -> bytes:
        s = self.sessions.get((route, recipient))
        if s is None:
            session_id = os.urandom(8)
            r_kid = kid_of(recipient)
            info = wrap_info(session_id, self.me, route, r_kid)
            shared, enc = auth_encap(recipient, self.key)
            data_key = export_sender(shared, info, DATA_KEY_EXPORT, 32)
            s = dict(id=session_id, entry=r_kid + enc, key=data_key, counter=0)
            self.sessions[(route, recipient)] = s
        me, r = self.me.encode(), route.encode()
        header = (
            b"OZ" + bytes([6, 1]) + struct.pack(">H", SCHEMA)
            + bytes([len(me)]) + me + bytes([len(r)]) + r + self.kid + s["id"]
            + struct.pack(">QQ", s["counter"], int(time.time() * 1000))
            + bytes([1]) + s["entry"]
        )
        nonce = bytes(4) + struct.pack(">Q", s["counter"])
        s["counter"] += 1
        return header + AESGCM(s["key"]).encrypt(nonce, payload, header + subject.encode())


class Opener:
    """Opens full and compact envelopes sent to us (single-recipient sessions: no tags)."""

    def __init__(self, my_key: X25519PrivateKey, directory: Directory):
        self.key, self.directory = my_key, directory
        self.kid = kid_of(my_key.public_key().public_bytes_raw())
        self.sessions = {}  # (session_id, sender_kid) -> (data key, record digest, route)
        self.seen = set()
        self.opened = {"full": 0, "compact": 0, "records_read": 0}

    def _derive(self, sender, sender_kid, session_id, route, entries):
        if (sender, sender_kid) not in self.directory.keys:
            raise Refused(f"unknown sender key {sender_kid.hex()} of {sender}")
        sender_key, not_after_ms = self.directory.keys[(sender, sender_kid)]
        if not_after_ms <= time.time() * 1000:
            raise Refused("expired sender key")
        kid, enc, wrapped = entries[0]
        if kid != self.kid or len(entries) != 1:
            raise Refused("not a single-recipient session for us")
        if is_low_order(enc):
            raise Refused("low-order key")
        info = wrap_info(session_id, sender, route, self.kid)
        return export_auth(enc, self.key, sender_key, info, DATA_KEY_EXPORT, 32)

    @staticmethod
    def record(sender, route, sender_kid, session_id, entries) -> bytes:
        s, r = sender.encode(), route.encode()
        body = b"".join(k + e + (w or b"") for k, e, w in entries)
        return (b"OZS" + bytes([7, 1, len(s)]) + s + bytes([len(r)]) + r + sender_kid
                + session_id + bytes([len(entries)]) + body)

    def open(self, subject: str, b: bytes) -> dict:
        if b[:2] != b"OZ":
            raise Refused("malformed")
        version = b[2]
        if version == 6:
            message = self._open_full(subject, b)
            self.opened["full"] += 1
            return message
        if version == 7:
            message = self._open_compact(subject, b)
            self.opened["compact"] += 1
            return message
        raise Refused(f"unsupported version {version}")

    def _open_full(self, subject, b):
        at = 6
        n = b[at]; sender = b[at + 1 : at + 1 + n].decode(); at += 1 + n
        n = b[at]; route = b[at + 1 : at + 1 + n].decode(); at += 1 + n
        sender_kid, session_id = b[at : at + 8], b[at + 8 : at + 16]
        counter, _ts = struct.unpack(">QQ", b[at + 16 : at + 32]); at += 32
        count = b[at]; at += 1
        entries = [(b[at : at + 8], b[at + 8 : at + 40], None)]; at += 40
        if count != 1:
            raise Refused("not a single-recipient session")
        if not route_covers(route, subject):
            raise Refused("wrong route")
        data_key = self._derive(sender, sender_kid, session_id, route, entries)
        header = b[:at]
        plain = self._body(data_key, counter, b[at:], header + subject.encode())
        digest = hashlib.sha256(self.record(sender, route, sender_kid, session_id, entries)).digest()
        self.sessions[(session_id, sender_kid)] = (data_key, digest, route)
        return self._fresh(sender_kid, session_id, counter, plain)

    def _open_compact(self, subject, b):
        header = b[:38]
        sender_kid, session_id = header[6:14], header[14:22]
        (counter,) = struct.unpack(">Q", header[22:30])
        s = self.sessions.get((session_id, sender_kid))
        if s is None:
            raise Refused("unknown session")
        data_key, digest, route = s
        if not route_covers(route, subject):
            raise Refused("wrong route")
        plain = self._body(data_key, counter, b[38:], header + digest + subject.encode())
        return self._fresh(sender_kid, session_id, counter, plain)

    def owner_of(self, sender_kid):
        """Which service published this key id (to find its session records)."""
        owners = [svc for (svc, kid) in self.directory.keys if kid == sender_kid]
        return owners[0] if owners else None

    def adopt_record(self, sender_kid, session_id, rec):
        """A session we did not see begin: its record, read from `ozone-sessions`."""
        at = 6
        n = rec[at]; sender = rec[at + 1 : at + 1 + n].decode(); at += 1 + n
        n = rec[at]; route = rec[at + 1 : at + 1 + n].decode(); at += 1 + n
        if rec[:6] != b"OZS" + bytes([7, 1]) or rec[at : at + 8] != sender_kid or rec[at + 8 : at + 16] != session_id:
            raise Refused("unknown session")
        at += 16
        count = rec[at]; at += 1
        entries = [(rec[at : at + 8], rec[at + 8 : at + 40], None)]
        if count != 1:
            raise Refused("not a single-recipient session")
        data_key = self._derive(sender, sender_kid, session_id, route, entries)
        s = (data_key, hashlib.sha256(rec).digest(), route)
        self.sessions[(session_id, sender_kid)] = s

    @staticmethod
    def _body(data_key, counter, sealed, aad):
        try:
            return AESGCM(data_key).decrypt(bytes(4) + struct.pack(">Q", counter), sealed, aad)
        except InvalidTag:
            raise Refused("cannot decrypt")

    def _fresh(self, sender_kid, session_id, counter, plain):
        if (sender_kid, session_id, counter) in self.seen:
            raise Refused("replay")
        self.seen.add((sender_kid, session_id, counter))
        return msgpack.unpackb(plain, raw=False)


# --- The client --------------------------------------------------------------------------------


class Client:
    def __init__(self, args):
        sec = os.path.join(args.home, "security")
        self.name, self.url = args.name, args.url
        self.paths = dict(
            bundle=os.path.join(sec, "ca", "trust-bundle.crt"),
            ai_app=os.path.join(sec, "ca", "ai-app-ca.crt"),
            user=os.path.join(sec, "ca", "user-ca.crt"),
            chain=os.path.join(sec, "certificates", f"{self.name}-chain.crt"),
            cert=os.path.join(sec, "certificates", f"{self.name}.crt"),
            key=os.path.join(sec, "keys", f"{self.name}.key"),
        )
        roots = x509.load_pem_x509_certificates(open(self.paths["bundle"], "rb").read())
        load = lambda p: x509.load_pem_x509_certificate(open(self.paths[p], "rb").read())
        self.directory = Directory(roots, load("ai_app"), load("user"))
        self.key = X25519PrivateKey.generate()
        self.sealer = Sealer(self.name, self.key)
        self.opener = None

    async def connect(self):
        tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.paths["bundle"])
        tls.minimum_version = ssl.TLSVersion.TLSv1_3
        # The chain file holds leaf, intermediate and root; the server needs the first two.
        tls.load_cert_chain(self.paths["chain"], self.paths["key"])
        self.nc = await nats.connect(
            self.url, tls=tls, tls_hostname="nats.local", tls_handshake_first=True,
            inbox_prefix=f"_INBOX.{self.name}".encode(), allow_reconnect=False,
        )
        self.opener = Opener(self.key, self.directory)

    async def direct_get(self, stream: str, subject: str):
        msg = await self.nc.request(
            f"$JS.API.DIRECT.GET.{stream}", json.dumps({"last_by_subj": subject}).encode(), timeout=5
        )
        status = msg.headers.get("Status") if msg.headers else None
        return None if status else msg.data

    async def publish_key(self):
        """Our entry in the key directory (docs/envelope.md, Key directory entries)."""
        now = int(time.time() * 1000)
        epoch = now // ROTATION_MS
        cert = x509.load_pem_x509_certificate(open(self.paths["cert"], "rb").read())
        cert_end = int(cert.not_valid_after_utc.timestamp() * 1000)
        not_after = min((epoch + 1) * ROTATION_MS + GRACE_MS, cert_end)
        public = self.key.public_key().public_bytes_raw()
        s = self.name.encode()
        signed = b"ozone/keydir/v1" + bytes([len(s)]) + s + struct.pack(">QQ", epoch, not_after) + public
        signer = serialization.load_pem_private_key(open(self.paths["key"], "rb").read(), None)
        entry = {
            "service": self.name, "epoch": epoch, "not_after_ms": not_after, "public": public,
            "certificate": cert.public_bytes(serialization.Encoding.DER),
            "signature": signer.sign(signed, ec.ECDSA(hashes.SHA256())),
        }
        ack = await self.nc.request(
            f"$KV.ozone-keys.component.{self.name}.{epoch % KEY_SLOTS}",
            msgpack.packb(entry, use_bin_type=True), timeout=5,
        )
        if b'"error"' in ack.data:
            raise Refused(f"key directory put refused: {ack.data.decode()}")

    async def key_of(self, service: str) -> bytes:
        """The service's newest verified, unexpired key."""
        best = None
        now = datetime.datetime.now(datetime.timezone.utc)
        for slot in range(KEY_SLOTS):
            key = f"component.{service}.{slot}"
            data = await self.direct_get("KV_ozone-keys", f"$KV.ozone-keys.{key}")
            if data:
                try:
                    self.directory.put(key, data, now)
                    entry = msgpack.unpackb(data, raw=False)
                    if best is None or entry["epoch"] > best[0]:
                        best = (entry["epoch"], entry["public"])
                except Refused:
                    pass
        if best is None:
            raise Refused(f"no verified key for {service}")
        return best[1]

    async def open(self, msg):
        """Opens an answer; a compact envelope of a session we did not see begin is opened
        with the session's record from `ozone-sessions` (`<sender>.<first byte of the id>`)."""
        try:
            return self.opener.open(msg.subject, msg.data)
        except Refused as e:
            if str(e) != "unknown session":
                raise
            sender_kid, session_id = msg.data[6:14], msg.data[14:22]
            owner = self.opener.owner_of(sender_kid)
            record = owner and await self.direct_get(
                "KV_ozone-sessions", f"$KV.ozone-sessions.{owner}.{session_id[0]:02x}"
            )
            if not record:
                raise
            self.opener.adopt_record(sender_kid, session_id, record)
            self.opener.opened["records_read"] += 1
            return self.opener.open(msg.subject, msg.data)

    async def send(self, subject, route, to, message, reply=None):
        sealed = self.sealer.seal(subject, route, to, msgpack.packb(message, use_bin_type=True))
        await self.nc.publish(subject, sealed, reply=reply or "")

    async def request_stream(self, subject, route, to, message):
        inbox = self.nc.new_inbox()
        sub = await self.nc.subscribe(inbox)
        await self.send(subject, route, to, message, reply=inbox)
        return sub


async def ping(c: Client, spark: bytes) -> dict:
    sub = await c.request_stream("spark.ping", "spark.>", spark, {"from": c.name})
    for _ in range(40):
        try:
            reply = await c.open(await sub.next_msg(timeout=10))
        except nats.errors.TimeoutError:
            break
        if reply.get("reply") == "pong":
            await sub.unsubscribe()
            return {"ping": reply}
        await asyncio.sleep(0.25)
        await c.send("spark.ping", "spark.>", spark, {"from": c.name}, reply=sub.subject)
    raise Refused("SPARK never answered pong")


async def stream(c: Client, spark: bytes, subject: str, request: dict, keepalive: bool) -> dict:
    """Sends a streamed request and reads its events to the end, saying it is listening."""
    sub = await c.request_stream(subject, "spark.>", spark, request)
    out = {"events": 0, "alive": 0, "tokens": [], "keepalives": 0}
    worker, last_keepalive, started = None, time.monotonic(), time.monotonic()
    while True:
        if keepalive and worker and time.monotonic() - last_keepalive >= KEEPALIVE_S:
            control = {"keepalive": {"request_ids": [request["request_id"]]}}
            await c.send(f"spark.worker.{worker}.control", "spark.>", spark, control)
            out["keepalives"] += 1
            last_keepalive = time.monotonic()
        try:
            msg = await sub.next_msg(timeout=KEEPALIVE_S / 2)
        except nats.errors.TimeoutError:
            if time.monotonic() - started > 120:
                raise Refused("no end to the stream")
            continue
        event = await c.open(msg)
        out["events"] += 1
        if event == "alive":
            out["alive"] += 1
        elif "accepted" in event:
            worker = event["accepted"]["worker"]
        elif "token" in event:
            out["tokens"].append(event["token"]["text"])
        elif "done" in event or "failed" in event:
            out.update(event)
            out["seconds"] = round(time.monotonic() - started, 2)
            await sub.unsubscribe()
            return out


def generate_request(prompt, max_tokens, seed):
    return {
        "request_id": os.urandom(8).hex(), "model": None, "prompt": {"raw": prompt},
        "max_tokens": max_tokens, "temperature": 0.8, "top_p": 0.95, "top_k": None,
        "repeat_penalty": 1.1, "repeat_last_n": 64, "seed": seed, "stop": [],
    }


async def run(args) -> int:
    c = Client(args)
    await c.connect()
    await c.publish_key()
    spark = await c.key_of("spark")
    print(json.dumps(await ping(c, spark)), flush=True)
    story = "Once upon a time, in a small village by the sea, there lived"
    kept = await stream(c, spark, "spark.generate", generate_request(story, args.tokens, 7), True)
    print(json.dumps({"generate": kept}), flush=True)
    left = await stream(c, spark, "spark.generate", generate_request(story, 2000, 8), False)
    print(json.dumps({"unattended": left}), flush=True)
    embed = {"request_id": os.urandom(8).hex(), "model": None, "texts": ["a cat sat on the mat"]}
    e = await stream(c, spark, "spark.embed", embed, True)
    vector = e.get("done", {}).get("vectors", [[]])[0]
    e["norm"] = math.sqrt(sum(x * x for x in vector))
    e["dimensions"] = len(vector)
    e.pop("done", None)
    print(json.dumps({"embed": e}), flush=True)
    print(json.dumps({"envelopes": c.opener.opened}), flush=True)
    await c.nc.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default=os.environ.get("OZONE_STUDIO_HOME", os.path.expanduser("~/.ozone-studio")))
    ap.add_argument("--as", dest="name", default="forge", help="the component identity to act as")
    ap.add_argument("--url", default="tls://127.0.0.1:4222")
    ap.add_argument("--tokens", type=int, default=240)
    ap.add_argument("--selftest", metavar="RFC9180_JSON")
    args = ap.parse_args()
    if args.selftest:
        return selftest(args.selftest)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
