"""The Accelerate training loop, its data feeding, checkpoints and resume."""
