"""Hostile and careless input: a corpus of bad files generated here, a fuzz of the loaders, extremes.

The promise under test: loading a file imports and calls nothing the file names; bad input ends in
one ``error:`` line and exit status 2 (or a LiftswapError in Python); no input hangs or kills the
process; no file is lost (outputs never replace devices or inputs, and leave no temporaries).
"""

import io
import os
import pickle
import stat
import subprocess
import sys
import zipfile

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import liftswap
from liftswap.errors import LiftswapError
from liftswap.io.save import read_file

TESTS = os.path.dirname(__file__)


def cli(*args, cwd, timeout=300):
    """The command line in a fresh process, as a user runs it (the time-out turns a hang into a failure)."""
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "liftswap.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(r, message=""):
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr


def small_model_file(path, source=None):
    """A real liftswap file of a one-pool model; ``source`` overrides the recorded model source."""
    converted = liftswap.patch(torch.nn.MaxPool2d(2), example_inputs=torch.randn(1, 2, 8, 8))
    liftswap.save(converted, path)
    payload = torch.load(path, weights_only=True)
    if source is not None:
        payload["source"] = source
        torch.save(payload, path)
    return payload


def billion_laughs(levels=9, width=10):
    a = ["lol"] * width
    for _ in range(levels):
        a = [a] * width
    return a


# --- 1. a file names code: never imported or called -------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        {"kind": "factory", "name": "os:system", "kwargs": {"command": "touch pwned"}},
        {"kind": "factory", "name": "subprocess:getoutput", "kwargs": {"cmd": "touch pwned"}},
        {"kind": "factory", "name": "pathlib:Path.touch", "kwargs": {}},
    ],
)
def test_a_file_source_never_imports_or_calls(tmp_path, monkeypatch, source):
    monkeypatch.chdir(tmp_path)
    small_model_file(tmp_path / "m.pt", source)
    with pytest.raises(LiftswapError, match=f"names the model factory '{source['name']}'.*model=.*trust_remote_code=True"):
        liftswap.load("m.pt")
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "cat.png", (torch.rand(16, 16, 3) * 255).to(torch.uint8).numpy())
    for args in (["export", "m.pt", "--out", "m.onnx"], ["bands", "cat.png", "--model", "m.pt", "--out", "b.png"]):
        r = cli(*args, cwd=tmp_path)
        assert_one_line_error(r, "--trust-remote-code")
    assert "pwned" not in os.listdir(tmp_path)


@pytest.mark.parametrize(
    "source,message",
    [
        ({"kind": "timm", "name": "resnet18", "kwargs": {"checkpoint_path": "/etc/passwd"}}, "checkpoint_path, which would read files"),
        ({"kind": "timm", "name": "resnet18", "kwargs": {"pretrained": True}}, "pretrained, which would read files"),
        ({"kind": "torchvision", "name": "resnet18", "kwargs": {"weights": "DEFAULT"}}, "weights, which would read files"),
        ({"kind": "timm", "name": "hf-hub:evil/model", "kwargs": {}}, "invalid model source"),
        ({"kind": "timm", "name": "resnet18", "kwargs": {"act_layer": ["x"] * 10_001}}, "expands to over 10000 values"),
        ({"kind": "timm", "name": "resnet18", "kwargs": {"__class__": 1}}, "invalid keyword arguments"),
        ({"kind": "exec", "name": "print", "kwargs": {}}, "invalid model source"),
        ("os:system", "unreadable model source"),
    ],
)
def test_a_file_source_is_plain_registry_data(tmp_path, source, message):
    small_model_file(tmp_path / "m.pt", source)
    with pytest.raises(LiftswapError, match=message):
        liftswap.load(tmp_path / "m.pt")


def test_trusted_factory_and_caller_model_still_load(tmp_path):
    import models

    torch.manual_seed(0)
    net = liftswap.build_model("models:ReusedPool")
    converted = liftswap.patch(net, example_inputs=torch.randn(2, 3, 16, 16)).eval()
    liftswap.save(converted, tmp_path / "m.pt")
    x = torch.randn(1, 3, 16, 16)
    for loaded in (liftswap.load(tmp_path / "m.pt", trust_remote_code=True), liftswap.load(tmp_path / "m.pt", model=models.ReusedPool())):
        torch.testing.assert_close(loaded.eval()(x), converted(x), rtol=0, atol=0)


