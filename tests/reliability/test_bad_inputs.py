"""Bad inputs at scale (issue 18, part 3): generated malformed inputs fed to the real CLI, in process.

The project's rule: bad input exits with status 2 and ONE line on stderr (``pruneseek <cmd>: error: ...``) naming the
problem and the fix; never a traceback, never a half-written output. Every test here draws malformed inputs with
hypothesis (mask files, search-space and strategy presets, image folders, model folders, argument combinations),
runs ``pruneseek.cli.main`` on them and checks exactly that: exit 2, one non-empty ``pruneseek ...: error:`` line,
no "Traceback", and the output location (``--out``) not created or left unchanged. A few inputs are valid although
unusual (grayscale, alpha, 16-bit and EXIF-rotated images, tiny images): those must be accepted (exit 0).

Environment: ``PRUNESEEK_RELIABILITY_EXAMPLES`` (examples per test, default 10), ``PRUNESEEK_RELIABILITY_LOG`` (a file:
one JSON line per example is appended), ``PRUNESEEK_RELIABILITY_KEEP_GOING=1`` (log unclean examples instead of
failing at the first one; ``scripts/reliability/bad_inputs.py`` uses it to count them all).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import time
import traceback
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tsdsr_files

from pruneseek.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("PRUNESEEK_RELIABILITY_EXAMPLES", "10"))
LOG = os.environ.get("PRUNESEEK_RELIABILITY_LOG")
KEEP_GOING = os.environ.get("PRUNESEEK_RELIABILITY_KEEP_GOING") == "1"
CONFIG = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
MASK = REPO / "results" / "search" / "tsdsr-mini-r0.5-tinysr-s0" / "mask.json"
#: Tiny budgets: an argv that is accidentally valid still finishes in seconds.
TINY = ["--crops", "2", "--crop-size", "64", "--batch", "1", "--steps", "1", "--quiet"]


# ----- running the CLI and judging the result ----------------------------------------------------------------------


def snapshot(path: Path | None):
    """What is at ``path`` now: None (nothing), a file's hash, or a folder's files with sizes and hashes."""
    if path is None or not (path.exists() or path.is_symlink()):
        return None
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if path.is_dir():
        return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                      for p in path.rglob("*"))
    return "other"


def run_cli(category: str, description: str, argv: list[str], out: Path | None, sandbox: Path,
            valid: bool | None = False) -> dict:
    """Run ``pruneseek argv`` in process (cwd ``sandbox``); log and judge it.

    ``valid``: False → must be refused cleanly (exit 2); True → must succeed (exit 0); None → either exit 0 or a
    clean refusal (inputs whose validity the generator cannot know)."""
    before = snapshot(out)
    err, stdout = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    start = time.perf_counter()
    with fd2_captured() as fd_err:
        try:
            os.chdir(sandbox)
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
                try:
                    code = main(argv)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
                    if not isinstance(exc.code, (int, type(None))):
                        print(exc.code, file=sys.stderr)
                except Exception:  # noqa: BLE001 - an escaped exception is what this test looks for
                    traceback.print_exc(file=sys.stderr)
                    code = "exception"
        finally:
            os.chdir(cwd)
    seconds = time.perf_counter() - start
    text = fd_err.read() + err.getvalue()  # what loggers and C code wrote to file descriptor 2, then sys.stderr
    lines = [line for line in text.splitlines()]
    refused_cleanly = (code == 2 and len(lines) == 1 and lines[0].strip() != "" and "Traceback" not in text
                       and lines[0].startswith("pruneseek") and ": error: " in lines[0]
                       and snapshot(out) == before)
    if valid is True:
        clean = code == 0 and "Traceback" not in text
    elif valid is None:
        clean = refused_cleanly or (code == 0 and "Traceback" not in text)
    else:
        clean = refused_cleanly
    record = {"category": category, "input": description[:300], "exit": code, "stderr_lines": len(lines),
              "clean": bool(clean), "seconds": round(seconds, 3), "stderr": text[-600:] if not clean else lines[0][:300] if lines else ""}
    if LOG:
        with open(LOG, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
    if not KEEP_GOING:
        assert clean, (f"{category}: {description}\nargv: {argv}\nexit {code}, {len(lines)} stderr lines, output "
                       f"{'changed' if snapshot(out) != before else 'unchanged'}:\n{text[-3000:]}")
    return record


class _Captured:
    def __init__(self):
        import tempfile

        self.file = tempfile.TemporaryFile(mode="w+b")
        self.text = ""

    def read(self) -> str:
        return self.text


@contextlib.contextmanager
def fd2_captured():
    """File descriptor 2 redirected into a temporary file (loggers holding the real stderr write there too)."""
    captured = _Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(captured.file.fileno(), 2)
    try:
        yield captured
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        captured.file.seek(0)
        captured.text = captured.file.read().decode("utf-8", "replace")
        captured.file.close()


class Counter:
    n = 0


def fresh(root: Path, name: str) -> Path:
    """A new empty folder under ``root`` for one example."""
    Counter.n += 1
    path = root / f"{name}-{Counter.n}"
    path.mkdir(parents=True)
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("bad-inputs")
    old = os.environ.get("PRUNESEEK_CACHE")
    os.environ["PRUNESEEK_CACHE"] = str(path / "cache")
    (path / "sandbox").mkdir()
    yield path
    if old is None:
        os.environ.pop("PRUNESEEK_CACHE", None)
    else:
        os.environ["PRUNESEEK_CACHE"] = old


# ----- JSON values --------------------------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                 st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=8)


def valid_mask_doc() -> dict:
    return json.loads(MASK.read_text())


def _set(doc: dict, dotted: str, value) -> None:
    *head, last = dotted.split(".")
    for key in head:
        doc = doc[key]
    doc[last] = value


#: Fields of a mask file and the values each accepts (anything else must be refused).
MASK_FIELDS = {
    "format": lambda v: v == "pruneseek.mask/v1",
    "model": lambda v: False,
    "model.name": lambda v: isinstance(v, str) and v.strip() != "",
    "model.num_layers": lambda v: v == 24 and not isinstance(v, bool),
    "keep": lambda v: False,
    "mask": lambda v: False,
    "strategy": lambda v: False,
    "strategy.name": lambda v: isinstance(v, str) and v.strip() != "",
    "strategy.settings": lambda v: isinstance(v, dict),
    "space": lambda v: isinstance(v, dict) and not v,
    "space.blocks": lambda v: v is None,
    "space.transfer": lambda v: v is None,
    "probabilities": lambda v: v is None,
    "marginals": lambda v: v is None,
    "seed": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)),
    "steps": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "notes": lambda v: isinstance(v, str),
    "metrics": lambda v: isinstance(v, dict),
}


def _text(doc) -> bytes:
    return json.dumps(doc).encode()


@st.composite
def malformed_masks(draw) -> tuple[str, bytes]:
    """``(description, file bytes)`` of a mask file (or TinySR bare list) that no 24-layer tsdsr-mini accepts."""
    kind = draw(st.sampled_from(["truncated", "garbage", "non-utf8", "wrong-type", "wrong-length", "not-0/1",
                                 "format", "all-zero", "other-model", "huge", "deep", "bare-list", "nan",
                                 "duplicate-key", "unknown-key", "keep-mismatch", "empty"]))
    doc = valid_mask_doc()
    text = MASK.read_bytes()
    if kind == "truncated":
        n = draw(st.integers(0, len(text.rstrip()) - 1))
        return f"truncated at byte {n}", text[:n]
    if kind == "garbage":
        data = draw(st.binary(max_size=300))
        return f"binary garbage {data[:20]!r}", data
    if kind == "non-utf8":
        how = draw(st.sampled_from(["utf-16", "latin-1 byte", "utf-32"]))
        if how == "latin-1 byte":
            at = draw(st.integers(0, len(text)))
            return f"a 0xff byte at {at}", text[:at] + b"\xff\xfe" + text[at:]
        return f"encoded as {how}", text.decode().encode(how)
    if kind == "wrong-type":
        field = draw(st.sampled_from(sorted(MASK_FIELDS)))
        value = draw(json_values)
        assume(not MASK_FIELDS[field](value))
        _set(doc, field, value)
        return f"{field} = {json.dumps(value)[:60]}", _text(doc)
    if kind == "wrong-length":
        n = draw(st.integers(1, 60).filter(lambda n: n != 24))
        mask = [1] + draw(st.lists(st.sampled_from([0, 1]), min_size=n - 1, max_size=n - 1))
        consistent = draw(st.booleans())
        doc.update(mask=mask, keep=[i for i, v in enumerate(mask) if v], probabilities=None, marginals=None,
                   space={"blocks": [[n, sum(mask)]]})
        if consistent:
            doc["model"]["num_layers"] = n
        return f"{n} entries (num_layers {'matches' if consistent else 'says 24'})", _text(doc)
    if kind == "not-0/1":
        i = draw(st.integers(0, 23))
        value = draw(st.one_of(st.integers().filter(lambda v: v not in (0, 1)), st.floats(0.01, 0.99),
                               st.sampled_from(["1", "0", True, None])))
        doc["mask"][i] = value
        return f"mask[{i}] = {value!r}", _text(doc)
    if kind == "format":
        fmt = draw(st.one_of(st.text(max_size=20), st.sampled_from(["pruneseek.mask/v2", "pruneseek.mask/v0",
                                                                     "PRUNESEEK.MASK/V1", "pruneseek.mask/v1 "])))
        assume(fmt != "pruneseek.mask/v1")
        doc["format"] = fmt
        return f"format {fmt!r}", _text(doc)
    if kind == "all-zero":
        bare = draw(st.booleans())
        if bare:
            return "bare list of 24 zeros", _text([0] * 24)
        doc.update(mask=[0] * 24, keep=[], probabilities=None, marginals=None, space={})
        return "mask file keeping nothing", _text(doc)
    if kind == "other-model":
        name = draw(st.sampled_from(["sd3", "flux", "tsdsr", "llama"]))
        doc["model"]["name"] = name
        return f"model.name {name!r}", _text(doc)
    if kind == "huge":
        n = draw(st.integers(10**4, 3 * 10**5))
        if draw(st.booleans()):
            return f"bare list of {n} ones", _text([1] * n)
        doc.update(mask=[1] * n, keep=list(range(n)), probabilities=None, marginals=None, space={})
        doc["model"]["num_layers"] = n
        return f"mask file of {n} layers", _text(doc)
    if kind == "deep":
        depth = draw(st.integers(500, 50_000))
        return f"JSON nested {depth} deep", b"[" * depth + b"]" * depth
    if kind == "bare-list":
        n = draw(st.integers(0, 40))
        values = draw(st.lists(st.one_of(st.sampled_from([0, 1]), json_scalars), min_size=n, max_size=n))
        ok = n == 24 and all(isinstance(v, bool) or v in (0, 1) for v in values if not isinstance(v, str)) \
            and all(not isinstance(v, (str, type(None))) for v in values) and any(values)
        assume(not ok)
        wrapped = draw(st.booleans())
        return f"bare list {values[:8]}… ({n})", _text({"prune_mask": values} if wrapped else values)
    if kind == "nan":
        word = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return f"steps = {word}", text.replace(b'"steps": ', b'"steps": ' + word.encode() + b", \"x\": ", 1)
    if kind == "duplicate-key":
        return "the key 'seed' twice", text.replace(b'"seed":', b'"seed": 1, "seed":', 1)
    if kind == "unknown-key":
        key = draw(st.text(min_size=1, max_size=10))
        assume(key not in doc and key not in ("created", "pruneseek_version", "confidence", "metrics", "notes"))
        doc[key] = draw(json_values)
        return f"unknown key {key!r}", _text(doc)
    if kind == "keep-mismatch":
        keep = draw(st.lists(st.integers(-3, 30), max_size=24))
        assume(keep != doc["keep"])
        doc["keep"] = keep
        return f"keep {keep}", _text(doc)
    return "an empty file", b""


@pytest.fixture(scope="module")
def export_dir(root):
    """A real export of tsdsr-mini (no measurements), made once; tests corrupt copies of it."""
    out = root / "export"
    code = main(["export", "--mask", str(MASK), "--out", str(out), "--no-measure"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def hr_dir(root):
    from PIL import Image

    folder = root / "hr"
    folder.mkdir()
    Image.new("RGB", (64, 64), (120, 80, 40)).save(folder / "a.png")
    return folder


@given(malformed_masks())
@CONFIG
def test_malformed_mask_files_for_export(root, case):
    description, data = case
    work = fresh(root, "mask")
    mask = work / "mask.json"
    mask.write_bytes(data)
    out = work / "out"
    run_cli("mask", f"export: {description}", ["export", "--mask", str(mask), "--out", str(out), "--no-measure"],
            out, root / "sandbox")


@st.composite
def corrupt_export_records(draw) -> tuple[str, callable]:
    """``(description, edit)``: an edit of a copied export folder's EXPORT.json / config.json that breaks its mask."""
    kind = draw(st.sampled_from(["record-mask", "record-keep", "record-json", "config-layers", "record-missing"]))
    if kind == "record-mask":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)) | st.fixed_dictionaries({}))
        return f"EXPORT.json mask = {json.dumps(value)[:60]}", lambda rec, cfg: rec.__setitem__("mask", value)
    if kind == "record-keep":
        keep = draw(st.one_of(json_values, st.lists(st.integers(-5, 40), max_size=30)))
        assume(keep != [0, 1, 2, 4, 8, 10, 11, 14, 17, 20, 22, 23])
        return f"EXPORT.json mask.keep = {json.dumps(keep)[:60]}", lambda rec, cfg: rec["mask"].__setitem__("keep", keep)
    if kind == "record-json":
        n = draw(st.integers(0, 400))
        return f"EXPORT.json truncated at {n}", ("truncate", n)
    if kind == "record-missing":
        key = draw(st.sampled_from(["source", "mask", "format"]))
        return f"EXPORT.json without {key!r}", lambda rec, cfg: rec.pop(key)
    layers = draw(st.one_of(st.integers(-3, 30).filter(lambda n: n != 12), json_values.filter(lambda v: v != 12)))
    return f"config.json num_layers = {json.dumps(layers)[:40]}", lambda rec, cfg: cfg.__setitem__("num_layers", layers)


