#!/usr/bin/env python3
"""An external audit tool for OZONE STUDIO, written only from docs/envelope.md.

It is the proof that the specification is enough for another language: it connects to
nats-server as an auditor (mTLS, TLS first), reads the audit stream, verifies every
key-directory entry (certificate chain, SAN, ECDSA signature), and opens every audit event
(HPKE RFC 9180 mode Auth, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM; then the
AES-256-GCM body with the header and the subject as associated data). It prints one JSON
object per record.

    ozone_audit_reader.py --home ~/.ozone-studio --as console --url tls://127.0.0.1:4222
    ozone_audit_reader.py --selftest ../../security/tests/vectors/hpke-x25519-sha256-aes256gcm.json

Only primitives come from `cryptography` (X25519, HMAC, HKDF-Expand, AES-GCM, ECDSA, X.509).
"""

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import ssl
import struct
import sys
from hmac import compare_digest as hmac_compare

import msgpack
import nats
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.x509.oid import ExtendedKeyUsageOID
from nats.js.api import ConsumerConfig, DeliverPolicy

AUDIT_STREAM = "OZONE_AUDIT"
KEY_PREFIX = "$KV.ozone-keys."
# Keys per identity in the key directory (bus-schemas/src/streams.rs KEY_SLOTS).
KEY_SLOTS = 4
AUDITOR_PREFIX = "urn:ozone:auditor:"
OPERATOR_PREFIX = "urn:ozone:operator:"

# --- HPKE, RFC 9180 --------------------------------------------------------------------------

KEM_ID, KDF_ID, AEAD_ID = 0x0020, 0x0001, 0x0002
MODE_AUTH = 0x02
KEM_SUITE = b"KEM" + struct.pack(">H", KEM_ID)
HPKE_SUITE = b"HPKE" + struct.pack(">HHH", KEM_ID, KDF_ID, AEAD_ID)


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    h = hmac.HMAC(salt if salt else b"\x00" * 32, hashes.SHA256())
    h.update(ikm)
    return h.finalize()


def labeled_extract(salt: bytes, label: bytes, ikm: bytes, suite: bytes) -> bytes:
    return hkdf_extract(salt, b"HPKE-v1" + suite + label + ikm)


def labeled_expand(prk: bytes, label: bytes, info: bytes, length: int, suite: bytes) -> bytes:
    labeled_info = struct.pack(">H", length) + b"HPKE-v1" + suite + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled_info).derive(prk)


def auth_decap(enc: bytes, sk_r: X25519PrivateKey, pk_s: bytes) -> bytes:
    # cryptography refuses an all-zero shared secret (a low-order point) with ValueError.
    dh = sk_r.exchange(X25519PublicKey.from_public_bytes(enc)) + sk_r.exchange(
        X25519PublicKey.from_public_bytes(pk_s)
    )
    pk_rm = sk_r.public_key().public_bytes_raw()
    kem_context = enc + pk_rm + pk_s
    eae_prk = labeled_extract(b"", b"eae_prk", dh, KEM_SUITE)
    return labeled_expand(eae_prk, b"shared_secret", kem_context, 32, KEM_SUITE)


def key_schedule(mode: int, shared_secret: bytes, info: bytes):
    psk_id_hash = labeled_extract(b"", b"psk_id_hash", b"", HPKE_SUITE)
    info_hash = labeled_extract(b"", b"info_hash", info, HPKE_SUITE)
    context = bytes([mode]) + psk_id_hash + info_hash
    secret = labeled_extract(shared_secret, b"secret", b"", HPKE_SUITE)
    key = labeled_expand(secret, b"key", context, 32, HPKE_SUITE)
    base_nonce = labeled_expand(secret, b"base_nonce", context, 12, HPKE_SUITE)
    exporter_secret = labeled_expand(secret, b"exp", context, 32, HPKE_SUITE)
    return key, base_nonce, exporter_secret


def open_auth(enc, sk_r, pk_s, info, ciphertext, aad=b"", seq=0):
    key, base_nonce, _ = key_schedule(MODE_AUTH, auth_decap(enc, sk_r, pk_s), info)
    nonce = (int.from_bytes(base_nonce, "big") ^ seq).to_bytes(12, "big")
    return AESGCM(key).decrypt(nonce, ciphertext, aad)


