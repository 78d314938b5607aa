#!/usr/bin/env python3
"""Helpers for scripts/bench.sh (standard library only).

Blob service calls use a container SAS URL (http://HOST:PORT/ACCOUNT/CONTAINER?SAS) and keep one
HTTP connection per worker thread.

  blobtool.py put-file SAS_URL BLOB FILE [--block-mib 8] [--parallel 4]
      upload FILE as block blob BLOB (Put Block in parallel, then Put Block List)
  blobtool.py put-flat SAS_URL PREFIX COUNT [--size 100] [--parallel 32]
      COUNT small blobs PREFIX/f00000 ... (PREFIX without trailing slash)
  blobtool.py put-tree SAS_URL PREFIX DIRS FILES [--size 100] [--parallel 32]
      DIRS x FILES small blobs PREFIX/dNNN/fNNN
  blobtool.py first-byte PATH [--size 4096]
      prints the milliseconds taken by open(PATH) + one read of SIZE bytes
  blobtool.py random-read PATH [--count 10] [--size 4096] [--seed 1]
      COUNT reads of SIZE bytes at random (seeded) offsets; prints the total milliseconds
  blobtool.py walk DIR
      os.walk + os.stat of every file; prints "FILES SECONDS"
  blobtool.py counts LOGFILE
      the last azblobfs request-count line of LOGFILE as "list=N properties=N ... total=N"
"""

import argparse
import base64
import concurrent.futures
import http.client
import os
import random
import re
import sys
import threading
import time
import urllib.parse

API_VERSION = "2022-11-02"