@given(corrupt_export_records(), st.sampled_from(["retrain", "evaluate"]))
@CONFIG
def test_malformed_export_masks_for_retrain_and_evaluate(root, export_dir, hr_dir, case, command):
    description, edit = case
    work = fresh(root, "rec")
    folder = work / "pruned"
    shutil.copytree(export_dir, folder)
    record_path, config_path = folder / "EXPORT.json", folder / "config.json"
    if isinstance(edit, tuple):
        record_path.write_bytes(record_path.read_bytes()[: edit[1]])
    else:
        record, config = json.loads(record_path.read_text()), json.loads(config_path.read_text())
        edit(record, config)
        record_path.write_text(json.dumps(record))
        config_path.write_text(json.dumps(config))
    out = work / "out"
    if command == "retrain":
        argv = ["retrain", "--from", str(folder), "--out", str(out), *TINY]
    else:
        argv = ["evaluate", "--model", str(folder), "--hr", str(hr_dir), "--out", str(out), "--quiet"]
    valid = False
    if "format" in description:
        valid = None  # EXPORT.json's format key is informational
    if "keep = " in description and "EXPORT" in description:
        keep = json.loads(record_path.read_text())["mask"]["keep"]
        if isinstance(keep, list) and len(keep) == 12 and keep == sorted(set(keep)) and \
                all(isinstance(i, int) and 0 <= i < 24 for i in keep):
            valid = None  # another plausible mask of the same size: nothing can tell

    run_cli("mask", f"{command}: {description}", argv, out, root / "sandbox", valid=valid)


