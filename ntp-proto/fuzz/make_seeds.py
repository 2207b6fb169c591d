#!/usr/bin/env python3
"""Writes the seed corpora for the `parse` target (corpus/parse/seed-*.bin) and the
`server_decision` target (corpus/server_decision/seed-*.bin).

The captured vectors come from ntp-proto/tests/vectors (or the directory given as the first
argument); the rest are made by hand around one captured request: extension fields (RFC 7822),
MACs, a crypto-NAK, and malformed trailers that parse must reject without panicking.
"""
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = pathlib.Path(
    sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parent.parent / "tests" / "vectors"
)
OUT = HERE / "corpus" / "parse"


def ef(field_type, value_len, length=None):
    """One extension field: type, length (default: 4 + value_len), value of 0xab bytes."""
    length = 4 + value_len if length is None else length
    return field_type.to_bytes(2, "big") + length.to_bytes(2, "big") + b"\xab" * value_len


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = {}
    for hex_file in sorted(VECTORS.glob("*.hex")):
        seeds[hex_file.stem] = bytes.fromhex(hex_file.read_text().strip())
    base = seeds["chrony-request"]
    key_md5 = b"\x00\x00\x00\x01" + b"\x5a" * 16
    key_sha1 = b"\x00\x00\x00\x02" + b"\x5a" * 20
    seeds.update({
        "mac-md5": base + key_md5,
        "mac-sha1": base + key_sha1,
        "crypto-nak": base + b"\x00" * 4,
        "ext-nts-uid": base + ef(0x0104, 32),
        "ext-two-fields-mac": base + ef(0x0104, 32) + ef(0x0204, 12) + key_md5,
        "ext-min-16-mac-sha1": base + ef(0x0204, 12) + key_sha1,
        "ext-1k": base + ef(0x0404, 1020),
        "bad-mac-len-7": base + b"\x00" * 7,
        "bad-ext-len-not-mult4": base + ef(0x0104, 24, length=14),
        "bad-ext-len-zero": base + ef(0x0104, 24, length=0),
        "bad-ext-longer-than-packet": base + ef(0x0104, 24, length=0x100),
        "bad-ext-then-odd-tail": base + ef(0x0104, 28) + b"\x00" * 9,
        "bad-short-47": base[:47],
        "bad-empty": b"",
    })
    for name, data in seeds.items():
        (OUT / f"seed-{name}.bin").write_bytes(data)
    print(f"{len(seeds)} seeds in {OUT}")
    server_decision_seeds(seeds)


def decision_setup(flags, burst=0, interval_ms=0, repeats=1, step_ms=0, stratum_leap=2, deny_len=0):
    """The 64-byte policy/snapshot/timing header of `server_decision` (layout in its doc
    comment), client 192.0.2.1, receive time 0xe8000000_00000000, reference time 1 s earlier."""
    head = bytearray(64)
    head[0] = flags
    head[3] = deny_len
    head[5] = burst
    head[6:8] = interval_ms.to_bytes(2, "big")
    head[8], head[9] = 32, 64
    head[10] = repeats - 1
    head[11:14] = step_ms.to_bytes(3, "big")
    head[14:22] = (0xE8000000 << 32).to_bytes(8, "big")
    head[22] = stratum_leap
    head[23] = 0xEA  # precision -22
    head[24:32] = (0xE7FFFFFF << 32).to_bytes(8, "big")
    head[48:52] = bytes([192, 0, 2, 1])
    return bytes(head)


def server_decision_seeds(vectors):
    out = HERE / "corpus" / "server_decision"
    out.mkdir(parents=True, exist_ok=True)
    request = vectors["chrony-request"]
    seeds = {
        "serve-unsynchronized": decision_setup(0) + request,
        "serve-local-stratum-2": decision_setup(1 << 6) + vectors["ntpdig-request"],
        "deny-kiss": decision_setup(1 << 1, deny_len=32) + request,
        "rate-burst-2-kiss": decision_setup(1 << 3 | 1 << 4, burst=2, interval_ms=1000, repeats=8)
        + request,
        "rate-step-500ms": decision_setup(1 << 3 | 1 << 4, burst=1, interval_ms=1000, repeats=8,
                                          step_ms=500) + request,
    }
    for name, data in seeds.items():
        (out / f"seed-{name}.bin").write_bytes(data)
    print(f"{len(seeds)} seeds in {out}")


main()
