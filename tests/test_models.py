"""Models: registry, the published architecture's layout, weight loading, inference.

Nothing here downloads anything. The published architecture is built on torch's
``meta`` device (shapes without memory) for the layout checks, and once for real for
a single forward pass; every other network is a tiny ``mantis-mini``.
"""
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from astro_mantis import MantisFlag, MultiSurveyCutout
from astro_mantis.fusion import early_fusion
from astro_mantis.models import (ModelSpec, WeightsError, available_models, build_model,
                                 dihedral_transforms, get_spec, load_model, load_state_dict,
                                 predict, read_state_dict, register_model, save_model,
                                 verify_file)
from astro_mantis.models import registry

TINY = {"widths": (4, 8, 8, 8), "depths": (1, 1, 1, 1), "hidden": 16}
#: The published checkpoint: size in bytes and sha256 prefix (DESIGN §5).
PUBLISHED_SIZE = 801_048_832


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks are many short operations: one thread is faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed=0):
    torch.manual_seed(seed)
    return build_model("mantis-mini", **TINY).eval()


@pytest.fixture
def tiny_spec():
    """A registry entry for a tiny mantis-mini, removed afterwards."""
    spec = register_model(ModelSpec(
        name="tiny-test", description="tiny test network",
        build=lambda **kw: registry.build_mantis_mini(**{**TINY, **kw})))
    yield spec
    registry._REGISTRY.pop("tiny-test")


@pytest.fixture
def weights_server(tmp_path):
    """A loopback HTTP server of tmp_path/served, counting the requests it answers."""
    import functools
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


def test_a_model_with_a_url_downloads_once_and_drops_a_bad_download(tmp_path, monkeypatch,
                                                                    weights_server):
    """No weights given: the spec's URL is downloaded once into astropy's cache,
    checked, reused; a file that fails the check is not kept."""
    import hashlib

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))   # a private cache
    (tmp_path / "xdg" / "astro_mantis").mkdir(parents=True)
    root, base, hits = weights_server
    net = tiny(3)
    weights, _ = save_model(net, tmp_path / "w")
    (root / "w.safetensors").write_bytes(weights.read_bytes())
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    size = weights.stat().st_size
    register_model(ModelSpec(name="tiny-url", description="served tiny network",
                             build=lambda **kw: registry.build_mantis_mini(**{**TINY, **kw}),
                             url=f"{base}/w.safetensors", size=size, sha256=digest))
    try:
        a = load_model("tiny-url")
        b = load_model("tiny-url")
        assert hits == ["/w.safetensors"]            # downloaded once
        assert str(tmp_path / "xdg") in a.meta["weights"]
        assert a.meta["sha256"] == digest
        x, d = torch.rand(2, 9, 120, 120), torch.rand(2, 2)
        with torch.no_grad():
            torch.testing.assert_close(a(x, d), net(x, d))
            torch.testing.assert_close(b(x, d), net(x, d))
        # the server now holds another file under another name: a bad download
        bad = bytearray(weights.read_bytes())
        bad[-1] ^= 1
        (root / "bad.safetensors").write_bytes(bytes(bad))
        registry._REGISTRY["tiny-url"] = ModelSpec(
            name="tiny-url", description="served tiny network",
            build=lambda **kw: registry.build_mantis_mini(**{**TINY, **kw}),
            url=f"{base}/bad.safetensors", size=size, sha256=digest)
        for _ in range(2):                           # refetched: not kept in the cache
            with pytest.raises(WeightsError, match="sha256"):
                load_model("tiny-url")
        assert hits.count("/bad.safetensors") == 2
    finally:
        registry._REGISTRY.pop("tiny-url")