# ----- search-space presets -----------------------------------------------------------------------------------------

TOML_VALUES = st.one_of(st.integers(-100, 100), st.floats(allow_nan=False, allow_infinity=False, width=32),
                        st.text(alphabet="abc-_ 0123456789", max_size=8), st.booleans(),
                        st.lists(st.integers(-5, 30), max_size=4), st.lists(st.lists(st.integers(-5, 30), max_size=3),
                                                                          max_size=4))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v) if not isinstance(v, float) or "e" in repr(v) or "." in repr(v) else repr(v) + ".0"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def toml_text(doc: dict) -> str:
    lines, tables = [], []
    for key, value in doc.items():
        (tables if isinstance(value, dict) else lines).append((key, value))
    out = [f"{json.dumps(k)} = {toml_value(v)}" for k, v in lines]
    for key, table in tables:
        out.append(f"[{json.dumps(key)}]")
        out += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items()]
    return "\n".join(out) + "\n"


@st.composite
def malformed_space_presets(draw) -> tuple[str, str]:
    """``(description, TOML text)`` of a search-space preset that cannot be built (or not for a 24-layer model)."""
    doc = {"name": "p", "model": "tsdsr", "layers": 24, "block": 4, "keep": 2, "transfer": {"k": 1, "topology": "pairs"}}
    kind = draw(st.sampled_from(["bad-toml", "missing", "wrong-type", "impossible", "negative", "unknown-key",
                                 "blocks", "transfer", "garbage"]))
    if kind == "bad-toml":
        lines = toml_text(doc).splitlines(keepends=True)
        n = draw(st.integers(0, len(lines)))
        junk = draw(st.sampled_from(["= =\n", "[\n", "layers = \n", "\x00\n", "'''\n", "[transfer]\n[transfer]\n"]))
        return f"TOML broken at line {n} by {junk!r}", "".join(lines[:n]) + junk + "".join(lines[n:])
    if kind == "garbage":
        return "random text", draw(st.text(max_size=80).filter(lambda t: "=" in t or "[" in t or not t.strip()))
    if kind == "missing":
        key = draw(st.sampled_from(["layers", "block", "keep", "transfer.k"]))
        if "." in key:
            del doc["transfer"]["k"]
        else:
            del doc[key]
        return f"without {key}", toml_text(doc)
    if kind == "wrong-type":
        key = draw(st.sampled_from(["layers", "block", "keep", "name", "model", "description", "transfer", "transfer.k",
                                    "transfer.topology"]))
        value = draw(TOML_VALUES)
        ok = {"layers": lambda v: v == 24, "block": lambda v: v in (1, 2, 3, 4, 6, 8, 12, 24),
              "keep": lambda v: False, "name": lambda v: isinstance(v, str), "model": lambda v: isinstance(v, str),
              "description": lambda v: isinstance(v, str), "transfer": lambda v: False,
              "transfer.k": lambda v: isinstance(v, int) and 0 <= v <= 2,
              "transfer.topology": lambda v: v in ("pairs", "chain")}[key]
        assume(not (ok(value) and not isinstance(value, bool)))
        if key == "keep":
            assume(value != 2 or isinstance(value, bool))
            assume(not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 4))
        _set(doc, key, value)
        return f"{key} = {toml_value(value)[:40]}", toml_text(doc)
    if kind == "impossible":
        layers, block, keep = draw(st.integers(1, 60)), draw(st.integers(1, 30)), draw(st.integers(0, 40))
        assume(layers % block or keep > block or keep == 0 or layers != 24)
        doc.update(layers=layers, block=block, keep=keep)
        return f"layers {layers}, block {block}, keep {keep}", toml_text(doc)
    if kind == "negative":
        key = draw(st.sampled_from(["layers", "block", "keep", "transfer.k"]))
        value = draw(st.integers(-10**9, -1))
        _set(doc, key, value)
        return f"{key} = {value}", toml_text(doc)
    if kind == "unknown-key":
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
        in_transfer = draw(st.booleans())
        assume(key not in (("k", "topology", "edges") if in_transfer else
                           ("name", "model", "description", "source", "layers", "block", "keep", "blocks", "transfer")))
        (doc["transfer"] if in_transfer else doc)[key] = draw(TOML_VALUES)
        return f"unknown key {'transfer.' if in_transfer else ''}{key}", toml_text(doc)
    if kind == "blocks":
        del doc["block"], doc["keep"]
        blocks = draw(st.one_of(st.lists(st.lists(st.integers(-3, 30), max_size=3), max_size=8), TOML_VALUES))
        ok = (isinstance(blocks, list) and blocks and all(isinstance(b, list) and len(b) == 2 and 1 <= b[0] and
                                                          1 <= b[1] <= b[0] for b in blocks)
              and sum(b[0] for b in blocks) == 24)
        assume(not ok)
        doc["blocks"] = blocks
        return f"blocks = {toml_value(blocks)[:60]}", toml_text(doc)
    topology = draw(st.one_of(st.text(alphabet="0123456789-,ab", max_size=10), TOML_VALUES))
    assume(topology not in ("pairs", "chain"))
    edges = draw(st.booleans())
    doc["transfer"] = {"k": 1, ("edges" if edges else "topology"): topology}
    return f"transfer {'edges' if edges else 'topology'} = {toml_value(topology)[:40]}", toml_text(doc)


