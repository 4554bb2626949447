# skyform's Blob storage client on the VM (Python 3 standard library only).
#
# Talks to the Blob REST API of one container with a SAS token:
#   SKYFORM_BLOB_URL  the container's URL (https://ACCOUNT.blob.core.windows.net/CONTAINER)
#   SKYFORM_BLOB_SAS  the SAS query string (no '?')
#   SKYFORM_RUN       the run directory inside the container (skyform-runs/TOKEN)
# Names on the command line are relative to the run directory; a name that starts with "/"
# is relative to the container (a task's checkpoint lives there).
#
#   blob.py get NAME FILE        exit 0 when fetched, 3 when NAME does not exist
#   blob.py put FILE NAME        one Put Blob up to 16 MiB, else 8 MiB blocks + Put Block List
#   blob.py get-tree NAME DIR    every blob under NAME/ into DIR (nothing there is fine)
#   blob.py put-tree DIR NAME    every file under DIR to NAME/
#   blob.py mirror-tree DIR NAME put-tree of the files whose MD5 differs from the blob's
#                                Content-MD5, then delete the blobs under NAME/ that DIR lacks
import base64
import hashlib
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

BASE = os.environ["SKYFORM_BLOB_URL"].rstrip("/")
SAS = os.environ.get("SKYFORM_BLOB_SAS", "").lstrip("?")
RUN = os.environ.get("SKYFORM_RUN", "").strip("/")
SINGLE = 16 * 1024 * 1024
BLOCK = 8 * 1024 * 1024
VERSION = "2021-08-06"
RETRY = (408, 429, 500, 502, 503, 504)


class Missing(Exception):
    pass


def full(name):
    if name.startswith("/"):  # from the container's root, not the run directory
        return name.strip("/")
    name = name.strip("/")
    return RUN + "/" + name if RUN and name else (RUN or name)


def url(blob, query=""):
    q = "&".join(x for x in (query, SAS) if x)
    path = "/" + urllib.parse.quote(blob) if blob else ""
    return BASE + path + ("?" + q if q else "")


def call(method, u, data=None, headers=None, sink=None):
    """One request with retries; returns the body (or streams it into `sink`)."""
    for attempt in range(6):
        if sink is not None:
            sink.seek(0)
            sink.truncate()
        req = urllib.request.Request(u, data=data, method=method)
        req.add_header("x-ms-version", VERSION)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                if sink is not None:
                    shutil.copyfileobj(r, sink, 1024 * 1024)
                    return b""
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise Missing(u)
            if e.code in RETRY and attempt < 5:
                time.sleep(min(2 ** attempt, 30))
                continue
            body = e.read()[:400].decode("utf-8", "replace")
            sys.exit(f"blob: {method} {u.split('?')[0]}: HTTP {e.code}: {body}")
        except (urllib.error.URLError, OSError) as e:
            if attempt < 5:
                time.sleep(min(2 ** attempt, 30))
                continue
            sys.exit(f"blob: {method} {u.split('?')[0]}: {e}")


def get(name, path):
    tmp = path + ".part"
    try:
        with open(tmp, "wb") as f:
            call("GET", url(full(name)), sink=f)
    except Missing:
        os.unlink(tmp)
        return False
    os.replace(tmp, path)
    return True


def md5_of(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


def put(path, name, md5=None):
    """Uploads a file; the blob's Content-MD5 is the whole file's (for mirror-tree)."""
    blob = full(name)
    size = os.path.getsize(path)
    md5 = md5 or md5_of(path)
    with open(path, "rb") as f:
        if size <= SINGLE:
            headers = {"x-ms-blob-type": "BlockBlob", "x-ms-blob-content-md5": md5}
            call("PUT", url(blob), data=f.read(), headers=headers)
            return
        ids = []
        while True:
            chunk = f.read(BLOCK)
            if not chunk:
                break
            bid = base64.b64encode(b"skyform-block-%08d" % len(ids)).decode()
            call("PUT", url(blob, "comp=block&blockid=" + urllib.parse.quote(bid, safe="")), data=chunk)
            ids.append(bid)
    body = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>"
    body += "".join("<Latest>%s</Latest>" % i for i in ids) + "</BlockList>"
    call("PUT", url(blob, "comp=blocklist"), data=body.encode(), headers={"x-ms-blob-content-md5": md5})


def listing(prefix):
    for name, _ in listing_md5(prefix):
        yield name


def listing_md5(prefix):
    """(name, Content-MD5 or None) of every blob under prefix."""
    marker = ""
    while True:
        q = "restype=container&comp=list&prefix=" + urllib.parse.quote(prefix, safe="")
        if marker:
            q += "&marker=" + urllib.parse.quote(marker, safe="")
        root = ET.fromstring(call("GET", url("", q)))
        for b in root.iter("Blob"):
            yield b.findtext("Name"), b.findtext("Properties/Content-MD5") or None
        marker = root.findtext("NextMarker") or ""
        if not marker:
            return


def get_tree(name, d):
    prefix = full(name) + "/"
    os.makedirs(d, exist_ok=True)
    for blob in listing(prefix):
        rel = blob[len(prefix):]
        if not rel or rel.endswith("/"):
            continue
        path = os.path.join(d, *rel.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            call("GET", url(blob), sink=f)


def put_tree(d, name, mirror=False):
    # A mirror sends only what changed (the blob's Content-MD5 differs).
    there = dict(listing_md5(full(name) + "/")) if mirror else {}
    keep = set()
    for root, _, files in os.walk(d):
        for fname in sorted(files):
            path = os.path.join(root, fname)
            rel = os.path.relpath(path, d).replace(os.sep, "/")
            blob = full(name.rstrip("/") + "/" + rel)
            md5 = md5_of(path)
            if there.get(blob) != md5:
                put(path, name.rstrip("/") + "/" + rel, md5)
            keep.add(blob)
    if mirror:
        for blob in there:
            if blob not in keep:
                try:
                    call("DELETE", url(blob))
                except Missing:
                    pass


def main(argv):
    if len(argv) != 3 or argv[0] not in ("get", "put", "get-tree", "put-tree", "mirror-tree"):
        sys.exit("usage: blob.py get NAME FILE | put FILE NAME | get-tree NAME DIR | put-tree DIR NAME"
                 " | mirror-tree DIR NAME")
    op, a, b = argv
    if op == "get":
        return 0 if get(a, b) else 3
    if op == "put":
        put(a, b)
    elif op == "get-tree":
        get_tree(a, b)
    else:
        put_tree(a, b, mirror=op == "mirror-tree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