@pytest.fixture
def cut_short_server(tmp_path):
    """A loopback HTTP/1.0 server of tmp_path/served that sends half of each file with no
    Content-Length and closes the connection: a download cut short that the client
    cannot tell from a complete one. Counts the requests it answers."""
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self):
            hits.append(self.path)
            data = (root / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()                                   # no Content-Length
            self.wfile.write(data[:len(data) // 2])
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("how", ["no checksum known", "verify=False"])
def test_a_download_cut_short_without_a_size_is_not_kept(tmp_path, monkeypatch,
                                                         cut_short_server, how):
    """A truncated download that no checksum catches fails to read: WeightsError, and the
    URL is dropped from astropy's cache so that the next call downloads it again."""
    import hashlib

    from astropy.utils.data import is_url_in_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))   # a private cache
    (tmp_path / "xdg" / "astro_mantis").mkdir(parents=True)
    root, base, hits = cut_short_server
    weights, _ = save_model(tiny(6), tmp_path / "w")
    data = weights.read_bytes()
    (root / "w.safetensors").write_bytes(data)
    known = how != "no checksum known"
    url = f"{base}/w.safetensors"
    register_model(ModelSpec(name="tiny-cut", description="served tiny network, cut short",
                             build=lambda **kw: registry.build_mantis_mini(**{**TINY, **kw}),
                             url=url, size=len(data) if known else None,
                             sha256=hashlib.sha256(data).hexdigest() if known else None))
    try:
        for attempt in (1, 2):
            with pytest.raises(WeightsError, match="unreadable or incomplete"):
                load_model("tiny-cut", verify=not known)
            assert not is_url_in_cache(url, pkgname="astro_mantis")
            assert len(hits) == attempt                      # downloaded again each time
    finally:
        registry._REGISTRY.pop("tiny-cut")


# ------------------------------------------------------------------ registry
def test_available_models_and_unknown_name():
    assert available_models() == ("mantis-mini", "mantis-shrimp-v1")
    with pytest.raises(ValueError, match="unknown model 'nope'.*'mantis-mini'.*'mantis-shrimp-v1'"):
        build_model("nope")
    with pytest.raises(ValueError, match="known models"):
        load_model("nope")
    assert get_spec("MANTIS-MINI").name == "mantis-mini"


# ------------------------------------------------------------------ mantis-shrimp-v1
def test_published_architecture_layout():
    net = build_model("mantis-shrimp-v1", device="meta")
    sd = net.state_dict()
    assert {k.split(".")[0] for k in sd} == {"Base", "fc0", "fc1"}
    assert sd["Base.stem.0.weight"].shape == (192, 9, 4, 4)
    assert sd["Base.stem.0.bias"].shape == (192,)
    assert sd["Base.stem.1.weight"].shape == (192,)
    assert sd["Base.head.norm.weight"].shape == (1536,)
    assert sd["Base.stages.3.blocks.2.mlp.fc2.weight"].shape == (1536, 6144)
    assert sd["fc0.weight"].shape == (2048, 1538) and sd["fc0.bias"].shape == (2048,)
    assert sd["fc1.weight"].shape == (400, 2048) and sd["fc1.bias"].shape == (400,)
    assert not any("head.fc" in k for k in sd)   # num_classes=0: no classifier
    assert len(sd) == 346
    n_params = sum(v.numel() for v in sd.values())
    assert n_params == 200_220_240
    # float32 tensors plus ~0.5 kB of zip/pickle bookkeeping each = the published file
    overhead = PUBLISHED_SIZE - 4 * n_params
    assert 200 * len(sd) < overhead < 1000 * len(sd)
    assert net.meta["name"] == "mantis-shrimp-v1" and net.meta["trained"] is False
    # the wiring (1536 pooled features + 2 dust values → fc0) checked without computing
    out = net.eval()(torch.zeros(4, 9, 120, 120, device="meta"), torch.zeros(4, 2, device="meta"))
    assert out.shape == (4, 400)


@pytest.mark.slow
def test_published_architecture_runs_one_galaxy():
    # ~800 MB; timm's random initialisation of 200M weights takes half a minute on two
    # cores, so allocate them uninitialised and draw plain normal values instead
    net = build_model("mantis-shrimp-v1", device="meta").to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.02, generator=gen)
        out = net(torch.zeros(1, 9, 120, 120), torch.zeros(1, 2))
    assert out.shape == (1, 400) and torch.isfinite(out).all()
    del net


