"""The tagging head: per-token tag logits from the token embedding and the word shapes around the token (tasks.py's
tagging kind builds it; a network of its own, so reading a tagging task's outputs needs no torch).
"""
import torch
from torch import nn

from text_prep import WORD_SHAPES


class TaggingHead(nn.Module):
    """Per-token tag logits from the token embedding and the word shapes in a window around the token.

    The uncased encoder cannot see capitalisation, which spaCy's teacher leans on (it reads shapes in a window
    of +-4 tokens). Case enters the model here only: the head gets the shapes of the token and its `window`
    neighbours on each side, and a hidden layer lets shape and meaning interact (a linear head could only add a
    per-shape bias). With context > 0 that hidden layer is a convolution over [token embedding; shapes] of the
    token and its `context` neighbours, so a word's tag can also depend on how its neighbours read and are cased.
    """

    def __init__(self, hidden, n_tags, dropout=0.1, shape_dim=16, window=2, context=0):
        super().__init__()
        self.window, self.context = window, context
        self.dropout = nn.Dropout(dropout)
        self.shape_embedding = nn.Embedding(len(WORD_SHAPES), shape_dim)
        features = hidden + (2 * window + 1) * shape_dim
        if context:
            self.hidden = nn.Conv1d(features, hidden, kernel_size=2 * context + 1, padding=context)
        else:
            self.hidden = nn.Linear(features, hidden)
        self.linear = nn.Linear(hidden, n_tags)

    def forward(self, token_embeddings, shape_ids, positions=None, attention_mask=None):
        """Logits [B, T, n_tags]; with positions (a boolean mask [B, T] or (rows, cols)), only those tokens:
        [n_selected, n_tags], row-major. attention_mask [B, T] zeroes padding before the context layer."""
        padded = nn.functional.pad(shape_ids, (self.window, self.window))  # shape 0 ('pad') beyond the ends
        length = shape_ids.shape[1]
        windows = torch.stack([padded[:, k:k + length] for k in range(2 * self.window + 1)], -1)
        if self.context:
            if attention_mask is not None:
                token_embeddings = token_embeddings * attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
            shapes = self.shape_embedding(windows).flatten(-2).to(token_embeddings.dtype)
            features = torch.cat([self.dropout(token_embeddings), shapes], dim=-1)
            hidden = self.hidden(features.transpose(1, 2)).transpose(1, 2)
            if positions is not None:
                hidden = hidden[positions]
            return self.linear(nn.functional.gelu(hidden))
        if positions is not None:
            token_embeddings, windows = token_embeddings[positions], windows[positions]
        shapes = self.shape_embedding(windows).flatten(-2).to(token_embeddings.dtype)
        features = torch.cat([self.dropout(token_embeddings), shapes], dim=-1)
        return self.linear(nn.functional.gelu(self.hidden(features)))
