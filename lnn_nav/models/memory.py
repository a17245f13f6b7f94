"""LSTM memory cell for CfC/LTC ``mixed_memory`` (Lechner & Hasani 2020, arXiv:2006.04418)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MemoryCell(nn.Module):
    """An LSTM cell with the forget-gate bias of +1 (the ncps ``LSTMCell``).

    In mixed-memory mode it runs before the liquid cell each step and replaces
    its hidden state, giving gradient paths that survive long sequences.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.input_map = nn.Linear(input_size, 4 * hidden_size, bias=True)
        self.recurrent_map = nn.Linear(hidden_size, 4 * hidden_size, bias=False)
        nn.init.xavier_uniform_(self.input_map.weight)
        nn.init.uniform_(self.input_map.bias, -0.1, 0.1)
        nn.init.orthogonal_(self.recurrent_map.weight)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        z = self.input_map(x) + self.recurrent_map(h)
        i, ig, fg, og = z.chunk(4, dim=1)
        c = c * torch.sigmoid(fg + 1.0) + torch.tanh(i) * torch.sigmoid(ig)
        h = torch.tanh(c) * torch.sigmoid(og)
        return h, c
