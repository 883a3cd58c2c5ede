"""The quant lab: quantize a model, and measure what a quant costs in quality (perplexity, KL divergence)."""
