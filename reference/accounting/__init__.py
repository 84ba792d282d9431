"""Resource accounting references: parameter counts, FLOPs, memory, number formats."""
