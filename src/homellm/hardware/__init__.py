"""What a machine has: detected here, or described from the device database."""
