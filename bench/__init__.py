"""Benchmark harness: servicehop against stock Radicale and Xandikos (``python -m bench``)."""