def export_auth(enc, sk_r, pk_s, info, exporter_context: bytes, length: int) -> bytes:
    """RFC 9180 §5.3 secret export from a mode-Auth receiver context."""
    _, _, exporter_secret = key_schedule(MODE_AUTH, auth_decap(enc, sk_r, pk_s), info)
    return labeled_expand(exporter_secret, b"sec", exporter_context, length, HPKE_SUITE)


def selftest(path: str) -> int:
    """Reproduces RFC 9180's mode-Auth vectors for our suite: every ciphertext opens and
    every exported secret matches."""
    opened = exported = 0
    for v in json.load(open(path)):
        if (v["mode"], v["kem_id"], v["kdf_id"], v["aead_id"]) != (MODE_AUTH, KEM_ID, KDF_ID, AEAD_ID):
            continue
        sk_r = X25519PrivateKey.from_private_bytes(bytes.fromhex(v["skRm"]))
        pk_s = bytes.fromhex(v["pkSm"])
        enc = bytes.fromhex(v["enc"])
        info = bytes.fromhex(v["info"])
        ss = auth_decap(enc, sk_r, pk_s)
        assert ss.hex() == v["shared_secret"], "shared secret"
        key, base_nonce, exporter_secret = key_schedule(MODE_AUTH, ss, info)
        assert (key.hex(), base_nonce.hex(), exporter_secret.hex()) == (
            v["key"], v["base_nonce"], v["exporter_secret"]
        ), "key schedule"
        for seq, e in enumerate(v["encryptions"]):
            pt = open_auth(enc, sk_r, pk_s, info, bytes.fromhex(e["ct"]), bytes.fromhex(e["aad"]), seq)
            assert pt.hex() == e["pt"], f"encryption {seq}"
            opened += 1
        for x in v["exports"]:
            value = export_auth(enc, sk_r, pk_s, info, bytes.fromhex(x["exporter_context"]), x["L"])
            assert value.hex() == x["exported_value"], "export"
            exported += 1
    if opened == 0 or exported == 0:
        raise SystemExit(f"{path}: no mode-Auth vectors for our suite")
    expiry_refused = selftest_sender_key_expiry()
    print(json.dumps({
        "selftest": "ok",
        "auth_mode_ciphertexts_opened": opened,
        "auth_mode_exports_reproduced": exported,
        "expired_sender_key_refused": expiry_refused,
    }))
    return 0


def selftest_sender_key_expiry() -> bool:
    """A sender key past its entry's end is refused before any decryption is tried; before
    the end the same envelope gets as far as decryption (which its dummy key fails)."""
    me = X25519PrivateKey.generate()
    sender_pub = X25519PrivateKey.generate().public_key().public_bytes_raw()
    dummy_enc = X25519PrivateKey.generate().public_key().public_bytes_raw()
    directory = Directory(None, None, None)
    end = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    directory.keys[("spark", kid_of(sender_pub))] = (sender_pub, int(end.timestamp() * 1000))
    env = {
        "sender": "spark", "route": "audit.spark.>", "sender_kid": kid_of(sender_pub),
        "session_id": bytes(8), "counter": 0, "header": b"", "ciphertext": bytes(16),
        "recipients": [(kid_of(me.public_key().public_bytes_raw()), dummy_enc, None)],
    }
    outcomes = []
    for at in (end - datetime.timedelta(seconds=1), end):
        try:
            open_event(env, "audit.spark", me, directory, at)
            outcomes.append("opened")
        except Refused as e:
            outcomes.append(str(e))
    if "expired" in outcomes[0] or "had expired" not in outcomes[1]:
        raise SystemExit(f"sender key expiry not enforced as specified: {outcomes}")
    return True


# --- The envelope, docs/envelope.md ----------------------------------------------------------


class Refused(Exception):
    pass


def kid_of(public: bytes) -> bytes:
    return hashlib.sha256(public).digest()[:8]


