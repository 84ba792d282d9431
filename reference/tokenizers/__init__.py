"""Tokenizer references: byte-level BPE (training and encoding), GPT-2 files, WordPiece, Unigram, pre-tokenization."""
