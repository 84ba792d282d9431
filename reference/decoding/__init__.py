"""Decoding references: greedy, sampling and beam search (search), their variants, speculative decoding."""