def parse_envelope(b: bytes):
    def take(n):
        nonlocal at
        if at + n > len(b):
            raise Refused("malformed: truncated")
        out = b[at : at + n]
        at += n
        return out

    at = 0
    if take(2) != b"OZ":
        raise Refused("malformed: not an OZONE envelope")
    version, suite = take(1)[0], take(1)[0]
    if (version, suite) != (6, 1):
        raise Refused(f"unsupported version {version} suite {suite}")
    (schema,) = struct.unpack(">H", take(2))
    n = take(1)[0]
    sender = take(n).decode()
    n = take(1)[0]
    if n == 0:
        raise Refused("malformed: no route")
    route = take(n).decode()
    sender_kid = take(8)
    session_id = take(8)
    counter, timestamp_ms = struct.unpack(">QQ", take(16))
    count = take(1)[0]
    if count == 0:
        raise Refused("malformed: no recipients")
    # The first recipient derives the data key by export; every other one carries a wrap.
    recipients = [(take(8), take(32), None)]
    recipients += [(take(8), take(32), take(48)) for _ in range(count - 1)]
    header = b[:at]
    # A session of several recipients ends every envelope in one 16-byte sender tag per
    # recipient, in the recipients' order; a single recipient's carries none.
    tags_len = 16 * count if count > 1 else 0
    if len(b) - at < 16 + tags_len:
        raise Refused("malformed: ciphertext shorter than its tags")
    ciphertext = b[at : len(b) - tags_len]
    tags = [b[len(b) - tags_len + 16 * i : len(b) - tags_len + 16 * (i + 1)] for i in range(count)] if tags_len else []
    return dict(
        schema=schema, sender=sender, route=route, sender_kid=sender_kid, session_id=session_id,
        counter=counter, timestamp_ms=timestamp_ms, recipients=recipients, header=header,
        ciphertext=ciphertext, tags=tags,
    )


def sender_tag(tag_key: bytes, aad: bytes, sealed_body: bytes) -> bytes:
    """HMAC-SHA256(k_i, SHA-256(u64be(len(aad)) ‖ aad ‖ ciphertext ‖ gcm tag)), first 16 bytes."""
    digest = hashlib.sha256(struct.pack(">Q", len(aad)) + aad + sealed_body).digest()
    mac = hmac.HMAC(tag_key, hashes.SHA256())
    mac.update(digest)
    return mac.finalize()[:16]


def wrap_info(session_id: bytes, sender: str, route: str, kid: bytes) -> bytes:
    s, r = sender.encode(), route.encode()
    return b"ozone/envelope/v4/wrap" + session_id + bytes([len(s)]) + s + bytes([len(r)]) + r + kid


def route_covers(route: str, subject: str) -> bool:
    """Whether a session's route (a subject pattern) covers the subject it arrived on."""
    pat, sub = route.split("."), subject.split(".")
    for i, p in enumerate(pat):
        if p == ">":
            return len(sub) > i
        if i >= len(sub) or (p != "*" and p != sub[i]):
            return False
    return len(pat) == len(sub)


def is_low_order(public: bytes) -> bool:
    """X25519 with any scalar gives all zeros (RFC 7748 §6.1)."""
    try:
        X25519PrivateKey.from_private_bytes(bytes([0x42] * 32)).exchange(
            X25519PublicKey.from_public_bytes(public)
        )
        return False
    except ValueError:
        return True


DATA_KEY_EXPORT = b"ozone/envelope/v2/data-key"
SENDER_TAG_EXPORT = b"ozone/envelope/v6/sender-tag"


