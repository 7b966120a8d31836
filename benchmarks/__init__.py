"""Benchmarks of iverton-webhooks: see benchmarks/README.md."""
