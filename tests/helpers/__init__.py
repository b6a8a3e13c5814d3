"""Helpers of the robustness tests (and the crash_server.py script)."""
