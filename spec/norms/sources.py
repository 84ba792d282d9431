"""What the norms family cites: the papers and library docs its statements rest on."""

ZHANG = "Zhang & Sennrich 2019, Root Mean Square Layer Normalization, eq. 4"
TORCH_RMS = "torch.nn.functional.rms_norm / torch.nn.RMSNorm (torch 2.13 docs)"
BA = "Ba et al. 2016, Layer Normalization, eqs. 3-4"
TORCH_LN = "torch.nn.functional.layer_norm (torch 2.13 docs)"
IOFFE = "Ioffe & Szegedy 2015, Batch Normalization, Algorithm 1 and sec. 3.1"
TORCH_BN = "torch.nn.functional.batch_norm (torch 2.13 docs)"
XIONG = "Xiong et al. 2020, On Layer Normalization in the Transformer Architecture, Figure 1"
QWEN3 = "Qwen3 (transformers models/qwen3/modeling_qwen3.py: q_norm, k_norm over head_dim before RoPE)"
OLMO2 = "OLMo 2 (OLMo et al. 2024, sec. 3.1; transformers models/olmo2: q_norm over num_heads * head_dim)"
DEHGHANI = ("Dehghani et al. 2023, Scaling Vision Transformers to 22B Parameters, sec. 3.1 (QK normalization bounds "
            "attention logits)")
