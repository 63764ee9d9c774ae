"""External C++ order books as benchmark contenders: extracting their sources from git mirrors, building
a small driver per contender (bench/contenders/*.cpp), running it on a NASDAQ binary ITCH 5.0 file, and
the book checksum that lets their final books be compared with xdpfeed's OrderBook. Prints one JSON
object on stdout; progress and compiler output go to stderr.

    python bench/contenders.py --itch-book MIRROR_OR_TREE --itch-order-book MIRROR_OR_TREE --file F.itch
        [--fixed-decimal MIRROR_OR_TREE] [--cxx g++] [--check]

Contenders:
  itch-book        groovg/itch-book: C++23, header-only, FIFO queues + aggregate levels, default
                   itch::BookManager<> (pooled order store, no BBO callback). Needs groovg/fixed-decimal
                   (cpp/include); the pinned commit from its CMakeLists.txt is used when the mirror has it.
                   g++ 12 builds it as is; clang++ 14 does not (libstdc++ 12 hides std::expected from it).
  itch-order-book  charles-cooper/itch-order-book: C++14, aggregate levels only, static global books.

Each driver takes one argument, the file; reads it fully into memory; then times parse + apply with a
monotonic clock (std::chrono::steady_clock) and prints one JSON line with at least "messages" (records
walked, zero-length ones included), "seconds", "levels" and "level_sum" (the book checksum below) and
"live_orders" (null where the library does not track it). The driver sources say what else they print.

Book checksum, over the final book: for every (locate, side, price level) with total shares > 0, where
side is 0 for bids and 1 for asks and price is the raw ITCH Price(4) integer,
    levels    = the number of such levels
    level_sum = sum of (locate*1000003 + side*7919 + price*31 + shares), mod 2**64
It is order-independent, so any book can produce it by walking its levels in any order
(`book_checksum`; `xdpfeed_checksum` computes it from xdpfeed's OrderBook).

Where the contenders' rules differ from xdpfeed's (multicast/book/apply.py):
  - A zero-length record: itch-book's parse ends there (end of session); its driver resumes after it, so
    every record is applied. xdpfeed counts it as a bad length and goes on; so does the
    itch-order-book driver.
  - itch-book: unknown references ignored and counted; a duplicate add replaces the live order (xdpfeed
    ignores the add); over-executions and over-cancels remove the order (as xdpfeed); adds and replaces
    with zero shares, price <= 0, reference 0 or >= 2**36 are rejected (a rejected replace still removes
    the original; xdpfeed adds a zero-share replacement).
  - itch-order-book trusts the feed: a reference to a dead or never-added order reuses stale order data
    and an over-execution wraps the unsigned level and order shares, so on such feeds its book differs.
    Its driver skips (and counts as "skipped") only what would index outside the library's arrays:
    references beyond the order array or >= 2**32, stock locates >= 16384. The order array is sized,
    untimed, to the file's largest added reference (upstream reserves a fixed 368M entries).
"""

import argparse
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVERS = os.path.join(HERE, "contenders")
MASK = (1 << 64) - 1
FLAGS = ["-O3", "-march=native", "-DNDEBUG"]