# --- pickles that carry code, zips that lie or explode ---------------------------------------


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_code_carrying_pickles_in_every_torch_format(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = {"format": "liftswap", "version": 1, "x": _Evil()}
    torch.save(payload, "zip.pt")
    torch.save(payload, "legacy.pt", _use_new_zipfile_serialization=False)
    with open("plain.pt", "wb") as f:
        pickle.dump(payload, f)
    for name in ("zip.pt", "legacy.pt", "plain.pt"):
        with pytest.raises(LiftswapError, match=f"refused to load {name}: it carries code \\(posix.system"):
            read_file(name)
    assert "pwned" not in os.listdir(tmp_path)


def _zip_with(path, entries, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in entries:
            if callable(data):
                with z.open(name, "w", force_zip64=True) as f:
                    data(f)
            else:
                z.writestr(name, data)


def test_zip_bomb_is_refused_from_its_directory(tmp_path):
    def zeros(f):  # 256 MiB of zeros deflate to about 256 KiB
        chunk = bytes(2**20)
        for _ in range(256):
            f.write(chunk)

    good = small_model_file(tmp_path / "good.pt")
    buf = io.BytesIO()
    torch.save(good, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        entries = [(n, z.read(n)) for n in z.namelist()]
    entries.append((entries[0][0].split("/")[0] + "/data/99", zeros))
    _zip_with(tmp_path / "bomb.pt", entries)
    assert os.path.getsize(tmp_path / "bomb.pt") < 2**20
    with pytest.raises(LiftswapError, match="would unpack to 256 MiB .* zip bomb"):
        read_file(tmp_path / "bomb.pt")


def test_zip_traversal_and_lying_headers_are_errors_not_writes(tmp_path):
    _zip_with(tmp_path / "trav.pt", [("../../escaped", b"x" * 100), ("archive/data.pkl", pickle.dumps({"a": 1}))])
    with pytest.raises(LiftswapError):
        read_file(tmp_path / "trav.pt")
    assert not (tmp_path.parent.parent / "escaped").exists()
    good = tmp_path / "good.pt"
    small_model_file(good)
    data = bytearray(good.read_bytes())
    cd = data.rfind(b"PK\x01\x02")  # the last central directory entry: declare a size of 1 byte
    data[cd + 24 : cd + 28] = (1).to_bytes(4, "little")
    (tmp_path / "lying.pt").write_bytes(bytes(data))
    with pytest.raises(LiftswapError):
        read_file(tmp_path / "lying.pt")


# --- recipes and stored plans that expand, nest or lie ------------------------------------------

YAML_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

BAD_RECIPES = {
    "bomb_mode.yaml": (YAML_BOMB + "mode: *i\n", "expands to over"),
    "bomb_kernel.yaml": (YAML_BOMB.replace("\n", "\n", 1) + "layer: {kernel_size: *i}\n", "expands to over"),
    "deep.yaml": ("mode: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    "latin1.yaml": ("mode: pr\xe9serve\n".encode("latin-1"), "not UTF-8"),
    "utf16.yaml": ("mode: paper\n".encode("utf-16"), "not UTF-8"),
    "digits.yaml": ("layer: {kernel_size: " + "7" * 5000 + "}\n", "unreadable value"),
    "huge_k.yaml": ("layer: {kernel_size: 1000001}\n", "odd integer from 1 to 63"),
    "nan.yaml": ("layer: {lambda_u: .nan}\n", "finite number"),
    "inf.yaml": ("layer: {lambda_p: .inf}\n", "finite number"),
    "redos.yaml": ("rules: [{match: 're:(a+)+$'}]\n", "exponential time"),
    "python_tag.yaml": ("mode: !!python/object/apply:os.system ['touch pwned']\n", "not valid YAML"),
}


@pytest.mark.parametrize("name", sorted(BAD_RECIPES))
def test_bad_recipes_are_one_clear_error(tmp_path, name):
    text, message = BAD_RECIPES[name]
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(liftswap.RecipeError, match=message):
        liftswap.load_recipe(str(path))
    assert "pwned" not in os.listdir(tmp_path)


def test_recipe_bomb_through_the_command_line(tmp_path):
    (tmp_path / "bomb.yaml").write_text(YAML_BOMB + "mode: *i\n")
    r = cli("convert", "torchvision:alexnet", "--recipe", "bomb.yaml", "--out", "o.pt", cwd=tmp_path, timeout=120)
    assert_one_line_error(r, "expands to over")


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda p: p["plan"].update(sites=billion_laughs()), "stored plan expands to over"),
        (lambda p: p["plan"]["recipe"].update(rules=billion_laughs()), "expands to over"),
        (lambda p: p["plan"].update(input_shapes=[[-2, 3, 8, 8]]), "bad input_shapes"),
        (lambda p: p["plan"].update(input_shapes=[[2, 3, 10**6, 10**6]]), "bad input_shapes"),
        (lambda p: p["plan"]["sites"][0].update(kernel_size="big"), "bad value for site field 'kernel_size'"),
        (lambda p: p["plan"]["sites"][0].update(action="run"), "bad value for site field 'action'"),
        (lambda p: p["plan"]["sites"][0].update(evil=1), "unknown site field"),
        (lambda p: p["plan"].update(sites="x"), "must be lists"),
        (lambda p: p.update(state_dict={"w": "not a tensor"}), "state_dict is not a mapping of names to tensors"),
        (lambda p: p.update(version=True), "format version"),
    ],
)
def test_damaged_stored_plans_are_errors_on_every_command(tmp_path, cli_here, change, message):
    payload = small_model_file(tmp_path / "m.pt")
    change(payload)
    torch.save(payload, tmp_path / "m.pt")
    assert os.path.getsize(tmp_path / "m.pt") < 64 * 2**10
    with pytest.raises(LiftswapError, match=message):
        read_file(tmp_path / "m.pt")
    r = cli_here("inspect", "m.pt", cwd=tmp_path)
    assert_one_line_error(r, message.split(" ")[0])


# --- outputs: devices, inputs, symlinks, temporaries -------------------------------------------


def test_outputs_never_replace_devices_fifos_or_inputs(tmp_path, cli_here):
    small_model_file(tmp_path / "m.pt")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "r.yaml").write_text("mode: preserve\n")
    before = (tmp_path / "m.pt").read_bytes()
    cases = [
        (["export", "m.pt", "--out", "/dev/null"], "not a regular file"),
        (["export", "m.pt", "--out", "fifo"], "not a regular file"),
        (["export", "m.pt", "--out", "m.pt"], "it is also an input"),
        (["export", "m.pt", "--out", "./sub/../m.pt"], "does not exist"),
        (["inspect", "m.pt", "--emit-recipe", "m.pt"], "it is also an input"),
        (["convert", "torchvision:alexnet", "--checkpoint", "m.pt", "--out", "m.pt"], "it is also an input"),
        (["convert", "torchvision:alexnet", "--recipe", "r.yaml", "--out", "r.yaml"], "it is also an input"),
        (["export", "m.pt", "--out", "o.onnx", "--batch", "-1"], "--batch must be from 1"),
        (["export", "m.pt", "--out", "o.onnx", "--opset", "1"], "opset must be an integer from 18"),
    ]
    for args, message in cases:
        r = cli_here(*args, cwd=tmp_path)
        assert_one_line_error(r, message)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and stat.S_ISFIFO(os.stat(tmp_path / "fifo").st_mode)
    assert (tmp_path / "m.pt").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["fifo", "m.pt", "r.yaml"]


