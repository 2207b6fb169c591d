#!/usr/bin/env python3
"""Writes the seed corpus for the `parse` target into corpus/parse/seed-*.bin.

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


main()