def test_v1_downloads_its_published_checkpoint_and_verifies_it(tmp_path):
    from astro_mantis.models.registry import MANTIS_SHRIMP_V1_URL, get_spec

    full = "411536eba11a6733e5632c6a7c7cf9e07c000d68ff929965a9268c56b1c7428e"
    spec = get_spec("mantis-shrimp-v1")
    assert spec.sha256 == full  # the whole digest, not a prefix
    assert spec.url == MANTIS_SHRIMP_V1_URL and "best_early.pt" in spec.url
    path = tmp_path / "ckpt.pt"
    torch.save({"module.fc1.weight": torch.zeros(2)}, path)
    with pytest.raises(WeightsError, match=r"expected 801,048,832 bytes, got \d"):
        load_model("mantis-shrimp-v1", weights=path)
    # verify=False goes on, and the strict key check names what does not fit
    with pytest.raises(WeightsError, match=r"345 missing keys \(Base\.stem\.0\.weight.*"
                                           r"1 shape mismatches \(fc1\.weight"):
        load_model("mantis-shrimp-v1", weights=path, verify=False)
    with pytest.raises(FileNotFoundError):
        load_model("mantis-shrimp-v1", weights=tmp_path / "absent.pt")


# ------------------------------------------------------------------ weights I/O
def test_module_prefixed_checkpoint_round_trip(tmp_path):
    net = tiny(1)
    path = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    state = read_state_dict(path)
    assert set(state) == set(net.state_dict())
    fresh = build_model("mantis-mini", device="meta", **TINY)
    load_state_dict(fresh, state)
    x, d = torch.rand(3, 9, 120, 120), torch.rand(3, 2)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x, d), net(x, d))
    # a wrapped checkpoint ({"state_dict": ...}) and torch.compile prefixes also load
    torch.save({"epoch": 3, "state_dict": {f"module._orig_mod.{k}": v
                                           for k, v in net.state_dict().items()}}, path)
    assert set(read_state_dict(path)) == set(net.state_dict())


class _Payload:
    """Unpickling this would create a file: weights_only loading must refuse it."""

    marker = None

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_weights_are_read_without_running_pickled_code(tmp_path):
    payload = _Payload()
    payload.marker = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    torch.save({"fc1.weight": torch.zeros(1), "x": payload}, path)
    with pytest.raises(WeightsError, match="unreadable or incomplete") as info:
        read_state_dict(path)
    assert isinstance(info.value.__cause__, pickle.UnpicklingError)   # torch's own refusal
    assert "weights_only=False" not in str(info.value)                # not its unsafe advice
    assert not os.path.exists(payload.marker)


def test_unreadable_weights_raise_weights_error_naming_the_file(tmp_path, tiny_spec):
    """Truncated, corrupted or foreign files: a WeightsError that names the file, with the
    reader's error chained, whether or not a checksum is known or checked."""
    net = build_model("tiny-test")
    weights, _ = save_model(net, tmp_path / "carded")              # with its card
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    whole = weights.read_bytes()
    cases = {
        "cut.safetensors": whole[:len(whole) // 2],                 # no card
        "cut.pt": (tmp_path / "plain.pt").read_bytes()[:3000],
        "noise.pt": bytes(range(256)) * 20,
        "page.pt": b"<html><body>404 Not Found</body></html>",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(WeightsError, match=rf"weights file .*{name} is unreadable or "
                                               r"incomplete") as info:
            load_model("tiny-test", weights=tmp_path / name)
        assert info.value.__cause__ is not None
        assert not isinstance(info.value.__cause__, WeightsError)
        assert "weights_only=False" not in str(info.value)
    # a card beside a file cut short: the size check catches it; verify=False reads it
    weights.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(WeightsError, match="expected .* bytes"):
        load_model("tiny-test", weights=weights)
    with pytest.raises(WeightsError, match="unreadable or incomplete"):
        load_model("tiny-test", weights=weights, verify=False)
    with pytest.raises(FileNotFoundError):                         # not a WeightsError
        read_state_dict(tmp_path / "absent.safetensors")


def test_meta_sha256_is_the_digest_of_the_file_loaded(tmp_path, tiny_spec):
    """model.meta["sha256"] (what the table job records as z_sha256 and compares when it
    resumes) is always the loaded file's own digest: with verify=False, without a card,
    and with a card describing another file."""
    import hashlib

    from astro_mantis.table import _settings

    def digest(path):
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    for seed, name in ((1, "ft_a.pt"), (2, "ft_b.pt")):         # two fine-tuned checkpoints
        torch.save(tiny(seed).state_dict(), tmp_path / name)
    a = load_model("tiny-test", weights=tmp_path / "ft_a.pt", verify=False)
    b = load_model("tiny-test", weights=tmp_path / "ft_b.pt", verify=False)
    assert a.meta["sha256"] == digest(tmp_path / "ft_a.pt")
    assert b.meta["sha256"] == digest(tmp_path / "ft_b.pt")
    assert a.meta["sha256"] != b.meta["sha256"]
    # and the same with verify=True (no checksum known: nothing to verify)
    assert load_model("tiny-test", weights=tmp_path / "ft_a.pt").meta["sha256"] == \
        digest(tmp_path / "ft_a.pt")
    # so the table job's resume settings tell the two apart
    sa, sb = (_settings(m.meta, ("galex", "panstarrs", "unwise"), False, None, "ra,dec")
              for m in (a, b))
    assert sa["model"] == sb["model"] and sa["sha256"] != sb["sha256"]
    # a card beside a file that is no longer the one it describes (fine-tuned in place)
    weights, card = save_model(tiny(3), tmp_path / "carded")
    recorded = json.loads(card.read_text())["sha256"]
    assert load_model("tiny-test", weights=weights).meta["sha256"] == recorded == \
        digest(weights)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in tiny(4).state_dict().items()}, str(weights))
    with pytest.raises(WeightsError, match="expected"):
        load_model("tiny-test", weights=weights)
    changed = load_model("tiny-test", weights=weights, verify=False)
    assert changed.meta["sha256"] == digest(weights) != recorded
    assert changed.meta["temperature"] == json.loads(card.read_text())["temperature"]