def test_symlink_output_is_written_through(tmp_path):
    (tmp_path / "real.pt").write_bytes(b"old")
    os.symlink("real.pt", tmp_path / "link.pt")
    converted = liftswap.patch(torch.nn.MaxPool2d(2), example_inputs=torch.randn(1, 2, 8, 8))
    liftswap.save(converted, tmp_path / "link.pt")
    assert os.path.islink(tmp_path / "link.pt") and read_file(tmp_path / "real.pt")["format"] == "liftswap"
    assert sorted(os.listdir(tmp_path)) == ["link.pt", "real.pt"]


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".m.pt.liftswap-{dead}-abc123.tmp"
    stale.write_bytes(b"partial")
    (tmp_path / f".m.pt.liftswap-{dead}-dir.tmp").mkdir()
    live = tmp_path / f".m.pt.liftswap-{os.getppid()}-x.tmp"  # a live process's: kept
    live.write_bytes(b"in use")
    other = tmp_path / f".other.pt.liftswap-{dead}-x.tmp"  # another target's: not ours to judge now
    other.write_bytes(b"")
    small_model_file(tmp_path / "m.pt")
    assert sorted(os.listdir(tmp_path)) == sorted(["m.pt", live.name, other.name])


def test_sigkill_mid_write_leaves_the_old_file(tmp_path):
    script = (
        "import os, signal, torch, liftswap\n"
        "from liftswap.io import files\n"
        "def write(tmp):\n"
        "    open(tmp, 'wb').write(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "files.atomic_write('m.pt', write)\n"
    )
    (tmp_path / "m.pt").write_bytes(b"old")
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True)
    assert r.returncode == -9 and (tmp_path / "m.pt").read_bytes() == b"old"
    assert len(os.listdir(tmp_path)) == 2  # the killed writer's temporary, until the next write
    small_model_file(tmp_path / "m.pt")
    assert os.listdir(tmp_path) == ["m.pt"]


