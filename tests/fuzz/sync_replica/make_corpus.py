#!/usr/bin/env python3
"""Writes the seed corpus of the sync_replica fuzz target: records of a 2-byte little-endian
length and one serialized offload.v1.SyncMessage (encoded here by hand: no protobuf module
needed). Run from this directory: ./make_corpus.py"""
import os, struct

def varint(n):
    out = b""
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return varint(num << 3 | 2) + varint(len(value)) + value

def msg(*fields):
    return b"".join(fields)

def open_(mount="0123456789abcdef", single=0, name="", uid=0, gid=0):
    return field(1, msg(field(1, mount), field(2, single), field(3, name), field(4, uid), field(5, gid)))

FILE, DIR, LINK = 1, 2, 3

def change(path, type_=FILE, data=b"", more=0, mode=0o644, size=None, target=""):
    entry = msg(field(1, path), field(2, type_), field(3, mode),
                field(4, len(data) if size is None else size), field(5, 1700000000000000000),
                *( [field(6, target)] if target else [] ))
    return field(4, msg(field(1, entry), field(2, data), field(3, more)))

def data(d, last=1):
    return field(5, msg(field(1, d), field(2, last)))

def remove(path): return field(6, msg(field(1, path)))
def rename(a, b): return field(7, msg(field(1, a), field(2, b)))
def barrier(i): return field(8, msg(field(1, i)))
def fetch(path): return field(10, msg(field(1, path)))

def write(name, *messages):
    with open(os.path.join("corpus", name), "wb") as f:
        for m in messages:
            assert len(m) < 65536
            f.write(struct.pack("<H", len(m)) + m)

os.makedirs("corpus", exist_ok=True)
write("open-only", open_())
write("files-and-dirs", open_(), change("d", DIR, mode=0o755), change("d/a.txt", data=b"hello\n"),
      change("d/e", DIR), change("d/e/b", data=b"x" * 100), barrier(1), fetch("d"))
write("chunked-file", open_(), change("big", data=b"a" * 1000, more=1, size=3000),
      data(b"b" * 1000, 0), data(b"c" * 1000, 1))
write("rename-remove", open_(), change("a", data=b"1"), rename("a", "sub/b"), remove("sub"),
      barrier(2))
write("symlink-then-write-through", open_(), change("l", LINK, target="/tmp"),
      change("l/escape", data=b"escaped"), change("l2", LINK, target=".."),
      change("l2/escape", data=b"escaped"), rename("l", "../l"), fetch("l/"))
write("dotdot-paths", open_(), change("../escape", data=b"x"), change("a/../../escape", data=b"x"),
      change("/tmp/escape", data=b"x"), change("./x", data=b"x"), change("a//b", data=b"x"),
      remove(".."), remove(""), rename("..", "x"), rename("x", "/etc/passwd"), fetch("../.."))
write("nul-and-long", open_(), change("a\0b", data=b"x"), change("n" * 300, data=b"x"),
      change("d" * 5000 + "/x", data=b"x"), change("ok", LINK, target="a\0b"),
      change("ok2", LINK, target="t" * 5000))
write("bad-mount-ids", open_("../../../../tmp"))
write("bad-mount-id-upper", open_("0123456789ABCDEF"))
write("bad-mount-id-nul", open_("0123456789abcde\0"))
write("single-file", open_(single=1, name="f.txt"), change("f.txt", data=b"one"),
      change("other", data=b"no"), barrier(3))
write("single-file-bad-name", open_(single=1, name=".."))
write("before-open", change("x", data=b"x"), open_())
write("data-without-change", open_(), data(b"stray"), open_("00000000000000bb"))
write("interrupted-change", open_(), change("x", data=b"a", more=1, size=10), change("y", data=b"b"))
write("oversized-content", open_(), change("x", data=b"a" * 60000, size=1), data(b"b" * 60000, 0),
      data(b"c" * 60000, 1))
write("unknown-type", open_(), change("x", 7, data=b"a"), change("y", 0))
write("setuid-mode", open_(uid=1000, gid=1000), change("s", data=b"#!/bin/sh\n", mode=0o6755),
      change("d", DIR, mode=0o7777))
write("empty", b"")