class Container:
    """A container addressed by a SAS URL; one keep-alive connection per thread."""

    def __init__(self, sas_url):
        u = urllib.parse.urlsplit(sas_url)
        if u.scheme not in ("http", "https") or not u.query:
            sys.exit(f"blobtool: not a container SAS URL: {sas_url.split('?')[0]}?...")
        self.scheme, self.netloc = u.scheme, u.netloc
        self.path = u.path.rstrip("/")
        self.sas = u.query
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
            c = cls(self.netloc, timeout=300)
            self.local.conn = c
        return c

    def request(self, method, blob, query="", body=None, headers=None, ok=(200, 201, 202)):
        url = f"{self.path}/{urllib.parse.quote(blob)}?{query + '&' if query else ''}{self.sas}"
        hdrs = {"x-ms-version": API_VERSION}
        hdrs.update(headers or {})
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        last = None
        for attempt in range(5):
            conn = self._conn()
            try:
                conn.request(method, url, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status in ok:
                    return data
                last = f"{method} {blob}: HTTP {resp.status} {data[:300]!r}"
                if resp.status < 500 and resp.status not in (408, 429):
                    break
            except (OSError, http.client.HTTPException) as e:
                last = f"{method} {blob}: {e}"
                conn.close()
                self.local.conn = None
            time.sleep(0.2 * (attempt + 1))
        raise RuntimeError(last)

    def put_blob(self, blob, body):
        self.request("PUT", blob, body=body, headers={"x-ms-blob-type": "BlockBlob"})


def put_file(args):
    c = Container(args.sas_url)
    block = args.block_mib << 20
    size = os.path.getsize(args.file)
    if size <= block:
        with open(args.file, "rb") as f:
            c.put_blob(args.blob, f.read())
        return
    nblocks = (size + block - 1) // block
    ids = [base64.b64encode(f"block-{i:08d}".encode()).decode() for i in range(nblocks)]

    def put_block(i):
        with open(args.file, "rb") as f:
            f.seek(i * block)
            data = f.read(block)
        q = "comp=block&blockid=" + urllib.parse.quote(ids[i], safe="")
        c.request("PUT", args.blob, query=q, body=data)

    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        for _ in pool.map(put_block, range(nblocks)):
            pass
    xml = "<?xml version='1.0' encoding='utf-8'?><BlockList>"
    xml += "".join(f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>"
    c.request("PUT", args.blob, query="comp=blocklist", body=xml.encode())


def put_many(c, names, size, parallel):
    body = (b"azblobfs benchmark file\n" * (size // 24 + 1))[:size]
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        futures = [pool.submit(c.put_blob, n, body) for n in names]
        for f in concurrent.futures.as_completed(futures):
            f.result()


def put_flat(args):
    names = [f"{args.prefix}/f{i:05d}" for i in range(args.count)]
    put_many(Container(args.sas_url), names, args.size, args.parallel)


def put_tree(args):
    names = [f"{args.prefix}/d{d:03d}/f{f:03d}" for d in range(args.dirs) for f in range(args.files)]
    put_many(Container(args.sas_url), names, args.size, args.parallel)


def first_byte(args):
    t0 = time.perf_counter()
    fd = os.open(args.path, os.O_RDONLY)
    data = os.read(fd, args.size)
    t1 = time.perf_counter()
    os.close(fd)
    if len(data) != args.size:
        sys.exit(f"blobtool: short read: {len(data)} of {args.size} bytes")
    print(f"{(t1 - t0) * 1000:.1f}")


def random_read(args):
    rng = random.Random(args.seed)
    size = os.path.getsize(args.path)
    offsets = [rng.randrange(0, max(1, size - args.size)) for _ in range(args.count)]
    t0 = time.perf_counter()
    fd = os.open(args.path, os.O_RDONLY)
    for off in offsets:
        data = os.pread(fd, args.size, off)
        if len(data) != min(args.size, size - off):
            sys.exit(f"blobtool: short read at {off}: {len(data)} bytes")
    os.close(fd)
    print(f"{(time.perf_counter() - t0) * 1000:.1f}")


def walk(args):
    t0 = time.perf_counter()
    n = 0
    for root, _dirs, files in os.walk(args.dir):
        for name in files:
            os.stat(os.path.join(root, name))
            n += 1
    print(n, f"{time.perf_counter() - t0:.6f}")


def counts(args):
    line = None
    with open(args.logfile, errors="replace") as f:
        for l in f:
            if "requests=" in l and "get_bytes=" in l:
                line = l
    if line is None:
        sys.exit(f"blobtool: no request-count line in {args.logfile}")
    pairs = dict((k, int(v)) for k, v in re.findall(r"\b(\w+)=(\d+)\b", line.split("requests=", 1)[1]))
    total = sum(v for k, v in pairs.items() if not k.endswith("_bytes"))
    print(" ".join(f"{k}={v}" for k, v in pairs.items()) + f" total={total}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("put-file")
    s.add_argument("sas_url"); s.add_argument("blob"); s.add_argument("file")
    s.add_argument("--block-mib", type=int, default=8); s.add_argument("--parallel", type=int, default=4)
    s.set_defaults(fn=put_file)
    s = sub.add_parser("put-flat")
    s.add_argument("sas_url"); s.add_argument("prefix"); s.add_argument("count", type=int)
    s.add_argument("--size", type=int, default=100); s.add_argument("--parallel", type=int, default=32)
    s.set_defaults(fn=put_flat)
    s = sub.add_parser("put-tree")
    s.add_argument("sas_url"); s.add_argument("prefix")
    s.add_argument("dirs", type=int); s.add_argument("files", type=int)
    s.add_argument("--size", type=int, default=100); s.add_argument("--parallel", type=int, default=32)
    s.set_defaults(fn=put_tree)
    s = sub.add_parser("first-byte")
    s.add_argument("path"); s.add_argument("--size", type=int, default=4096)
    s.set_defaults(fn=first_byte)
    s = sub.add_parser("random-read")
    s.add_argument("path"); s.add_argument("--count", type=int, default=10)
    s.add_argument("--size", type=int, default=4096); s.add_argument("--seed", type=int, default=1)
    s.set_defaults(fn=random_read)
    s = sub.add_parser("walk")
    s.add_argument("dir")
    s.set_defaults(fn=walk)
    s = sub.add_parser("counts")
    s.add_argument("logfile")
    s.set_defaults(fn=counts)
    args = p.parse_args()
    try:
        args.fn(args)
    except RuntimeError as e:
        sys.exit(f"blobtool: {e}")


if __name__ == "__main__":
    main()
