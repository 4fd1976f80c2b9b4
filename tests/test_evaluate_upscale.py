"""`pruneseek evaluate` and `pruneseek upscale` end to end on tiny image folders (CPU), and the papers' Y-channel
PSNR/SSIM (BasicSR's convention) against an independent numpy/scipy computation written here."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.signal import convolve2d

from pruneseek.cli import main
from pruneseek.evaluation import name_key, read_image
from pruneseek.maskfile import MaskFile
from pruneseek.metrics import psnr_y, ssim_y

# ------------------------------------------------------------------ BasicSR's formulas, written out independently


def basicsr_y(rgb01: np.ndarray) -> np.ndarray:
    """(H, W, 3) in [0, 1] → BasicSR's Y on [16, 235]: tensor2img's rounding to uint8, then to_y_channel/bgr2ycbcr
    (float32 image / 255, dot with the BT.601 row + 16, / 255 kept as float32, × 255)."""
    img = np.round(np.clip(rgb01, 0, 1) * 255.0).astype(np.uint8)
    img = img.astype(np.float32) / 255.0
    y = np.dot(img, [65.481, 128.553, 24.966]) + 16.0
    y = (y / 255.0).astype(np.float32)
    return (y * 255.0).astype(np.float64)


def basicsr_psnr_y(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    a, b = basicsr_y(sr), basicsr_y(hr)
    if crop:
        a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 * 255.0 / mse)


def basicsr_ssim_y(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    a, b = basicsr_y(sr), basicsr_y(hr)
    if crop:
        a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()  # cv2.getGaussianKernel(11, 1.5)
    window = np.outer(g, g)
    f = lambda x: convolve2d(x, window, mode="valid")  # = filter2D(...)[5:-5, 5:-5] (symmetric window)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu1, mu2 = f(a), f(b)
    s11, s22, s12 = f(a * a) - mu1**2, f(b * b) - mu2**2, f(a * b) - mu1 * mu2
    m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1**2 + mu2**2 + c1) * (s11 + s22 + c2))
    return float(m.mean())


# -------------------------------------------------------------------------------------------------- helpers


def photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random colour image (H, W, 3) in [0, 1] with some texture."""
    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.random((1, 3, max(2, h // 6), max(2, w // 6))))
    smooth = torch.nn.functional.interpolate(base, size=(h, w), mode="bicubic", align_corners=False)[0]
    return np.clip(smooth.permute(1, 2, 0).numpy() + 0.05 * rng.standard_normal((h, w, 3)), 0, 1)


def save(path, rgb01: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(rgb01 * 255).astype(np.uint8), "RGB").save(path)
    return np.asarray(Image.open(path), dtype=np.float64) / 255.0


def one_line_error(capsys, code: int, *words: str) -> str:
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert code == 2, captured
    assert err.count("\n") == 0 and err.startswith("pruneseek "), err
    for word in words:
        assert word in err, err
    return err


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNESEEK_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """HR (RealSR and DIV2K names), SR next to them, and ×4 LR images whose HR is off by a few pixels."""
    root = tmp_path_factory.mktemp("pairs")
    hr = {"Canon_001": save(root / "hr" / "Canon_001_HR.png", photo(44, 52, 1)),
          "0801": save(root / "hr" / "0801.png", photo(40, 40, 2))}
    noisy = np.clip(hr["Canon_001"] + 0.04 * photo(44, 52, 3) - 0.02, 0, 1)
    sr = {"Canon_001": save(root / "sr" / "Canon_001_LR4_out.png", noisy),
          "0801": save(root / "sr" / "0801x4_sr.png", photo(40, 40, 4) * 0.3 + hr["0801"] * 0.7)}
    save(root / "lr" / "Canon_001_LR4.png", photo(10, 12, 5))  # 4×: 40×48, HR 44×52 (off by 4)
    save(root / "lr" / "0801x4.png", photo(10, 9, 6))  # 4×: 40×36, HR 40×40
    return {"root": root, "hr": hr, "sr": sr}


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    """An export folder of tsdsr-mini keeping 12 of its 24 layers (a mask built here)."""
    root = tmp_path_factory.mktemp("export")
    mask = MaskFile.from_mask([1, 0] * 12, model_name="tsdsr-mini", strategy_name="bk-sdm")
    mask.save(root / "mask.json")
    assert main(["export", "--mask", str(root / "mask.json"), "--out", str(root / "pruned"), "--no-measure"]) == 0
    return root / "pruned"


# ------------------------------------------------------------------------------------------------ the metrics


def test_psnr_y_and_ssim_y_equal_basicsr_written_independently():
    rng = np.random.default_rng(0)
    hr = np.stack([photo(37, 29, s) for s in (10, 11)])
    sr = np.clip(hr + 0.06 * rng.standard_normal(hr.shape), 0, 1)  # off the 8-bit grid: exercises the rounding
    t = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float()
    for crop in (0, 4):
        p, s = psnr_y(t(sr), t(hr), crop), ssim_y(t(sr), t(hr), crop)
        assert p.shape == s.shape == (2,) and p.dtype == torch.float64
        for i in range(2):
            sr32, hr32 = t(sr)[i].permute(1, 2, 0).double().numpy(), t(hr)[i].permute(1, 2, 0).double().numpy()
            assert float(p[i]) == pytest.approx(basicsr_psnr_y(sr32, hr32, crop), abs=1e-9)
            assert float(s[i]) == pytest.approx(basicsr_ssim_y(sr32, hr32, crop), abs=1e-9)


def test_psnr_y_by_hand_and_border_crop():
    # One 8-bit level on every channel moves Y by (65.481 + 128.553 + 24.966) / 255 = 219/255.
    hr = torch.full((1, 3, 20, 20), 100 / 255)
    sr = hr + 1 / 255
    assert float(psnr_y(sr, hr, 0)) == pytest.approx(20 * math.log10(255 / (219 / 255)), abs=1e-4)
    sr[..., :4, :] = 0  # only the border differs more: the cropped score does not see it
    assert float(psnr_y(sr, hr, 4)) == pytest.approx(20 * math.log10(255 / (219 / 255)), abs=1e-4)
    assert float(psnr_y(hr, hr, 4)) == math.inf and float(ssim_y(hr, hr, 4)) == pytest.approx(1.0)


def test_name_rule_and_reading_16_bit_and_exif(tmp_path):
    for stem, key in [("Canon_001_HR", "Canon_001"), ("Canon_001_LR4", "Canon_001"), ("Nikon_050_lr2_out", "Nikon_050"),
                      ("DSC_1454_x1", "DSC_1454"), ("DSC_1454_x4_SR", "DSC_1454"), ("0801x4", "0801"),
                      ("0801", "0801"), ("box4", "box4"), ("flux2", "flux2")]:
        assert name_key(stem) == key, stem
    gray = (np.arange(24 * 16).reshape(24, 16) * 170).astype(np.uint16)  # 16-bit gray up to 65,110
    Image.fromarray(gray).save(tmp_path / "g16.png")
    x = read_image(tmp_path / "g16.png")
    assert x.shape == (3, 24, 16) and torch.allclose(x[0], torch.from_numpy(gray / 65535.0).float())
    im = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    im.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (3, 30, 10)


# ------------------------------------------------------------------------------------------------ evaluate


def test_evaluate_sr_hr_matches_basicsr_and_writes_json_and_csv(pairs, tmp_path, capsys):
    root, out = pairs["root"], tmp_path / "ev"
    code = main(["evaluate", "--sr", str(root / "sr"), "--hr", str(root / "hr"), "--json", "--out", str(out),
                 "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert {"per_image", "mean", "unavailable"} <= set(result) and result["mode"] == "sr"
    assert set(result["per_image"]) == {"Canon_001", "0801"}
    for stem, row in result["per_image"].items():
        assert row["psnr_y"] == pytest.approx(basicsr_psnr_y(pairs["sr"][stem], pairs["hr"][stem], 4), abs=1e-9)
        assert row["ssim_y"] == pytest.approx(basicsr_ssim_y(pairs["sr"][stem], pairs["hr"][stem], 4), abs=1e-9)
        assert 0 < row["haarpsi"] <= 1 and row["gmsd"] >= 0
    assert result["mean"]["psnr_y"] == pytest.approx(np.mean([r["psnr_y"] for r in result["per_image"].values()]))
    assert {"dists", "niqe", "musiq", "clipiqa"} <= set(result["unavailable"])
    assert ("lpips" in result["mean"]) != ("lpips" in result["unavailable"])
    assert "DISTS_weights" in result["unavailable"]["dists"]
    assert json.loads((out / "evaluate.json").read_text()) == result
    rows = list(csv.DictReader((out / "evaluate.csv").open()))
    assert [r["image"] for r in rows] == ["0801", "Canon_001", "mean"]
    assert float(rows[1]["psnr_y"]) == pytest.approx(result["per_image"]["Canon_001"]["psnr_y"], abs=1e-12)


def test_evaluate_models_and_upscale_then_score_agree(pairs, tmp_path, capsys):
    root = pairs["root"]
    assert main(["evaluate", "--model", "bicubic", "--hr", str(root / "hr"), "--seed", "3", "--json", "--quiet"]) == 0
    synthetic = json.loads(capsys.readouterr().out)
    assert synthetic["mode"] == "synthetic" and synthetic["seed"] == 3 and synthetic["images"] == 2
    assert synthetic["per_image"]["Canon_001"]["size"] == "44x52"  # multiples of 4 already
    assert main(["evaluate", "--model", "tsdsr", "--hr", str(root / "hr"), "--lr", str(root / "lr"), "--json",
                 "--quiet"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert direct["mode"] == "lr" and direct["model"] == "tsdsr-mini"
    assert direct["per_image"]["Canon_001"]["size"] == "40x48"  # HR cropped to 4× LR (top left)
    # upscale writes what evaluate scored: scoring the written files gives the same numbers
    assert main(["upscale", "--model", "tsdsr", "--input", str(root / "lr"), "--out", str(tmp_path / "sr"),
                 "--quiet"]) == 0
    assert "wrote 2 images" in capsys.readouterr().out
    assert main(["evaluate", "--sr", str(tmp_path / "sr"), "--hr", str(root / "hr"), "--json", "--quiet"]) == 0
    scored = json.loads(capsys.readouterr().out)
    for stem in ("Canon_001", "0801"):
        for metric in ("psnr_y", "ssim_y", "haarpsi", "gmsd"):
            assert scored["per_image"][stem][metric] == pytest.approx(direct["per_image"][stem][metric], abs=1e-6)
    main(["evaluate", "--model", "bicubic", "--hr", str(root / "hr"), "--lr", str(root / "lr"), "--quiet"])
    printed = capsys.readouterr().out
    assert "2 images, lr mode, model bicubic" in printed and "not computed: dists" in printed


def test_evaluate_and_upscale_an_export_folder(pairs, export_dir, tmp_path, capsys):
    root = pairs["root"]
    assert main(["evaluate", "--model", str(export_dir), "--hr", str(root / "hr"), "--lr", str(root / "lr"),
                 "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"].startswith("tsdsr-mini-pruned") and result["images"] == 2
    assert all(math.isfinite(r["psnr_y"]) for r in result["per_image"].values())
    assert main(["upscale", "--model", str(export_dir), "--input", str(root / "lr" / "0801x4.png"),
                 "--out", str(tmp_path / "one"), "--quiet"]) == 0
    assert Image.open(tmp_path / "one" / "0801x4.png").size == (36, 40)


def test_upscale_writes_exactly_4x_for_odd_sizes(tmp_path, capsys):
    save(tmp_path / "in" / "odd.png", photo(23, 37, 7))  # 37 wide, 23 high
    save(tmp_path / "in" / "tiny.jpg", photo(5, 3, 8))
    assert main(["upscale", "--model", "tsdsr", "--input", str(tmp_path / "in" / "odd.png"), "--out",
                 str(tmp_path / "file"), "--quiet"]) == 0
    with Image.open(tmp_path / "file" / "odd.png") as im:
        assert im.size == (148, 92) and im.mode == "RGB"
    assert main(["upscale", "--model", "tsdsr", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "dir"),
                 "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == ["odd.png", "tiny.png"]
    assert Image.open(tmp_path / "dir" / "tiny.png").size == (12, 20)
    assert main(["upscale", "--model", "bicubic", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "bic"),
                 "--quiet"]) == 0
    assert Image.open(tmp_path / "bic" / "odd.png").size == (148, 92)
    capsys.readouterr()


# -------------------------------------------------------------------------------------------------- errors


def test_one_line_errors(pairs, tmp_path, capsys):
    root = pairs["root"]
    hr, sr, lr = str(root / "hr"), str(root / "sr"), str(root / "lr")
    code = main(["evaluate", "--sr", str(tmp_path / "absent"), "--hr", hr, "--quiet"])
    one_line_error(capsys, code, "does not exist")
    (tmp_path / "other").mkdir()
    save(tmp_path / "other" / "Canon_001_out.png", pairs["sr"]["Canon_001"])
    save(tmp_path / "other" / "0802_sr.png", pairs["sr"]["0801"])
    code = main(["evaluate", "--sr", str(tmp_path / "other"), "--hr", hr, "--quiet"])
    one_line_error(capsys, code, "0801.png has no partner", "0802_sr.png has no partner", "_LR4")
    (tmp_path / "other" / "0802_sr.png").unlink()
    (tmp_path / "other" / "notes.txt").write_text("not an image")
    code = main(["evaluate", "--sr", str(tmp_path / "other"), "--hr", hr, "--quiet"])
    one_line_error(capsys, code, "notes.txt is not an image file")
    code = main(["upscale", "--model", "bicubic", "--input", str(tmp_path / "other" / "notes.txt"), "--out",
                 str(tmp_path / "o"), "--quiet"])
    one_line_error(capsys, code, "notes.txt is not an image file")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "fake.png").write_bytes(b"not a png at all")
    code = main(["upscale", "--model", "bicubic", "--input", str(tmp_path / "broken"), "--out", str(tmp_path / "o")])
    one_line_error(capsys, code, "cannot read image", "fake.png")
    (tmp_path / "a-file").write_text("")
    code = main(["upscale", "--model", "bicubic", "--input", str(root / "lr"), "--out", str(tmp_path / "a-file")])
    one_line_error(capsys, code, "is a file")
    (tmp_path / "empty").mkdir()
    code = main(["upscale", "--model", "bicubic", "--input", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    one_line_error(capsys, code, "holds no images")
    one_line_error(capsys, main(["evaluate", "--hr", hr]), "nothing to evaluate")
    one_line_error(capsys, main(["evaluate"]), "give --hr")
    one_line_error(capsys, main(["evaluate", "--sr", sr, "--hr", hr, "--model", "bicubic"]), "--sr scores existing")
    one_line_error(capsys, main(["evaluate", "--lr", lr, "--hr", hr]), "--lr LR_DIR needs --model")
    code = main(["evaluate", "--model", "bicubic", "--hr", hr, "--lr", sr, "--quiet"])  # SR at HR size, not ×4 LR
    one_line_error(capsys, code, "0801: the SR image is 160×160 but its HR is 40×40", "downscale it")
    code = main(["evaluate", "--model", str(tmp_path / "nope"), "--hr", hr, "--quiet"])
    one_line_error(capsys, code, "not 'tsdsr', 'bicubic' or a folder written by 'pruneseek export'")
    code = main(["evaluate", "--model", str(tmp_path / "empty"), "--hr", hr, "--quiet"])
    one_line_error(capsys, code, "no EXPORT.json")
    code = main(["evaluate", "--model", "tsdsr", "--hr", hr, "--lr", lr, "--tile", "40", "--quiet"])
    one_line_error(capsys, code, "multiple of 16")
    code = main(["evaluate", "--model", "bicubic", "--weights", str(tmp_path / "w"), "--hr", hr])
    one_line_error(capsys, code, "runs no network")
    with pytest.raises(SystemExit) as exit_:
        main(["upscale", "--model", "bicubic", "--input", str(tmp_path / "in.png")])  # argparse: one line too
    one_line_error(capsys, exit_.value.code, "required: --out")