# --- the command line's other bad inputs --------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["convert", ":", "--out", "o.pt"], "is not a model name"),
        (["convert", ":tiny", "--out", "o.pt"], "is not a model name"),
        (["convert", "../../etc/passwd:x", "--out", "o.pt"], "is not a model name"),
        (["convert", "models:raising_factory", "--out", "o.pt"], "building models:raising_factory failed: RuntimeError: broken on purpose"),
        (["convert", "models:no_such", "--out", "o.pt"], "cannot import model factory"),
        (["convert", "torchvision:alexnet", "--out", "o.pt", "--input-size", 3, 100000, 100000], "over 268435456"),
        (["convert", "torchvision:alexnet", "--out", "o.pt", "--input-size", 3, 8, 8], "cannot run on example inputs of shape 2x3x8x8"),
        (["convert", "torchvision:alexnet", "--outt", "o.pt"], "No such option: --outt"),
        (["convert"], "Missing argument"),
        (["export", "m.pt", "--out", "o.onnx", "--batch", "x"], "Invalid value for '--batch'"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, cli_here, args, message):
    run = cli if args == ["convert"] else cli_here  # one case through a real process, the rest in this one
    r = run(*args, cwd=tmp_path)
    assert_one_line_error(r, message)
    assert os.listdir(tmp_path) == []


def test_cli_os_errors_are_exit_2(tmp_path, monkeypatch, capsys):
    """A read-only file system (EROFS) or a full disk is bad input too: one line, exit 2."""
    import errno

    import typer

    from liftswap import cli as cli_module

    @cli_module._guard
    def failing():
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "o.pt"))

    with pytest.raises(typer.Exit) as e:
        failing()
    assert e.value.exit_code == 2
    assert capsys.readouterr().err.strip() == f"error: Read-only file system: {tmp_path / 'o.pt'}"


# --- fuzz: the recipe loader and the file loader ----------------------------------------------

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["preserve", "paper", "haar", "lazy", "LL", "sum", "gated", "skip", "replace", "re:(a+)+", "layer*"]),
)  # fmt: skip
_KEYS = st.sampled_from(["version", "mode", "layer", "rules", "match", "action", "kernel_size", "init", "output", "lambda_u", "lambda_p", "x"])
_DATA = st.recursive(_SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(_KEYS, kids, max_size=5), max_leaves=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_DATA, raw=st.binary(max_size=200), use_raw=st.booleans())
def test_fuzz_recipe_loader(tmp_path, data, raw, use_raw):
    """Any YAML text or bytes: a Recipe, or a RecipeError; never another exception or a hang."""
    path = tmp_path / "r.yaml"
    if use_raw:
        path.write_bytes(raw)
    else:
        path.write_text(yaml.safe_dump(data))
    try:
        recipe = liftswap.load_recipe(str(path))
    except liftswap.RecipeError as e:
        assert "\n" not in str(e) and len(str(e)) < 1000
    else:
        assert recipe.mode in ("preserve", "paper")


@pytest.fixture(scope="module")
def good_file_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "m.pt"
    small_model_file(path)
    return path.read_bytes()


def test_zip_entry_claiming_an_unknown_zip_version_is_a_clear_error(tmp_path, good_file_bytes):
    """zipfile raises NotImplementedError for a directory entry that needs zip version 6.4 (found by the fuzz below)."""
    data = bytearray(good_file_bytes)
    entry = data.index(b"PK\x01\x02")  # the first central-directory entry
    data[entry + 6 : entry + 8] = (64).to_bytes(2, "little")  # "version needed to extract"
    path = tmp_path / "m.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(LiftswapError, match="damaged zip"):
        liftswap.load(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(min_value=0)))  # fmt: skip
def test_fuzz_file_loader(tmp_path, good_file_bytes, edits, cut):
    """A liftswap file with bytes flipped or cut: loads (the change missed what matters) or a LiftswapError."""
    data = bytearray(good_file_bytes)
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    path = tmp_path / "m.pt"
    path.write_bytes(bytes(data))
    try:
        model = liftswap.load(path)
    except LiftswapError as e:
        assert "\n" not in str(e)
    else:
        assert isinstance(model, torch.nn.Module)