# name -> (driver source, language standard)
CONTENDERS = {
    "itch-book": ("itch_book_driver.cpp", "-std=c++2b"),
    "itch-order-book": ("itch_order_book_driver.cpp", "-std=c++14"),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# -------------------------------------------------------------------------------- sources
def is_git_dir(path: str) -> bool:
    """A bare (or bare-ish mirror) git directory rather than a source tree."""
    return os.path.isfile(os.path.join(path, "HEAD")) and os.path.isdir(os.path.join(path, "objects"))


def head_commit(repo_mirror_dir: str, rev: str = "HEAD") -> str:
    out = subprocess.run(["git", "-C", repo_mirror_dir, "rev-parse", "--verify", "--quiet", rev + "^{commit}"],
                         capture_output=True, text=True)
    return out.stdout.strip()


def extract(repo_mirror_dir: str, dest: str, rev: str = "HEAD") -> str:
    """Extract commit `rev` (default HEAD) of a git mirror into dest (git archive); returns dest."""
    tar = subprocess.run(["git", "-C", repo_mirror_dir, "archive", "--format=tar", rev],
                         capture_output=True, check=True).stdout
    os.makedirs(dest, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(dest, filter="data")
        else:
            t.extractall(dest)
    return dest


def pinned_fixed_decimal(itch_book_src: str) -> str | None:
    """The fixed-decimal commit itch-book's CMakeLists.txt pins (FetchContent GIT_TAG), if any."""
    try:
        with open(os.path.join(itch_book_src, "CMakeLists.txt")) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"FetchContent_Declare\(\s*fixed_decimal\b[^)]*?GIT_TAG\s+(\S+)", text)
    return m.group(1) if m else None


def fixed_decimal_include(fixed_decimal: str) -> str:
    """The include directory of an extracted fixed-decimal tree (or that directory itself)."""
    for inc in (os.path.join(fixed_decimal, "cpp", "include"), fixed_decimal):
        if os.path.isfile(os.path.join(inc, "fixed_decimal.hpp")):
            return inc
    raise FileNotFoundError(f"no fixed_decimal.hpp under {fixed_decimal} (or its cpp/include)")


# -------------------------------------------------------------------------------- build and run
def compile_command(name: str, src_dir: str, exe: str, cxx: str = "g++", fixed_decimal: str | None = None) -> list[str]:
    """The compiler command line that builds contender `name`'s driver against src_dir."""
    driver, std = CONTENDERS[name]
    cmd = [cxx, std, *FLAGS]
    if name == "itch-book":
        if fixed_decimal is None:
            fixed_decimal = next((p for p in (os.path.join(src_dir, "_deps", "fixed-decimal"),
                                              os.path.join(os.path.dirname(os.path.abspath(src_dir)), "fixed-decimal"))
                                  if os.path.isdir(p)), None)
            if fixed_decimal is None:
                raise FileNotFoundError("itch-book needs fixed-decimal: pass fixed_decimal= (an extracted tree)")
        cmd += ["-I", os.path.join(src_dir, "include"), "-I", fixed_decimal_include(fixed_decimal)]
    else:
        cmd += ["-I", src_dir]
    return [*cmd, os.path.join(DRIVERS, driver), "-o", exe]


def build(name: str, src_dir: str, out_dir: str, cxx: str = "g++", *, fixed_decimal: str | None = None,
          niceness: int = 19) -> str:
    """Compile contender `name` ("itch-book" or "itch-order-book") from an extracted source tree into
    out_dir; returns the executable's path. itch-book also needs an extracted fixed-decimal tree
    (fixed_decimal=, else src_dir/_deps/fixed-decimal or a fixed-decimal directory beside src_dir).
    The compiler runs at `niceness` (0: as is)."""
    if name not in CONTENDERS:
        raise ValueError(f"unknown contender {name!r}; known: {sorted(CONTENDERS)}")
    os.makedirs(out_dir, exist_ok=True)
    exe = os.path.join(out_dir, name.replace("-", "_"))
    cmd = compile_command(name, src_dir, exe, cxx, fixed_decimal)
    if niceness:
        cmd = ["nice", "-n", str(niceness), *cmd]
    log("build:", " ".join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"building {name} failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return exe


def run(exe: str, path: str, timeout: float | None = None) -> dict:
    """Run a built driver once on an ITCH file; returns its JSON line as a dict."""
    res = subprocess.run([exe, path], capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise RuntimeError(f"{exe} {path} failed ({res.returncode}): {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------------- checksum
def book_checksum(levels) -> dict:
    """{"levels", "level_sum"} over (locate, side, price, shares) tuples, side 0 bid / 1 ask (see top)."""
    n = s = 0
    for locate, side, price, shares in levels:
        if shares > 0:
            n += 1
            s = (s + locate * 1000003 + side * 7919 + price * 31 + shares) & MASK
    return {"levels": n, "level_sum": s}


def xdpfeed_levels(book):
    """Every (locate, side, price, shares) level of an xdpfeed OrderBook."""
    from xdpfeed.multicast.book.order_book import ASK, BID

    for loc in book.locates():
        for side in (BID, ASK):
            for price, shares, _orders in book.depth(loc, side):
                yield loc, side, price, shares


def xdpfeed_checksum(path: str) -> dict:
    """The book checksum of xdpfeed's OrderBook after the whole file, and its live order count."""
    import numpy as np

    from xdpfeed.multicast.book.order_book import ASK, BID, OrderBook

    assert (BID, ASK) == (0, 1)
    book = OrderBook()
    book.apply_stream(np.fromfile(path, np.uint8))
    return {**book_checksum(xdpfeed_levels(book)), "live_orders": book.live_orders}


# -------------------------------------------------------------------------------- main
def source_tree(path: str, dest: str, rev: str = "HEAD") -> tuple[str, str | None]:
    """(extracted tree, commit): a mirror is extracted into dest, a tree is used in place."""
    if is_git_dir(path):
        return extract(path, dest, rev), head_commit(path, rev)
    return path, None


def default_fixed_decimal(itch_book: str) -> str | None:
    """A fixed-decimal mirror or tree beside the itch-book one (OWNER+NAME/repo mirror layout, or siblings)."""
    here = os.path.abspath(itch_book)
    for p in (os.path.join(os.path.dirname(os.path.dirname(here)), "groovg+fixed-decimal", "repo"),
              os.path.join(os.path.dirname(here), "fixed-decimal")):
        if os.path.isdir(p):
            return p
    return None


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--itch-book", required=True, help="groovg/itch-book mirror (git dir) or extracted tree")
    p.add_argument("--itch-order-book", required=True, help="charles-cooper/itch-order-book mirror or tree")
    p.add_argument("--fixed-decimal", help="groovg/fixed-decimal mirror or tree (default: beside --itch-book)")
    p.add_argument("--file", required=True, help="NASDAQ binary ITCH 5.0 file")
    p.add_argument("--cxx", default="g++")
    p.add_argument("--check", action="store_true", help="also compute xdpfeed's checksum and compare")
    a = p.parse_args(argv)

    out = {"file": os.path.abspath(a.file), "cxx": a.cxx, "flags": FLAGS, "contenders": {}}
    with tempfile.TemporaryDirectory(prefix="contenders-") as tmp:
        ib_src, ib_commit = source_tree(a.itch_book, os.path.join(tmp, "itch-book"))
        iob_src, iob_commit = source_tree(a.itch_order_book, os.path.join(tmp, "itch-order-book"))
        fd = a.fixed_decimal or default_fixed_decimal(a.itch_book)
        if fd is None:
            raise SystemExit("itch-book needs fixed-decimal: pass --fixed-decimal")
        pin = pinned_fixed_decimal(ib_src)
        rev = pin if pin and is_git_dir(fd) and head_commit(fd, pin) else "HEAD"
        fd_src, fd_commit = source_tree(fd, os.path.join(tmp, "fixed-decimal"), rev)
        builds = {"itch-book": (ib_src, ib_commit, {"fixed_decimal": fd_src}),
                  "itch-order-book": (iob_src, iob_commit, {})}
        for name, (src, commit, extra) in builds.items():
            exe = build(name, src, os.path.join(tmp, "bin"), a.cxx, **extra)
            log("run:", name, a.file)
            res = run(exe, a.file)
            res["commit"] = commit
            if name == "itch-book":
                res["fixed_decimal_commit"] = fd_commit
            out["contenders"][name] = res
    if a.check:
        log("xdpfeed checksum:", a.file)
        ref = xdpfeed_checksum(a.file)
        out["xdpfeed"] = ref
        out["match"] = {name: (r["levels"], r["level_sum"]) == (ref["levels"], ref["level_sum"])
                        for name, r in out["contenders"].items()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
