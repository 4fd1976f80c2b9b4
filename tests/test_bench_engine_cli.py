"""`pruneseek bench engine`: device-dependent defaults (issue 7: on CUDA the SD3-medium shape, bf16, LoRA rank 64,
512 px latents, written to results/bench-engine-gpu.json) and the clear error on a machine without CUDA."""
import pytest
import torch

from pruneseek.cli import main
from pruneseek.commands.bench import engine_defaults


def test_cuda_defaults_are_the_sd3_medium_gpu_setting():
    assert engine_defaults("cuda") == ("sd3-medium", "bfloat16", 64)
    assert engine_defaults("cuda:1", lora_rank=16, dtype="float16") == ("sd3-medium", "float16", 16)
    assert engine_defaults("cpu") == ("cpu", "float32", 8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "engine", "--device", "cuda", "--out", str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert "torch sees no CUDA device" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.json").exists()
