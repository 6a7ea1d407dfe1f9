"""Fuzzing harness: every `han` command over hostile files and arguments, with the bad-input contract checked per call.

A seeded generator (HAN_FUZZ_SEED, default 0) combines a command with hostile ingredients (configs,
overrides, data and prediction files, run directories, outputs, option values, standard input) into
HAN_FUZZ_CALLS calls (default 2000): first a fixed plan (help, the known regressions 1, 2 and 5, and
the few calls that do real work: preprocess, train, evaluate, sharded predict and merge, run), then
random ones. They run in-process through typer's CliRunner, with the working directory inside a
sandbox folder that holds sentinel files: a project folder with a config.json of its own, a folder of
a user's files, copies of trained run directories (every file's bytes snapshotted), tampered run
directories and the pool of hostile files, built once. After every call:

1. the exit code is 0, 2 (config/usage), 3 (data), 4 (run directory) or 5 (a failed write);
2. a failing call prints exactly one non-empty stderr line, han's `error: ...` (progress-bar lines aside;
   typer's own usage errors, recognised by their format, must exit 2 and are otherwise exempt unless
   HAN_FUZZ_STRICT_USAGE=1), a succeeding call no error line, and no output holds a traceback;
3. no sentinel changed or vanished (bytes compared), no file of the sandbox changed unless it is the
   call's declared output (or in its own run directory), and no call that must be refused (an output
   that is one of its inputs, `--overwrite` of a folder han did not make, ...) succeeded;
4. the sandbox holds what it held before plus at most the declared outputs (a failed call: none of
   them, but for its own run directory), and no han temporary (`.<name>.han-<random>.tmp`) anywhere;
5. the call finished within HAN_FUZZ_TIME_LIMIT seconds (default 20; SIGALRM, and a watchdog that
   unblocks named pipes) and grew the resident set by less than 1.5 GiB;
6. `predict` (and a JSON Lines `report` without filters, and `merge-predictions`) that exits 0 on a
   CSV/TSV/JSONL/.txt file or on standard input wrote exactly one row per document, rows 1..n in order.

Calls whose ingredients may crash the interpreter or grow without bound (deeply nested data, huge
values, multi-megabyte arguments) run in a forked child, killed past the time or memory bound, so a
crash fails that call, not the run. Should the interpreter running the test crash nonetheless,
`<pytest basetemp>/fuzz*/call-in-progress.json` names the call. Failures are collected, grouped by
invariant, command and ingredients, and reported at the end with the exact arguments of the first
few; HAN_FUZZ_REPORT=file.json writes all of them, HAN_FUZZ_PROFILE=1 prints where the time went,
and `pytest -s` prints a summary (calls, seconds, exit codes, regression calls exercised).
The test imports only the CLI, the shared fixtures and the standard library, so it runs against an
older han too: `cd OLD_TREE && python -m pytest -p no:cacheprovider /path/to/tests/test_fuzz.py`.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import faulthandler
import gzip
import io
import json
import os
import pickle
import random
import resource
import select
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import TINY_CONFIG, make_corpus
from pipelines.cli import app

CALLS = int(os.environ.get("HAN_FUZZ_CALLS", "2000"))
SEED = int(os.environ.get("HAN_FUZZ_SEED", "0"))
STRICT_USAGE = os.environ.get("HAN_FUZZ_STRICT_USAGE", "") == "1"  # typer's usage errors must be one line too
TIME_LIMIT = float(os.environ.get("HAN_FUZZ_TIME_LIMIT", "20"))
MEMORY_LIMIT = int(1.5 * 2**30)  # bytes of peak-RSS growth one call may cause
SHOWN_FAILURES = 12
ALLOWED_CODES = {0, 2, 3, 4, 5}
BAR_CHARACTERS = set("━╸╺")  # rich progress bars on stderr
LABELS = ("food", "sport", "tech")  # conftest.make_corpus
PROTECTED = ("project", "keep", "run", "srcrun", "src", "ws")  # trees whose every byte is compared after each call
DISK_FULL_BYTES = 2048  # RLIMIT_FSIZE of a "disk full" call: config.json fits, no encoded split or weights file does

runner = CliRunner()


class CallStopped(BaseException):
    """Raised in the main thread by SIGALRM when a call runs past its time (or memory) bound."""


# --- the sandbox: every entry is recorded in a recipe, so it can be checked and restored --------------
@dataclass
class Box:
    root: Path
    recipe: dict[str, tuple] = field(default_factory=dict)
    _protected: list[tuple[str, str, bytes]] | None = None  # (rel, path, bytes) of the sentinel files

    def path(self, rel: str) -> Path:
        return self.root / rel

    def _parent(self, rel: str) -> None:
        parent = Path(rel).parent
        while str(parent) not in (".", ""):
            self.recipe.setdefault(str(parent), ("dir",))
            parent = parent.parent
        self.path(rel).parent.mkdir(parents=True, exist_ok=True)

    def file(self, rel: str, data: str | bytes) -> Path:
        self._parent(rel)
        content = data.encode("utf-8") if isinstance(data, str) else data
        self.recipe[rel] = ("file", content)
        self.path(rel).write_bytes(content)
        return self.path(rel)

    def dir(self, rel: str) -> Path:
        self._parent(rel)
        self.recipe[rel] = ("dir",)
        self.path(rel).mkdir(exist_ok=True)
        return self.path(rel)

    def link(self, rel: str, target: str) -> Path:
        self._parent(rel)
        self.recipe[rel] = ("link", target)
        os.symlink(target, self.path(rel))
        return self.path(rel)

    def hardlink(self, rel: str, other: str) -> Path:
        self._parent(rel)
        self.recipe[rel] = ("hardlink", other)
        os.link(self.path(other), self.path(rel))
        return self.path(rel)

    def fifo(self, rel: str) -> Path:
        self._parent(rel)
        self.recipe[rel] = ("fifo",)
        os.mkfifo(self.path(rel))
        return self.path(rel)

    def device(self, rel: str) -> Path | None:
        """A private null device (never the machine's /dev/null: a regression would replace this node)."""
        self._parent(rel)
        try:
            os.mknod(self.path(rel), stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except OSError:  # not root: no device ingredients
            return None
        self.recipe[rel] = ("chr",)
        return self.path(rel)

    def socket(self, rel: str) -> Path | None:
        self._parent(rel)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(str(self.path(rel)))
        except OSError:
            return None
        finally:
            server.close()
        self.recipe[rel] = ("sock",)
        return self.path(rel)

    def copytree(self, rel: str, source: Path) -> Path:
        self.dir(rel)
        for item in sorted(source.rglob("*")):
            sub = f"{rel}/{item.relative_to(source).as_posix()}"
            if item.is_dir():
                self.dir(sub)
            else:
                self.file(sub, item.read_bytes())
        return self.path(rel)

    def adopt(self, rel: str) -> None:
        """Record what a command wrote at `rel` (a folder) as part of the sandbox."""
        self.recipe[rel] = ("dir",)
        for item in sorted(self.path(rel).rglob("*")):
            sub = f"{rel}/{item.relative_to(self.path(rel)).as_posix()}"
            self.recipe[sub] = ("dir",) if item.is_dir() else ("file", item.read_bytes())

    # --- checking and restoring ------------------------------------------------------------------
    def scan(self) -> dict[str, tuple]:
        """Every entry below the root: regular files by (size, mtime, inode), special files by kind and inode."""
        entries: dict[str, tuple] = {}
        pending = [("", str(self.root))]
        while pending:
            prefix, folder = pending.pop()
            with os.scandir(folder) as listing:
                for entry in listing:
                    rel = prefix + entry.name
                    info = entry.stat(follow_symlinks=False)
                    mode = info.st_mode
                    if stat.S_ISLNK(mode):
                        entries[rel] = ("link", os.readlink(entry.path))
                    elif stat.S_ISDIR(mode):
                        entries[rel] = ("dir",)
                        pending.append((rel + "/", entry.path))
                    elif stat.S_ISREG(mode):
                        entries[rel] = ("file", info.st_size, info.st_mtime_ns, info.st_ino)
                    elif stat.S_ISFIFO(mode):
                        entries[rel] = ("fifo", info.st_ino)
                    elif stat.S_ISCHR(mode):
                        entries[rel] = ("chr", info.st_ino, info.st_rdev)
                    elif stat.S_ISSOCK(mode):
                        entries[rel] = ("sock", info.st_ino)
                    else:
                        entries[rel] = ("other", info.st_ino)
        return entries

    def protected_changes(self) -> list[str]:
        """Sentinel files whose bytes differ from the recipe (or that are gone or not regular files any more)."""
        if self._protected is None:
            self._protected = [
                (rel, str(self.path(rel)), entry[1])
                for rel, entry in self.recipe.items()
                if entry[0] == "file" and rel.split("/", 1)[0] in PROTECTED
            ]
        changed = []
        for rel, path, content in self._protected:
            try:
                descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                changed.append(rel)
                continue
            with os.fdopen(descriptor, "rb") as handle:
                if handle.read() != content:
                    changed.append(rel)
        return changed

    def restore(self, rels: set[str]) -> None:
        """Put `rels` back as the recipe says (removing what the recipe does not hold)."""
        for rel in sorted(rels, key=lambda r: r.count("/"), reverse=True):  # children first
            path = self.path(rel)
            if path.is_symlink() or (path.exists() and not path.is_dir()):
                path.unlink()
            elif path.is_dir() and self.recipe.get(rel) != ("dir",):
                shutil.rmtree(path)
        for rel in sorted(rels, key=lambda r: r.count("/")):  # parents first
            entry = self.recipe.get(rel)
            path = self.path(rel)
            if entry is None or (path.exists() or path.is_symlink()):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            kind = entry[0]
            if kind == "dir":
                path.mkdir()
            elif kind == "file":
                path.write_bytes(entry[1])
            elif kind == "link":
                os.symlink(entry[1], path)
            elif kind == "hardlink":
                if not self.path(entry[1]).is_file():
                    self.restore({entry[1]})
                os.link(self.path(entry[1]), path)
            elif kind == "fifo":
                os.mkfifo(path)
            elif kind == "chr":
                os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
            elif kind == "sock":
                self.recipe.pop(rel)
                self.socket(rel)
        # a restored file got a new inode: the hard links made of it must follow
        for rel, entry in self.recipe.items():
            if entry[0] == "hardlink" and (entry[1] in rels or rel in rels):
                with contextlib.suppress(OSError):
                    self.path(rel).unlink()
                os.link(self.path(entry[1]), self.path(rel))

    def fifos(self) -> list[Path]:
        return [self.path(rel) for rel, entry in self.recipe.items() if entry[0] == "fifo"]


# --- the pool of hostile ingredients -----------------------------------------------------------------
@dataclass(frozen=True)
class Input:
    """A documents file (or other path) given to predict/report/corpus-report/evaluate --data."""

    path: Path
    tag: str
    docs: int | None = None  # documents a reader that accepts the file must find, in order (None: not fixed)
    labelled: bool = False  # has the run's label column with known labels (evaluate --data can succeed)


@dataclass
class Pool:
    box: Box
    inputs: list[Input] = field(default_factory=list)
    good_inputs: list[Input] = field(default_factory=list)
    sources: list[tuple[str, str, bool]] = field(default_factory=list)  # (data.source value, tag, valid)
    configs: list[tuple[str, str, bool]] = field(default_factory=list)  # (config argument, tag, valid)
    read_runs: list[tuple[str, str]] = field(default_factory=list)  # (run dir argument that must be refused, tag)
    valid_source: str = ""
    device: Path | None = None
    socket: Path | None = None
    fifos: dict[str, Path] = field(default_factory=dict)
    spaces: list[tuple[str, str, bool]] = field(default_factory=list)  # (--space argument, tag, valid)
    workspace_files: list[Path] = field(default_factory=list)  # files of han's compare and tune folders

    def input(self, rel: str, data: str | bytes, tag: str, docs: int | None = None, labelled: bool = False) -> Input:
        item = Input(self.box.file(rel, data), tag, docs, labelled)
        self.inputs.append(item)
        if docs is not None and labelled:
            self.good_inputs.append(item)
        return item


def rows_csv(rows: list[dict[str, str]], delimiter: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def documents(n: int, seed: int, *columns: str) -> list[dict[str, str]]:
    return [{c: r[c] for c in columns} for r in make_corpus(n, seed=seed)]


def jsonl(records: list[object]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


class Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def build_pool(box: Box) -> Pool:
    pool = Pool(box)
    labelled = documents(6, 11, "text", "label")
    texts = [r["text"] for r in labelled]
    # --- prediction inputs that a reader accepts (docs fixed) ---------------------------------------
    pool.input("pool/ok.csv", rows_csv(labelled), "csv", 6, labelled=True)
    pool.input("pool/ok.jsonl", jsonl(labelled), "jsonl", 6, labelled=True)
    pool.input("pool/ok.tsv", rows_csv(labelled, "\t"), "tsv", 6, labelled=True)
    pool.input("pool/ok.txt", "".join(t + "\n" for t in texts[:4]), "txt", 4)
    pool.input("pool/ok_no_newline.txt", "\n".join(texts[:3]), "txt without a final newline", 3)
    pool.input("pool/text_only.csv", rows_csv(documents(5, 12, "text")), "csv text column only", 5)
    pool.input("pool/crlf.csv", rows_csv(labelled).replace("\n", "\r\n"), "csv CRLF", 6, labelled=True)
    pool.input("pool/bom.csv", "\ufeff" + rows_csv(labelled), "csv with a BOM", 6, labelled=True)
    pool.input(
        "pool/quoted_newline.csv",
        'text,label\n"The team won.\nThe coach said so.",sport\n"The chef ""baked"" bread.",food\nplain,tech\n',
        "csv quoted newline and doubled quotes",
        3,
        labelled=True,
    )
    pool.input("pool/extra_columns.csv", "id,text,note\n1,The team won.,x\n2,Bread was baked.,y\n", "csv extra cols", 2)
    pool.input(
        "pool/unicode.txt",
        "\u0645\u0628\u0627\u0631\u0627\u0629 \u0643\u0631\u0629. The team won.\nzero\u200bwidth\u2060joiner\u00ad soft\n"
        "\x07bell \x1b[31m ansi\n\u05e9\u05dc\u05d5\u05dd \U0001f389\n",
        "txt unicode/control",
        4,
    )
    pool.input(
        "pool/line_separators.txt",
        "one\u2028still one\nfive\x0bsix\x0cseven\x1cx\x1dy\x1ez\x85w\nlast\n",
        "txt with U+2028/VT/FF/FS/NEL inside lines",
        3,
    )
    pool.input(
        "pool/line_separators.csv",
        'text\n"one\u2028still one"\n"five\x0bsix\x0cseven\x85w"\nlast\n',
        "csv with U+2028/VT/FF/NEL inside fields",
        3,
    )
    pool.input(
        "pool/jsonl_separators.jsonl",
        jsonl([{"text": "a\u2028b"}, {"text": "c\x85d\x0be"}, {"text": "f\rg"}]),
        "jsonl with line separators in strings",
        3,
    )
    pool.input("pool/dup_key.jsonl", '{"text": "first", "text": "The team won."}\n', "jsonl duplicate key", 1)
    pool.input(
        "pool/huge_line.txt",
        "The team won the match. " * 120_000 + "\nsecond line.\n",
        "txt 2.9 MB line",
        2,
    )
    pool.input("pool/many.txt", "".join(f"The chef baked bread {i}.\n" for i in range(1500)), "txt 1500 lines", 1500)
    pool.input("pool/UPPER.CSV", rows_csv(labelled), "csv upper-case suffix", 6, labelled=True)
    # --- stray and unclosed quotes: an accepting reader must still find one document per line ------------
    pool.input("pool/stray_quote.csv", 'text\nHe said "hi there\nsecond doc\nthird doc\n', "csv stray quote", 3)
    pool.input("pool/open_quote.csv", 'text\n"He said hi\nsecond doc\nthird doc\n', "csv unclosed quote", 3)
    pool.input(
        "pool/quote_reopened.csv",
        'text\nfirst doc\n"second doc\nthird doc\n"fourth" doc\n',
        "csv quote closed lines later",
        4,
    )
    pool.input("pool/quote_then_text.csv", 'text\n"a" b\nsecond\nthird\n', "csv text after closing quote", 3)
    pool.input("pool/stray_quote.tsv", 'text\tid\n"He said\t1\nsecond\t2\nthird\t3\n', "tsv unclosed quote", 3)
    pool.input(
        "pool/stray_quote_labelled.csv",
        'text,label\n"The team won,sport\nBread was baked,food\nThe server crashed,tech\n',
        "csv unclosed quote (labelled)",
        3,
    )
    # --- refused (or at least never silently misread) ------------------------------------------------
    bad = {
        "empty.csv": b"",
        "empty.txt": b"",
        "empty.jsonl": b"",
        "header_only.csv": "text,label\n",
        "blank.txt": "\n \n\t\n",
        "blank.csv": "\n\n  \n",
        "wrong_columns.csv": "body,label\nx,food\n",
        "dup_header.csv": "text,text,label\na,b,food\nc,d,sport\n",
        "dup_header_label.csv": "text,label,label\na,food,sport\n",
        "ragged.csv": "text,label\nfine,food\nodd,sport,extra\nfine too,tech\n",
        "short_row.csv": "text,label\nfine,food\nalone\nfine too,tech\n",
        "semicolon.csv": "text;label\na;food\nb;sport\n",
        "tabs.csv": "text\tlabel\na\tfood\n",
        "commas.tsv": "text,label\na,food\n",
        "newline_header.csv": '"te\nxt",label\na,food\n',
        "markup_header.csv": "[bold red]text[/],label\na,food\n",
        "binary.csv": bytes(range(256)) * 8,
        "binary.txt": b"\x7fELF\x02\x01\x01\x00" + bytes(200),
        "nul_field.csv": "text,label\nbad\x00text,food\n",
        "nul.jsonl": '{"text": "a\x00b"}\n',
        "pdf.csv": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n",
        "gzip.csv": gzip.compress(b"text,label\na,food\n"),
        "zip.jsonl": b"PK\x03\x04" + bytes(40),
        "pickle.jsonl": pickle.dumps(Evil()),
        "png.txt": b"\x89PNG\r\n\x1a\n" + bytes(20),
        "utf16.csv": "text,label\na,food\n".encode("utf-16"),
        "utf16.txt": "hello\nworld\n".encode("utf-16"),
        "utf32.txt": "hello\n".encode("utf-32"),
        "latin1.txt": b"fine line\nna\xefve line\n",
        "latin1.csv": b"text,label\nna\xefve,food\n",
        "overlong.txt": b"over\xc0\x80long\n",
        "surrogate.txt": b"lone \xed\xa0\x80 surrogate\n",
        "truncated_utf8.txt": b"cut \xe2\x82",
        "invalid.jsonl": '{"text": "fine"}\n{nope\n',
        "number_text.jsonl": '{"text": 5}\n',
        "null_text.jsonl": '{"text": null}\n{"text": "x"}\n',
        "bool_text.jsonl": '{"text": true}\n',
        "list_text.jsonl": '{"text": ["a", "b"]}\n',
        "dict_text.jsonl": '{"text": {"a": 1}}\n',
        "nan.jsonl": '{"text": "a", "x": NaN}\n',
        "big_number.jsonl": '{"text": "a", "x": 1e999}\n',
        "array.jsonl": '[{"text": "a"}]\n',
        "scalar.jsonl": "42\n",
        "trailing_garbage.jsonl": '{"text": "a"} junk\n',
        "no_field.jsonl": '{"body": "x"}\n',
        "deep.jsonl": '{"text": "a"}\n{"text": ' + "[" * 100_000 + "\n",
        "deep_object.jsonl": '{"text": "a", "x": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}\n",
        "fake.parquet": b"PAR1 but not really" * 10,
        "magic_only.parquet": b"PAR1PAR1",
        "sheet.xlsx": b"PK\x03\x04",
        "doc.docx": b"PK",
        "no_suffix": "text\nhello\n",
        "dot.": "text\nhello\n",
        "long_header.csv": "text," + ",".join(f"c{i}" for i in range(5_000)) + "\na" + ",x" * 5_000 + "\n",
        "long_field.csv": "text,label\n" + "w" * 3_000_000 + ",food\n",
        "cr_only.txt": "one\rtwo\rthree\r",
        "json_array.json": '[{"text": "a"}]',
        "non_string_label.jsonl": jsonl([{"text": "a.", "label": [1]}, {"text": "b.", "label": {"x": 1}}]),
    }
    for name, content in bad.items():
        pool.input(f"pool/{name}", content, name)
    pool.input("pool/sp ace and ünïcode.csv", rows_csv(labelled), "name with spaces/unicode", 6, labelled=True)
    pool.input("pool/new\nline.csv", rows_csv(labelled), "name with a newline", 6, labelled=True)
    pool.input("pool/[bold]markup[/].csv", "body\nx\n", "name with rich markup")
    pool.input("pool/" + "n" * 200 + ".csv", rows_csv(labelled), "200-char name", 6, labelled=True)
    # links, folders, special files
    box.link("pool/link_to_ok.csv", "ok.csv")
    pool.inputs.append(Input(box.path("pool/link_to_ok.csv"), "symlink to a csv", 6, True))
    box.link("pool/dangling.csv", "nowhere.csv")
    box.link("pool/loop_a.csv", "loop_b.csv")
    box.link("pool/loop_b.csv", "loop_a.csv")
    box.hardlink("pool/hardlink_ok.csv", "pool/ok.csv")
    box.dir("pool/folder.csv")
    box.file("pool/folder.csv/inner.csv", rows_csv(labelled))
    for rel, tag in (
        ("pool/dangling.csv", "dangling symlink"),
        ("pool/loop_a.csv", "symlink loop"),
        ("pool/folder.csv", "a folder named .csv"),
        ("pool/missing.csv", "missing file"),
        ("pool/missing.txt", "missing txt"),
        ("pool/nodir/missing.jsonl", "missing folder"),
    ):
        pool.inputs.append(Input(box.path(rel), tag))
    for name in ("pipe.csv", "pipe.txt", "pipe.jsonl", "pipe.tsv", "pipe.parquet", "pipe.yaml"):
        pool.fifos[name] = box.fifo(f"special/{name}")
        if not name.endswith(".yaml"):
            pool.inputs.append(Input(pool.fifos[name], f"named pipe {name}"))
    pool.device = box.device("special/null.csv")
    if pool.device is not None:
        pool.inputs.append(Input(pool.device, "character device .csv"))
        box.device("special/null.txt")
        pool.inputs.append(Input(box.path("special/null.txt"), "character device .txt"))
    pool.socket = box.socket("special/sock.csv")
    if pool.socket is not None:
        pool.inputs.append(Input(pool.socket, "socket .csv"))

    # --- training data sources (data.source=...) --------------------------------------------------
    corpus = box.file("src/corpus.csv", rows_csv(documents(45, 31, "text", "label", "split")))
    pool.valid_source = str(corpus)
    pool.sources.append((str(corpus), "valid csv with split column", True))
    pool.sources.append(
        (str(box.file("data/corpus.jsonl", jsonl(documents(45, 32, "text", "label", "split")))), "valid jsonl", True)
    )
    data_bad = {
        "one_label.csv": rows_csv([{"text": f"doc {i}.", "label": "a", "split": "train"} for i in range(12)]),
        "two_rows.csv": "text,label\nfirst.,a\nsecond.,b\n",
        "empty_texts.csv": rows_csv([{"text": " ", "label": "ab"[i % 2], "split": "train"} for i in range(12)]),
        "unknown_split.csv": rows_csv(
            [{"text": f"doc {i}.", "label": "ab"[i % 2], "split": "holdout"} for i in range(12)]
        ),
        "labels_mixed.jsonl": jsonl([{"text": f"doc {i}.", "label": [1, "1", 1.5, None][i % 4]} for i in range(12)]),
        "label_objects.jsonl": jsonl([{"text": f"doc {i}.", "label": {"x": i}} for i in range(12)]),
        "text_numbers.jsonl": jsonl([{"text": i, "label": "ab"[i % 2]} for i in range(12)]),
        "ragged.csv": "text,label\nfine.,a\nodd,a,extra\n",
        "quote.csv": 'text,label\n"never closed,a\nnext,b\n',
        "stray_quote.csv": 'text,label,split\nHe said "hi,a,train\nsecond,b,train\n',
    }
    for name, content in data_bad.items():
        pool.sources.append((str(box.file(f"data/{name}", content)), f"data {name}", False))
    classes = box.dir("data/classes")
    for label in ("a", "b"):
        for i in range(3):
            box.file(f"data/classes/{label}/{i}.txt", f"Document {i} of class {label}.")
    box.fifo("data/classes/a/pipe.txt")
    box.dir("data/empty_folder")
    box.file("data/binary_classes/a/1.txt", bytes(range(256)))
    box.file("data/binary_classes/b/1.txt", b"\xff\xfe\x00\x00")
    for value, tag in (
        (str(classes), "class folders holding a named pipe"),
        (str(box.path("data/empty_folder")), "empty folder"),
        (str(box.path("data/binary_classes")), "class folders of binary files"),
        (str(box.path("pool/*.nomatch")), "glob matching nothing"),
        (str(box.path("pool/ok*")), "glob of mixed files"),
        (f"[{box.path('pool/ok.csv')}, {box.path('pool/ok.jsonl')}]", "list of files without split"),
        (f"{{train: {box.path('pool/ok.csv')}, test: {box.path('pool/missing.csv')}}}", "split files, one missing"),
        ("someone/nonexistent-dataset", "hub id offline"),
        ("package:nonexistent_pkg/data", "missing package"),
        ("", "empty source"),
        (str(box.path("pool/missing.csv")), "missing file"),
        ("~/definitely/not/here.csv", "home-relative missing"),
        ("../../../../etc/passwd", "relative traversal"),
    ):
        pool.sources.append((value, tag, False))
    for item in pool.inputs:
        if not item.labelled:
            pool.sources.append((str(item.path), f"data {item.tag}", False))

    # --- configs -----------------------------------------------------------------------------------
    tiny = TINY_CONFIG.read_text(encoding="utf-8")
    pool.configs.append((str(TINY_CONFIG), "configs/tiny.yaml", True))
    pool.configs.append((str(box.file("cfg/tiny copy.yaml", tiny)), "tiny copy", True))
    alias_bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefg", "bcdefgh", strict=True)
    )
    config_bad = {
        "empty.yaml": "",
        "invalid.yaml": "data: [unclosed\n",
        "binary.yaml": b"\xff\xfe\x00\x81garbage",
        "list.yaml": "- data\n- train\n",
        "scalar.yaml": "42\n",
        "unknown_key.yaml": "data: {source: x.csv}\nepochs: 3\n",
        "wrong_type.yaml": "data: {source: x.csv}\ntrain: {batch_size: lots}\n",
        "out_of_range.yaml": "data: {source: x.csv}\nmodel: {dropout: 1.5}\n",
        "nan.yaml": "data: {source: x.csv}\ntrain: {lr: .nan}\n",
        "python_tag.yaml": "data:\n  source: !!python/object/apply:os.system [echo hi]\n",
        "alias_bomb.yaml": alias_bomb + "data: {source: x.csv, text_column: *h}\n",
        "deep.yaml": "[" * 100_000,
        "deep_mapping.yaml": "data: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
        "duplicate_keys.yaml": tiny + "seed: 1\nseed: 2\n",
        "merge_key.yaml": "base: &b {lr: 0.1}\ntrain:\n  <<: *b\ndata: {source: x.csv}\n",
        "utf16.yaml": tiny.encode("utf-16"),
        "latin1.yaml": b"data: {source: caf\xe9.csv}\n",
        "nul.yaml": "data: {source: x.csv}\n\x00\n",
        "tabs.yaml": "data:\n\tsource: x.csv\n",
        "huge_int.yaml": "seed: " + "9" * 5000 + "\ndata: {source: x.csv}\n",
        "huge.yaml": "# " + "c" * 2_000_000 + "\ndata: {source: x.csv}\n",
        "long_key.yaml": "k" * 100_000 + ": 1\n",
        "config.json": json.dumps({"data": {"source": "x.csv"}, "train": {"max_epochs": "x"}}),
        "gzip.yaml": gzip.compress(tiny.encode()),
        "pickle.yaml": pickle.dumps(Evil()),
        "bool_section.yaml": "data: {source: x.csv}\ntrain: yes\n",
        "big_model.yaml": "data: {source: x.csv}\nmodel: {word_hidden: 100000000}\n",
        "vectors.yaml": "data: {source: x.csv}\nembeddings: {source: file}\n",
    }
    for name, content in config_bad.items():
        pool.configs.append((str(box.file(f"cfg/{name}", content)), f"config {name}", False))
    box.dir("cfg/folder.yaml")
    for value, tag in (
        (str(box.path("cfg/missing.yaml")), "missing config"),
        (str(box.path("cfg/folder.yaml")), "config is a folder"),
        (str(pool.fifos["pipe.yaml"]), "config is a named pipe"),
        (str(box.path("project/config.json")), "config is another program's config.json"),
    ):
        pool.configs.append((value, tag, False))
    if pool.device is not None:
        box.device("special/null.yaml")
        pool.configs.append((str(box.path("special/null.yaml")), "config is a character device", False))
    return pool


OVERRIDES_BAD = [
    "train.lr",
    "=1",
    "seed.x=2",
    "train.nope=1",
    "train.max_epochs=many",
    "train.lr=inf",
    "train.lr=.nan",
    "train.lr=-0.1",
    "train.batch_size=0",
    "model.dropout=1.5",
    "model.word_hidden=100000000",
    "embeddings.dim=100000000",
    "preprocess.max_chars=0",
    "preprocess.max_sentences=-1",
    "preprocess.spacy_model=xx_missing_pipeline",
    "train.lr=" + "[" * 100_000,
    "train.lr={a: " * 40 + "1" + "}" * 40,
    "seed=99999999999999999999999999",
    "seed=!!python/object/apply:os.system [echo hi]",
    "data=5",
    "train=null",
    "data.labels=[a, a]",
    "data.bad_rows=maybe",
    "data.unseen_labels=sometimes",
    "data.delimiter=;;",
    "data.text_column=[]",
    "data.text_column={a: 1}",
    "data.split_column=nosuch",
    "data.test_fraction=1.5",
    "data.test_fraction=nan",
    "embeddings.source=file",
    "embeddings.source=file embeddings.path=/nonexistent.vec",
    "été=1",
    "a..b=1",
    ".=1",
    "data.source.x=1",
    "train.max_epochs=" + "9" * 100,
    "train.checkpoint_every_steps=0",
    "x" * 50_000 + "=1",
    "train.lr=" + "1" * 200_000,
]
OVERRIDES_FINE = ["train.max_epochs=1", "train.threads=1", "data.bad_rows=drop", "preprocess.workers=1", "seed=3"]


# --- one call and its expectations -----------------------------------------------------------------
@dataclass
class Call:
    args: list[str]
    tag: str  # the ingredients, to group failures
    stdin: bytes = b""
    outputs: tuple[Path, ...] = ()  # files it may create or replace when it succeeds
    run_dirs: tuple[Path, ...] = ()  # folders it may create and write into (success or not)
    removable: tuple[Path, ...] = ()  # files it may remove when it succeeds (merged part files)
    must_fail: str = ""  # why the call must be refused (an output that is an input, ...)
    docs: int | None = None  # documents in the input: rows a succeeding predict/report writes
    rows_in: Path | None = None  # the file holding those rows (None: stdout)
    rows_kind: str = ""  # "predict" or "report"
    fifo_output: Path | None = None  # a named pipe given as output: the harness reads it like a consumer would
    prepare: Callable[[], None] | None = None
    codes: tuple[int, ...] = ()  # the exit codes the call may end with, when narrower than ALLOWED_CODES
    file_size_limit: int | None = None  # RLIMIT_FSIZE in a forked child: every file han writes hits a full disk
    check: Callable[[], str] | None = None  # after the call: a problem the harness must report, or ""
    cleanup: Callable[[], None] | None = None  # after the call and its checks, whatever happened
    live: bool = False  # a background process writes in `run_dirs` meanwhile (its temporaries come and go)

    @property
    def command(self) -> str:
        words = [a for a in self.args if a not in ("-v", "--verbose")]
        if not words:
            return "(no args)"
        if words[0] == "data" and len(words) > 1:
            return "data " + words[1]
        return words[0]

    def show(self) -> str:
        return " ".join(repr(a) if (" " in a or "\n" in a or not a) else a for a in (shorten(a) for a in self.args))


def joined(words: list[str]) -> str:
    return " ".join(shorten(w, 40) for w in words)


def shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else f"{text[:70]}...<{len(text)} chars>...{text[-40:]}"


@dataclass
class Failure:
    invariant: str
    call: Call
    code: int
    detail: str
    stdout: str
    stderr: str


# --- the generator ---------------------------------------------------------------------------------
class Generator:
    def __init__(self, rng: random.Random, box: Box, pool: Pool) -> None:
        self.rng = rng
        self.box = box
        self.pool = pool
        self.counter = 0
        self.sentinel = box.path("run")
        self.srcrun = box.path("srcrun")
        self.evalrun = box.path("work/evalrun")

    def fresh(self, stem: str, suffix: str = "") -> Path:
        self.counter += 1
        return self.box.path(f"out/{stem}{self.counter}{suffix}")

    def fresh_run(self) -> Path:
        self.counter += 1
        return self.box.path(f"work/r{self.counter}")

    def pick(self, items, weights=None):
        return self.rng.choices(items, weights=weights)[0] if weights else self.rng.choice(items)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    # --- ingredients -----------------------------------------------------------------------------
    def read_run(self) -> tuple[Path, str]:
        """A run directory for a read-only command: the sentinel run mostly, else one that must be refused."""
        if self.chance(0.78):
            return self.sentinel, "run"
        if self.chance(0.2):
            return self.srcrun, "srcrun"
        rel, tag = self.pick(self.pool.read_runs)
        return Path(rel), tag

    def config(self, valid_share: float = 0.75) -> tuple[str, str, bool]:
        if self.chance(valid_share):
            return str(TINY_CONFIG), "tiny", True
        return self.pick(self.pool.configs)

    def overrides(self, source: tuple[str, str, bool], bad_share: float = 0.3) -> tuple[list[str], str, bool]:
        value, tag, valid = source
        extra: list[str] = [f"data.source={value}"]
        if valid:
            extra.append("data.split_column=split")
        bad = False
        if self.chance(bad_share):
            chosen = self.pick(OVERRIDES_BAD)
            extra += chosen.split(" ")
            tag += f" + override {shorten(chosen, 40)}"
            bad = True
        extra += self.rng.sample(OVERRIDES_FINE, self.rng.randint(0, 2))
        extra += ["train.max_epochs=1", "train.threads=1", "preprocess.workers=1"]
        self.rng.shuffle(extra)
        return extra, tag, bad

    def source(self, valid_share: float) -> tuple[str, str, bool]:
        if self.chance(valid_share):
            return self.pick([s for s in self.pool.sources if s[2]])
        return self.pick([s for s in self.pool.sources if not s[2]])

    def output(self, suffixes: tuple[str, ...], inputs: list[Path], run: Path) -> tuple[list[str], Call]:
        """An --output choice: (its arguments, a partial Call holding what it declares)."""
        if self.pool.workspace_files and self.chance(
            0.05
        ):  # a file of han's compare or tune folder, or a new one there
            inside = self.pick(
                [*self.pool.workspace_files, self.box.path(f"ws/compare/results/new{self.pick(suffixes)}")]
            )
            where = os.path.relpath(inside, self.box.path("ws"))
            return ["-o", str(inside)], Call([], f"output in a han workspace ({where})", must_fail="inside a workspace")
        r = self.rng.random()
        suffix = self.pick(suffixes)
        if r < 0.55:
            out = self.fresh("o", suffix)
            return ["--output" if self.chance(0.5) else "-o", str(out)], Call([], "fresh output", outputs=(out,))
        if r < 0.62 and inputs:  # regression 2: an output that is one of the inputs
            spelled = self.pick([str(inputs[0]), f"{inputs[0].parent}/../{inputs[0].parent.name}/{inputs[0].name}"])
            return ["-o", spelled], Call([], "output is the input", must_fail="the output is one of the inputs")
        if r < 0.66 and inputs and inputs[0] == self.box.path("pool/ok.csv"):
            other = self.pick(["pool/hardlink_ok.csv", "pool/link_to_ok.csv"])
            return ["-o", str(self.box.path(other))], Call(
                [], f"output is the input via {other}", must_fail="the output is the input (linked)"
            )
        if r < 0.71:  # an existing file of the user's: may be replaced by a complete output
            out = self.fresh("existing", suffix)

            def prepare(out: Path = out) -> None:
                out.write_text("previous version\n")

            return ["-o", str(out)], Call([], "existing output", outputs=(out,), prepare=prepare)
        if r < 0.77:  # inside a run directory
            inside = self.pick(["manifest.json", "notes" + suffix, "model/extra" + suffix, "data/test/x" + suffix])
            return ["-o", str(run / inside)], Call([], f"output inside the run ({inside})", must_fail="inside a run")
        if r < 0.81:
            folder = self.pick([self.box.path("out"), self.box.path("project"), run])
            return ["-o", str(folder)], Call([], "output is a folder", must_fail="the output is a folder")
        if r < 0.85 and self.pool.device is not None:
            return ["-o", str(self.box.path("special/null_out"))], Call([], "output is a device")
        if r < 0.88:
            fifo = self.box.path("special/out_pipe")
            return ["-o", str(fifo)], Call([], "output is a named pipe with a reader", fifo_output=fifo)
        if r < 0.91:
            out = self.fresh("nodir/sub/o", suffix)
            return ["-o", str(out)], Call([], "output in a missing folder", outputs=(out,))
        if r < 0.93:
            out = self.box.path("out/" + "x" * 300 + suffix)
            return ["-o", str(out)], Call([], "output name too long", outputs=(out,))
        if r < 0.97 and self.pool.socket is not None:
            return ["-o", str(self.pool.socket)], Call([], "output is a socket", must_fail="a socket output")
        out = self.fresh("o", self.pick([".weird", "", ".JSONL", ".Csv"]))
        return ["-o", str(out)], Call([], "output with an odd suffix", outputs=(out,))

    # --- commands --------------------------------------------------------------------------------
    def predict(self) -> list[Call]:
        run, run_tag = self.read_run()
        args = ["predict", str(run)]
        stdin = b""
        docs: int | None = None
        inputs: list[Path] = []
        if self.chance(0.8):
            item = self.pick(self.pool.inputs)
            args.append(str(item.path))
            inputs.append(item.path)
            tag, docs = item.tag, item.docs
        else:
            kind, stdin, docs = self.pick(STDIN_CASES)
            if self.chance(0.5):
                args.append("-")
            tag = f"stdin {kind}"
        options = list(self.pick(PREDICT_OPTIONS)) if self.chance(0.3) else []
        if self.chance(0.5):
            out_args, declared = self.output((".jsonl", ".csv"), inputs, run)
        else:
            out_args, declared = [], Call([], "stdout")
        outputs, must_fail, rows_in = declared.outputs, declared.must_fail, None
        if declared.fifo_output is not None:
            rows_in = declared.fifo_output
        elif declared.outputs:
            rows_in = declared.outputs[0]
        elif out_args:
            docs = None  # a device, or an output that must be refused: nothing to count
        shard = options[1] if options[:1] == ["--shard"] else None
        if (
            shard is not None
        ):  # each shard writes a part file beside OUTPUT (han.workflows.sharding.prediction_part_path)
            docs = None
            outputs = shard_part(Path(out_args[1]), shard) if out_args else ()
            if "inside the run" not in declared.tag:
                must_fail = ""
        options_tag = f" | {joined(options)}" if options else ""
        call = Call(
            args + options + out_args,
            f"{run_tag} | {tag} | {declared.tag}{options_tag}",
            stdin=stdin,
            outputs=outputs,
            must_fail=must_fail,
            docs=docs,
            rows_in=rows_in,
            rows_kind="predict",
            fifo_output=declared.fifo_output,
            prepare=declared.prepare,
        )
        return [call]

    def report(self) -> list[Call]:
        run, run_tag = self.read_run()
        args = ["report", str(run)]
        inputs: list[Path] = []
        docs = None
        r = self.rng.random()
        if r < 0.7:
            item = self.pick(self.pool.inputs + self.pool.good_inputs * 2)
            args.append(str(item.path))
            inputs.append(item.path)
            tag, docs = item.tag, item.docs
            if self.chance(0.15):
                args += ["--split", self.pick(["test", "train", "validation", "bogus", ""])]
        elif r < 0.9:
            args += ["--split", self.pick(["test", "test", "validation", "train", "bogus", "", "../x"])]
            tag = "run's own data"
            if run == self.srcrun and self.chance(0.5):  # the run's data source as the output
                out = self.pool.valid_source
                call = Call(
                    [*args, "-o", out],
                    f"{run_tag} | --split | output is the run's data source",
                    must_fail="the output is the run's data source",
                )
                return [call]
        else:
            tag = "no input, no split"
        options = []
        for _ in range(self.rng.choice([0, 0, 1, 2, 3])):
            options += self.pick(REPORT_OPTIONS)
        if self.chance(0.05):  # the default output, report.html in the working directory
            out_args: list[str] = []
            declared = Call([], "default output", outputs=(self.box.path("cwd/report.html"),))
        else:
            out_args, declared = self.output((".html", ".jsonl", ".json", ".htm"), inputs, run)
        filtered = any(o in options for o in ("--limit", "--true-label", "--predicted-label", "--only", "--split"))
        jsonl_out = bool(declared.outputs) and declared.outputs[0].suffix == ".jsonl"
        if "--format" in options:
            jsonl_out = options[options.index("--format") + 1] == "jsonl" and bool(declared.outputs)
        check_rows = docs is not None and jsonl_out and not filtered and "--split" not in args
        return [
            Call(
                args + options + out_args,
                f"{run_tag} | {tag} | {declared.tag}" + (f" | {joined(options)}" if options else ""),
                outputs=declared.outputs,
                must_fail=declared.must_fail,
                docs=docs if check_rows else None,
                rows_in=declared.outputs[0] if check_rows else None,
                rows_kind="report",
                fifo_output=declared.fifo_output,
                prepare=declared.prepare,
            )
        ]

    def corpus_report(self) -> list[Call]:
        run, run_tag = self.read_run()
        args = ["corpus-report", str(run)]
        inputs: list[Path] = []
        tag = "split"
        if self.chance(0.3):
            item = self.pick(self.pool.inputs + self.pool.good_inputs * 2)
            args.append(str(item.path))
            inputs.append(item.path)
            tag = item.tag
        options = []
        for _ in range(self.rng.choice([0, 1, 1, 2, 3])):
            options += self.pick(CORPUS_OPTIONS)
        if self.chance(0.05):
            out_args: list[str] = []
            declared = Call([], "default output", outputs=(self.box.path("cwd/corpus.html"),))
        else:
            out_args, declared = self.output((".html", ".json", ".jsonl"), inputs, run)
        return [
            Call(
                args + options + out_args,
                f"{run_tag} | {tag} | {declared.tag}" + (f" | {joined(options)}" if options else ""),
                outputs=declared.outputs,
                must_fail=declared.must_fail,
                fifo_output=declared.fifo_output,
                prepare=declared.prepare,
            )
        ]

    def show(self) -> list[Call]:
        """show over one or two run directories (readable, tampered or missing) and hostile outputs."""
        runs = [self.read_run() for _ in range(self.rng.choice([1, 1, 2]))]
        args = ["show", *(str(run) for run, _ in runs)]
        out_args, declared = self.output((".html",), [], runs[0][0])
        return [
            Call(
                args + out_args,
                f"{' + '.join(tag for _, tag in runs)} | {declared.tag}",
                outputs=declared.outputs,
                must_fail=declared.must_fail,
                fifo_output=declared.fifo_output,
                prepare=declared.prepare,
            )
        ]

    def tune(self) -> list[Call]:
        """tune with hostile configs, folders and trial counts (cheap: each fails before training)."""
        call = self.compare()[0]  # the same configs, overrides and folders as compare
        at = call.args.index("--dir")
        args = ["tune", *call.args[1 : at + 2]]  # compare's --models/--seeds/-o/--resume left out
        if self.chance(0.4):
            args += ["--trials", self.pick(["1", "0", "-3", "abc", "1001", "2.5"])]
        if self.chance(0.1):
            args.append("--resume")
        must_fail = "" if call.must_fail == "the output is the config" else call.must_fail
        tag = call.tag.replace("dir", "tune dir", 1)
        if self.pool.spaces and self.chance(0.35):
            space, space_tag, valid = self.pick(self.pool.spaces)
            args += ["--space", space]
            tag += f" | space: {space_tag}"
            must_fail = must_fail or ("" if valid else f"a bad --space ({space_tag})")
        return [Call(args, tag, run_dirs=call.run_dirs, must_fail=must_fail)]

    def evaluate(self) -> list[Call]:
        if self.chance(0.7):
            run, run_tag, run_dirs = self.evalrun, "work run", (self.evalrun,)
        else:
            rel, run_tag = self.pick(self.pool.read_runs)
            run, run_dirs = Path(rel), ()
        args = ["evaluate", str(run)]
        tag = "split"
        if self.chance(0.4):
            item = self.pick(self.pool.inputs + self.pool.good_inputs * 3)
            args += ["--data", str(item.path)]
            tag = item.tag
        if self.chance(0.4):
            args += self.pick(EVALUATE_OPTIONS)
        return [Call(args, f"{run_tag} | {tag} | {joined(args[2:])}", run_dirs=run_dirs)]

    def merge(self) -> list[Call]:
        suffix = self.pick([".csv", ".jsonl", ".csv", ".jsonl", ".txt", ""])
        out = self.fresh("merged", suffix)
        kind = self.pick(list(PART_KINDS))
        count = self.pick([1, 2, 2, 3]) if kind in SINGLE_PART_KINDS else self.pick([2, 2, 3])
        parts = [out.with_name(f"{out.stem}.shard-{i}-of-{count}{out.suffix}") for i in range(count)]
        contents = PART_KINDS[kind](count, suffix)
        shards_arg = str(count)
        if self.chance(0.12):
            shards_arg = self.pick(["0", "-1", "abc", "100000", "", "2.5", str(2**70)])

        def prepare() -> None:
            for part, content in zip(parts, contents, strict=True):
                if content is None:
                    continue
                if content == "FIFO":
                    os.mkfifo(part)
                elif content == "DIR":
                    part.mkdir()
                elif content.startswith("LINK:"):
                    os.symlink(self.box.path(content[5:]), part)
                else:
                    part.write_bytes(content.encode("utf-8"))

        out_args = [str(out)]
        outputs: tuple[Path, ...] = (out,)
        must_fail = "" if kind == "valid" and shards_arg == str(count) else "junk or missing parts"
        r = self.rng.random()
        if r < 0.06:
            out_args = [str(self.sentinel / f"merged{suffix}")]
            outputs, must_fail = (), "the output is inside a run"
        elif r < 0.1:
            out_args = [str(self.box.path("out"))]
            outputs, must_fail = (), "the output is a folder"
        return [
            Call(
                ["merge-predictions", *out_args, "--shards", shards_arg],
                f"parts {kind} x{count}{suffix or ' (no suffix)'} | --shards {shards_arg}",
                outputs=outputs,
                removable=tuple(parts),
                must_fail=must_fail,
                docs=6 if kind == "valid" and outputs else None,
                rows_in=out if kind == "valid" and outputs else None,
                rows_kind="merge",
                prepare=prepare,
            )
        ]

    def inspect(self) -> list[Call]:
        config, config_tag, _ = self.config()
        source = self.source(0.3)
        overrides, tag, _ = self.overrides(source, 0.25)
        return [Call(["data", "inspect", config, *overrides], f"{config_tag} | {tag}")]

    def writing(self, command: str) -> list[Call]:
        """preprocess/run/train with hostile ingredients (cheap: each fails before real work)."""
        config, config_tag, config_ok = self.config(0.8)
        source = self.source(0.45)
        overrides, tag, bad_override = self.overrides(source, 0.25)
        flags: list[str] = []
        run_dirs: tuple[Path, ...] = ()
        must_fail = ""
        r = self.rng.random()
        if r < 0.3:  # regression 1: a folder (with a config.json) that han did not make
            target, where = self.box.path(self.pick(["project", "project", "keep"])), "a user's folder"
            flags.append(
                self.pick(["--overwrite", "--overwrite", "--resume"]) if command != "preprocess" else "--overwrite"
            )
            must_fail = "a folder han did not make"
        elif r < 0.42:  # never --overwrite nor --resume here: this run is finished and must stay as it is
            target, where = self.sentinel, "the sentinel run (finished)"
            must_fail = "the run already holds results"
        elif r < 0.5:
            targets = [
                (self.box.path("pool/ok.csv"), "a file"),
                (self.pool.fifos["pipe.csv"], "a named pipe"),
                (self.sentinel / "sub", "a folder inside a run"),
            ]
            if self.pool.device is not None:
                targets.append((self.pool.device, "a device"))
            target, where = self.pick(targets)
            must_fail = f"the run directory is {where}"
            if self.chance(0.3):
                flags.append("--overwrite")
        elif r < 0.58:
            target, where = self.box.path("cwd/runs") / Path(config).stem, "the default"
            run_dirs = (self.box.path("cwd/runs"),)
        else:
            target, where = self.fresh_run(), "a new folder"
            run_dirs = (target,)
        if run_dirs:
            if config_ok and source[2] and not bad_override:  # keep random calls cheap: real work is in the plan
                source = self.source(0.0)
                overrides, tag, bad_override = self.overrides(source, 0.25)
            if command in ("run", "train") and self.chance(0.25):
                flags.append(self.pick(["--resume", "--overwrite", "--resume"]))
        if command in ("run", "train") and self.chance(0.05):
            flags += ["--resume", "--overwrite"]
        if command == "train" and self.chance(0.1):
            flags += ["--nproc", self.pick(["0", "-1", "abc", "1"])]
        if command == "preprocess" and self.chance(0.1):
            flags += self.pick([["--shard", "9/2"], ["--shard", "a/b"], ["--merge-shards", "0"], ["--shard", "0/2"]])
        args = [command, config, *overrides]
        if where != "the default":
            args += ["--run-dir", str(target)]
        flag_tag = " ".join(flags)
        return [
            Call(
                args + flags,
                f"{config_tag} | {tag} | run dir {where} | {flag_tag}",
                run_dirs=run_dirs,
                must_fail=must_fail,
            )
        ]

    def compare(self) -> list[Call]:
        """compare with hostile configs, folders, kinds, seed counts and outputs (cheap: each fails before training)."""
        config, config_tag, config_ok = self.config(0.8)
        source = self.source(0.45)
        overrides, tag, bad_override = self.overrides(source, 0.25)
        r = self.rng.random()
        run_dirs: tuple[Path, ...] = ()
        must_fail = ""
        if r < 0.25:
            target, where = self.box.path(self.pick(["project", "keep"])), "a user's folder"
            must_fail = "a folder han did not make"
        elif r < 0.4:
            target, where = self.sentinel, "the sentinel run"
            must_fail = "a run directory is not a comparison"
        elif r < 0.5:
            target, where = self.pick(
                [(self.box.path("pool/ok.csv"), "a file"), (self.sentinel / "sub", "inside a run")]
            )
            must_fail = f"the folder is {where}"
        else:
            target, where = self.fresh_run(), "a new folder"
            run_dirs = (target,)
            if config_ok and source[2] and not bad_override:  # keep random calls cheap: real work is in the plan
                source = self.source(0.0)
                overrides, tag, bad_override = self.overrides(source, 0.25)
        flags = ["--dir", str(target)]
        if self.chance(0.6):
            flags += [
                "--models",
                self.pick(["mean,linear", "linear", "han,bogus", "", ",", "cnn,cnn", "HAN", "mean;linear"]),
            ]
        if self.chance(0.4):
            flags += ["--seeds", self.pick(["1", "0", "-1", "abc", "21", "1.5", "99999999999999999999"])]
        outputs: tuple[Path, ...] = ()
        if self.chance(0.3):
            if self.chance(0.3):
                flags += ["-o", config]
                must_fail = must_fail or "the output is the config"
            else:
                out = self.fresh("c", ".html")
                flags += ["-o", str(out)]
                outputs = (out,)
        if self.chance(0.1):
            flags.append("--resume")
        return [
            Call(
                ["compare", config, *overrides, *flags],
                f"{config_tag} | {tag} | dir {where} | {' '.join(flags[2:])}",
                run_dirs=run_dirs,
                outputs=outputs,
                must_fail=must_fail,
            )
        ]

    def usage(self) -> list[Call]:
        args = list(self.pick(USAGE_CASES))
        args = [a.replace("RUN", str(self.sentinel)).replace("OK", str(self.box.path("pool/ok.csv"))) for a in args]
        return [Call(args, "usage/help")]

    def random_episode(self) -> list[Call]:
        command = self.pick(list(WEIGHTS), weights=list(WEIGHTS.values()))
        calls = {
            "predict": self.predict,
            "report": self.report,
            "corpus-report": self.corpus_report,
            "evaluate": self.evaluate,
            "merge-predictions": self.merge,
            "data inspect": self.inspect,
            "preprocess": lambda: self.writing("preprocess"),
            "run": lambda: self.writing("run"),
            "train": lambda: self.writing("train"),
            "compare": self.compare,
            "tune": self.tune,
            "show": self.show,
            "usage": self.usage,
        }[command]()
        if self.chance(0.04):
            calls[0].args.insert(0, self.pick(["-v", "--verbose"]))
        return calls

    # --- the fixed plan: every command, the regressions, and the few calls that do real work -----------
    def plan(self) -> list[list[Call]]:
        box, run, ok = self.box, str(self.sentinel), str(self.box.path("pool/ok.csv"))
        valid = [f"data.source={self.pool.valid_source}", "data.split_column=split", "train.max_epochs=1"]
        valid += ["train.threads=1", "preprocess.workers=1"]
        episodes: list[list[Call]] = [
            [Call(args, "help")] for args in ([], ["--help"], ["data"], ["predict", "--help"])
        ]
        # regression 1: --overwrite of a folder holding a config.json that han did not make
        for command in ("preprocess", "run", "train"):
            episodes.append(
                [
                    Call(
                        [command, str(TINY_CONFIG), *valid, "--run-dir", str(box.path("project")), "--overwrite"],
                        "regression 1: --overwrite of a project folder with a config.json",
                        must_fail="--overwrite of a folder han did not make",
                    )
                ]
            )
        # regression 2: an output equal to the input
        for command, out in (("predict", "--output"), ("report", "-o"), ("corpus-report", "-o")):
            episodes.append(
                [Call([command, run, ok, out, ok], "regression 2: output is the input", must_fail="output is input")]
            )
        # regression 5: stray or unclosed quotes must not merge rows
        for name in ("stray_quote.csv", "open_quote.csv", "quote_reopened.csv"):
            item = next(i for i in self.pool.inputs if i.path.name == name)
            episodes.append(
                [
                    Call(
                        ["predict", run, str(item.path)],
                        f"regression 5: {item.tag}",
                        docs=item.docs,
                        rows_kind="predict",
                    )
                ]
            )
            out = self.fresh("q", ".csv")
            episodes.append(
                [
                    Call(
                        ["predict", run, str(item.path), "-o", str(out)],
                        f"regression 5: {item.tag} -> csv",
                        outputs=(out,),
                        docs=item.docs,
                        rows_in=out,
                        rows_kind="predict",
                    )
                ]
            )
        # real work: preprocess (twice: the second reuses it), train, evaluate, sharded predict, merge, reports
        fresh = self.fresh_run()
        merged = self.fresh("e", ".csv")
        parts = tuple(merged.with_name(f"{merged.stem}.shard-{i}-of-2.csv") for i in range(2))
        episode = [
            Call(
                ["preprocess", str(TINY_CONFIG), *valid, "--run-dir", str(fresh)], "real preprocess", run_dirs=(fresh,)
            ),
            Call(
                ["preprocess", str(TINY_CONFIG), *valid, "--run-dir", str(fresh)],
                "cached preprocess",
                run_dirs=(fresh,),
            ),
            Call(["train", str(TINY_CONFIG), *valid, "--run-dir", str(fresh)], "real train", run_dirs=(fresh,)),
            Call(
                ["train", str(TINY_CONFIG), *valid, "--run-dir", str(fresh)],
                "train again",
                run_dirs=(fresh,),
                must_fail="trained",
            ),
            Call(["evaluate", str(fresh)], "real evaluate", run_dirs=(fresh,)),
        ]
        for i in range(2):
            episode.append(
                Call(
                    ["predict", str(fresh), ok, "-o", str(merged), "--shard", f"{i}/2", "--chunk-size", "2"],
                    "real sharded predict",
                    run_dirs=(fresh,),
                    outputs=(parts[i],),
                )
            )
        episode.append(
            Call(
                ["merge-predictions", str(merged), "--shards", "2"],
                "real merge",
                outputs=(merged,),
                removable=parts,
                docs=6,
                rows_in=merged,
                rows_kind="merge",
            )
        )
        report = self.fresh("e", ".jsonl")
        episode.append(
            Call(
                ["report", str(fresh), ok, "-o", str(report)],
                "report on the new run",
                run_dirs=(fresh,),
                outputs=(report,),
                docs=6,
                rows_in=report,
                rows_kind="report",
            )
        )
        corpus = self.fresh("e", ".json")
        episode.append(
            Call(
                ["corpus-report", str(fresh), "-o", str(corpus)],
                "corpus-report on the new run",
                run_dirs=(fresh,),
                outputs=(corpus,),
            )
        )
        episodes.append(episode)
        fresh2 = self.fresh_run()
        episodes.append(
            [
                Call(["run", str(TINY_CONFIG), *valid, "--run-dir", str(fresh2)], "real run", run_dirs=(fresh2,)),
                Call(
                    ["run", str(TINY_CONFIG), *valid, "--run-dir", str(fresh2)],
                    "run again",
                    run_dirs=(fresh2,),
                    must_fail="finished",
                ),
                Call(
                    ["preprocess", str(TINY_CONFIG), *valid, "--run-dir", str(fresh2), "--overwrite"],
                    "preprocess --overwrite of han's own run",
                    run_dirs=(fresh2,),
                ),
            ]
        )
        compared, page = self.fresh_run(), self.fresh("c", ".html")
        compare_args = ["compare", str(TINY_CONFIG), *valid, "--models", "mean,linear", "--seeds", "1"]
        episodes.append(
            [
                Call(
                    [*compare_args, "--dir", str(compared), "-o", str(page)],
                    "real compare",
                    run_dirs=(compared,),
                    outputs=(page,),
                ),
                Call(
                    [*compare_args, "--dir", str(compared)],
                    "compare again without --resume",
                    run_dirs=(compared,),
                    must_fail="the comparison exists",
                ),
                Call(
                    [*compare_args, "--dir", str(compared), "-o", str(page), "--resume"],
                    "compare --resume of a finished comparison",
                    run_dirs=(compared,),
                    outputs=(page,),
                ),
            ]
        )
        episodes.append([Call(["data", "inspect", str(TINY_CONFIG), *valid], "real data inspect")])
        episodes.append([Call(["evaluate", str(self.evalrun)], "evaluate the work run", run_dirs=(self.evalrun,))])
        episodes += self.workspace_outputs(valid)
        episodes += self.spaces(valid)
        episodes += self.full_disk(valid)
        episodes += self.unwritable(valid)
        episodes += self.concurrency(valid)
        return episodes

    def workspace_outputs(self, valid: list[str]) -> list[list[Call]]:
        """Outputs aimed at files of han's compare and tune folders, which their --resume reads back."""
        run, ok, ws = str(self.sentinel), str(self.box.path("pool/ok.csv")), self.box.path("ws")
        compare = ["compare", str(TINY_CONFIG), *valid, "preprocess.workers=1", "--models", "linear", "--seeds", "1"]
        compare += ["--dir", str(ws / "compare"), "--resume"]
        kept = str(ws / "compare/results/linear-seed0.json")
        cases = [
            ([*compare, "-o", kept], "compare --resume -o a kept result"),
            ([*compare, "-o", str(ws / "compare/compare.json")], "compare --resume -o its own compare.json"),
            ([*compare, "-o", str(ws / "compare/compare.md")], "compare --resume -o its own compare.md"),
            (["predict", run, ok, "--output", kept], "predict --output a comparison's kept result"),
            (["show", run, "-o", str(ws / "tune/study.journal")], "show -o a tune folder's study"),
            (["report", run, ok, "-o", str(ws / "tune/best.yaml")], "report -o a tune folder's best.yaml"),
            (["corpus-report", run, "-o", str(ws / "tune/new.json")], "corpus-report -o a new file in a tune folder"),
        ]
        return [
            [Call(args, f"output in a workspace: {tag}", must_fail="an output inside a han-made folder")]
            for args, tag in cases
        ]

    def spaces(self, valid: list[str]) -> list[list[Call]]:
        """`han tune --space` with every file of the pool on a valid config: only the valid space may run."""
        episodes: list[list[Call]] = []
        for space, tag, ok in self.pool.spaces:
            fresh = self.fresh_run()
            args = ["tune", str(TINY_CONFIG), *valid, "preprocess.workers=1", "--trials", "1", "--space", space]
            must_fail = "" if ok else f"a bad --space ({tag})"
            episodes.append(
                [Call([*args, "--dir", str(fresh)], f"space: {tag}", run_dirs=(fresh,), must_fail=must_fail)]
            )
        return episodes

    def full_disk(self, valid: list[str]) -> list[list[Call]]:
        """Every stage with a disk that fills up (RLIMIT_FSIZE): exit 5, one line, nothing left looking complete."""
        run, ok, limit = str(self.sentinel), str(self.box.path("pool/ok.csv")), DISK_FULL_BYTES
        cheap = [*valid, "preprocess.workers=1"]
        episodes: list[list[Call]] = []
        for command in ("preprocess", "run"):
            fresh = self.fresh_run()
            args = [command, str(TINY_CONFIG), *cheap, "--run-dir", str(fresh)]
            episodes.append([Call(args, f"disk full: {command}", run_dirs=(fresh,), codes=(5,), file_size_limit=limit)])
        fresh = self.fresh_run()
        episodes.append(
            [
                Call(
                    ["preprocess", str(TINY_CONFIG), *cheap, "--run-dir", str(fresh)], "preprocess", run_dirs=(fresh,)
                ),
                Call(
                    ["train", str(TINY_CONFIG), *cheap, "--run-dir", str(fresh)],
                    "disk full: train",
                    run_dirs=(fresh,),
                    codes=(5,),
                    file_size_limit=limit,
                ),
            ]
        )
        for command, extra in (("compare", ["--models", "linear", "--seeds", "1"]), ("tune", ["--trials", "1"])):
            fresh = self.fresh_run()
            args = [command, str(TINY_CONFIG), *cheap, *extra, "--dir", str(fresh)]
            episodes.append([Call(args, f"disk full: {command}", run_dirs=(fresh,), codes=(5,), file_size_limit=limit)])
        for args, suffix, tag, size in (
            (["predict", run, ok, "--output"], ".csv", "predict --output", 64),
            (["report", run, ok, "-o"], ".html", "report -o", limit),
            (["corpus-report", run, "-o"], ".html", "corpus-report -o", limit),
            (["show", run, "-o"], ".html", "show -o", limit),
        ):
            out = self.fresh("full", suffix)
            episodes.append(
                [Call([*args, str(out)], f"disk full: {tag}", outputs=(out,), codes=(5,), file_size_limit=size)]
            )
        episodes.append(
            [
                Call(
                    ["evaluate", str(self.evalrun)],
                    "disk full: evaluate (metrics.json)",
                    run_dirs=(self.evalrun,),
                    codes=(5,),
                    file_size_limit=64,
                )
            ]
        )
        return episodes

    def unwritable(self, valid: list[str]) -> list[list[Call]]:
        """Run directories and workspaces under a regular file or in a place nobody may write (/sys)."""
        under_file = str(self.box.path("keep/important.txt/sub"))
        nowhere = "/sys/han-fuzz/sub"
        cheap = [*valid, "preprocess.workers=1"]
        episodes: list[list[Call]] = []
        for target, where in ((under_file, "under a regular file"), (nowhere, "in /sys (unwritable)")):
            for command, flag, extra in (
                ("preprocess", "--run-dir", []),
                ("run", "--run-dir", []),
                ("train", "--run-dir", []),
                ("compare", "--dir", ["--models", "linear", "--seeds", "1"]),
                ("tune", "--dir", ["--trials", "1"]),
            ):
                args = [command, str(TINY_CONFIG), *cheap, *extra, flag, target]
                episodes.append([Call(args, f"{command} {flag} {where}", codes=(4, 5), must_fail=f"a folder {where}")])
        run, ok = str(self.sentinel), str(self.box.path("pool/ok.csv"))
        episodes.append(
            [Call(["predict", run, ok, "--output", f"{nowhere}/o.csv"], "predict --output in /sys", must_fail="/sys")]
        )
        return episodes

    def concurrency(self, valid: list[str]) -> list[list[Call]]:
        """A second writer while a han command runs in another process, and a SIGKILLed compare's children."""
        long = [a for a in valid if not a.startswith("train.max_epochs")] + ["train.max_epochs=100000"]
        long.append("train.early_stopping_patience=100000")  # still training when the second writer comes
        long.append("preprocess.workers=1")
        episodes: list[list[Call]] = []
        for command, flag, extra, started in (
            ("run", "--run-dir", [], "checkpoints"),
            ("compare", "--dir", ["--models", "han", "--seeds", "2"], "runs"),
            ("tune", "--dir", ["--trials", "3"], "trials"),
        ):
            folder = self.fresh_run()
            args = [command, str(TINY_CONFIG), *long, *extra, flag, str(folder)]
            background = Background(args)

            def start(background: Background = background, folder: Path = folder, started: str = started) -> None:
                background.start(lambda: (folder / started).is_dir())
                time.sleep(1.0)  # well into its work

            second = [
                Call(
                    [*args, "--resume"],
                    f"a second {command} --resume while one runs",
                    run_dirs=(folder,),
                    must_fail="the folder is in use by another process",
                    prepare=start,
                    live=True,
                )
            ]
            if command == "run":
                second.append(
                    Call(
                        ["preprocess", str(TINY_CONFIG), *long, "--run-dir", str(folder), "--overwrite"],
                        "preprocess --overwrite of a run in training",
                        run_dirs=(folder,),
                        must_fail="the folder is in use by another process",
                        live=True,
                    )
                )
            second[-1].cleanup = background.stop
            episodes.append(second)
        folder = self.fresh_run()
        parent = Background(
            ["compare", str(TINY_CONFIG), *long, "--models", "han", "--seeds", "1", "--dir", str(folder)]
        )

        trainers: dict[int, str] = {}

        def kill_parent() -> None:
            parent.start(lambda: (folder / "runs").is_dir() and bool(parent.children()))
            time.sleep(1.0)
            assert parent.process is not None
            trainers.update(descendants(parent.process.pid))
            os.kill(parent.process.pid, signal.SIGKILL)
            parent.process.wait(10)

        def orphans() -> str:
            deadline = time.monotonic() + 15
            while still_running(trainers) and time.monotonic() < deadline:
                time.sleep(0.2)
            left = still_running(trainers)
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while still_running(trainers) and time.monotonic() < deadline:  # gone before the sandbox is restored
                time.sleep(0.1)
            return f"processes of a SIGKILLed han compare still ran 15 s later: {left}" if left else ""

        episodes.append(
            [
                Call(
                    ["--version"],
                    "after SIGKILL of a han compare with a trainer running",
                    run_dirs=(folder,),
                    prepare=kill_parent,
                    check=orphans,
                    cleanup=parent.stop,
                    live=True,
                )
            ]
        )
        return episodes


def argument_lists(table: str) -> list[list[str]]:
    """One argument list per non-blank line of `table`, split as a shell would ('' is an empty argument)."""
    return [shlex.split(line) for line in table.splitlines() if line.strip()]


def shard_part(output: Path, shard: str) -> tuple[Path, ...]:
    index, _, count = shard.partition("/")
    if not (index.isdigit() and count.isdigit()):
        return ()
    return (output.with_name(f"{output.stem}.shard-{int(index)}-of-{int(count)}{output.suffix}"),)


WEIGHTS = {  # commands that load a run cost ~80 ms even when they fail; the others ~20 ms
    "predict": 18,
    "report": 10,
    "corpus-report": 7,
    "evaluate": 6,
    "merge-predictions": 10,
    "data inspect": 12,
    "preprocess": 12,
    "run": 9,
    "train": 8,
    "compare": 6,
    "tune": 4,
    "show": 6,
    "usage": 8,
}
STDIN_LINES = "".join(f"The team won match {i}.\n" for i in range(7)).encode()
STDIN_CASES: list[tuple[str, bytes, int | None]] = [
    ("7 lines", STDIN_LINES, 7),
    ("7 lines", STDIN_LINES, 7),
    ("no final newline", b"one doc\ntwo doc", 2),
    ("empty", b"", None),
    ("blank lines", b"\n\n\n", None),
    ("NUL byte", b"fine\nbad\x00line\n", None),
    ("invalid UTF-8", b"fine\nna\xefve\n", None),
    ("UTF-16", "hello\nworld\n".encode("utf-16"), None),
    ("3 MB line", b"word " * 600_000 + b"\nsecond\n", 2),
    ("3 MB line, no newline", b"word " * 600_000, 1),
    ("CRLF", b"one\r\ntwo\r\n", 2),
    ("U+2028 inside a line", "one\u2028still one\ntwo\n".encode(), 2),
    ("1000 lines", b"The chef baked bread.\n" * 1000, 1000),
]
PREDICT_OPTIONS = argument_lists(
    """
    --weights last
    --weights newest
    --weights ''
    --device cpu
    --device auto
    --device tpu
    --device cuda:99
    --device ''
    --chunk-size 1
    --chunk-size 0
    --chunk-size -3
    --chunk-size abc
    --chunk-size 1000000000
    --shard 0/2
    --shard 1/2
    --shard 2/2
    --shard a/b
    --shard -1/2
    --shard 0/0
    --shard 1
    --shard ''
    --bogus
    """
)
REPORT_OPTIONS = argument_lists(
    """
    --sort confidence
    --sort misclassified
    --sort bogus
    --sort ''
    --only misclassified
    --only correct
    --only bogus
    --true-label food
    --true-label nope
    --true-label ''
    --predicted-label tech
    --predicted-label '[red]x'
    --limit 1
    --limit 0
    --limit -1
    --limit 1000000000000
    --limit abc
    --limit 1180591620717411303424
    --format html
    --format jsonl
    --format json
    --format xml
    --format ''
    --weights last
    --weights newest
    """
)
CORPUS_OPTIONS = [
    *argument_lists(
        """
        --split train
        --split validation
        --split bogus
        --split ''
        --split ../data
        --words team,bread
        --words ''
        --words ,,,
        --group-by predicted
        --group-by bogus
        --top-words 0
        --top-words -1
        --top-words 1000000000
        --top-words 9223372036854775808
        --min-count 0
        --min-count -5
        --positions 0
        --positions -1
        --positions 1000000000
        --faithfulness-docs 0
        --faithfulness-docs -1
        --faithfulness-docs 1000000000
        --seed -1
        --seed 18446744073709551616
        --seed abc
        --format json
        --format html
        --format jsonl
        --format xml
        --weights newest
        """
    ),
    ["--words", "w" * 20_000],
    ["--words", "a," * 5000],
]
EVALUATE_OPTIONS = argument_lists(
    """
    --split validation
    --split train
    --split bogus
    --split ''
    --split ../../etc
    --split test/../validation
    --weights last
    --weights newest
    --device cuda
    --device tpu
    """
)
USAGE_CASES = [
    [],  # no arguments at all
    *argument_lists(
        """
        --help
        data
        data --help
        data inspect
        data bogus
        bogus
        --version
        run
        run --help
        preprocess --help
        train --help
        evaluate --help
        predict --help
        report --help
        corpus-report --help
        merge-predictions --help
        compare --help
        compare
        tune --help
        tune
        show --help
        show
        merge-predictions x.csv
        merge-predictions --shards 2
        predict
        predict RUN OK extra
        predict RUN OK --bogus
        report RUN OK --limit 1.5
        evaluate
        train --nproc 0
        -v
        --verbose --help
        """
    ),
]


def junk_parts(texts: list[str | None]) -> Callable[[int, str], list[str | None]]:
    return lambda count, suffix: [texts[i % len(texts)] for i in range(count)]


def valid_parts(count: int, suffix: str) -> list[str | None]:
    parts: list[list[str]] = [[] for _ in range(count)]
    for row in range(1, 7):
        probabilities = {f"p_{label}": round(0.1 + 0.1 * ((row + k) % 3), 6) for k, label in enumerate(LABELS)}
        if suffix == ".csv":
            parts[(row - 1) % count].append(f"{row},food," + ",".join(str(v) for v in probabilities.values()) + "\n")
        else:
            parts[(row - 1) % count].append(json.dumps({"row": row, "label": "food", **probabilities}) + "\n")
    header = "row,label," + ",".join(f"p_{label}" for label in LABELS) + "\n" if suffix == ".csv" else ""
    return [header + "".join(lines) for lines in parts]


SINGLE_PART_KINDS = {"valid", "missing", "junk", "empty", "NaN", "deep", "binary", "named pipe", "folder"}
SINGLE_PART_KINDS |= {"link to a user's file", "huge row"}  # junk even alone; the others need a second part
PART_KINDS: dict[str, Callable[[int, str], list[str | None]]] = {
    "valid": valid_parts,
    "missing": junk_parts([None]),
    "junk": junk_parts(["junk\n", "row,label,p_a\n1,a,0.9\n"]),
    "empty": junk_parts([""]),
    "other headers": junk_parts(["row,label,p_a\n1,a,0.9\n", "row,label,p_b\n2,b,0.8\n"]),
    "invalid json": junk_parts(['{"row": 1, "label": "a", "p_a": 0.9}\n', "{not json\n"]),
    "other fields": junk_parts(['{"row": 1, "label": "a", "p_a": 0.9}\n', '{"row": 2, "other": 1}\n']),
    "duplicate rows": junk_parts(['{"row": 1, "label": "a", "p_a": 0.9}\n', '{"row": 1, "label": "a", "p_a": 0.9}\n']),
    "NaN": junk_parts(['{"row": 1, "label": "a", "p_a": NaN}\n']),
    "deep": junk_parts(['{"row": ' + "[" * 100_000 + "\n"]),
    "binary": junk_parts(["\x00\x01\x02"]),
    "named pipe": junk_parts(["FIFO"]),
    "folder": junk_parts(["DIR"]),
    "link to a user's file": junk_parts(["LINK:keep/important.txt"]),
    "huge row": junk_parts(["row,label,p_a\n" + "9" * 1_000_000 + ",a,0.5\n"]),
}


# --- running one call --------------------------------------------------------------------------------
class Background:
    """A han command running in another process (its own session) while the harness calls han on the same folder."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.process: subprocess.Popen | None = None

    def start(self, ready: Callable[[], bool], timeout: float = 90.0) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipelines", *self.args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None and not ready():
            time.sleep(0.1)
        if self.process.poll() is not None or not ready():
            self.stop()
            raise AssertionError(f"the background command did not get going: han {joined(self.args)}")

    def children(self) -> list[int]:
        """The processes this command started (any depth) that still run, from the machine's parent links."""
        return sorted(descendants(self.process.pid)) if self.process is not None else []

    def stop(self) -> None:
        """SIGTERM the whole session (the command and its children), SIGKILL what is left after 20 s."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


def parents() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process of this machine that can be read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                found[int(entry.name)] = (int(fields[1]), fields[19])
    return found


def descendants(pid: int) -> dict[int, str]:
    """The processes below `pid` (children, their children, ...), with their start times."""
    table = parents()
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, started) in table.items():
            if ppid == parent and child not in found:
                found[child] = started
                todo.append(child)
    return found


def still_running(processes: dict[int, str]) -> list[int]:
    """Which of `processes` (pid -> start time) still run (the same process, not a reused pid)."""
    table = parents()
    return sorted(pid for pid, started in processes.items() if pid in table and table[pid][1] == started)


class Watchdog:
    """Unblocks named pipes when a call overruns (so SIGALRM can fire) and interrupts a call whose memory explodes."""

    def __init__(self, box: Box) -> None:
        self.box = box
        self.deadline: float | None = None
        self.reason = ""
        self.rss_limit = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self.stop.wait(0.05):
            deadline = self.deadline
            if deadline is None:
                continue
            with contextlib.suppress(OSError, ValueError):
                resident = int(Path("/proc/self/statm").read_text().split()[1]) * page
                if self.rss_limit and resident > self.rss_limit and not self.reason:
                    self.reason = f"memory: resident set reached {resident / 2**30:.1f} GiB"
                    os.kill(os.getpid(), signal.SIGALRM)
            if time.monotonic() > deadline + 1:
                for fifo in [*self.box.fifos(), *self.box.root.rglob("*.shard-*")]:
                    unblock(fifo)


def unblock(path: Path) -> None:
    """Open a named pipe at both ends without blocking, so a reader or writer blocked on it gets EOF or EPIPE."""
    try:
        if not stat.S_ISFIFO(os.lstat(path).st_mode):
            return
    except OSError:
        return
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # a blocked reader sees EOF
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a blocked writer gets its open, then EPIPE
        with contextlib.suppress(OSError):
            while os.read(descriptor, 1 << 16):
                pass
        os.close(descriptor)


class PipeReader(threading.Thread):
    """What a consumer of a named pipe output reads (`cat pipe`)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.data = bytearray()

    def run(self) -> None:
        with contextlib.suppress(OSError), open(self.path, "rb") as handle:
            while chunk := handle.read(1 << 16):
                self.data += chunk


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    error: str  # an exception the runner caught, with its traceback
    seconds: float
    stopped: str  # why the harness stopped the call (time or memory), or ""
    piped: bytes = b""
    forked: bool = False
    cpu: float = 0.0  # CPU seconds of a forked child


RISKY_MARKERS = ("deep", "huge", "long_", "alias_bomb", "1000000000", str(2**63), str(2**64), str(2**70), "100000")


def isolated(call: Call) -> bool:
    """Whether the call runs in a forked child: one whose ingredients may crash the interpreter (a C parser on deeply
    nested data) or grow without bound. A crash, hang or memory blow-up then fails that call, not the whole run."""
    if call.file_size_limit is not None:  # the limit must not reach the harness itself
        return True
    text = " ".join([call.tag, *call.args])
    return len(call.stdin) > 1 << 20 or any(len(a) > 5000 for a in call.args) or any(m in text for m in RISKY_MARKERS)


def captured(result) -> tuple[int, str, str, str]:
    """exit code, stdout, stderr and the traceback of an exception CliRunner caught (a crash of the command)."""
    error = ""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        error = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else repr(result.exception)
    return result.exit_code, result.stdout, result.stderr, error


def invoke(call: Call, watchdog: Watchdog, trace: Path) -> Outcome:
    trace.write_text(json.dumps(call.args))  # should the interpreter itself crash, this file names the call
    reader = PipeReader(call.fifo_output) if call.fifo_output is not None else None
    if reader is not None:
        reader.start()
    if isolated(call):
        outcome = invoke_forked(call)
        if outcome.stopped.startswith("time") and outcome.cpu < TIME_LIMIT / 4:
            # a child that slept all along may have inherited a lock another thread held at fork: a real hang hangs twice
            outcome = invoke_forked(call)
        outcome.forked = True
    else:
        outcome = invoke_here(call, watchdog)
    if reader is not None:
        reader.join(0.02)
        if reader.is_alive():  # han never opened the pipe: let the reader see EOF
            unblock(reader.path)
            reader.join(5)
        outcome.piped = bytes(reader.data)
    return outcome


def invoke_here(call: Call, watchdog: Watchdog) -> Outcome:
    """Run the call in this process, stopped by SIGALRM past TIME_LIMIT (or by the watchdog past the memory bound)."""

    def on_alarm(signum, frame):
        raise CallStopped(watchdog.reason or f"time: still running after {TIME_LIMIT:g} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    watchdog.reason = ""
    start = time.monotonic()
    watchdog.deadline = start + TIME_LIMIT
    # the last resort against a hang in C code that neither SIGALRM nor the watchdog can end
    faulthandler.dump_traceback_later(TIME_LIMIT * 6, exit=True, file=sys.__stderr__)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT)
    stopped = ""
    try:
        code, stdout, stderr, error = captured(runner.invoke(app, call.args, input=call.stdin))
    except CallStopped as stop:
        code, stdout, stderr, error, stopped = -1, "", "", traceback.format_exc(), str(stop)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        faulthandler.cancel_dump_traceback_later()
        watchdog.deadline = None
        signal.signal(signal.SIGALRM, previous)
    return Outcome(code, stdout, stderr, error, time.monotonic() - start, stopped)


def resident_bytes(pid: int | str = "self") -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def invoke_forked(call: Call) -> Outcome:
    """Run the call in a forked child (imports and caches are inherited, so it costs a few ms more); the child is
    killed past TIME_LIMIT or when its resident set grows by more than MEMORY_LIMIT; a crash is reported."""
    base = resident_bytes()
    start = time.monotonic()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, send the outcome, leave without running any cleanup of the parent's
        try:
            os.close(read_end)
            if call.file_size_limit is not None:  # a full disk: writes past the limit fail with EFBIG
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
                resource.setrlimit(resource.RLIMIT_FSIZE, (call.file_size_limit, hard))
            payload = json.dumps(captured(runner.invoke(app, call.args, input=call.stdin))).encode()
            with os.fdopen(write_end, "wb") as handle:
                handle.write(payload)
        finally:
            os._exit(0)
    os.close(write_end)
    os.set_blocking(read_end, False)
    data = bytearray()
    stopped = ""
    peak = base
    while True:
        ready, _, _ = select.select([read_end], [], [], 0.02)
        if ready:
            with contextlib.suppress(BlockingIOError):
                chunk = os.read(read_end, 1 << 20)
                if not chunk:
                    break
                data += chunk
                continue
        peak = max(peak, resident_bytes(pid))
        if peak - base > MEMORY_LIMIT:
            stopped = f"memory: the resident set grew by {(peak - base) / 2**30:.1f} GiB"
        elif time.monotonic() - start > TIME_LIMIT:
            stopped = f"time: still running after {TIME_LIMIT:g} s"
        if stopped:
            os.kill(pid, signal.SIGKILL)
            break
    os.close(read_end)
    _, status, usage = os.wait4(pid, 0)
    seconds = time.monotonic() - start
    peak = max(peak, usage.ru_maxrss * 1024)
    if stopped:
        return Outcome(-1, "", "", "", seconds, stopped, cpu=usage.ru_utime + usage.ru_stime)
    if peak - base > MEMORY_LIMIT:
        return Outcome(-1, "", "", "", seconds, f"memory: the resident set grew by {(peak - base) / 2**30:.1f} GiB")
    if os.WIFSIGNALED(status) or not data:
        number = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        name = signal.Signals(number).name if number else f"exit status {os.WEXITSTATUS(status)}"
        return Outcome(-number or -1, "", "", f"the interpreter died ({name}) running the command", seconds, "")
    code, stdout, stderr, error = json.loads(data)
    return Outcome(code, stdout, stderr, error, seconds, "")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not BAR_CHARACTERS & set(line)]


def is_usage_error(stderr: str) -> bool:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return bool(lines) and lines[0].startswith("Usage:") and any("Error" in line for line in lines)


def count_rows(call: Call, outcome: Outcome) -> tuple[list[int] | None, str]:
    """The row numbers a succeeding predict/report/merge wrote (None: could not be read), and a problem, if any."""
    if call.fifo_output is not None:  # what the pipe's reader got (the pipe has no suffix: JSON Lines)
        text, suffix = outcome.piped.decode("utf-8", "replace"), ""
    elif call.rows_in is None:
        text, suffix = outcome.stdout, ".jsonl"
    else:
        try:
            text = call.rows_in.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            return None, f"the output {call.rows_in} cannot be read back ({error})"
        suffix = call.rows_in.suffix.lower()
    rows: list[int] = []
    if suffix == ".csv" or (not suffix and text.startswith("row,")):
        records = list(csv.reader(io.StringIO(text)))
        if not records or records[0][:1] != ["row"]:
            return None, f"the CSV output has no row header: {text[:200]!r}"
        for record in records[1:]:
            if record:
                try:
                    rows.append(int(record[0]))
                except ValueError:
                    return None, f"a CSV output row without a row number: {record[:3]!r}"
        return rows, ""
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            return None, f"an output line is not JSON: {shorten(line, 120)!r}"
        if not isinstance(record, dict) or "row" not in record:
            return None, f"an output line has no row: {shorten(line, 120)!r}"
        rows.append(record["row"])
    if call.rows_kind == "report":
        rows.sort()
    return rows, ""


@dataclass
class Harness:
    box: Box
    watchdog: Watchdog
    baseline: dict[str, tuple] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    codes: collections.Counter = field(default_factory=collections.Counter)
    state: dict[str, tuple] | None = None  # the latest scan, while it is known to be current
    trace: Path = Path("call-in-progress.json")
    calls: int = 0
    usage_errors: int = 0
    timings: list[tuple[float, str, str]] = field(default_factory=list)  # (seconds, command, ingredients)
    peak_rss: int = 0
    start_rss: int = 0

    def fail(self, invariant: str, call: Call, outcome: Outcome, detail: str) -> None:
        self.failures.append(Failure(invariant, call, outcome.code, detail, outcome.stdout, outcome.stderr))

    def run_episode(self, episode: list[Call]) -> None:
        for call in episode:
            self.run_call(call)
        # put the sandbox back: remove everything the episode made, restore everything it changed
        current = self.state if self.state is not None else self.box.scan()
        changed = {rel for rel in set(current) | set(self.baseline) if current.get(rel) != self.baseline.get(rel)}
        if changed:
            self.box.restore(changed)
            self.baseline = self.box.scan()
            self.state = self.baseline

    def run_call(self, call: Call) -> None:
        try:
            if call.prepare is not None:
                call.prepare()
                self.state = None
            before = self.state if self.state is not None else self.box.scan()
            outcome = invoke(call, self.watchdog, self.trace)
            self.calls += 1
            self.codes[outcome.code] += 1
            self.timings.append((outcome.seconds, call.command + (" (forked)" if outcome.forked else ""), call.tag))
            after = self.box.scan()
            self.check_outcome(call, outcome)
            if call.codes and not outcome.stopped and outcome.code not in call.codes:
                self.fail("3 expected exit code", call, outcome, f"exit {outcome.code}, expected one of {call.codes}")
            if call.check is not None and (problem := call.check()):
                self.fail("7 one writer, children die with their parent", call, outcome, problem)
        finally:
            if call.cleanup is not None:
                call.cleanup()
                self.state = None
        self.state = after if self.check_sandbox(call, outcome, before, after) else None
        if call.cleanup is not None:  # a background process may have written after the scan
            self.state = None
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if rss - self.start_rss > MEMORY_LIMIT and self.peak_rss - self.start_rss <= MEMORY_LIMIT:
            self.fail("5 memory bound", call, outcome, f"peak RSS grew by {(rss - self.start_rss) / 2**30:.2f} GiB")
        self.peak_rss = max(self.peak_rss, rss)

    def check_outcome(self, call: Call, outcome: Outcome) -> None:
        if outcome.stopped:
            self.fail("5 time/memory bound", call, outcome, f"{outcome.stopped}\n{outcome.error[-3000:]}")
            return
        if outcome.code not in ALLOWED_CODES:
            self.fail("1 exit code", call, outcome, f"exit {outcome.code}\n{outcome.error[-4000:]}")
        for name, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr)):
            if "Traceback" in text or "unpickled!" in text:
                self.fail("2 traceback", call, outcome, f"'Traceback' or unpickling in {name}")
        words = [a for a in call.args if a not in ("-v", "--verbose")]  # the global flag changes no help call
        help_call = words in ([], ["data"]) or "--help" in words
        if outcome.code == 0:
            if any(line.startswith("error:") for line in error_lines(outcome.stderr)):
                self.fail("2 one-line error", call, outcome, "a succeeding call printed an error line")
            if call.must_fail:
                self.fail("3 must be refused", call, outcome, f"succeeded, but must be refused: {call.must_fail}")
            if call.docs is not None and call.rows_kind:
                rows, problem = count_rows(call, outcome)
                if problem:
                    self.fail("6 one row per document", call, outcome, problem)
                elif rows != list(range(1, call.docs + 1)):
                    self.fail(
                        "6 one row per document",
                        call,
                        outcome,
                        f"{call.docs} documents in, {len(rows or [])} rows out (rows {shorten(str(rows), 80)})",
                    )
        elif outcome.code in ALLOWED_CODES:
            if help_call:
                return
            if is_usage_error(outcome.stderr) and outcome.code == 2:
                self.usage_errors += 1
                if not STRICT_USAGE:  # typer's own format: "Usage: ...", "Try ...", a boxed error
                    return
            lines = error_lines(outcome.stderr)
            if len(lines) != 1 or not lines[0].startswith("error:"):
                self.fail(
                    "2 one-line error",
                    call,
                    outcome,
                    f"{len(lines)} stderr line(s) on failure (expected exactly one 'error: ...')",
                )

    def check_sandbox(
        self, call: Call, outcome: Outcome, before: dict[str, tuple], after: dict[str, tuple]
    ) -> set[str]:
        root = self.box.root
        succeeded = outcome.code == 0
        outputs = {os.path.relpath(p, root) for p in call.outputs}
        removable = {os.path.relpath(p, root) for p in call.removable}
        run_dirs = [os.path.relpath(p, root) for p in call.run_dirs]
        declared_parents = set()
        for rel in outputs | set(run_dirs):
            parent = Path(rel).parent
            while str(parent) != ".":
                declared_parents.add(str(parent))
                parent = parent.parent
        problems: list[str] = []
        touched: set[str] = set()
        for rel in sorted(set(before) | set(after)):
            old, new = before.get(rel), after.get(rel)
            name = rel.rsplit("/", 1)[-1]
            live = call.live and any(rel == d or rel.startswith(d + "/") for d in run_dirs)
            if new is not None and not live and (".han-" in name or (name.startswith(".") and ".tmp" in name)):
                problems.append(f"han temporary left behind: {rel}")
                touched.add(rel)
                continue
            if old == new:
                continue
            touched.add(rel)
            if any(rel == d or rel.startswith(d + "/") for d in run_dirs):
                continue  # the call's own run directory
            if old is None and new == ("dir",) and rel in declared_parents:
                continue
            if rel in outputs and succeeded and new is not None:
                continue
            if rel in removable and succeeded and new is None:
                continue
            if rel in removable and old is None and not succeeded:
                continue  # prepared by the harness after `before`? (never: prepare runs first)
            what = "created" if old is None else ("removed" if new is None else "changed")
            if old is not None and new is not None and old[0] != new[0]:
                what = f"replaced ({old[0]} -> {new[0]})"
            problems.append(f"{what}: {rel}" + (" (a declared output, but the call failed)" if rel in outputs else ""))
        for rel in self.box.protected_changes():
            touched.add(rel)
            owned = any(rel == d or rel.startswith(d + "/") for d in run_dirs)
            if not owned and not any(p.split(" (")[0].endswith(f": {rel}") for p in problems):
                problems.append(f"sentinel bytes changed: {rel}")
        if problems:
            order = ("han temporary", "removed", "replaced", "sentinel", "changed", "created")
            problems.sort(key=lambda p: next(i for i, word in enumerate(order) if p.startswith(word)))
            if any("temporary" in p for p in problems):
                invariant = "4 temporary left"
            elif any(p.split(": ", 1)[1].split("/")[0] in PROTECTED for p in problems):
                invariant = "3 sentinel changed"
            else:
                invariant = "4 undeclared file"
            more = f" (+{len(problems) - 8} more)" if len(problems) > 8 else ""
            self.fail(invariant, call, outcome, "; ".join(problems[:8]) + more)
            owned = [*run_dirs, *outputs]
            self.box.restore({r for r in touched if not any(r == o or r.startswith(o + "/") for o in owned)})
            return False
        return True


