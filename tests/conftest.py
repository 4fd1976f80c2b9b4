"""Suite-wide settings: the tests run tiny models on a shared 2-core CPU (CI has 2 cores), where one torch
thread is far faster than contended OpenMP threads; commands under test that take ``--threads`` set
their own."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tsdsr-mini with random (non-zero output) weights, written by the project's own save function."""
    from pruneseek.targets.mini import build_mini, save_mini

    transformer, prompt, pooled = build_mini(1)
    torch.nn.init.normal_(transformer.proj_out.weight, std=0.02)
    return save_mini(tmp_path_factory.mktemp("w") / "mini.safetensors", transformer, prompt, pooled, {"command": "test"})
