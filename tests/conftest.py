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