@given(malformed_space_presets(), st.sampled_from(["space", "search"]))
@CONFIG
def test_malformed_space_presets(root, case, command):
    description, text = case
    work = fresh(root, "space")
    preset = work / "preset.toml"
    preset.write_text(text, encoding="utf-8", errors="surrogatepass") if False else preset.write_bytes(
        text.encode("utf-8", "replace"))
    out = work / "out"
    if command == "space":
        argv, valid = ["space", str(preset)], None  # a preset for another layer count is fine on its own
        if not any(w in description for w in ("layers", "TOML", "random")):
            valid = False
        if "transfer.k = " in description or "transfer edges" in description or "transfer topology" in description:
            valid = None  # a transfer that happens to be valid for this block count
    else:
        argv, valid = ["search", "--space", str(preset), "--strategy", "bk-sdm", "--out", str(out), *TINY], False
        if "transfer" in description and "unknown" not in description:
            valid = None
    run_cli("space-preset", f"{command}: {description}", argv, out, root / "sandbox", valid=valid)


# ----- strategy presets --------------------------------------------------------------------------------------------


def strategy_preset(name: str) -> dict:
    import tomllib

    return tomllib.loads((REPO / "strategies" / f"{name}.toml").read_text())


STRATEGIES = ["tinysr", "tinyfusion", "random-min", "shortgpt", "flux-lite", "sensitivity", "snapfusion", "bk-sdm",
              "optuna-tpe", "annealing", "race"]


@st.composite
def malformed_strategy_presets(draw) -> tuple[str, str, bool | None]:
    """``(description, TOML text, valid)``: a strategy preset with something wrong (None: maybe valid)."""
    name = draw(st.sampled_from(STRATEGIES))
    doc = strategy_preset(name)
    settings_ = doc.setdefault("settings", {})
    kind = draw(st.sampled_from(["bad-toml", "name", "missing-name", "unknown-top", "unknown-setting", "wrong-type",
                                 "out-of-range", "settings-type"]))
    if kind == "bad-toml":
        lines = toml_text(doc).splitlines(keepends=True)
        n = draw(st.integers(0, len(lines)))
        junk = draw(st.sampled_from(["= =\n", "[\n", "name = \n", "\x01\n", '"""\n', "[settings]\n[settings]\n"]))
        return f"{name}: TOML broken at line {n} by {junk!r}", "".join(lines[:n]) + junk + "".join(lines[n:]), False
    if kind == "name":
        other = draw(st.one_of(st.text(max_size=12), st.integers(), st.booleans()))
        assume(other not in STRATEGIES)
        doc["name"] = other
        return f"name = {other!r}", toml_text(doc), False
    if kind == "missing-name":
        del doc["name"]
        return f"{name}: without name", toml_text(doc), False
    if kind == "unknown-top":
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10))
        assume(key not in ("name", "source", "description", "settings"))
        doc[key] = draw(TOML_VALUES)
        return f"{name}: unknown top-level {key}", toml_text(doc), False
    if kind == "unknown-setting":
        key = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
        assume(key not in settings_ and key != "lora_targets")
        settings_[key] = draw(TOML_VALUES)
        return f"{name}: unknown setting {key}", toml_text(doc), False
    if kind == "settings-type":
        value = draw(TOML_VALUES)
        doc["settings"] = value
        return f"{name}: settings = {toml_value(value)[:30]}", toml_text(doc), False
    assume(settings_)
    key = draw(st.sampled_from(sorted(settings_)))
    default = settings_[key]
    if kind == "wrong-type":
        value = draw(TOML_VALUES)
        same = (type(value) is type(default) or (isinstance(default, float) and isinstance(value, int)
                                                  and not isinstance(value, bool)))
        assume(not same)
        settings_[key] = value
        return f"{name}: settings.{key} = {toml_value(value)[:30]} (default {default!r})", toml_text(doc), False
    # out of range: same type, extreme or negative values (the strategy may accept some: maybe valid)
    if isinstance(default, bool):
        assume(False)
    if isinstance(default, int):
        value = draw(st.sampled_from([-1, 0, -10**6, 10**9]))
    elif isinstance(default, float):
        value = draw(st.sampled_from([-1.0, 0.0, -1e30, 1e30, 2.0]))
    elif isinstance(default, str):
        value = draw(st.text(max_size=10))
    elif isinstance(default, dict):
        value = draw(st.dictionaries(st.sampled_from(["kind", "start", "end", "x"]), TOML_VALUES, max_size=3))
    else:
        value = draw(TOML_VALUES)
    assume(value != default)
    settings_[key] = value
    return f"{name}: settings.{key} = {toml_value(value)[:30]} (default {default!r})", toml_text(doc), None


