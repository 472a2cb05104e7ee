"""Recurrent layers: SimpleRNN, LSTM and GRU.

`base_rnn` holds the shared config, masking, state and the batch-block driver of the Numba time loops;
each cell type has its own module.
"""

# isort: skip_file
# (the layers register in this order, the order `layerforge layers` lists them in)

from .base_rnn import ACTIVATION_CODES, RNNConfig, MIN_BLOCK_ROWS, MIN_BLOCK_WORK, FORCE_BLOCKS
from .simple_rnn import SimpleRNN
from .lstm import LSTM
from .gru import GRU

__all__ = [
    "ACTIVATION_CODES", "RNNConfig", "MIN_BLOCK_ROWS", "MIN_BLOCK_WORK", "FORCE_BLOCKS", "SimpleRNN", "LSTM",
    "GRU",
]
