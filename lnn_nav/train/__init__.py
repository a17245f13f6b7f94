"""Imitation learning: behaviour cloning with truncated BPTT, DAgger, distributed training."""