@given(malformed_strategy_presets())
@CONFIG
def test_malformed_strategy_presets(root, case):
    description, text, valid = case
    work = fresh(root, "strategy")
    preset = work / "preset.toml"
    preset.write_bytes(text.encode("utf-8", "replace"))
    out = work / "out"
    argv = ["search", "--ratio", "0.5", "--strategy", str(preset), "--out", str(out), *TINY]
    run_cli("strategy-preset", description, argv, out, root / "sandbox", valid=valid)


# ----- image folders ------------------------------------------------------------------------------------------------


def png_bytes(mode: str, size: tuple[int, int], **save) -> bytes:
    import numpy as np
    from PIL import Image

    w, h = size
    rng = np.random.default_rng(w * 1000 + h)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    elif mode == "P":
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert("P", palette=Image.ADAPTIVE)
    else:
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    im.save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares ``width × height`` but whose data is a few bytes: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def exif_jpeg(size: tuple[int, int], orientation: int) -> bytes:
    from PIL import Image

    im = Image.frombytes("RGB", size, bytes(range(256)) * (size[0] * size[1] * 3 // 256 + 1))
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


@st.composite
def bad_image_folders(draw) -> tuple[str, dict[str, bytes] | None]:
    """``(description, {file name: bytes})`` of a folder no search can use (None: --data names a file, not a folder)."""
    kind = draw(st.sampled_from(["empty", "non-images", "truncated", "zero-byte", "huge-header", "garbage-png",
                                 "not-a-folder", "missing"]))
    if kind == "empty":
        return "an empty folder", {}
    if kind == "non-images":
        names = draw(st.lists(st.sampled_from(["a.txt", "b.json", "c.gif", "d.bmp", "e.tiff", "notes", "f.webp"]),
                              min_size=1, max_size=4, unique=True))
        return f"only non-images {names}", {n: b"not an image" for n in names}
    if kind == "truncated":
        fmt = draw(st.sampled_from(["PNG", "JPEG"]))
        data = png_bytes("RGB", (48, 40), format=fmt)
        n = draw(st.integers(1, len(data) - 40 if fmt == "PNG" else len(data) // 2))
        return f"a {fmt} truncated at byte {n} of {len(data)}", {f"cut.{fmt.lower()}": data[:n]}
    if kind == "zero-byte":
        name = draw(st.sampled_from(["zero.png", "zero.jpg", "ZERO.JPEG"]))
        return f"a zero-byte {name}", {name: b""}
    if kind == "huge-header":
        w, h = draw(st.integers(20_000, 2**31 - 1)), draw(st.integers(20_000, 2**31 - 1))
        return f"a PNG header declaring {w}×{h}", {"bomb.png": png_header_only(w, h)}
    if kind == "garbage-png":
        data = draw(st.binary(max_size=200))
        prefix = draw(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]))
        return f"garbage {(prefix + data)[:16]!r}", {"noise.png": prefix + data}
    if kind == "not-a-folder":
        return "--data names an image file, not a folder", None
    return "--data names a missing folder", {"__missing__": b""}


def write_folder(work: Path, files: dict[str, bytes] | None) -> Path:
    if files is None:
        path = work / "image.png"
        path.write_bytes(png_bytes("RGB", (64, 64)))
        return path
    if "__missing__" in files:
        return work / "no-such-folder"
    folder = work / "data"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@given(bad_image_folders(), st.sampled_from(["search", "retrain", "evaluate"]))
@CONFIG
def test_bad_image_folders(root, export_dir, case, command):
    description, files = case
    work = fresh(root, "data")
    data = write_folder(work, files)
    out = work / "out"
    if command == "search":
        argv = ["search", "--ratio", "0.5", "--strategy", "bk-sdm", "--data", str(data), "--out", str(out), *TINY]
    elif command == "retrain":
        argv = ["retrain", "--from", str(export_dir), "--data", str(data), "--out", str(out), *TINY]
    else:
        argv = ["evaluate", "--model", "bicubic", "--hr", str(data), "--out", str(out), "--quiet"]
    valid = False
    if command == "evaluate" and files is None:
        valid = None  # evaluate takes one image file as --hr too? either way clean
    run_cli("image-folder", f"{command}: {description}", argv, out, root / "sandbox", valid=valid)


@st.composite
def unusual_valid_images(draw) -> tuple[str, str, bytes]:
    """``(description, file name, bytes)`` of an image that is valid although unusual."""
    kind = draw(st.sampled_from(["gray", "gray-alpha", "16-bit", "rgba", "palette", "exif", "small", "cmyk-jpeg"]))
    w, h = draw(st.integers(2, 80)), draw(st.integers(2, 80))
    if kind == "gray":
        return f"8-bit gray {w}×{h}", "g.png", png_bytes("L", (w, h))
    if kind == "gray-alpha":
        return f"gray + alpha {w}×{h}", "la.png", png_bytes("LA", (w, h))
    if kind == "16-bit":
        return f"16-bit gray {w}×{h}", "i16.png", png_bytes("I;16", (w, h))
    if kind == "rgba":
        return f"RGBA {w}×{h}", "rgba.png", png_bytes("RGBA", (w, h))
    if kind == "palette":
        return f"palette {w}×{h}", "p.png", png_bytes("P", (w, h))
    if kind == "exif":
        orientation = draw(st.integers(1, 8))
        return f"JPEG {w}×{h} with EXIF orientation {orientation}", "exif.jpg", exif_jpeg((w, h), orientation)
    if kind == "cmyk-jpeg":
        return f"CMYK JPEG {w}×{h}", "cmyk.jpg", png_bytes("CMYK", (w, h), format="JPEG")
    w, h = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    return f"tiny RGB {w}×{h}, smaller than the 64-pixel crop", "tiny.png", png_bytes("RGB", (w, h))


@given(unusual_valid_images(), st.sampled_from(["search", "evaluate"]))
@CONFIG
def test_unusual_valid_images_are_handled(root, case, command):
    description, name, data = case
    work = fresh(root, "ok")
    folder = work / "data"
    folder.mkdir()
    (folder / name).write_bytes(data)
    out = work / "out"
    if command == "search":
        argv = ["search", "--ratio", "0.5", "--strategy", "bk-sdm", "--data", str(folder), "--out", str(out), *TINY]
    else:
        argv = ["evaluate", "--model", "bicubic", "--hr", str(folder), "--out", str(out), "--quiet"]
    # evaluate needs HR of at least 4 × 4 px after its border crop; smaller ones may be refused in one line
    valid = True if command == "search" else None
    run_cli("valid-image", f"{command}: {description}", argv, out, root / "sandbox", valid=valid)


def test_sixteen_bit_and_exif_images_are_converted_properly(tmp_path):
    """16-bit gray keeps its range (not clipped at 255) and EXIF orientation 6 turns the image upright."""
    import numpy as np
    from PIL import Image

    from pruneseek.data import load_image

    Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(tmp_path / "mid.png")
    assert load_image(tmp_path / "mid.png").mean().item() == pytest.approx(0.5, abs=0.01)
    (tmp_path / "rot.jpg").write_bytes(exif_jpeg((16, 8), 6))  # 16 wide, 8 high, shown rotated 90°
    assert tuple(load_image(tmp_path / "rot.jpg").shape) == (3, 16, 8)


# ----- model folders ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(root):
    """Tiny models of every family (``python -m pruneseek.targets.tiny``), the TSD-SR layout, and a full mask each."""
    from transformers.utils import logging

    from pruneseek.maskfile import MaskFile
    from pruneseek.targets import tiny
    from tsdsr_files import write_tsdsr_files

    logging.disable_progress_bar()
    folder = root / "models"
    layers = {"sd3": 6, "flux": 8, "dit": 8, "causal-lm": 6}
    paths = {"sd3": folder / "sd3", "flux": folder / "flux", "dit": folder / "dit", "causal-lm": folder / "llama"}
    for family, path in paths.items():
        tiny.save("causal-lm" if family == "causal-lm" else family, path, pipeline=family == "flux")
    paths["tsdsr"] = write_tsdsr_files(folder / "tsdsr")["root"]
    layers["tsdsr"] = 3
    masks = {}
    for family, n in layers.items():
        masks[family] = MaskFile.from_mask([1] * n, family, "manual").save(folder / f"{family}.mask.json")
    return {"paths": paths, "masks": masks}


def _model_files(folder: Path, family: str) -> tuple[Path, list[Path]]:
    """``(config.json, weight files)`` of a family's model folder (flux: in transformer/)."""
    inner = folder / "transformer" if family == "flux" else folder
    return inner / "config.json", sorted(inner.glob("*.safetensors"))


@st.composite
def corrupt_models(draw) -> tuple[str, str, str, bool | None]:
    """``(family, part, corruption, maybe-valid)``: what to break in a copy of a tiny model (or TSD-SR's files)."""
    family = draw(st.sampled_from(["tsdsr", "sd3", "flux", "dit", "causal-lm"]))
    parts = ["config", "weights"] + (["lora", "vae-lora", "embeddings", "vae"] if family == "tsdsr" else [])
    part = draw(st.sampled_from(parts))
    if part == "config" or part == "vae":
        kind = draw(st.sampled_from(["delete", "truncate", "garbage", "not-object", "drop-field", "field-type",
                                     "class-name"]))
    elif part == "embeddings":
        kind = draw(st.sampled_from(["delete", "truncate", "garbage", "wrong-shape", "not-tensor"]))
    else:
        kind = draw(st.sampled_from(["delete", "truncate", "garbage", "wrong-shape", "drop-tensor", "rename-tensor",
                                     "other-dtype", "header-lies"]))
    detail = draw(st.integers(0, 10**6))
    return family, part, kind, detail


def _safetensors_edit(path: Path, kind: str, detail: int) -> str:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    names = sorted(tensors)
    name = names[detail % len(names)]
    if kind == "wrong-shape":
        t = tensors[name]
        tensors[name] = torch.zeros(*(s + 1 + detail % 3 for s in t.shape)) if t.dim() else torch.zeros(2)
    elif kind == "drop-tensor":
        del tensors[name]
    elif kind == "rename-tensor":
        tensors[name + ".x" if detail % 2 else "junk." + name] = tensors.pop(name)
    elif kind == "other-dtype":  # another float type: the libraries cast it on load (maybe valid)
        tensors[name] = tensors[name].to(torch.float16 if detail % 2 else torch.float64)
        save_file(tensors, str(path))
        return f"{name} as {tensors[name].dtype} (float cast)"
    save_file(tensors, str(path))
    return name


def corrupt(folder: Path, family: str, part: str, kind: str, detail: int) -> tuple[str, bool | None]:
    """Break ``part`` of the model in ``folder``; ``(what was done, validity)``."""
    if family == "tsdsr":
        target = {"config": folder / "base" / "transformer" / "config.json",
                  "vae": folder / "base" / "vae" / "config.json",
                  "weights": folder / "base" / "transformer" / "diffusion_pytorch_model.safetensors",
                  "lora": folder / "lora" / "transformer.safetensors",
                  "vae-lora": folder / "lora" / "vae.safetensors",
                  "embeddings": folder / "emb" / ("prompt_embeds.pt" if detail % 2 else "pool_embeds.pt")}[part]
    else:
        config, weights = _model_files(folder, family)
        target = config if part == "config" else weights[detail % len(weights)]
    valid: bool | None = False
    what = f"{family} {part} {target.name}: {kind}"
    data = target.read_bytes()
    if kind == "delete":
        target.unlink()
    elif kind == "truncate":
        target.write_bytes(data[: detail % max(1, len(data))])
    elif kind == "garbage":
        target.write_bytes(bytes((detail * 7 + i * 13) % 256 for i in range(64 + detail % 500)))
    elif kind in ("not-object", "drop-field", "field-type", "class-name"):
        config = json.loads(data)
        keys = sorted(k for k in config if not k.startswith("_"))
        key = keys[detail % len(keys)]
        if kind == "not-object":
            target.write_text(json.dumps([config]))
        elif kind == "drop-field":
            del config[key]
            target.write_text(json.dumps(config))
            what, valid = f"{what} {key}", None  # a field with a default may be left out
        elif kind == "field-type":
            config[key] = ["x", "7", -3, None, {"a": 1}, 10**9][detail % 6]
            target.write_text(json.dumps(config))
            what, valid = f"{what} {key} = {config[key]!r}", None  # some fields are free-form
        else:
            config["_class_name" if "_class_name" in config else "architectures"] = ["Nope", ["Nope"]][
                "architectures" in config]
            target.write_text(json.dumps(config))
    elif kind in ("wrong-shape", "not-tensor"):
        import torch

        if target.suffix == ".pt":
            value = torch.zeros(1, 3 + detail % 5, 5) if kind == "wrong-shape" else {"a": [1, 2]}
            torch.save(value, target)
        else:
            what = f"{what} {_safetensors_edit(target, kind, detail)}"
    elif kind in ("drop-tensor", "rename-tensor", "other-dtype"):
        what = f"{what} {_safetensors_edit(target, kind, detail)}"
        if "float cast" in what:
            valid = None
    elif kind == "header-lies":
        n = struct.unpack("<Q", data[:8])[0]
        target.write_bytes(struct.pack("<Q", n + 1 + detail % 10**6) + data[8:])
    return what, valid


@given(corrupt_models())
@CONFIG
def test_broken_model_folders(root, models, case):
    family, part, kind, detail = case
    work = fresh(root, "model")
    folder = work / "model"
    shutil.copytree(models["paths"][family], folder)
    what, valid = corrupt(folder, family, part, kind, detail)
    out = work / "out"
    argv = ["export", "--model", family, "--mask", str(models["masks"][family]), "--out", str(out)]
    if family == "tsdsr":
        argv += ["--base", str(folder / "base"), "--lora", str(folder / "lora"), "--embeddings", str(folder / "emb"),
                 "--no-measure"]
    else:
        argv += ["--base", str(folder)]
    run_cli("model-folder", what, argv, out, root / "sandbox", valid=valid)


# ----- argument combinations ---------------------------------------------------------------------------------------

BAD_NUMBERS = ["-1", "0", "abc", "1.5e", "nan", "", "--", "1e999", "-0.5", "0x10"]


@st.composite
def bad_argvs(draw, paths: dict) -> tuple[str, list[str]]:
    """``(description, argv)``: a command with random plausible options and at least one certainly bad one."""
    command = draw(st.sampled_from(["search", "compare", "tune", "export", "retrain", "evaluate", "upscale", "space",
                                    "bench"]))
    out = paths["out"]
    base = {
        "search": ["search", "--ratio", "0.5", "--strategy", "bk-sdm", "--out", out, *TINY],
        "compare": ["compare", "--quick", "--strategies", "bk-sdm", "--seeds", "1", "--out", out],
        "tune": ["tune", "--strategy", "random-min", "--ratio", "0.5", "--trials", "1", "--out", out],
        "export": ["export", "--mask", paths["mask"], "--out", out, "--no-measure"],
        "retrain": ["retrain", "--from", paths["export"], "--out", out, *TINY],
        "evaluate": ["evaluate", "--model", "bicubic", "--hr", paths["hr"], "--out", out, "--quiet"],
        "upscale": ["upscale", "--model", "bicubic", "--input", paths["hr"], "--out", out, "--quiet"],
        "space": ["space", "tsdsr-24-r50"],
        "bench": ["bench", "testbed", "--json"],
    }[command]
    poison_kinds = {
        "search": ["--steps", "--crops", "--crop-size", "--batch", "--seed", "--seeds", "--jobs", "--nproc", "--ratio",
                   "--model", "--rule", "--mode", "--dtype", "--perceptual", "--strategy", "--space", "--data",
                   "--weights", "--resume", "--unknown", "--base-only", "--ratio+space", "--checkpoint-every"],
        "compare": ["--ratio", "--seeds", "--strategies", "--unknown", "--space", "--weights", "--base-only"],
        "tune": ["--trials", "--ratio", "--strategy", "--unknown", "--space", "--weights"],
        "export": ["--mask", "--lora-format", "--rounds", "--measure-latent", "--model", "--unknown", "--out-file",
                   "--weights", "--base-only", "--missing-out"],
        "retrain": ["--steps", "--batch", "--stage", "--lr", "--lora-rank", "--from", "--discriminator",
                    "--weight-update", "--autocast", "--unknown", "--data", "--ema-decay", "--crop-size"],
        "evaluate": ["--tile", "--scale", "--hr", "--sr", "--model", "--degradation", "--unknown", "--lr", "--seed"],
        "upscale": ["--tile", "--input", "--model", "--unknown", "--missing-model"],
        "space": ["--layers", "--block", "--keep", "--ratio", "--blocks", "--transfer-k", "--topology", "--unknown",
                  "preset"],
        "bench": ["sub", "--unknown"],
    }[command]
    poisons = draw(st.lists(st.sampled_from(poison_kinds), min_size=1, max_size=3, unique=True))
    argv = list(base)
    what = []
    for flag in poisons:
        bad = draw(st.sampled_from(BAD_NUMBERS))
        word = draw(st.text(alphabet="abcxyz-_.0123456789", min_size=1, max_size=8))
        if flag == "--unknown":
            argv += [f"--{word.strip('-') or 'x'}-nope"]
        elif flag in ("--steps", "--crops", "--crop-size", "--batch", "--seeds", "--jobs", "--nproc", "--trials",
                      "--rounds", "--measure-latent", "--lora-rank", "--tile", "--scale"):
            argv += [flag, bad]
        elif flag in ("--seed", "--checkpoint-every"):
            argv += [flag, draw(st.sampled_from(["-1", "abc", "1.5", "", "-7"]))]
        elif flag == "--ratio":
            argv += [flag, draw(st.sampled_from(["-0.1", "1", "1.5", "abc", "nan", "0.123", "0.9", "inf"]))]
        elif flag == "--lr" or flag == "--ema-decay":
            argv += [flag, draw(st.sampled_from(["-1", "abc", "-1e-3"] + (["0"] if flag == "--lr" else [])))]
        elif flag in ("--model", "--rule", "--mode", "--dtype", "--perceptual", "--lora-format", "--stage",
                      "--weight-update", "--autocast", "--degradation", "--discriminator"):
            if command in ("evaluate", "upscale") and flag == "--model":
                argv += [flag, paths["file"]]  # a file, not an export folder
            else:
                argv += [flag, "nope-" + word]
        elif flag == "--strategy" or flag == "--strategies":
            argv += [flag, draw(st.sampled_from(["nope-" + word, "missing.toml", paths["file"], "bk-sdm,bk-sdm"]))]
        elif flag == "--space":
            argv += [flag, draw(st.sampled_from(["nope-" + word, "missing.toml", paths["file"]]))]
        elif flag in ("--data", "--from", "--hr", "--sr", "--lr", "--input"):
            argv += [flag, draw(st.sampled_from([paths["file"], paths["missing"], paths["empty"]]))]
        elif flag == "--weights":
            argv += [flag, draw(st.sampled_from([paths["file"], paths["missing"], paths["empty"]]))]
        elif flag == "--resume":
            argv += [flag, draw(st.sampled_from([paths["missing"], paths["empty"]]))]
        elif flag == "--base-only":
            argv += ["--base", paths["empty"]]
        elif flag == "--ratio+space":
            argv += ["--space", "tsdsr-24-r50"]
        elif flag == "--mask":
            argv += [flag, draw(st.sampled_from([paths["missing"], paths["empty"], paths["file"]]))]
        elif flag == "--out-file":
            argv[argv.index("--out") + 1] = paths["file"]
        elif flag == "--missing-out":
            argv.remove("--out"), argv.remove(out)
        elif flag == "--missing-model":
            i = argv.index("--model")
            del argv[i:i + 2]
        elif flag in ("--layers", "--block", "--keep", "--transfer-k"):
            argv += [flag, draw(st.sampled_from(["-1", "abc", "1.5", ""] + (["0"] if flag != "--transfer-k" else [])))
                     if flag != "--keep" else
                     draw(st.sampled_from(["-1", "abc", "99"]))]
            if flag == "--keep" and argv[-1] == "99":
                argv += ["--layers", "24", "--block", "4"]
        elif flag == "--blocks":
            argv += [flag, draw(st.sampled_from(["4:5", "a:b", "4-2", "", "0:0", "4:2,", "-4:2"]))]
        elif flag == "--topology":
            argv += [flag, draw(st.sampled_from(["ring", "0-9", "a-b", "0-0"]))]
        elif flag == "preset":
            argv[1] = draw(st.sampled_from(["nope-" + word, paths["file"], paths["missing"] + ".toml"]))
        elif flag == "sub":
            argv[1] = "nope-" + word
        what.append(flag)
    # a few random harmless extras, in random order after the command
    extras = draw(st.lists(st.sampled_from(["--quiet", "--json", "--force", "--threads 1", "--device cpu"]),
                           max_size=2, unique=True))
    allowed = {"search": {"--quiet", "--device cpu"}, "compare": {"--quiet", "--threads 1", "--device cpu"},
               "tune": {"--threads 1", "--device cpu"}, "export": {"--force", "--device cpu"},
               "retrain": {"--force", "--threads 1", "--quiet", "--device cpu"},
               "evaluate": {"--json", "--threads 1", "--quiet"}, "upscale": {"--threads 1", "--quiet"},
               "space": {"--json"}, "bench": {"--json"}}[command]
    for extra in extras:
        if extra in allowed:
            argv += extra.split()
    return f"{command} with bad {', '.join(what)}: {' '.join(argv[1:])[:200]}", argv


@pytest.fixture(scope="module")
def arg_paths(root, export_dir, hr_dir):
    folder = root / "args"
    folder.mkdir()
    (folder / "file.txt").write_text("a file, not a folder\n")
    (folder / "empty").mkdir()
    return {"file": str(folder / "file.txt"), "missing": str(folder / "missing"), "empty": str(folder / "empty"),
            "export": str(export_dir), "hr": str(hr_dir), "mask": str(MASK), "folder": folder}


@given(st.data())
@CONFIG
def test_bad_argument_combinations(root, arg_paths, data):
    out = fresh(root, "args") / "out"
    description, argv = data.draw(bad_argvs({**arg_paths, "out": str(out)}))
    # --strategies with a repeated name or a missing .toml etc. are bad; every draw carries one certain poison
    run_cli("cli-args", description, argv, out, root / "sandbox")