def test_bundled_model_records_its_digest_either_way():
    path = registry.DATA_DIR / "mantis-mini.safetensors"
    if not path.exists():
        pytest.skip("the bundled weights are not built")
    card = json.loads(path.with_suffix(".json").read_text())
    assert load_model("mantis-mini").meta["sha256"] == card["sha256"]
    assert load_model("mantis-mini", verify=False).meta["sha256"] == card["sha256"]


def test_verify_hashes_the_file_once(tmp_path, tiny_spec, monkeypatch):
    """The digest recorded is the one verification computed: no second pass over the
    file (801 MB for the published checkpoint)."""
    calls = []
    real = registry._sha256
    monkeypatch.setattr(registry, "_sha256", lambda path, *a: calls.append(path) or real(path))
    weights, _ = save_model(tiny(5), tmp_path / "w")                # hashes it for the card
    calls.clear()
    load_model("tiny-test", weights=weights)                         # card: verified
    load_model("tiny-test", weights=weights, verify=False)           # not verified
    torch.save(tiny(5).state_dict(), tmp_path / "plain.pt")
    load_model("tiny-test", weights=tmp_path / "plain.pt")           # no checksum known
    assert len(calls) == 3


def test_strict_key_matching_error_lists_keys():
    net = tiny()
    state = dict(net.state_dict())
    state.pop("fc0.bias")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"1 missing keys \(fc0\.bias\); "
                                           r"1 unexpected keys \(extra\.weight\)"):
        load_state_dict(tiny(), state)


def test_verify_file_checks_size_and_sha256(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"mantis")
    digest = verify_file(path, size=6, sha256="")
    assert len(digest) == 64
    assert verify_file(path, sha256=digest[:8]) == digest
    with pytest.raises(WeightsError, match=f"expected sha256 starting '411536eb', got '{digest}'"):
        verify_file(path, sha256="411536eb")
    with pytest.raises(WeightsError, match="expected 7 bytes, got 6"):
        verify_file(path, size=7)


def test_save_and_load_model_with_card(tmp_path, tiny_spec):
    net = build_model("tiny-test")
    net.meta["temperature"] = 1.7
    weights, card = save_model(net, tmp_path / "tiny", card={"seed": 5, "metrics": {"nmad": 0.1}})
    assert weights.name == "tiny.safetensors" and card.name == "tiny.json"
    info = json.loads(card.read_text())
    assert info["temperature"] == 1.7 and info["seed"] == 5
    assert info["architecture"]["widths"] == [4, 8, 8, 8]
    loaded = load_model("tiny-test", weights=weights)
    assert not loaded.training and loaded.meta["trained"] is True
    assert loaded.meta["temperature"] == 1.7 and loaded.meta["sha256"] == info["sha256"]
    x, d = torch.rand(2, 9, 120, 120), torch.rand(2, 2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, d), net.eval()(x, d))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="expected sha256 starting"):
        load_model("tiny-test", weights=weights)