# --- the sandbox and the test ------------------------------------------------------------------------
def tamper(box: Box, name: str, change: Callable[[Path], None]) -> str:
    rel = f"broken/{name}"
    box.copytree(rel, box.path("run"))
    change(box.path(rel))
    box.adopt(rel)
    return str(box.path(rel))


def build_sandbox(root: Path, trained_run: Path) -> tuple[Box, Pool]:
    box = Box(root)
    box.dir("cwd")
    box.dir("out")
    box.dir("work")
    # a project folder that is not a han run directory, with a config.json of its own
    box.file("project/config.json", '{"name": "app", "version": 3}\n')
    box.file("project/thesis.tex", "\\documentclass{article} % six months of work\n")
    box.file("project/src/main.py", "print('hello')\n")
    box.file("keep/important.txt", "do not lose this\n")
    box.file("keep/secrets.json", '{"token": "sentinel"}\n')
    box.file("keep/notes.csv", "text\nsentinel row\n")
    box.copytree("run", trained_run)
    box.copytree("work/evalrun", trained_run)
    pool = build_pool(box)
    # a run trained on a file of the sandbox, so its data source can be offered as an output
    result = runner.invoke(
        app,
        [
            "run",
            str(TINY_CONFIG),
            f"data.source={pool.valid_source}",
            "data.split_column=split",
            "train.max_epochs=1",
            "train.threads=1",
            "preprocess.workers=1",
            "--run-dir",
            str(box.path("srcrun")),
        ],
    )
    assert result.exit_code == 0, f"the sandbox's own run failed: {result.output}{result.exception!r}"
    box.adopt("srcrun")
    # han's own compare and tune folders: sentinels too (no output may land in them, and --resume reads them)
    cheap = [f"data.source={pool.valid_source}", "data.split_column=split", "train.max_epochs=1", "train.threads=1"]
    cheap.append("preprocess.workers=1")
    for args in (
        [
            "compare",
            str(TINY_CONFIG),
            *cheap,
            "--models",
            "linear",
            "--seeds",
            "1",
            "--dir",
            str(box.path("ws/compare")),
        ],
        ["tune", str(TINY_CONFIG), *cheap, "--trials", "1", "--dir", str(box.path("ws/tune"))],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"the sandbox's {args[0]} failed: {result.output}{result.exception!r}"
    box.recipe.setdefault("ws", ("dir",))
    for rel in ("ws/compare", "ws/tune"):
        box.adopt(rel)
    pool.workspace_files = [p for p in sorted(box.path("ws").rglob("*")) if p.is_file() and p.name != ".han.lock"]
    # --space files: hostile kinds (checked before they are read) and spaces the schema refuses
    valid_space = "train.lr: {low: 0.001, high: 0.01, log: true}\nmodel.dropout: [0.1, 0.3]\n"
    pool.spaces = [
        (str(box.file("pool/space_ok.yaml", valid_space)), "a valid space", True),
        ("/dev/zero", "huge space: /dev/zero", False),
        (str(box.fifo("special/space_pipe")), "a space that is a named pipe", False),
        (str(box.path("pool")), "a space that is a folder", False),
        (str(box.path("pool/no_space.yaml")), "a missing space", False),
        (str(box.file("pool/space_big.yaml", b"# " * (1 << 20))), "huge space: 2 MiB of comments", False),
        (str(box.file("pool/space_float.yaml", "train.max_epochs: {low: 1, high: 3.0}\n")), "float bounds", False),
        (str(box.file("pool/space_task.yaml", "task: [multiclass, multilabel]\n")), "task varies", False),
        (str(box.file("pool/space_data.yaml", "preprocess.max_words: [10, 20]\n")), "preprocessing varies", False),
        (str(box.file("pool/space_yaml.yaml", "train.lr: [0.1,\n")), "broken YAML", False),
        (str(box.file("pool/space_key.yaml", "train.bogus: [1, 2]\n")), "an unknown key", False),
    ]
    pool.fifos["space_pipe"] = box.path("special/space_pipe")
    if pool.device is not None:
        box.device("special/null_out")
    box.fifo("special/out_pipe")
    pool.fifos["out_pipe"] = box.path("special/out_pipe")

    def truncate_model(run: Path) -> None:
        (run / "model/best.safetensors").write_bytes((run / "model/best.safetensors").read_bytes()[:100])

    def bad_manifest(run: Path) -> None:
        (run / "manifest.json").write_text("{not json")

    def no_manifest(run: Path) -> None:
        (run / "manifest.json").unlink()

    def other_labels(run: Path) -> None:
        (run / "labels.json").write_text('["a", "b", "c"]')

    def nan_manifest(run: Path) -> None:
        (run / "manifest.json").write_text('{"artifacts": NaN}')

    pool.read_runs = [
        (tamper(box, "truncated_model", truncate_model), "run with a truncated model"),
        (tamper(box, "bad_manifest", bad_manifest), "run with an invalid manifest"),
        (tamper(box, "no_manifest", no_manifest), "run without a manifest"),
        (tamper(box, "other_labels", other_labels), "run with tampered labels"),
        (tamper(box, "nan_manifest", nan_manifest), "run with a NaN manifest"),
        (str(box.path("project")), "a project folder with config.json"),
        (str(box.path("keep")), "a user's folder"),
        (str(box.path("nowhere")), "a missing folder"),
        (str(box.dir("empty_dir")), "an empty folder"),
        (str(box.path("pool/ok.csv")), "a file"),
        (str(pool.fifos["pipe.csv"]), "a named pipe"),
        (str(box.path("run/model")), "a run's sub-folder"),
        ("", "an empty path"),
    ]
    return box, pool


@pytest.mark.slow
def test_fuzz_every_command(trained_run, tmp_path_factory, monkeypatch, capsys):
    root = tmp_path_factory.mktemp("fuzz") / "box"
    box, pool = build_sandbox(root, trained_run)
    monkeypatch.chdir(box.path("cwd"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    generator = Generator(random.Random(SEED), box, pool)
    watchdog = Watchdog(box)
    harness = Harness(box, watchdog)
    harness.baseline = harness.state = box.scan()
    harness.trace = root.parent / "call-in-progress.json"
    harness.start_rss = harness.peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    watchdog.rss_limit = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") + 3 * 2**30
    commands: collections.Counter = collections.Counter()
    regressions: collections.Counter = collections.Counter()
    start = time.monotonic()
    try:
        episodes: Iterator[list[Call]] = iter(generator.plan())
        while harness.calls < CALLS:
            episode = next(episodes, None) or generator.random_episode()
            for call in episode:
                commands[call.command] += 1
                regressions[regression_of(call)] += 1
            harness.run_episode(episode)
    finally:
        watchdog.stop.set()
    seconds = time.monotonic() - start
    by_code = ", ".join(f"{code}: {n}" for code, n in sorted(harness.codes.items()))
    with capsys.disabled():
        print(
            f"\nfuzz: {harness.calls} calls in {seconds:.1f} s (seed {SEED}); exit codes {{{by_code}}}; "
            f"{len(harness.failures)} failure(s); {harness.usage_errors} typer usage errors\n  commands {dict(sorted(commands.items()))}\n  calls exercising "
            f"(1) --overwrite/--resume of a user's folder: {regressions['1']}, (2) an output that is an input: "
            f"{regressions['2']}, (5) predict on a CSV with stray/unclosed quotes: {regressions['5']}"
        )
    if os.environ.get("HAN_FUZZ_PROFILE"):
        with capsys.disabled():
            spent: collections.Counter = collections.Counter()
            count: collections.Counter = collections.Counter()
            for seconds_taken, command, _ in harness.timings:
                spent[command] += seconds_taken
                count[command] += 1
            print(f"time in calls {sum(spent.values()):.1f} s; by command (calls, seconds):")
            print("  " + ", ".join(f"{c} {count[c]} {t:.1f}" for c, t in spent.most_common()))
            by_input: collections.Counter = collections.Counter()
            for seconds_taken, command, tag in harness.timings:
                by_input[f"{command} | {tag.split(' | ')[1] if ' | ' in tag else tag}"] += seconds_taken
            print("  heaviest ingredients: " + ", ".join(f"{k} {v:.1f}" for k, v in by_input.most_common(30)))
            for row in sorted(harness.timings, reverse=True)[:25]:
                print(f"  {row[0]:6.2f} s  {row[1]}  {shorten(row[2], 150)}")
    if os.environ.get("HAN_FUZZ_REPORT"):  # every failure, as JSON, for a closer look
        records = [
            {"invariant": f.invariant, "command": f.call.command, "tag": f.call.tag, "args": f.call.args}
            | {"code": f.code, "detail": f.detail, "stderr": f.stderr, "stdout": f.stdout[:2000]}
            for f in harness.failures
        ]
        Path(os.environ["HAN_FUZZ_REPORT"]).write_text(json.dumps(records, indent=1))
    if harness.failures:
        pytest.fail(report_failures(harness.failures), pytrace=False)


def tail(detail: str) -> str:
    """A failure's detail, with a traceback cut to its first line and innermost frames."""
    if "Traceback" not in detail:
        return detail[:1500]
    head, _, trace = detail.partition("Traceback")
    return f"{head}Traceback ...{trace[-1500:]}"


QUOTE_BROKEN = {"stray_quote.csv", "open_quote.csv", "quote_reopened.csv", "quote_then_text.csv", "stray_quote.tsv"}
QUOTE_BROKEN.add("stray_quote_labelled.csv")


def regression_of(call: Call) -> str:
    """Which of the known regressions (1, 2, 5) a call exercises, or ''."""
    if call.command in ("preprocess", "run", "train") and "a folder han did not make" in call.must_fail:
        return "1"
    if ("input" in call.must_fail or "data source" in call.must_fail) and call.command in (
        "predict",
        "report",
        "corpus-report",
    ):
        return "2"
    if call.command == "predict" and any(Path(a).name in QUOTE_BROKEN for a in call.args[2:3]):
        return "5"
    return ""


def report_failures(failures: list[Failure]) -> str:
    groups: dict[tuple[str, str], list[Failure]] = collections.defaultdict(list)
    for failure in failures:
        groups[(failure.invariant, failure.call.command)].append(failure)
    lines = [f"{len(failures)} invariant violation(s) in {len(groups)} group(s) (invariant, command):"]
    for (invariant, command), members in sorted(groups.items()):
        tags = collections.Counter(m.call.tag for m in members)
        lines.append(f"  [{invariant}] han {command}: {len(members)} call(s); ingredients: {dict(tags.most_common(4))}")
    lines.append("first failures:")
    shown: set[tuple[str, str, str]] = set()
    for failure in failures:
        key = (failure.invariant, failure.call.command, failure.call.tag)
        if key in shown or len(shown) >= SHOWN_FAILURES:
            continue
        shown.add(key)
        lines += [
            f"--- [{failure.invariant}] {tail(failure.detail)}",
            f"    han {failure.call.show()}  (exit {failure.code}; {failure.call.tag})",
            f"    stderr: {shorten(failure.stderr.strip(), 600)!r}",
        ]
    return "\n".join(lines)
