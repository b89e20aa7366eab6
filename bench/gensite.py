#!/usr/bin/env python3
"""Write a git fast-import stream of a website-like history to stdout.

The history is deterministic (a seeded PRNG, fixed dates), so the same
arguments always give the same commit ids. Each commit edits a few small
files the way a static site evolves: pages and blog posts (text), a
stylesheet, a script, and images (incompressible bytes) that are added,
replaced and sometimes deleted. Every 50th commit is tagged vN.

usage: gensite.py COMMITS [SEED]
"""

import random
import sys

BASE_TIME = 1_600_000_000  # fixed epoch for the first commit
STEP = 3 * 3600  # seconds between commits
TAG_EVERY = 50
IDENT = b"Bench Site <site@example.invalid>"

WORDS = (
    "git tree blob commit unikernel mirage xen block device image sector "
    "cluster extent layout cache inflate pack delta server client export "
    "guest host kernel boot read write static site page post about news "
    "release feature fix update the a of to and in is for on with as by"
).split()


def text(rng, n_words):
    """Deterministic pseudo-prose of n_words words."""
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def page(title, body_paras):
    parts = [
        "<!doctype html>\n<html><head><meta charset=utf-8>",
        f"<title>{title}</title>",
        '<link rel=stylesheet href="/css/site.css"></head><body>',
        f"<h1>{title}</h1>",
    ]
    parts += [f"<p>{p}</p>" for p in body_paras]
    parts.append('<script src="/js/app.js"></script></body></html>\n')
    return "\n".join(parts).encode()


def css(rng, rev):
    rules = []
    for sel in ("body", "h1", "p", "a", ".post", ".nav", "img", "footer"):
        color = "#%06x" % rng.randrange(1 << 24)
        rules.append(f"{sel} {{ color: {color}; margin: {rng.randrange(40)}px; }}")
    return (f"/* site.css rev {rev} */\n" + "\n".join(rules) + "\n").encode()


def js(rng, rev):
    body = "\n".join(
        f"function f{i}(x) {{ return x * {rng.randrange(1000)} + {i}; }}"
        for i in range(rng.randrange(5, 40))
    )
    return f"// app.js rev {rev}\n{body}\n".encode()


class Stream:
    def __init__(self, out):
        self.out = out

    def data(self, b):
        self.out.write(b"data %d\n" % len(b))
        self.out.write(b)
        self.out.write(b"\n")

    def put(self, path, content):
        self.out.write(b"M 100644 inline " + path.encode() + b"\n")
        self.data(content)

    def delete(self, path):
        self.out.write(b"D " + path.encode() + b"\n")


def main():
    commits = int(sys.argv[1])
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rng = random.Random(seed)
    s = Stream(sys.stdout.buffer)
    posts = []  # paths of blog posts
    images = []  # paths of images
    for i in range(1, commits + 1):
        when = BASE_TIME + i * STEP
        changes = []  # (path, bytes) or (path, None) for delete
        if i == 1:
            changes.append(("css/site.css", css(rng, i)))
            changes.append(("js/app.js", js(rng, i)))
            changes.append(("img/logo.png", rng.randbytes(4096)))
            changes.append(("favicon.ico", rng.randbytes(1150)))
            changes.append(("about.html", page("About", [text(rng, 80)])))
            images.append("img/logo.png")
        n_actions = rng.randrange(1, 5)
        for _ in range(n_actions):
            r = rng.random()
            if r < 0.35 or not posts:
                path = f"blog/{2020 + i // 100}/post-{i:04d}.html"
                if path not in posts:
                    posts.append(path)
                paras = [text(rng, rng.randrange(40, 160)) for _ in range(rng.randrange(3, 12))]
                changes.append((path, page(f"Post {i}", paras)))
            elif r < 0.55:
                path = rng.choice(posts)
                paras = [text(rng, rng.randrange(40, 160)) for _ in range(rng.randrange(3, 14))]
                changes.append((path, page(f"Post {path}", paras)))
            elif r < 0.75:
                path = f"img/photo-{i:04d}-{rng.randrange(100)}.jpg"
                if path not in images:
                    images.append(path)
                changes.append((path, rng.randbytes(rng.randrange(8 << 10, 96 << 10))))
            elif r < 0.85:
                changes.append(("css/site.css", css(rng, i)))
            elif r < 0.92:
                changes.append(("js/app.js", js(rng, i)))
            elif len(images) > 3:
                path = images.pop(rng.randrange(1, len(images)))
                changes.append((path, None))
        latest = "".join(f'<a href="/{p}">{p}</a> ' for p in posts[-10:])
        changes.append(("index.html", page("Home", [latest, text(rng, 30)])))

        s.out.write(b"commit refs/heads/main\n")
        s.out.write(b"mark :%d\n" % i)
        s.out.write(b"author " + IDENT + b" %d +0000\n" % when)
        s.out.write(b"committer " + IDENT + b" %d +0000\n" % when)
        s.data(b"site update %d\n" % i)
        if i > 1:
            s.out.write(b"from :%d\n" % (i - 1))
        for path, content in changes:
            if content is None:
                s.delete(path)
            else:
                s.put(path, content)
        s.out.write(b"\n")
        if i % TAG_EVERY == 0:
            s.out.write(b"reset refs/tags/v%d\nfrom :%d\n\n" % (i // TAG_EVERY, i))
    s.out.write(b"done\n")


if __name__ == "__main__":
    main()
