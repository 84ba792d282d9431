"""Citations shared by the attention family's statements (one spelling for the catalog)."""

TORCH_SDPA = "torch.nn.functional.scaled_dot_product_attention (torch 2.13 docs)"
VASWANI = "Vaswani et al. 2017, Attention Is All You Need, eq. 1"