class Directory:
    """Verified keys: (service, kid) -> (public key bytes, not_after_ms)."""

    def __init__(self, roots, ai_app_ca, user_ca):
        self.roots, self.ai_app_ca, self.user_ca = roots, ai_app_ca, user_ca
        self.keys = {}

    def verify(self, entry: dict, at: datetime.datetime) -> bytes:
        service = entry["service"]
        if not entry.get("signature"):
            raise Refused(f"directory entry for {service} carries no signature")
        if entry["not_after_ms"] <= at.timestamp() * 1000:
            raise Refused(f"directory entry for {service} has expired")
        cert = x509.load_der_x509_certificate(entry["certificate"])
        # Auditors and operators are certified by the User CA for their URN; components by
        # the AI-App CA for <name>.local.
        person = service.startswith(AUDITOR_PREFIX) or service.startswith(OPERATOR_PREFIX)
        ca = self.user_ca if person else self.ai_app_ca
        try:
            cert.verify_directly_issued_by(ca)
            if not any(self._issued_by(ca, r) for r in self.roots):
                raise Refused("intermediate not issued by a trusted root")
        except (InvalidSignature, ValueError, TypeError) as e:
            raise Refused(f"certificate not trusted ({e})")
        for c in (cert, ca):
            if not (c.not_valid_before_utc <= at <= c.not_valid_after_utc):
                raise Refused("certificate not valid at publication time")
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise Refused("certificate lacks clientAuth")
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName) + san.get_values_for_type(
            x509.UniformResourceIdentifier
        )
        expected = service if person else f"{service}.local"
        if expected not in names:
            raise Refused(f"directory entry claims {service} but is certified for {names}")
        s = service.encode()
        signed = (
            b"ozone/keydir/v1" + bytes([len(s)]) + s
            + struct.pack(">QQ", entry["epoch"], entry["not_after_ms"]) + entry["public"]
        )
        try:
            cert.public_key().verify(entry["signature"], signed, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise Refused(f"directory entry for {service}: the signature does not match the entry")
        return entry["public"]

    @staticmethod
    def _issued_by(cert, root) -> bool:
        try:
            cert.verify_directly_issued_by(root)
            return True
        except (InvalidSignature, ValueError, TypeError):
            return False

    def put(self, key: str, payload: bytes, at: datetime.datetime):
        kind, name, token = key.split(".")
        entry = msgpack.unpackb(payload, raw=False)
        expected = name if kind == "component" else f"urn:ozone:{kind}:{name}"
        # The epoch is the signed one in the entry. The key is its slot, epoch mod KEY_SLOTS;
        # in the layout before slots (a token of KEY_SLOTS or more) it was the epoch itself.
        slot = int(token)
        placed = entry["epoch"] % KEY_SLOTS == slot if slot < KEY_SLOTS else entry["epoch"] == slot
        if entry["service"] != expected or not placed:
            raise Refused(f"stored under {key} but claims {entry['service']}")
        public = self.verify(entry, at)
        self.keys[(entry["service"], kid_of(public))] = (public, entry["not_after_ms"])

    def remove(self, key: str):
        kind, name, epoch = key.split(".")
        # Epochs are not in the lookup key; a removed entry only stops new lookups of its kid,
        # which the archive reader does not need. Kept for symmetry with the Rust reader.


def open_event(
    env: dict, subject: str, my_key: X25519PrivateKey, directory: Directory, at: datetime.datetime
) -> dict:
    my_kid = kid_of(my_key.public_key().public_bytes_raw())
    mine = [i for i, r in enumerate(env["recipients"]) if r[0] == my_kid]
    if not mine:
        raise Refused("not a recipient")
    position = mine[0]
    _, enc, wrapped = env["recipients"][position]
    published = directory.keys.get((env["sender"], env["sender_kid"]))
    if published is None:
        raise Refused(f"unknown sender key {env['sender_kid'].hex()} claimed by {env['sender']}")
    sender_key, not_after_ms = published
    # A key past its entry's end authenticates nothing (judged at the event's publication).
    if not_after_ms <= at.timestamp() * 1000:
        raise Refused(f"sender key {env['sender_kid'].hex()} of {env['sender']} had expired")
    if not route_covers(env["route"], subject):
        raise Refused(f"sealed in a session of route {env['route']}, which does not cover {subject}")
    if is_low_order(enc):
        raise Refused("a low-order X25519 public key was refused")
    info = wrap_info(env["session_id"], env["sender"], env["route"], my_kid)
    # The subject is not in the envelope: it is bound as associated data, so an envelope
    # moved to another subject does not decrypt.
    nonce = bytes(4) + struct.pack(">Q", env["counter"])
    try:
        if wrapped is None:
            data_key = export_auth(enc, my_key, sender_key, info, DATA_KEY_EXPORT, 32)
        else:
            data_key = open_auth(enc, my_key, sender_key, info, wrapped)
        aad = env["header"] + subject.encode()
        plaintext = AESGCM(data_key).decrypt(nonce, env["ciphertext"], aad)
    except (InvalidTag, ValueError):
        raise Refused("cannot decrypt")
    if env["tags"]:
        # Every recipient knows the data key: only our own tag, keyed from our HPKE context,
        # proves the sender (and not another recipient) sealed this.
        tag_key = export_auth(enc, my_key, sender_key, info, SENDER_TAG_EXPORT, 32)
        expected = sender_tag(tag_key, aad, env["ciphertext"])
        if not hmac_compare(expected, env["tags"][position]):
            raise Refused("the sender's tag for this recipient is missing or wrong")
    event = msgpack.unpackb(plaintext, raw=False)
    if event.get("component") != env["sender"]:
        raise Refused(f"sealed by {env['sender']} but claims {event.get('component')}")
    return event


# --- Reading the stream ----------------------------------------------------------------------


def paths(home: str, auditor: str) -> dict:
    sec = os.path.join(home, "security")
    stem = f"auditor-{auditor}"
    return dict(
        bundle=os.path.join(sec, "ca", "trust-bundle.crt"),
        ai_app=os.path.join(sec, "ca", "ai-app-ca.crt"),
        user=os.path.join(sec, "ca", "user-ca.crt"),
        chain=os.path.join(sec, "certificates", f"{stem}-chain.crt"),
        key=os.path.join(sec, "keys", f"{stem}.key"),
        recipient=os.path.join(sec, "keys", f"{stem}.x25519.pem"),
    )


async def read(args) -> int:
    p = paths(args.home, args.auditor)
    tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=p["bundle"])
    tls.minimum_version = ssl.TLSVersion.TLSv1_3
    tls.load_cert_chain(p["chain"], p["key"])
    roots = x509.load_pem_x509_certificates(open(p["bundle"], "rb").read())
    directory = Directory(
        roots,
        x509.load_pem_x509_certificate(open(p["ai_app"], "rb").read()),
        x509.load_pem_x509_certificate(open(p["user"], "rb").read()),
    )
    my_key = serialization.load_pem_private_key(open(p["recipient"], "rb").read(), None)
    nc = await nats.connect(
        args.url,
        tls=tls,
        tls_hostname="nats.local",
        tls_handshake_first=True,
        inbox_prefix=f"_INBOX.auditor-{args.auditor}".encode(),
        allow_reconnect=False,
    )
    js = nc.jetstream()
    info = await js.stream_info(AUDIT_STREAM)
    last = info.state.last_seq
    counts = {"events": 0, "keys": 0, "refused": 0}
    if last > 0:
        sub = await js.subscribe(
            ">", stream=AUDIT_STREAM, ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        while True:
            msg = await sub.next_msg(timeout=10)
            seq, at = msg.metadata.sequence.stream, msg.metadata.timestamp
            if at.tzinfo is None:
                at = at.replace(tzinfo=datetime.timezone.utc)
            record = {"seq": seq, "subject": msg.subject}
            try:
                if msg.subject.startswith(KEY_PREFIX):
                    key = msg.subject[len(KEY_PREFIX):]
                    if msg.headers and "KV-Operation" in msg.headers:
                        directory.remove(key)
                        record["key_removed"] = key
                    else:
                        directory.put(key, msg.data, at)
                        record["key_verified"] = key
                        counts["keys"] += 1
                else:
                    env = parse_envelope(msg.data)
                    record["sender"] = env["sender"]
                    record["event"] = open_event(env, msg.subject, my_key, directory, at)
                    counts["events"] += 1
            except Refused as e:
                record["refused"] = str(e)
                counts["refused"] += 1
            print(json.dumps(record, default=lambda b: b.hex()), flush=True)
            if seq >= last:
                break
        await sub.unsubscribe()
    await nc.close()
    print(json.dumps({"summary": counts, "last_seq": last}), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", default=os.environ.get("OZONE_STUDIO_HOME", os.path.expanduser("~/.ozone-studio")))
    ap.add_argument("--as", dest="auditor", default="console")
    ap.add_argument("--url", default="tls://127.0.0.1:4222")
    ap.add_argument("--selftest", metavar="RFC9180_JSON")
    args = ap.parse_args()
    if args.selftest:
        return selftest(args.selftest)
    return asyncio.run(read(args))


if __name__ == "__main__":
    sys.exit(main())
