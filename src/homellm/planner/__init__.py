"""Pure planning: memory, speed and the choice of quant and placement, from data to data."""