def test_bundled_mini_weights():
    path = registry.DATA_DIR / "mantis-mini.safetensors"
    if path.exists():
        net = load_model("mantis-mini")
        assert net.meta["trained"] and path.stat().st_size <= 20 * 2 ** 20
    else:
        with pytest.raises(FileNotFoundError, match="not built yet"):
            load_model("mantis-mini")


def test_mini_weights_without_a_card_load_as_build_model_gives_them_and_say_so(tmp_path):
    """No card: the architecture default (as build_model), and a warning naming it."""
    import warnings

    from safetensors.torch import save_file

    built = build_model("mantis-mini")
    assert built.panstarrs_exposure == "reference"
    state = {k: v.contiguous() for k, v in built.state_dict().items()}
    torch.save(state, tmp_path / "mine.pt")
    save_file(state, str(tmp_path / "mine.safetensors"))
    for name in ("mine.pt", "mine.safetensors"):
        with pytest.warns(UserWarning, match=rf"{name} have no model card beside them "
                                             r"\(mine\.json\).*panstarrs_exposure='reference'"
                                             r".*temperature 1 and no PIT recalibration"):
            net = load_model("mantis-mini", weights=tmp_path / name)
        assert net.panstarrs_exposure == built.panstarrs_exposure == "reference"
        assert net.meta["architecture"] == built.meta["architecture"]
        assert "temperature" not in net.meta or net.meta["temperature"] == 1.0
    # a card beside the weights (the bundled model's way): no warning, the card's setting
    path = registry.DATA_DIR / "mantis-mini.safetensors"
    if path.exists():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            bundled = load_model("mantis-mini")
        card = json.loads(path.with_suffix(".json").read_text())
        assert bundled.panstarrs_exposure == card["architecture"]["panstarrs_exposure"]


# ------------------------------------------------------------------ mantis-mini
def test_mini_contract_and_size():
    net = build_model("mantis-mini")
    n = sum(p.numel() for p in net.parameters())
    assert 1_000_000 < n < 5_000_000           # float32 weights well under 20 MB
    assert net.fc0.in_features == net.Base.num_features + 2 and net.fc1.out_features == 400
    with torch.no_grad():
        out = net.eval()(torch.rand(2, 9, 120, 120), torch.rand(2, 2))
    assert out.shape == (2, 400)
    with pytest.raises(ValueError, match=r"dust must have shape \(2, 2\)"):
        net(torch.rand(2, 9, 120, 120), torch.rand(2, 3))
    with pytest.raises(ValueError, match="same length"):
        build_model("mantis-mini", widths=(8, 16), depths=(1,))


# ------------------------------------------------------------------ inference
def cutouts(n=3):
    from test_fusion import fixed_cutout

    return [fixed_cutout(i) for i in range(n)]


def test_a_deeper_mini_starts_as_the_shallower_function():
    from astro_mantis.models.mini import load_shallower

    small = dict(widths=[4, 8, 16], depths=[1, 1, 1], hidden=16)
    torch.manual_seed(0)
    shallow = build_model("mantis-mini", **small)
    for m in shallow.modules():  # trained-looking weights: no zero residual branch left
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.1, 0.1)
    shallow.eval()
    deep = build_model("mantis-mini", **dict(small, depths=[1, 2, 3]))
    new = load_shallower(deep, shallow.state_dict())
    assert new and all(".stages.1.1." in k or ".stages.2.1." in k or ".stages.2.2." in k
                       for k in new)
    deep.eval()
    x, dust = torch.rand(3, 9, 32, 32), torch.rand(3, 2) * 0.1
    with torch.no_grad():
        assert torch.allclose(deep(x, dust), shallow(x, dust), atol=1e-6)
    # and the new blocks do train: their residual weights get gradients
    deep.train()
    deep(x, dust).logsumexp(1).sum().backward()
    grads = dict(deep.named_parameters())
    assert grads["Base.stages.2.2.bn2.weight"].grad.abs().sum() > 0
    # what cannot be grown is refused, naming the problem
    with pytest.raises(ValueError, match="no counterpart"):
        load_shallower(build_model("mantis-mini", **dict(small, widths=[4, 8, 32])),
                       shallow.state_dict())
    with pytest.raises(ValueError, match="outside the appended blocks"):
        load_shallower(build_model("mantis-mini", **dict(small, depths=[1, 2, 1])),
                       {k: v for k, v in shallow.state_dict().items()
                        if ".stages.2." not in k})
    trained_new = build_model("mantis-mini", **dict(small, depths=[1, 1, 2]))
    torch.nn.init.ones_(trained_new.Base.stages[2][1].bn2.weight)
    with pytest.raises(ValueError, match="identity"):
        load_shallower(trained_new, shallow.state_dict())


