"""Norms family: RMSNorm and LayerNorm; BatchNorm, residual orders and QK-norm."""

from . import gradients, rms_layer, variants  # noqa: F401  (they declare the components and invariants)
