"""Shared by the model tests: torch on 2 threads while they run (the CI machine's cores), restored after."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
