#!/usr/bin/env python3
"""Rebuilds fuzz/seeds/ from the test fixtures of the crates.

Each directory is named after a fuzz target and holds starting inputs in
that target's own format:

* config_parse: host DTBs (QEMU virt with dom0less /chosen domains).
* passthrough_parse: one flag byte (direct-mapped, 64 SPIs) + a partial DTB.
* guestdt_generate: a zero spec head (a valid one-vCPU GICv2 guest) + a
  partial DTB, and the head alone.
* loader_image: 95 bytes of layout parameters (first RAM bank, DTB and
  initrd sizes, synthetic header) + a kernel module: synthetic arm64 Images,
  raw and gzip-compressed (with and without a file name), modern and
  pre-3.17 (image_size 0).
"""
import glob
import gzip
import io
import os
import struct

ROOT = os.path.dirname(os.path.abspath(__file__))
CRATES = os.path.join(ROOT, "..", "..", "crates")


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def fixture(path):
    with open(os.path.join(CRATES, path), "rb") as f:
        return f.read()


def partials():
    for p in sorted(glob.glob(os.path.join(CRATES, "passthrough/tests/fixtures/partial-*.dtb"))):
        yield os.path.basename(p)[: -len(".dtb")], fixture(p)


def loader_params(bank=(0x4000_0000, 0x1000_0000), dtb=0x20_0000, initrd=0x10_0000,
                  text_offset=0, image_size=16 << 20, flags=0xA, kernel_len=16 << 20):
    """The `Params` struct of loader_image.rs as `arbitrary` reads it."""
    b = struct.pack("<QQ", *bank) + bytes(32)  # three banks, two unused
    b += bytes([1, 0]) + struct.pack("<I", dtb)  # nbanks = 1, shift = 0
    if initrd is None:
        b += bytes(9)
    else:
        b += bytes([1]) + struct.pack("<Q", initrd)
    b += struct.pack("<QQQQ", text_offset, image_size, flags, kernel_len)
    assert len(b) == 95
    return b


def image(text_offset, image_size, flags, length):
    """A synthetic arm64 Image: a branch, the header fields, the magic."""
    head = struct.pack("<IIQQQQQQ", 0x1400_0010, 0, text_offset, image_size, flags, 0, 0, 0)
    head += b"ARM\x64" + bytes(4)
    return head + bytes((i * 7 + 3) & 0xFF for i in range(length - len(head)))


def gz(data, name=""):
    out = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=out, mtime=0) as f:
        f.write(data)
    return out.getvalue()


def main():
    for name in ["gicv2-domains", "gicv3-domains", "host-gicv3-multi-rdist", "domain-errors"]:
        write("config_parse", name, fixture(f"config/tests/fixtures/{name}.dtb"))

    for name, dtb in partials():
        write("passthrough_parse", name, bytes([2 | (8 << 2)]) + dtb)

    head = bytes(160)
    write("guestdt_generate", "no-partial", head)
    write("guestdt_generate", "passthrough-virtio",
          head + fixture("guestdt/tests/fixtures/passthrough-virtio.dtb"))
    for name, dtb in partials():
        write("guestdt_generate", name, head + dtb)

    modern = image(0, 16 << 20, 0xA, 1024)
    legacy = image(0x8_0000, 0, 0, 512)
    write("loader_image", "raw-modern", loader_params() + modern)
    write("loader_image", "raw-legacy",
          loader_params(initrd=None, text_offset=0x8_0000, image_size=0) + legacy)
    write("loader_image", "gzip-modern", loader_params() + gz(modern))
    write("loader_image", "gzip-named",
          loader_params(bank=(0x8000_0000, 0x4000_0000)) + gz(modern, "vmlinuz"))
    write("loader_image", "gzip-legacy",
          loader_params(bank=(0x4020_0000, 0x800_0000)) + gz(legacy))


if __name__ == "__main__":
    main()