def test_predict_cutouts_batch_by_batch_through_reused_buffers():
    """Seven batches of one galaxy each run through three fusion buffers in turn: every
    galaxy still gets its own PDF (a buffer overwritten too early would repeat one)."""
    from test_fusion import fixed_cutout

    net = tiny()
    cuts = [fixed_cutout(i % 3) for i in range(7)]
    ebv = np.random.default_rng(3).uniform(0, 0.2, (7, 2))
    one_by_one = predict(cuts, model=net, dust=ebv, batch_size=1, precision="float32")
    together = predict(cuts, model=net, dust=ebv, batch_size=7, precision="float32")
    np.testing.assert_allclose(one_by_one.pdf, together.pdf, rtol=1e-4, atol=1e-6)
    for i in range(7):
        single = predict(cuts[i], model=net, dust=ebv[i], precision="float32")
        np.testing.assert_allclose(one_by_one.pdf[i], single.pdf, rtol=1e-4, atol=1e-6)
    assert not np.allclose(one_by_one.pdf[0], one_by_one.pdf[3])  # same image, other dust


def test_predict_cutouts_equals_fused_arrays():
    pytest.importorskip("astro_mantis.pdf")
    net, cuts = tiny(), cutouts()
    ebv = np.array([[0.01, 0.02], [0.1, 0.12], [0.03, 0.02]])
    pdf = predict(cuts, model=net, dust=ebv)
    fused = early_fusion(cuts, ebv=ebv)
    pdf2 = predict(fused.x, model=net, dust=fused.dust, batch_size=2)
    assert len(pdf) == 3 and pdf.nbins == 400
    np.testing.assert_allclose(pdf.pdf, pdf2.pdf, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose((pdf.pdf * pdf.widths).sum(axis=1), 1, rtol=1e-5)
    assert pdf.meta["model"] == "mantis-mini" and pdf.meta["tta"] is False
    assert pdf.meta["flags"].tolist() == [0, 0, 0] and pdf.meta["valid"].all()
    assert pdf2.meta["flags"].tolist() == [0, 0, 0]
    again = predict(cuts, model=net, dust=ebv)
    np.testing.assert_array_equal(again.pdf, pdf.pdf)          # deterministic
    one = predict(cuts[0], model=net, dust=ebv[0])
    assert one.isscalar
    np.testing.assert_allclose(one.pdf, pdf.pdf[0], rtol=1e-4, atol=1e-6)


def test_predict_applies_temperature_and_restores_mode():
    pdf_mod = pytest.importorskip("astro_mantis.pdf")
    net = tiny()
    net.train()
    x = np.random.default_rng(0).random((2, 9, 120, 120), dtype=np.float32)
    net.meta["temperature"] = 2.5
    pdf = predict(x, model=net, precision="float32")
    assert net.training                                      # mode restored
    assert pdf.meta["flags"].tolist() == [int(MantisFlag.DUST_UNKNOWN)] * 2
    with torch.no_grad():
        logits = net.eval()(torch.from_numpy(x), torch.zeros(2, 2)).numpy()
    expected = pdf_mod.RedshiftPDF.from_logits(logits, temperature=2.5)
    np.testing.assert_allclose(pdf.pdf, expected.pdf, rtol=1e-4, atol=1e-6)
    assert pdf.meta["temperature"] == 2.5


def test_predict_tta_averages_dihedral_probabilities():
    pytest.importorskip("astro_mantis.pdf")
    net = tiny(3)
    rng = np.random.default_rng(1)
    x = rng.random((2, 9, 120, 120), dtype=np.float32)
    pdf = predict(x, model=net, tta=True, batch_size=1, precision="float32")
    x_t = torch.from_numpy(x)
    with torch.no_grad():
        probs = np.mean([torch.softmax(net(t(x_t), torch.zeros(2, 2)), 1).numpy()
                         for t in dihedral_transforms()], axis=0)
    np.testing.assert_allclose(pdf.pdf * pdf.widths, probs, rtol=1e-4, atol=1e-7)
    assert pdf.meta["tta"] is True
    # a symmetric image is its own transform: TTA changes nothing
    sym = np.ones((1, 9, 120, 120), np.float32)
    np.testing.assert_allclose(predict(sym, model=net, tta=True, precision="float32").pdf,
                               predict(sym, model=net, precision="float32").pdf,
                               rtol=1e-4, atol=1e-6)


def test_dihedral_transforms_are_the_eight_symmetries():
    img = torch.arange(9.0).reshape(1, 1, 3, 3)
    outs = {tuple(t(img).flatten().tolist()) for t in dihedral_transforms()}
    assert len(outs) == 8
    assert dihedral_transforms()[0](img) is img


def test_predict_never_feeds_nan_and_checks_inputs():
    pytest.importorskip("astro_mantis.pdf")
    net = tiny()
    x = np.zeros((2, 9, 120, 120), np.float32)
    x[1, 3, 5, 5] = np.nan
    with pytest.raises(ValueError, match="1 non-finite values"):
        predict(x, model=net)
    with pytest.raises(ValueError, match=r"dust must have shape \(2, 2\)"):
        predict(np.zeros((2, 9, 120, 120)), model=net, dust=np.zeros(4))
    with pytest.raises(ValueError, match=r"\(N, 9, 120, 120\)"):
        predict(np.zeros((120, 120)), model=net)
    with pytest.raises(ValueError, match="unknown model"):
        predict(x[:1], model="nope")
    with pytest.raises(TypeError, match="registry name"):
        predict(x[:1], model=42)
    # cutouts full of NaN go through fusion: zeros, flags, finite PDFs
    cut = cutouts(1)[0]
    cut["panstarrs"].data[:] = np.nan
    pdf = predict(cut, model=net, device="cpu")
    assert np.isfinite(pdf.pdf).all()
    assert MantisFlag.PANSTARRS_MISSING in MantisFlag(pdf.meta["flags"])
    assert pdf.meta["valid"].tolist() == [True] * 2 + [False] * 5 + [True] * 2
    cut["panstarrs"].data[:, :, :100] = 5.0
    pdf = predict([cut, cut], model=net, dust=[[0.1, 0.1], [np.nan, 0.1]], batch_size=1)
    assert [MantisFlag(int(f)) for f in pdf.meta["flags"]] == [
        MantisFlag.NAN_PIXELS, MantisFlag.NAN_PIXELS | MantisFlag.DUST_UNKNOWN]
    with pytest.raises(ValueError, match=r"ebv must have shape \(2, 2\)"):
        predict([cut, cut], model=net, dust=[0.1, 0.1])


def test_predict_loads_by_name_and_caches(tmp_path, tiny_spec):
    pytest.importorskip("astro_mantis.pdf")
    net = build_model("tiny-test")
    weights, _ = save_model(net, tmp_path / "t")
    x = np.random.default_rng(0).random((2, 9, 120, 120), dtype=np.float32)
    a = predict(x, model="tiny-test", weights=weights, device="cpu")
    b = predict(x, model="tiny-test", weights=weights, device="cpu")
    np.testing.assert_array_equal(a.pdf, b.pdf)
    assert a.meta["trained"] is True and a.meta["sha256"]
    np.testing.assert_allclose(a.pdf, predict(x, model=net).pdf, rtol=1e-4, atol=1e-6)
    from astro_mantis.models import clear_model_cache
    clear_model_cache()


def test_predict_on_nothing_gives_an_empty_pdf():
    pytest.importorskip("astro_mantis.pdf")
    pdf = predict([], model=tiny())
    assert len(pdf) == 0 and pdf.nbins == 400 and pdf.meta["flags"].shape == (0,)


def test_cutout_missing_everything_still_predicts():
    pytest.importorskip("astro_mantis.pdf")
    from astropy.coordinates import SkyCoord

    empty = MultiSurveyCutout(SkyCoord(10, -80, unit="deg"), {},
                              missing=["galex", "panstarrs", "unwise"])
    pdf = predict([empty], model=tiny())
    f = MantisFlag(int(pdf.meta["flags"][0]))
    assert {MantisFlag.GALEX_MISSING, MantisFlag.PANSTARRS_MISSING, MantisFlag.UNWISE_MISSING,
            MantisFlag.DUST_UNKNOWN} <= set(MantisFlag(m) for m in MantisFlag if m in f)
