"""Built-in quantized-loading back ends."""
